"""The one place concrete adapters are built, wired and closed (tests reuse it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractRobustConnection

from bridge.adapters.file_crypto import FileKeys
from bridge.adapters.http_transport import RegistryTransport, RetryBudget
from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.adapters.postgres.file_keys import FileKeyStore
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.migrate import ensure_database, migrate
from bridge.adapters.postgres.parked_messages import ParkedMessages
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.adapters.postgres.retention_store import RetentionStore
from bridge.adapters.postgres.tokens import TokenStore
from bridge.adapters.preschool_registry import PreschoolRegistry
from bridge.adapters.primary_registry import PrimaryRegistry
from bridge.domain.retention import RetentionPolicy
from bridge.domain.retry_policy import RetryPolicy
from bridge.metrics import Metrics
from bridge.services.handoff import HandoffDriver, HandoffPorts
from bridge.services.handoff_worker import HandoffWorker
from bridge.services.retention import Retention, purge_on_schedule
from bridge.services.sealing import run_sealing
from bridge.settings import Settings
from consumers.events import EventConsumer
from consumers.parked import ParkedRecorder
from consumers.topology import Topology, TopologyNames, declare

log = logging.getLogger(__name__)


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """Create the database if needed, migrate it, and open the pool."""
    await ensure_database(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=2, max_size=settings.db_pool_size, reset=_keep_session
    )
    assert pool is not None
    return pool


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


@dataclass
class Bridge:
    """A running bridge: its adapters, services and background tasks."""

    settings: Settings
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection
    topology: Topology
    metrics: Metrics
    ledger: Ledger
    files: RecordFileStore
    parked: ParkedMessages
    preschool: PreschoolRegistry
    registry: PrimaryRegistry
    worker: HandoffWorker
    tokens: TokenStore
    audit: AuditLog
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    consuming: bool = False


def topology_names(settings: Settings) -> TopologyNames:
    """Queue names of this deployment."""
    return TopologyNames(
        events_exchange=settings.events_exchange,
        events_queue=f"{settings.queue_prefix}.events",
        parked_exchange=f"{settings.queue_prefix}.parked",
        parked_queue=f"{settings.queue_prefix}.parked",
        delivery_limit=settings.delivery_limit,
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


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings, *, consume: bool = True) -> AsyncIterator[Bridge]:
    """Start consumers and the hand-over worker; stop and close everything on exit."""
    metrics = Metrics()
    keys = file_keys_of(settings)  # before anything starts: no key, no bridge
    pool = await open_pool(settings)
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        await FileKeyStore(pool, keys).ready_to_serve()
        ledger = Ledger(
            pool, lease_s=settings.lease_s,
            observe_batch=lambda writer, rows: metrics.batch_rows.labels(writer).observe(rows),
        )  # fmt: skip
        # Group-committed writes under way finish before the pool closes.
        stack.push_async_callback(ledger.aclose)
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=settings.registry_connections)
        )
        stack.push_async_callback(http.close)
        amqp = await aio_pika.connect_robust(settings.amqp_url)
        stack.push_async_callback(amqp.close)
        # Callbacks run last-in first-out: background tasks stop before what they use.
        stack.push_async_callback(_cancel_all, tasks)
        channel = await amqp.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.prefetch)
        topology = await declare(channel, topology_names(settings))
        files = RecordFileStore(
            pool, keys, audit=AuditLog(pool),
            count_failure=lambda where: metrics.file_integrity_failures.labels(where).inc(),
        )  # fmt: skip
        preschool = PreschoolRegistry(
            _transport(http, settings.preschool_url, settings.preschool_token, settings, metrics)
        )
        registry = PrimaryRegistry(
            _transport(http, settings.registry_url, settings.registry_token, settings, metrics)
        )
        retry = RetryPolicy(settings.retry_base_s, settings.retry_max_s)
        driver = HandoffDriver(
            HandoffPorts(ledger, files, preschool, registry, metrics, retry),
            lease_s=settings.lease_s,
        )
        worker = HandoffWorker(
            ledger, driver, owner=settings.instance_id,
            concurrency=settings.handoff_concurrency,
            poll_interval_s=settings.poll_interval_s,
        )  # fmt: skip
        bridge = Bridge(
            settings, pool, http, amqp, topology, metrics, ledger, files,
            ParkedMessages(pool), preschool, registry, worker, TokenStore(pool), AuditLog(pool),
            tasks,
        )  # fmt: skip
        tasks.append(asyncio.create_task(worker.run(), name="handoff-worker"))
        tasks.append(asyncio.create_task(run_sealing(bridge.tokens, bridge.audit), name="sealing"))
        if settings.reconcile_interval_s > 0:
            tasks.append(asyncio.create_task(_reconcile_on_schedule(bridge), name="reconcile"))
        if settings.file_purge_interval_s > 0:
            retention = build_retention(settings, pool, metrics)
            purging = purge_on_schedule(retention, settings.file_purge_interval_s)
            tasks.append(asyncio.create_task(purging, name="retention"))
        if consume:
            consumer = EventConsumer(
                ledger, topology.parked_exchange, metrics, worker.wake, DATABASE_UNAVAILABLE
            )
            await topology.events_queue.consume(consumer)
            await topology.parked_queue.consume(ParkedRecorder(bridge.parked))
            bridge.consuming = True
        yield bridge


def build_retention(
    settings: Settings, pool: asyncpg.Pool, metrics: Metrics | None = None
) -> Retention:
    """The purge of what retention lets go (issue #19)."""
    erased = metrics.retention_erased if metrics else None
    return Retention(
        RetentionStore(pool), RetentionPolicy(settings.file_retention_days),
        on_erased=(lambda what, n: erased.labels(what).inc(n)) if erased else None,
    )  # fmt: skip


async def _reconcile_on_schedule(bridge: Bridge) -> None:
    from bridge.operations import operations_for, reconcile_on_schedule

    await reconcile_on_schedule(operations_for(bridge))


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
