"""Failing the bridge's database over to its standby: what is kept, what can be lost.

Each test builds its own primary + standby (tests/faults_ha/postgres_pair.py) and runs a
bridge on their multi-host URL, on the machine's broker (private names) and simulator.
The standby's replication is stopped before the last events are published, so that what
the primary commits then is what the standby never receives; the primary is killed and
the standby promoted.

- Asynchronous replication: the primary commits alone, the bridge acks, and the events
  are gone with the primary; the three-way reconciliation reports those children as
  ``lost_upstream`` (the preschool roster has them graduated, the ledger does not know
  them), for an operator to have them sent again.
- Synchronous replication: the commits wait for the standby, so nothing is acked; when
  the primary dies, the bridge treats the unanswered commits as not done, records the
  events again on the promoted standby and hands the children over. Nothing is lost.
- A primary fenced read-only (and its standby promoted): the pool's connections to it
  are dropped at the first refused write, and the bridge goes on on the new primary.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from bridge.bootstrap import Bridge, running_bridge
from bridge.settings import Settings
from simulator.cohort import Cohort, generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.conftest import AMQP_URL, FILE_KEYS
from tests.faults.test_cohort_under_faults import reconciliation_findings
from tests.faults_ha.postgres_pair import PostgresPair
from tests.integration.test_graduation_handoff import expected_view, registry_view, settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = [pytest.mark.live, pytest.mark.slow]

CHILDREN = 10  # the first half replicated, the second half not
GRADUATED = "child.graduated"


def settings_for(pg: PostgresPair, simulator: SimulatorHandle, names: dict[str, str]) -> Settings:
    return Settings(
        file_keys=FILE_KEYS,
        database_url=pg.dsn(f"xueji_failover_{uuid.uuid4().hex[:6]}"), amqp_url=AMQP_URL,
        registry_url=f"{simulator.url}/registry", preschool_url=f"{simulator.url}/preschool",
        events_exchange=names["exchange"], queue_prefix=names["prefix"],
        instance_id=f"failover-{uuid.uuid4().hex[:6]}", poll_interval_s=0.2,
        retry_base_s=0.2, retry_max_s=1.0, registry_max_inline_wait_s=0.2, http_port=0,
    )  # fmt: skip


def halves(cohort: Cohort) -> tuple[Cohort, Cohort]:
    middle = len(cohort.children) // 2
    return (
        Cohort(cohort.entry_year, cohort.seed, cohort.children[:middle]),
        Cohort(cohort.entry_year, cohort.seed, cohort.children[middle:]),
    )


def acked(bridge: Bridge) -> float:
    """Events recorded and acked by this bridge's consumer."""
    value = bridge.metrics.registry.get_sample_value(
        "xueji_events_total", {"type": GRADUATED, "outcome": "recorded"}
    )
    return value or 0.0


async def replicated(pg: PostgresPair) -> bool:
    """Whether the standby has replayed everything the primary wrote."""
    conn = await asyncpg.connect(pg.primary.admin_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT replay_lsn >= pg_current_wal_lsn() FROM pg_stat_replication"
            )
        )
    finally:
        await conn.close()


async def waiting_for_standby(pg: PostgresPair) -> int:
    """Commits on the primary waiting for their synchronous standby."""
    conn = await asyncpg.connect(pg.primary.admin_url)
    try:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        )
        return value
    finally:
        await conn.close()


async def inbox_of(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM inbox")
        return value
    finally:
        await conn.close()


async def publish(settings: Settings, cohort: Cohort) -> None:
    await publish_cohort(settings.amqp_url, cohort, exchange=settings.events_exchange)


@dataclass
class Run:
    """A bridge on the pair, the first half of a cohort handed over and on the standby."""

    settings: Settings
    bridge: Bridge
    cohort: Cohort
    first: Cohort
    second: Cohort


@contextlib.asynccontextmanager
async def first_half_handed_over(
    pg: PostgresPair, simulator: SimulatorHandle, names: dict[str, str], seed: int
) -> AsyncIterator[Run]:
    settings = settings_for(pg, simulator, names)
    cohort = generate_cohort(2026, CHILDREN, seed=seed, mix={"graduated": 1.0})
    first, second = halves(cohort)
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(settings) as bridge:
        await publish(settings, first)
        await eventually(lambda: settled(bridge, len(first.children)), bool, what="first half")
        await eventually(lambda: replicated(pg), bool, what="standby caught up")
        yield Run(settings, bridge, cohort, first, second)


async def test_asynchronous_replication_loses_acked_events_and_reconciliation_finds_them(
    postgres_pair_async: PostgresPair, simulator: SimulatorHandle, amqp_names: dict[str, str]
) -> None:
    pg = postgres_pair_async
    async with first_half_handed_over(pg, simulator, amqp_names, seed=616) as run:
        await pg.stop_replication()
        # The registry is away meanwhile: the second half gets no further than the ledger.
        await simulator.set_faults(registry={"p_503": 1.0, "retry_after_s": 1})
        await publish(run.settings, run.second)
        await eventually(
            lambda: _value(acked(run.bridge)), lambda n: n >= CHILDREN, what="second half acked"
        )
        await pg.kill_primary()
        await pg.promote()
        await simulator.set_faults()
        # The bridge goes on on the promoted standby, which never heard of the second half;
        # the broker has nothing left to deliver again.
        await eventually(lambda: settled(run.bridge, len(run.first.children)), bool)
        assert await inbox_of(run.settings) == len(run.first.children)
    findings = await reconciliation_findings(run.settings, run.cohort.entry_year)
    lost = sorted(c.final_student_number for c in run.second.children)
    assert findings == {"lost_upstream": lost}, findings
    held = registry_view(await simulator.dump())
    assert set(held) == {c.final_student_number for c in run.first.children}


async def test_synchronous_replication_loses_nothing_when_the_primary_dies(
    postgres_pair: PostgresPair, simulator: SimulatorHandle, amqp_names: dict[str, str]
) -> None:
    pg = postgres_pair
    async with first_half_handed_over(pg, simulator, amqp_names, seed=617) as run:
        await pg.stop_replication()
        await publish(run.settings, run.second)
        # The second half's commits wait for a standby that no longer listens: unacked.
        await eventually(lambda: waiting_for_standby(pg), bool, what="commits waiting")
        assert acked(run.bridge) == len(run.first.children)
        await pg.kill_primary()
        await pg.promote()
        # Unanswered commits count as not done: recorded again on the new primary, acked.
        await eventually(lambda: settled(run.bridge, CHILDREN), bool, timeout_s=90)
        assert await inbox_of(run.settings) == CHILDREN
    assert await reconciliation_findings(run.settings, run.cohort.entry_year) == {}
    assert registry_view(await simulator.dump()) == expected_view(run.cohort)


async def test_a_primary_fenced_read_only_is_left_for_the_promoted_standby(
    postgres_pair_async: PostgresPair, simulator: SimulatorHandle, amqp_names: dict[str, str]
) -> None:
    pg = postgres_pair_async
    async with first_half_handed_over(pg, simulator, amqp_names, seed=618) as run:
        # Fenced: the old primary stays up and answers, but takes no more writes. The
        # pool still holds connections to it.
        await pg.execute(pg.primary, "ALTER SYSTEM SET default_transaction_read_only = on")
        await pg.execute(pg.primary, "SELECT pg_reload_conf()")
        await pg.promote()
        await publish(run.settings, run.second)
        await eventually(lambda: settled(run.bridge, CHILDREN), bool, timeout_s=90)
        assert await _server_port(run.bridge) == pg.standby.port
    assert registry_view(await simulator.dump()) == expected_view(run.cohort)


async def _server_port(bridge: Bridge) -> int:
    value: int = await bridge.pool.fetchval("SELECT inet_server_port()")
    return value


async def _value(value: float) -> float:
    return value
