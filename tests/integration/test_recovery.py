"""Repairs by reconciliation and operators' retries, end to end, never duplicating."""

from __future__ import annotations

import aio_pika
import pytest

from bridge.bootstrap import Bridge, running_bridge
from bridge.services.acting import Acting
from bridge.settings import Settings
from consumers.park import ORIGINAL_ROUTING_KEY, PARK_CODE, PARK_REASON
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import expected_view, registry_view, settled
from tests.integration.test_reconciliation import graduated_data
from tests.support import registry_hands as hands
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live


async def test_a_child_deleted_at_the_registry_reappears_after_reconciliation_once(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 6, seed=71, mix={"graduated": 1.0})
    n = [c.final_student_number for c in cohort.children]
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        ops = bridge.use_cases
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 6), bool, what="settled")
        await simulator.delete_student(n[0])
        await hands.replace_file_claim(
            simulator.url, graduated_data(cohort.children[1]), b"{}", upload=True
        )
        first = await ops.reconciler.run(2026, trigger="test")
        assert first.counts["missing_at_registry"] == 1
        assert first.counts["file_digest_mismatch"] == 1
        assert first.repairs == 2
        await eventually(lambda: settled(bridge, 6), bool, what="repaired")
        second = await ops.reconciler.run(2026, trigger="test")
        repairs = await bridge.pool.fetch(
            "SELECT student_number, run_id FROM recon_repairs ORDER BY id"
        )
    assert second.counts["matched"] == 6 and second.repairs == 0
    assert [r["student_number"] for r in repairs] == sorted(n[:2])
    dump = await simulator.dump()
    assert registry_view(dump) == expected_view(cohort)
    assert [s["student_number"] for s in dump].count(n[0]) == 1


async def park_event(bridge: Bridge, body: bytes, routing_key: str, message_id: str) -> None:
    """An event set aside earlier (e.g. the database was away on every delivery)."""
    await bridge.topology.parked_exchange.publish(
        aio_pika.Message(
            body=body, message_id=message_id,
            headers={PARK_CODE: "delivery_limit", PARK_REASON: "failed on every delivery",
                     ORIGINAL_ROUTING_KEY: routing_key},
        ),
        routing_key="",
    )  # fmt: skip


async def test_retrying_groups_hands_over_after_the_registry_recovers_without_duplicates(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 4, seed=72, mix={"graduated": 1.0}, p_no_id=0, p_foreign=0)
    conflicted, parked = cohort.children[:3], cohort.children[3]
    elsewhere = ["J" + c.final_student_number[1:] for c in conflicted]
    for child, number in zip(conflicted, elsewhere, strict=True):
        await hands.register_elsewhere(simulator.url, number, graduated_data(child))
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        ops, cli = bridge.use_cases, Acting("cli:test")
        await publish_cohort(
            bridge_settings.amqp_url, [c.events for c in conflicted],
            exchange=bridge_settings.events_exchange,
        )  # fmt: skip
        event = parked.events[0]
        await park_event(bridge, __import__("orjson").dumps(event), "child.graduated", event["id"])
        await eventually(lambda: settled(bridge, 3), bool, what="set aside")
        groups = await ops.recovery.set_aside_groups(cli)
        assert [(x.reason, x.count) for x in groups] == [("identity_conflict", 3)]
        assert groups[0].first_seen is not None
        parked_groups = await eventually(
            ops.recovery.parked_groups, bool, what="parked message stored"
        )
        assert [(x.reason, x.count) for x in parked_groups] == [("delivery_limit", 1)]

        # The county sorts the duplicates out at the registry; the operator retries.
        for number in elsewhere:
            await simulator.delete_student(number)
        cases = await ops.recovery.set_aside_cases(cli, reason="identity_conflict")
        result = await ops.recovery.retry_handoffs(cases, cli, group_key="g")
        assert sorted(result.retried) == sorted(c.final_student_number for c in conflicted)
        messages = await ops.recovery.parked_messages("delivery_limit")
        done = await ops.recovery.retry_parked(messages, cli)
        assert done.retried == [str(messages[0].id)]
        await eventually(lambda: settled(bridge, 4), bool, what="handed over")
        # Retrying again changes nothing: nothing is set aside or parked any more.
        again = await ops.recovery.retry_handoffs(cases, cli)
        assert again.retried == []
        again_parked = await ops.recovery.retry_parked(messages, cli)
        assert again_parked.retried == []
        outcomes = {r["kind"]: r["outcome"] for r in await ops.recovery.recent_retries(cli)}
        audit = await bridge.audit.query(actor="cli:test")
    assert outcomes == {"handoff": "file_delivered", "parked_message": "processed"}
    assert {e.action for e in audit} == {"set_aside.retry", "parked.retry"}
    dump = await simulator.dump()
    assert registry_view(dump) == expected_view(cohort)
    assert all(s["created_count"] == 1 for s in dump if s["student_number"][0] == "G")
