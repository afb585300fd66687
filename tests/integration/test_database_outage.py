"""The database away while a cohort is handed over (the bridge's connections go through a
proxy the test cuts, so the shared server keeps running): no message spends its delivery
limit, and hand-overs resume within seconds of the database's return."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from bridge.bootstrap import running_bridge
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import EventPublisher, plan_messages, seed_cohort
from tests.integration.test_graduation_handoff import expected_view, registry_view
from tests.support.sim import SimulatorHandle
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.live

CHILDREN = 30
OUTAGE_S = 6.0
LEASED = "SELECT count(*) FROM children WHERE lease_owner IS NOT NULL"


async def count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)  # straight to the server, not through the proxy
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def test_a_database_outage_spends_no_delivery_and_hand_overs_resume_within_seconds(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    port = (await proxy.start()).port
    direct = bridge_settings.database_url
    settings = bridge_settings.model_copy(update={
        "database_url": direct.replace("127.0.0.1:5432", f"127.0.0.1:{port}"),
        # An outage longer than hold × delivery limit: before, it parked what was in flight.
        "database_hold_s": 1.0, "delivery_limit": 3, "lease_s": 60.0,
    })  # fmt: skip
    cohort = generate_cohort(2026, CHILDREN, seed=64, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    plan = plan_messages(cohort, seed=3)
    half = len(plan) // 2
    # Slow registry calls: drives are under way (children leased) when the database goes.
    await simulator.set_faults(registry={"p_slow": 1.0, "slow_s": 1.0})
    try:
        async with running_bridge(settings) as bridge:
            async with EventPublisher(settings.amqp_url, exchange=settings.events_exchange) as p:
                await p.publish(plan[:half])
            await eventually(
                lambda: count(direct, LEASED), lambda n: n >= 3, timeout_s=30,
                what="drives under way",
            )  # fmt: skip
            await proxy.cut()
            async with EventPublisher(settings.amqp_url, exchange=settings.events_exchange) as p:
                await p.publish(plan[half:])  # delivered while the database is away
            await asyncio.sleep(OUTAGE_S)
            await simulator.set_faults()
            await proxy.restore()
            back = time.monotonic()
            await eventually(
                lambda: count(direct, "SELECT count(*) FROM children WHERE handed_over_at"
                                      " IS NOT NULL"),
                lambda n: n == CHILDREN, timeout_s=90, interval_s=0.5, what="all handed over",
            )  # fmt: skip
            resumed_in_s = time.monotonic() - back
            assert bridge.gate is not None and bridge.gate.is_open
    finally:
        await proxy.cut()
    # Children leased when the database went are taken up again at once: before, they
    # waited for their leases (60 s) to lapse.
    print(f"\nhand-overs done {resumed_in_s:.1f} s after the database returned")
    assert resumed_in_s < 30, resumed_in_s
    assert await count(direct, "SELECT count(*) FROM parked_messages") == 0
    assert registry_view(await simulator.dump()) == expected_view(cohort)
