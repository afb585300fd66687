"""/healthz, /readyz and /metrics of a running bridge, over a real loopback port."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from bridge.api.app import create_app
from bridge.bootstrap import running_bridge
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live


async def test_ready_and_metrics_tell_what_happened(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 6, seed=31, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        runner = web.AppRunner(create_app(bridge.use_cases))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        try:
            await publish_cohort(
                bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange,
                malformed={"not_json": 1},
            )  # fmt: skip
            await eventually(lambda: settled(bridge, 6), bool, what="settled")
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/healthz") as resp:
                    assert resp.status == 200
                async with session.get(f"{url}/readyz") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                    assert body["checks"] == {
                        "broker": True, "consumers": True, "worker": True, "database": True
                    }  # fmt: skip
                async with session.get(f"{url}/metrics") as resp:
                    text = await resp.text()
        finally:
            await runner.cleanup()
    assert 'xueji_handoffs{phase="file_delivered"} 6.0' in text
    assert 'xueji_events_total{outcome="recorded",type="child.graduated"} 6.0' in text
    assert 'xueji_registry_calls_total{operation="intake",status="201"} 6.0' in text
    assert 'xueji_parked_messages_total{reason="not_json"} 1.0' in text
    # Labels name phases, operations and reasons — never a child.
    assert not any(c.final_student_number in text for c in cohort.children)
