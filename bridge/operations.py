"""Operator tooling wired from a running bridge or, for the CLI, from settings alone.

Reconciliation and recovery need the database, both registries and (to retry parked
messages) the broker. The HTTP app and the scheduler take them from the running bridge;
the command line opens just what it needs and closes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractExchange

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.calendar import CalendarStore
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.reconciliation_store import ReconciliationStore
from bridge.adapters.postgres.recovery_store import RecoveryStore
from bridge.adapters.postgres.tokens import TokenStore
from bridge.adapters.preschool_registry import PreschoolRegistry
from bridge.adapters.primary_registry import PrimaryRegistry
from bridge.failures import log_failure
from bridge.services.reconciliation import (
    CHINA,
    ReconcileConfig,
    ReconcilePorts,
    Reconciler,
)
from bridge.services.recovery import OriginalMessage, Publish, Recovery
from bridge.settings import Settings
from consumers.topology import CLOUDEVENTS_JSON

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Operations:
    """Everything an operator's tool uses."""

    pool: asyncpg.Pool
    settings: Settings
    reconciler: Reconciler
    runs: ReconciliationStore
    recovery_store: RecoveryStore
    recovery: Recovery
    calendars: CalendarStore
    audit: AuditLog
    tokens: TokenStore
    ledger: Ledger


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


def entry_years(settings: Settings) -> list[int]:
    """The cohorts the scheduler reconciles."""
    raw = [p.strip() for p in settings.reconcile_entry_years.split(",") if p.strip()]
    return [int(p) for p in raw] or [dt.datetime.now(CHINA).year]


def exchange_publisher(exchange: AbstractExchange) -> Publish:
    """Publish to the events exchange as the preschool registry does (events.md)."""

    async def publish(
        routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        await exchange.publish(
            aio_pika.Message(
                body=body,
                content_type=original.content_type if original else CLOUDEVENTS_JSON,
                content_encoding=original.content_encoding if original else None,
                headers=original.headers if original else None,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )

    return publish


def build_operations(
    settings: Settings,
    pool: asyncpg.Pool,
    preschool: PreschoolRegistry,
    registry: PrimaryRegistry,
    publish: Publish,
    wake: Callable[[], None],
) -> Operations:
    """Wire the operator tools over adapters someone else owns and closes."""
    ledger = Ledger(pool, lease_s=settings.lease_s)
    audit = AuditLog(pool)
    runs = ReconciliationStore(pool)
    calendars = CalendarStore(pool)
    recovery_store = RecoveryStore(pool)
    ports = ReconcilePorts(pool, runs, ledger, calendars, preschool, registry, audit, wake)
    return Operations(
        pool, settings, Reconciler(ports, reconcile_config(settings)), runs, recovery_store,
        Recovery(recovery_store, ledger, audit, publish, wake), calendars, audit,
        TokenStore(pool), ledger,
    )  # fmt: skip


def operations_for(bridge: object) -> Operations:
    """The operator tools of a running bridge (``bridge.bootstrap.Bridge``)."""
    from bridge.bootstrap import Bridge

    assert isinstance(bridge, Bridge)
    return build_operations(
        bridge.settings, bridge.pool, bridge.preschool, bridge.registry,
        exchange_publisher(bridge.topology.events_exchange), bridge.worker.wake,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def standalone_operations(settings: Settings) -> AsyncIterator[Operations]:
    """Operator tools for the command line: no consumers, no worker (a running bridge's
    worker picks up what they schedule at its next poll)."""
    from bridge.bootstrap import _transport, open_pool, topology_names
    from bridge.metrics import Metrics

    metrics = Metrics()
    pool = await open_pool(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)
        preschool = PreschoolRegistry(
            _transport(http, settings.preschool_url, settings.preschool_token, settings, metrics)
        )
        registry = PrimaryRegistry(
            _transport(http, settings.registry_url, settings.registry_token, settings, metrics)
        )
        amqp: list[aio_pika.abc.AbstractRobustConnection] = []

        async def publish(
            routing_key: str, body: bytes, message_id: str | None, *,
            original: OriginalMessage | None = None,
        ) -> None:  # fmt: skip
            # The broker is opened only when a parked message is retried.
            if not amqp:
                amqp.append(await aio_pika.connect_robust(settings.amqp_url))
                stack.push_async_callback(amqp[0].close)
            channel = await amqp[0].channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                topology_names(settings).events_exchange, aio_pika.ExchangeType.TOPIC,
                durable=True,
            )  # fmt: skip
            await exchange_publisher(exchange)(routing_key, body, message_id, original=original)
            await channel.close()

        yield build_operations(settings, pool, preschool, registry, publish, lambda: None)


async def reconcile_on_schedule(ops: Operations) -> None:
    """Reconcile each configured cohort every interval, never twice at once across instances."""
    interval_s = ops.settings.reconcile_interval_s
    while True:
        for year in entry_years(ops.settings):
            try:
                run = await ops.reconciler.run_if_due(year, interval_s)
                if run is not None:
                    log.info("scheduled reconciliation %s of %s done", run.run_id, year)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, "scheduled reconciliation of %s failed", year, exc=exc)
        await asyncio.sleep(min(interval_s, 60.0))
