"""What cannot be handed over is set aside with its reason — never lost, never forced."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bridge.bootstrap import Bridge, running_bridge
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import MALFORMED_KINDS, publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import expected_view, registry_view, settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live


async def test_registry_down_for_a_while_then_back(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 12, seed=3, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    await simulator.set_faults(registry={"p_503": 1.0, "retry_after_s": 1})
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge.settings.amqp_url, cohort, exchange=bridge.settings.events_exchange
        )

        async def waiting_to_retry() -> int:
            value: int = await bridge.pool.fetchval(
                "SELECT count(*) FROM children WHERE attempts >= 2"
                " AND last_error = 'registry_unavailable'"
            )
            return value

        await eventually(waiting_to_retry, lambda n: n == 12, what="durable retries")
        assert await simulator.dump() == []
        await simulator.set_faults()
        await eventually(lambda: settled(bridge, 12), bool, timeout_s=60, what="recovery")
    dump = await simulator.dump()
    assert registry_view(dump) == expected_view(cohort)
    assert all(s["created_count"] == 1 for s in dump)


async def test_identity_conflict_is_set_aside_and_no_second_number_made(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 1, seed=4, mix={"graduated": 1.0})
    child = cohort.children[0]
    graduated = child.events[0]["data"]
    identity = graduated["child"]
    # The registry already holds this identity under another (J) number.
    other = "J" + graduated["student_number"][1:]
    body = {
        "entry_year": 2026,
        "child": identity,
        "kindergarten_code": graduated["kindergarten_code"],
        "graduated_on": graduated["graduated_on"],
        "requested_school_code": None,
        "record_file": {"sha256": "a" * 64, "size": 1, "media_type": "application/json"},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{simulator.url}/registry/v1/students/{other}/intake",
            json=body,
            headers={"Authorization": "Bearer dev-registry-token", "Idempotency-Key": "setup-1"},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge.settings.amqp_url, cohort, exchange=bridge.settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 1), bool, what="settled")
        row = await bridge.pool.fetchrow("SELECT phase, set_aside_reason, handoff FROM children")
    assert (row["phase"], row["set_aside_reason"]) == ("set_aside", "identity_conflict")
    detail = json.loads(row["handoff"])["set_aside"]["detail"]
    assert detail["existing_student_number"] == other
    numbers = [s["student_number"] for s in await simulator.dump()]
    assert numbers == [other]


async def test_bad_source_files_are_set_aside_and_never_handed_over(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 5, seed=5, mix={"bad_source_file": 1.0})
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge.settings.amqp_url, cohort, exchange=bridge.settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 5), bool, what="settled")
        reasons = await bridge.ledger.set_aside_counts()
    assert reasons == {"bad_source_file": 5}
    assert await simulator.dump() == []


async def parked_rows(bridge: Bridge) -> list[dict[str, str]]:
    rows = await bridge.pool.fetch("SELECT reason_code, reason, routing_key FROM parked_messages")
    return [dict(r) for r in rows]


async def test_malformed_messages_are_parked_with_their_reasons(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 5, seed=6, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        plan = await publish_cohort(
            bridge.settings.amqp_url, cohort, exchange=bridge.settings.events_exchange,
            malformed={kind: 2 for kind in MALFORMED_KINDS}, seed=11,
        )  # fmt: skip
        await eventually(lambda: settled(bridge, 5), bool, what="settled")
        rows = await eventually(lambda: parked_rows(bridge), lambda r: len(r) >= 12, what="parked")
    assert len(rows) == 2 * len(MALFORMED_KINDS)
    assert {r["reason_code"] for r in rows} == {
        "not_json", "invalid_envelope", "unknown_type", "invalid_data"
    }  # fmt: skip
    assert all(r["reason"] for r in rows)
    # The reasons name fields, never the child's identity.
    bad = [m for m in plan if m.kind != "event"]
    for message in bad:
        if message.event and isinstance(message.event.get("data"), dict):
            id_number = message.event["data"].get("child", {}).get("id_number")
            assert not any(id_number and id_number in r["reason"] for r in rows)
    assert len(registry_view(await simulator.dump())) == 5
