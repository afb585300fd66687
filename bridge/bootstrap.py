"""The one composition root: every adapter and service is built, wired and closed here.

`xueji run` (running_bridge), every command and the demo (operator_tools) take what
this module builds, and so do the tests; nothing else constructs an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from aio_pika.abc import AbstractRobustConnection

from bridge.adapters.amqp_cluster import connect_cluster
from bridge.adapters.clock import SystemClock
from bridge.adapters.file_crypto import FileKeys, new_key_line
from bridge.adapters.http_transport import RegistryTransport, RetryBudget
from bridge.adapters.postgres import failover
from bridge.adapters.postgres.arrivals import ArrivalBook
from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.calendar import CalendarStore
from bridge.adapters.postgres.casebook import Casebook
from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.adapters.postgres.console_sessions import ConsoleSessionStore
from bridge.adapters.postgres.file_keys import FileKeyStore
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.migrate import ensure_database, migrate
from bridge.adapters.postgres.parked_messages import ParkedMessages
from bridge.adapters.postgres.probe import DatabaseProbe
from bridge.adapters.postgres.reconciliation_store import ReconciliationStore
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.adapters.postgres.recovery_store import RecoveryStore
from bridge.adapters.postgres.retention_store import RetentionStore
from bridge.adapters.postgres.school_lookups import SchoolLookups
from bridge.adapters.postgres.school_pulls import SchoolPulls
from bridge.adapters.postgres.school_reads import ReadBook
from bridge.adapters.postgres.tokens import TokenStore
from bridge.adapters.preschool_registry import PreschoolRegistry
from bridge.adapters.primary_registry import PrimaryRegistry
from bridge.domain.refusal_budget import RefusalBudget
from bridge.domain.retention import RetentionPolicy
from bridge.domain.retry_policy import RetryPolicy
from bridge.domain.working_days import day_in_china
from bridge.metrics import Metrics
from bridge.services.access import AuditTrail, Gate, TokenAdministration
from bridge.services.arrivals import Arrivals
from bridge.services.calendar import WorkingCalendar
from bridge.services.casework import Casework
from bridge.services.console_sessions import ConsoleSignIn
from bridge.services.downloads import Downloads
from bridge.services.file_keys import FileKeyAdministration
from bridge.services.handoff import HandoffDriver, HandoffPorts
from bridge.services.handoff_worker import HandoffWorker
from bridge.services.health import Health
from bridge.services.ports.clock import Clock
from bridge.services.ports.recovery import Publish
from bridge.services.purge_schedule import purge_on_schedule
from bridge.services.reconcile_schedule import reconcile_on_schedule
from bridge.services.reconciliation import ReconcileConfig, ReconcilePorts, Reconciler
from bridge.services.recovery import Recovery
from bridge.services.refusals import Refusals
from bridge.services.reports import Reporting
from bridge.services.retention import Retention
from bridge.services.schools import SchoolChildren
from bridge.services.sealing import run_sealing
from bridge.services.use_cases import UseCases
from bridge.settings import Settings
from consumers import frame_tolerance
from consumers.database_gate import ConsumerSwitch, DatabaseGate
from consumers.events import EventConsumer
from consumers.parked import ParkedRecorder
from consumers.republish import LazyPublisher, exchange_publisher
from consumers.topology import Topology, TopologyNames, declare

log = logging.getLogger(__name__)


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """Create the database if needed, migrate it, and open the pool."""
    await ensure_database(settings.database_url)
    conn = await failover.connect(settings.database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return await failover.create_pool(
        settings.database_url, min_size=2, max_size=settings.db_pool_size, reset=_keep_session
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hand a connection back to the pool as it is.

    asyncpg's default reset costs a round trip per release (RESET ALL, UNLISTEN *, ...);
    the bridge sets no session state, and code taking a session advisory lock releases
    it itself. Open transactions are still rolled back by the pool.
    """


def file_keys_of(settings: Settings) -> FileKeys:
    """The record files' keys (FileKeysInvalid, naming the setting, if missing or malformed)."""
    return FileKeys.from_settings(
        settings.file_keys, settings.file_keys_file, settings.file_key_active
    )


def configured_file_keys(settings: Settings) -> FileKeys | None:
    """The keys if any are configured: a command that seals and opens no record file runs
    without them (one that does is refused, naming the setting)."""
    if not (settings.file_keys or settings.file_keys_file):
        return None
    return file_keys_of(settings)


def new_file_key(key_id: str) -> str:
    """A fresh ``id:base64key`` entry for BRIDGE_FILE_KEYS."""
    return new_key_line(key_id)


def _named(settings: Settings, role: str = "") -> dict[str, str]:
    """The broker connection's name, as RabbitMQ's guides advise: operators (and the HA
    suite) tell the instances' connections apart."""
    name = f"xueji-bridge {settings.instance_id}" + (f" ({role})" if role else "")
    return {"connection_name": name}


def topology_names(settings: Settings) -> TopologyNames:
    """Queue names of this deployment."""
    return TopologyNames(
        events_exchange=settings.events_exchange,
        events_queue=f"{settings.queue_prefix}.events",
        parked_exchange=f"{settings.queue_prefix}.parked",
        parked_queue=f"{settings.queue_prefix}.parked",
        unrecorded_queue=f"{settings.queue_prefix}.unrecorded",
        delivery_limit=settings.delivery_limit,
        quorum_initial_group_size=settings.quorum_initial_group_size,
    )


def _transport(
    session: aiohttp.ClientSession, url: str, token: str, settings: Settings, metrics: Metrics
) -> RegistryTransport:
    return RegistryTransport(
        session, url, token, metrics=metrics,
        timeout=aiohttp.ClientTimeout(
            total=settings.registry_total_timeout_s,
            sock_connect=settings.registry_connect_timeout_s,
            sock_read=settings.registry_read_timeout_s,
        ),
        budget=RetryBudget(settings.registry_attempts, settings.registry_max_inline_wait_s),
    )  # fmt: skip


def registries(
    http: aiohttp.ClientSession, settings: Settings, metrics: Metrics
) -> tuple[PreschoolRegistry, PrimaryRegistry]:
    """Clients of both registries over *http*."""
    return (
        PreschoolRegistry(
            _transport(http, settings.preschool_url, settings.preschool_token, settings, metrics)
        ),
        PrimaryRegistry(
            _transport(http, settings.registry_url, settings.registry_token, settings, metrics)
        ),
    )


def reconcile_config(settings: Settings) -> ReconcileConfig:
    """The reconciliation knobs of *settings*."""
    return ReconcileConfig(
        page_size=settings.reconcile_page_size,
        max_repairs=settings.reconcile_max_repairs,
        keep_runs=settings.reconcile_keep_runs,
        overdue_days=settings.overdue_working_days,
        file_not_pulled_days=settings.file_not_pulled_working_days,
        not_arrived_days=settings.not_arrived_working_days,
        term_start=settings.term_start,
    )


def entry_years(settings: Settings, now: dt.datetime) -> list[int]:
    """The cohorts the scheduler reconciles (this year's, when none are configured)."""
    raw = [p.strip() for p in settings.reconcile_entry_years.split(",") if p.strip()]
    return [int(p) for p in raw] or [day_in_china(now).year]


@dataclass(frozen=True, slots=True)
class Stores:
    """The PostgreSQL adapters of one pool; close() lets their batched work finish."""

    pool: asyncpg.Pool
    ledger: Ledger
    files: RecordFileStore
    parked: ParkedMessages
    tokens: TokenStore
    audit: AuditLog
    pulls: SchoolPulls
    lookups: SchoolLookups
    book: ReadBook
    arrivals: ArrivalBook
    runs: ReconciliationStore
    worklist: RecoveryStore
    calendars: CalendarStore
    sessions: ConsoleSessionStore
    probe: DatabaseProbe
    file_keys: FileKeyStore
    retention: RetentionStore
    casebook: Casebook

    @classmethod
    def of(
        cls, pool: asyncpg.Pool, settings: Settings, metrics: Metrics | None,
        keys: FileKeys | None,
    ) -> Stores:  # fmt: skip
        """Every store over *pool*; *metrics* hear of the ledger's batches and of record
        files failing authentication; *keys* seal and open the record files."""
        observe = (
            (lambda writer, rows: metrics.batch_rows.labels(writer).observe(rows))
            if metrics is not None
            else None
        )
        failed = (
            (lambda where: metrics.file_integrity_failures.labels(where).inc())
            if metrics is not None
            else None
        )
        audit = AuditLog(pool)
        return cls(
            pool, Ledger(pool, lease_s=settings.lease_s, observe_batch=observe),
            RecordFileStore(pool, keys, audit=audit, count_failure=failed), ParkedMessages(pool),
            TokenStore(pool), audit, SchoolPulls(pool), SchoolLookups(pool), ReadBook(pool),
            ArrivalBook(pool), ReconciliationStore(pool), RecoveryStore(pool),
            CalendarStore(pool), ConsoleSessionStore(pool), DatabaseProbe(pool),
            FileKeyStore(pool, keys), RetentionStore(pool), Casebook(pool),
        )  # fmt: skip

    async def close(self) -> None:
        """Wait for the group-committed reads and writes under way (before the pool closes)."""
        await self.lookups.aclose()
        await self.book.aclose()
        await self.ledger.aclose()


def build_use_cases(
    settings: Settings,
    stores: Stores,
    preschool: PreschoolRegistry,
    registry: PrimaryRegistry,
    *,
    publish: Publish,
    wake: Callable[[], None],
    clock: Clock,
    health: Health | None = None,
    metrics: Metrics | None = None,
) -> UseCases:
    """The services over *stores* and the registries (*metrics*: a running bridge's)."""
    s = stores
    gate = Gate(s.tokens, s.audit)
    reconciler = Reconciler(
        ReconcilePorts(s.runs, s.ledger, s.calendars, preschool, registry, s.audit, wake, clock),
        reconcile_config(settings),
    )
    return UseCases(
        gate=gate,
        children=SchoolChildren(s.pulls, s.lookups, s.book, s.audit),
        arrivals=Arrivals(s.arrivals, s.audit, clock, wake),
        downloads=Downloads(s.lookups, s.book, s.files, s.pulls, clock),
        audit_trail=AuditTrail(s.audit, s.pulls, s.tokens),
        reconciler=reconciler,
        reporting=Reporting(s.runs, s.audit, reconciler),
        recovery=Recovery(s.worklist, s.ledger, s.audit, publish, wake),
        console=ConsoleSignIn(
            gate, s.sessions, s.audit, lifetime_s=settings.console_session_hours * 3600
        ),
        tokens=TokenAdministration(s.tokens, s.audit),
        calendar=WorkingCalendar(s.calendars, s.audit),
        file_keys=FileKeyAdministration(s.file_keys, s.files),
        retention=build_retention(settings, stores, clock, metrics),
        clock=clock,
        casework=Casework(s.casebook, s.runs, s.calendars, clock),
        refusals=build_refusals(settings, stores, metrics),
        database_away=DATABASE_UNAVAILABLE,
        health=health,
    )


def build_refusals(settings: Settings, stores: Stores, metrics: Metrics | None) -> Refusals:
    """Refused attempts audited within BRIDGE_REFUSAL_AUDIT_*, all of them counted."""
    counter = metrics.refusals if metrics is not None else None
    return Refusals(
        stores.audit,
        RefusalBudget(settings.refusal_audit_per_source, settings.refusal_audit_in_all),
        counted=(lambda status, audited: counter.labels(str(status), "yes" if audited else "no")
                 .inc()) if counter is not None else None,
    )  # fmt: skip


def build_retention(
    settings: Settings, stores: Stores, clock: Clock, metrics: Metrics | None = None
) -> Retention:
    """The purge of what retention lets go (BRIDGE_FILE_RETENTION_DAYS)."""
    erased = metrics.retention_erased if metrics is not None else None
    return Retention(
        stores.retention, RetentionPolicy(settings.file_retention_days), clock,
        on_erased=(lambda what, n: erased.labels(what).inc(n)) if erased else None,
    )  # fmt: skip


@dataclass
class Bridge:
    """A running bridge: its adapters, services and background tasks."""

    settings: Settings
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection
    topology: Topology
    metrics: Metrics
    stores: Stores
    preschool: PreschoolRegistry
    registry: PrimaryRegistry
    worker: HandoffWorker
    use_cases: UseCases
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    consuming: bool = False
    gate: DatabaseGate | None = None  # the consumers' (consuming bridges only)
    # The stores tests and the demo read figures from (they are in *stores* too).
    ledger: Ledger = field(init=False)
    files: RecordFileStore = field(init=False)
    parked: ParkedMessages = field(init=False)
    tokens: TokenStore = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        s = self.stores
        self.ledger, self.files, self.parked = s.ledger, s.files, s.parked
        self.tokens, self.audit = s.tokens, s.audit


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings, *, consume: bool = True) -> AsyncIterator[Bridge]:
    """Start consumers and the hand-over worker; stop and close everything on exit."""
    metrics = Metrics()
    clock = SystemClock()
    keys = file_keys_of(settings)  # before anything starts: no key, no bridge
    pool = await open_pool(settings)
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        stores = Stores.of(pool, settings, metrics, keys)
        # The keys open every stored file, and none is left in the clear: else no start.
        await FileKeyAdministration(stores.file_keys, stores.files).ready_to_serve()
        # Group-committed writes under way finish before the pool closes.
        stack.push_async_callback(stores.close)
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=settings.registry_connections)
        )
        stack.push_async_callback(http.close)
        frame_tolerance.install()  # any frame the broker relays is read (see the module)
        amqp = await connect_cluster(settings.amqp_url, client_properties=_named(settings))
        stack.push_async_callback(amqp.close)
        # Callbacks run last-in first-out: background tasks stop before what they use.
        stack.push_async_callback(_cancel_all, tasks)
        channel = await amqp.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.prefetch)
        topology = await declare(channel, topology_names(settings))
        preschool, registry = registries(http, settings, metrics)
        retry = RetryPolicy(settings.retry_base_s, settings.retry_max_s)
        driver = HandoffDriver(
            HandoffPorts(stores.ledger, stores.files, preschool, registry, metrics, retry),
            lease_s=settings.lease_s,
        )
        worker = HandoffWorker(
            stores.ledger, driver, owner=settings.instance_id,
            concurrency=settings.handoff_concurrency,
            poll_interval_s=settings.poll_interval_s, metrics=metrics, retry=retry,
            failure_limit=settings.drive_failure_limit, database_errors=DATABASE_UNAVAILABLE,
        )  # fmt: skip
        health = Health(
            broker_connected=lambda: not amqp.is_closed,
            consuming=lambda: bridge.consuming,  # set below, once the consumers are attached
            worker_running=lambda: worker.running,
            database=stores.probe,
            figures=stores.ledger,
            metrics=metrics,
        )
        use_cases = build_use_cases(
            settings, stores, preschool, registry,
            publish=exchange_publisher(topology.events_exchange), wake=worker.wake,
            clock=clock, health=health, metrics=metrics,
        )  # fmt: skip
        bridge = Bridge(
            settings, pool, http, amqp, topology, metrics, stores, preschool, registry, worker,
            use_cases, tasks,
        )  # fmt: skip
        tasks.append(asyncio.create_task(worker.run(), name="handoff-worker"))
        tasks.append(asyncio.create_task(run_sealing(stores.tokens, stores.audit), name="sealing"))
        if settings.reconcile_interval_s > 0:
            scheduled = reconcile_on_schedule(
                use_cases.reconciler, entry_years(settings, clock.now()),
                settings.reconcile_interval_s,
            )  # fmt: skip
            tasks.append(asyncio.create_task(scheduled, name="reconcile"))
        if settings.file_purge_interval_s > 0:
            purging = purge_on_schedule(use_cases.retention, settings.file_purge_interval_s)
            tasks.append(asyncio.create_task(purging, name="retention"))
        if consume:
            gate = DatabaseGate(
                stores.probe,
                on_change=lambda is_open: metrics.consumers_paused.set(0 if is_open else 1),
            )
            stack.push_async_callback(gate.aclose)
            bridge.gate = gate
            consumer = EventConsumer(
                stores.ledger, topology.parked_exchange, metrics, worker.wake,
                DATABASE_UNAVAILABLE, gate=gate, hold_s=settings.database_hold_s,
            )  # fmt: skip
            recorder = ParkedRecorder(
                stores.parked, gate=gate, database_errors=DATABASE_UNAVAILABLE,
                unrecorded=channel.default_exchange,
                unrecorded_queue=topology_names(settings).unrecorded_queue, metrics=metrics,
                hold_s=settings.database_hold_s,
            )  # fmt: skip
            for queue, callback in (
                (topology.events_queue, consumer),
                (topology.parked_queue, recorder),
            ):
                switch = ConsumerSwitch(queue, callback)
                gate.attach(switch)
                await switch.start()
            bridge.consuming = True
        yield bridge


@dataclass(frozen=True, slots=True)
class Tools:
    """What a command uses: the use cases, and the stores of the few that read figures."""

    settings: Settings
    use_cases: UseCases
    stores: Stores


@contextlib.asynccontextmanager
async def operator_tools(settings: Settings) -> AsyncIterator[Tools]:
    """The use cases for a command: no consumers, no worker (a running bridge's worker
    picks up what they schedule at its next poll); the broker only if a parked message is
    retried; the record files' keys only if configured (the commands that need them say
    so when they are not)."""
    keys = configured_file_keys(settings)
    pool = await open_pool(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        stores = Stores.of(pool, settings, None, keys)
        stack.push_async_callback(stores.close)
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)
        publish = LazyPublisher(
            lambda: connect_cluster(settings.amqp_url, client_properties=_named(settings, "tools")),
            topology_names(settings).events_exchange,
        )
        stack.push_async_callback(publish.aclose)
        preschool, registry = registries(http, settings, Metrics())
        use_cases = build_use_cases(
            settings, stores, preschool, registry, publish=publish, wake=lambda: None,
            clock=SystemClock(),
        )  # fmt: skip
        yield Tools(settings, use_cases, stores)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
