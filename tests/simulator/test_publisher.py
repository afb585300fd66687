"""Publishing to the real RabbitMQ, and the cohort seeded and played against the simulator."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections import Counter
from typing import Any

import aio_pika
import orjson

from simulator.cohort import TYPE_PREFIX, generate_cohort
from simulator.publisher import (
    CONTENT_TYPE,
    EXCHANGE,
    MALFORMED_KINDS,
    malformed_message,
    plan_messages,
    publish_cohort,
    seed_cohort,
)
from tests.simulator.conftest import SimClient

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def test_plan_keeps_each_childs_order_unless_shuffled() -> None:
    cohort = generate_cohort(2026, 60, seed=3)
    plan = plan_messages(cohort, interleave=True, seed=1)
    assert len(plan) == len(cohort.events())
    positions = {m.message_id: i for i, m in enumerate(plan)}
    for child in cohort.children:
        at = [positions[e["id"]] for e in child.events]
        assert at == sorted(at)
    sequential = plan_messages(cohort)
    assert [m.message_id for m in sequential] == [e["id"] for e in cohort.events()]
    assert [m.message_id for m in plan] != [m.message_id for m in sequential]
    shuffled = plan_messages(cohort, shuffle_children=True, seed=2)
    assert Counter(m.message_id for m in shuffled) == Counter(e["id"] for e in cohort.events())


def test_plan_duplicates_and_malformed_messages() -> None:
    cohort = generate_cohort(2026, 40, seed=4)
    plan = plan_messages(cohort, duplicate_fraction=0.5, malformed=12, seed=9)
    kinds = Counter(m.kind for m in plan)
    assert kinds["event"] == len(cohort.events())
    assert 0 < kinds["duplicate"] < len(cohort.events())
    assert all(kinds[k] == 2 for k in MALFORMED_KINDS)
    originals = {m.message_id: m.body for m in plan if m.kind == "event"}
    for message in plan:
        if message.kind == "duplicate":
            assert message.body == originals[message.message_id]
    first_seen: dict[str, int] = {}
    for i, message in enumerate(plan):
        first_seen.setdefault(message.message_id, i)
        if message.kind == "duplicate":
            assert plan[first_seen[message.message_id]].kind == "event"


def test_malformed_messages_break_the_contract_as_named() -> None:
    import random

    rng = random.Random(1)
    assert malformed_message(rng, "not_json").event is None
    assert "specversion" not in malformed_message(rng, "not_cloudevents").event
    assert malformed_message(rng, "unknown_type").routing_key == "child.teleported"
    bad = malformed_message(rng, "bad_check_character").event
    from simulator.numbers import student_number_problem

    assert "check character" in student_number_problem(bad["data"]["student_number"])
    assert "kindergarten_code" not in malformed_message(rng, "missing_field").event["data"]
    assert (
        malformed_message(rng, "bad_date").event["data"]["child"]["birth_date"].endswith("-02-30")
    )


async def test_published_messages_arrive_with_the_contract_properties() -> None:
    cohort = generate_cohort(2026, 30, seed=8)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            f"sim-test-{uuid.uuid4().hex}", exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, routing_key="#")
        published = await publish_cohort(
            AMQP_URL, cohort, duplicate_fraction=0.2, malformed=6, interleave=True, seed=5
        )
        ours = {p.message_id for p in published}
        received: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with asyncio.timeout(20), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                # Others (the bridge's tests) may publish to the same exchange meanwhile.
                if message.message_id in ours:
                    received.append(message)
                if len(received) == len(published):
                    break
        assert [m.body for m in received] == [p.body for p in published]
        for got, sent in zip(received, published, strict=True):
            assert got.routing_key == sent.routing_key
            assert got.content_type == CONTENT_TYPE
            assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert got.message_id == sent.message_id
            if sent.kind in ("event", "duplicate"):
                event = orjson.loads(got.body)
                assert got.routing_key == event["type"].removeprefix(TYPE_PREFIX)
                assert got.message_id == event["id"]
    finally:
        await connection.close()


async def _hand_over(sim: SimClient, child: Any) -> None:
    """A minimal, well-behaved bridge for one child: its events folded in childseq order."""
    number_in_registry: str | None = None
    year: int | None = None
    for event in sorted(child.events, key=lambda e: e["childseq"]):
        kind, data = event["type"].removeprefix(TYPE_PREFIX), event["data"]
        if kind == "child.graduated":
            claim = data["record_file"]
            path = claim["uri"].removeprefix(sim.base_url + "/preschool")
            content = (await sim.preschool("GET", path, raw=True)).body
            if hashlib.sha256(content).hexdigest() != claim["sha256"]:
                continue  # set aside: a bad source file is never handed over
            body = {
                "entry_year": data["entry_year"], "child": data["child"],
                "kindergarten_code": data["kindergarten_code"],
                "graduated_on": data["graduated_on"],
                "requested_school_code": data["destination_school_code"],
                "record_file": {k: claim[k] for k in ("sha256", "size", "media_type")},
            }  # fmt: skip
            reply = await sim.intake(data["student_number"], body, key=event["id"])
            assert reply.status == 201, reply.body
            digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
            stored = await sim.registry(
                "PUT", f"/v1/students/{data['student_number']}/record-file", data=content,
                headers={"Content-Digest": f"sha-256=:{digest}:",
                         "Content-Type": claim["media_type"]},
            )  # fmt: skip
            assert stored.status == 204
            number_in_registry, year = data["student_number"], data["entry_year"]
        elif kind in ("child.deferred", "child.cancelled") and number_in_registry:
            path = f"/v1/students/{number_in_registry}/intake?entry_year={year}"
            assert (await sim.registry("DELETE", path)).status == 204
        elif kind == "child.number_assigned" and number_in_registry:
            change = {k: data[k] for k in ("id_type", "id_number")}
            change["new_student_number"] = data["student_number"]
            path = f"/v1/students/{number_in_registry}/number-change"
            assert (await sim.registry("POST", path, json=change)).status == 200
            number_in_registry = data["student_number"]
        elif kind == "child.key_info_changed" and number_in_registry:
            path = f"/v1/students/{number_in_registry}"
            assert (await sim.registry("PATCH", path, json=data["changes"])).status == 200


async def test_a_seeded_cohort_played_by_the_contract_reaches_the_expected_state(
    sim: SimClient,
) -> None:
    cohort = generate_cohort(2026, 150, seed=21)
    await seed_cohort(sim.base_url, cohort, batch_size=40)
    for child in cohort.children:
        for event in child.events:
            if event["type"].endswith("graduated"):
                assert event["data"]["record_file"]["uri"].startswith(sim.base_url)
    await asyncio.gather(*(_hand_over(sim, child) for child in cohort.children))
    dump = {
        s["student_number"]: s for s in (await sim.admin("GET", "/registry/dump")).body["students"]
    }
    for child in cohort.children:
        actual = dump.get(child.final_student_number)
        if child.expected is None:
            assert actual is None or actual["status"] == "withdrawn", child.scenario
            continue
        assert actual is not None, child.scenario
        for key, value in child.expected.items():
            assert actual[key] == value, (child.scenario, key)
        assert actual["created_count"] == 1
    roster = await sim.preschool("GET", "/v1/cohorts/2026/roster?limit=5000")
    states = Counter(item["state"] for item in roster.body["items"])
    assert states["graduated"] > states["deferred"] > 0 and states["cancelled"] > 0
