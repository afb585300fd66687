"""Messages as strangers send them, on the real broker and database: every one ends acked and
recorded, or parked and recorded, and the bridge goes on consuming."""

from __future__ import annotations

import base64
import random
import uuid
from typing import Any

import aio_pika
import orjson
import pytest

from bridge.bootstrap import Bridge, running_bridge
from bridge.services.acting import Acting
from bridge.services.recovery import masked_body
from bridge.settings import Settings
from consumers.frame_tolerance import UNDECODABLE_HEADERS
from consumers.park import ORIGINAL_ROUTING_KEY, PARK_CODE, PARK_REASON
from schemas.amqp_values import from_json
from simulator.cohort import generate_cohort
from simulator.publisher import (
    FORMS,
    MALFORMED_KINDS,
    NASTY_KINDS,
    EventPublisher,
    malformed_message,
    publish_cohort,
    sdk_message,
    seed_cohort,
)
from tests.integration.test_graduation_handoff import expected_view, registry_view, settled
from tests.support import raw_amqp
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually
from tests.support.wire_events import G, cancelled

pytestmark = pytest.mark.live


async def parked_rows(bridge: Bridge) -> list[dict[str, Any]]:
    rows = await bridge.pool.fetch(
        "SELECT message_id, reason_code, reason, headers, properties, body FROM parked_messages"
        " ORDER BY id"
    )
    return [dict(r) for r in rows]


async def queue_is_empty(settings: Settings, suffix: str) -> bool:
    """Nothing ready in the queue (after the bridge stopped: nothing unacked either)."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{settings.queue_prefix}.{suffix}", passive=True)
        return queue.declaration_result.message_count == 0


async def test_events_in_every_form_from_other_publishers_are_handed_over(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 36, seed=61)
    await seed_cohort(simulator.url, cohort)
    forms = {form: 0.9 / len(FORMS) for form in FORMS}  # nine in ten events in another form
    async with running_bridge(bridge_settings) as bridge:
        plan = await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange,
            forms=forms, duplicate_fraction=0.3, seed=5,
        )  # fmt: skip
        assert {m.form for m in plan} >= set(FORMS)
        await eventually(lambda: settled(bridge, len(cohort.children)), bool, timeout_s=90,
                         what="settled")  # fmt: skip
        assert await parked_rows(bridge) == []
        loose = next(m.message_id for m in plan if m.form == "loose" and m.kind == "event")
        stored = await bridge.pool.fetchval(
            "SELECT body FROM child_events WHERE event_id = $1", uuid.UUID(loose)
        )
        # The stored event keeps what arrived: additions and extensions included.
        assert b"x_province_batch" in stored and b"traceparent" in stored
    assert registry_view(await simulator.dump()) == expected_view(cohort)
    assert await queue_is_empty(bridge_settings, "events")


async def test_what_is_no_event_is_parked_with_its_reason_and_nothing_stays_unacked(
    bridge_settings: Settings,
) -> None:
    kinds = {kind: 1 for kind in MALFORMED_KINDS + NASTY_KINDS}
    async with running_bridge(bridge_settings) as bridge:
        plan = [malformed_message(random.Random(k), k) for k in kinds]
        async with EventPublisher(
            bridge_settings.amqp_url, exchange=bridge_settings.events_exchange
        ) as publisher:
            await publisher.publish(plan)
        rows = await eventually(
            lambda: parked_rows(bridge), lambda r: len(r) == len(plan), what="all parked"
        )
    assert all(r["reason"] and r["reason_code"] != "delivery_limit" for r in rows)
    by_id = {r["message_id"]: r for r in rows}
    assert set(by_id) == {m.message_id for m in plan}, [r["message_id"] for r in rows]
    for message in plan:
        row = by_id[message.message_id]
        assert row["body"] == message.body
    assert await queue_is_empty(bridge_settings, "events")
    assert await queue_is_empty(bridge_settings, "parked")


async def test_a_parked_message_whose_headers_postgres_cannot_store_as_they_are_is_recorded(
    bridge_settings: Settings,
) -> None:
    async with running_bridge(bridge_settings) as bridge:
        await bridge.topology.parked_exchange.publish(
            aio_pika.Message(
                b"\x00{not json", message_id="8d7a9f1e-0c41-4f7e-9a55-1f1d2c3b4a59",
                headers={PARK_CODE: "not_json", PARK_REASON: "body: not JSON",
                         ORIGINAL_ROUTING_KEY: "child.graduated", "x-trace": "a\x00b",
                         "x-nested": {"k\x00": [bytearray(b"\x00\xff"), "c\x00"]}},
            ),
            routing_key="",
        )  # fmt: skip
        [row] = await eventually(lambda: parked_rows(bridge), bool, what="recorded")
    headers = from_json(orjson.loads(row["headers"]))
    assert headers["x-trace"] == "a\x00b"
    assert headers["x-nested"] == {"k\x00": [bytearray(b"\x00\xff"), "c\x00"]}
    assert await queue_is_empty(bridge_settings, "parked")


async def test_frames_the_amqp_library_could_not_read_are_parked_and_consuming_goes_on(
    bridge_settings: Settings,
) -> None:
    data = orjson.dumps({"not": "an event"})
    odd = [
        aio_pika.Message(data, message_id=str(uuid.uuid4()),
                         headers=raw_amqp.table(raw_amqp.entry(b"\xff\xfekey", b"t", b"\x01"))),
        aio_pika.Message(data, message_id=str(uuid.uuid4()),
                         content_type=raw_amqp.RawText(b"application/json\xff")),
        aio_pika.Message(data, message_id=str(uuid.uuid4()), headers=raw_amqp.table(
            raw_amqp.entry(b"when", b"T", raw_amqp.timestamp(2**63 - 1)))),
        aio_pika.Message(data, message_id=str(uuid.uuid4()), headers=raw_amqp.nested(2000)),
        aio_pika.Message(data, message_id=str(uuid.uuid4()), headers=raw_amqp.table(
            raw_amqp.entry(b"text", b"S", raw_amqp.long_string(b"\xff\x00\xfe")))),
    ]  # fmt: skip
    event = cancelled(G, 1)
    async with running_bridge(bridge_settings) as bridge:
        await raw_amqp.publish_raw(
            bridge_settings.amqp_url, bridge_settings.events_exchange, "child.cancelled", odd
        )
        async with EventPublisher(
            bridge_settings.amqp_url, exchange=bridge_settings.events_exchange
        ) as publisher:
            await publisher.publish([sdk_message(event, "sdk_binary")])
        rows = await eventually(
            lambda: parked_rows(bridge), lambda r: len(r) == len(odd), timeout_s=30,
            what="every odd message parked",
        )  # fmt: skip
        # The bridge kept its connection and went on: the event behind them is recorded.
        assert await eventually(
            lambda: bridge.ledger.child_id_for(G), lambda c: c is not None, timeout_s=30,
            what="the event behind them recorded",
        )  # fmt: skip
    assert {r["reason_code"] for r in rows} <= {"content_type", "invalid_envelope"}
    headers = [from_json(orjson.loads(r["headers"])) for r in rows]
    assert any(UNDECODABLE_HEADERS in h for h in headers)  # the deep table, kept as its bytes
    assert any(h.get("text") == bytearray(b"\xff\x00\xfe") for h in headers)
    assert await queue_is_empty(bridge_settings, "events")
    assert await queue_is_empty(bridge_settings, "parked")


async def test_a_parked_binary_event_is_retried_with_its_headers_and_handed_over(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 1, seed=62, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    sent = sdk_message(cohort.children[0].events[0], "sdk_binary")
    async with running_bridge(bridge_settings) as bridge:
        ops = bridge.use_cases
        # Set aside earlier (say the database failed it on every delivery), as it arrived.
        await bridge.topology.parked_exchange.publish(
            aio_pika.Message(
                sent.body, content_type=sent.content_type, message_id=sent.message_id,
                headers={**(sent.headers or {}), "x-first-death-reason": "delivery_limit",
                         "x-death": [{"count": 20, "reason": "delivery_limit",
                                      "routing-keys": ["child.graduated"]}]},
            ),
            routing_key="child.graduated",  # as dead-lettering keeps it
        )  # fmt: skip
        await eventually(lambda: parked_rows(bridge), bool, what="recorded")
        messages = await ops.recovery.parked_messages("delivery_limit")
        result = await ops.recovery.retry_parked(messages, Acting("cli:test"))
        assert len(result.retried) == 1
        await eventually(lambda: settled(bridge, 1), bool, timeout_s=60, what="handed over")
        assert len(await parked_rows(bridge)) == 1  # not parked again
    assert registry_view(await simulator.dump()) == expected_view(cohort)


async def test_an_event_with_data_base64_is_shown_masked_to_operators(
    bridge_settings: Settings,
) -> None:
    event = cancelled(G, 1)
    event["childseq"] = 2**31  # refused: parked
    data = event.pop("data")
    event["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
    async with running_bridge(bridge_settings) as bridge:
        ops = bridge.use_cases
        async with EventPublisher(
            bridge_settings.amqp_url, exchange=bridge_settings.events_exchange
        ) as publisher:
            await publisher.publish([sdk_message(event, "plain")])  # type: ignore[arg-type]
        [row] = await eventually(lambda: parked_rows(bridge), bool, what="parked")
        [parked] = await ops.recovery.parked_messages(None)

    shown = masked_body(parked.body)
    assert G not in shown and G[1:] not in shown and "G***76" in shown
    assert event["data_base64"] not in shown and "(decoded)" in shown
    assert row["reason_code"] == "invalid_envelope"
