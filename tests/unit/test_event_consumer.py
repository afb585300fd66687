"""The event consumer: whatever a delivery holds, exactly one ack, nack or reject."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.metrics import Metrics
from consumers import events as consumer_module
from consumers.events import RECORD_ATTEMPTS, EventConsumer
from consumers.park import PARK_CODE, PARK_REASON
from simulator.publisher import FORMS, MALFORMED_KINDS, NASTY_KINDS, malformed_message, sdk_message
from tests.fakes.ledger import MemoryLedger
from tests.fakes.messages import FakeExchange, FakeGate, FakeMessage
from tests.support.wire_events import G, graduated


def make(
    ledger: MemoryLedger | None = None, parking: FakeExchange | None = None, hold_s: float = 5.0
) -> tuple[EventConsumer, MemoryLedger, FakeExchange, FakeGate, list[int]]:
    """A consumer over the in-memory ledger (told how to fail by the test)."""
    ledger = ledger or MemoryLedger()
    exchange = parking or FakeExchange()
    gate = FakeGate()
    woken: list[int] = []
    consumer = EventConsumer(
        ledger, exchange, Metrics(), lambda: woken.append(1), DATABASE_UNAVAILABLE,
        gate=gate, hold_s=hold_s,
    )  # fmt: skip
    return consumer, ledger, exchange, gate, woken


def failing(*refusals: BaseException, always: BaseException | None = None) -> MemoryLedger:
    """A ledger whose next recordings raise *refusals*, and every one *always*."""
    ledger = MemoryLedger()
    ledger.refusals.extend(refusals)
    ledger.refuse_all = always
    return ledger


def event_message(**kw: Any) -> FakeMessage:
    event = graduated(G, 1)
    return FakeMessage(orjson.dumps(event), message_id=event["id"], **kw)


async def test_an_event_is_recorded_then_acked_once() -> None:
    consumer, ledger, exchange, _, woken = make()
    message = event_message()
    await consumer(message)
    assert message.decisions == ["ack"]
    assert list(ledger.inbox) == [message.message_id]
    assert exchange.published == [] and woken == [1]


@pytest.mark.parametrize("form", FORMS)
async def test_every_form_of_an_event_is_recorded_and_acked(form: str) -> None:
    consumer, ledger, exchange, _, _ = make()
    sent = sdk_message(graduated(G, 1), form)
    message = FakeMessage(sent.body, headers=dict(sent.headers or {}),
                          content_type=sent.content_type, message_id=sent.message_id)  # fmt: skip
    await consumer(message)
    assert message.decisions == ["ack"]
    assert exchange.published == []
    [(event_id, stored)] = ledger.raw.items()
    assert ledger.child_of(G) and orjson.loads(stored)["id"] == event_id == sent.message_id


@pytest.mark.parametrize("kind", MALFORMED_KINDS + NASTY_KINDS)
async def test_what_is_no_event_is_parked_with_its_reason_then_acked_once(kind: str) -> None:
    consumer, ledger, exchange, _, _ = make()
    sent = malformed_message(random.Random(kind), kind)
    message = FakeMessage(sent.body, headers=dict(sent.headers or {}),
                          content_type=sent.content_type, message_id=sent.message_id)  # fmt: skip
    await consumer(message)
    assert message.decisions == ["ack"]
    assert ledger.record_attempts == 0
    [(copy, _)] = exchange.published
    assert copy.body == sent.body and copy.headers[PARK_CODE] and copy.headers[PARK_REASON]


async def test_a_message_whose_copy_cannot_be_parked_is_dead_lettered_once() -> None:
    consumer, _, exchange, _, _ = make()
    # A header the broker relayed but no codec can write back (bytes that were not UTF-8).
    message = FakeMessage(b"not json", headers={"x-odd\udcff": 1}, message_id=None)
    await consumer(message)
    assert message.decisions == ["reject"]
    assert exchange.published == []


async def test_a_parking_exchange_that_fails_means_dead_lettering_not_a_loop() -> None:
    consumer, _, _, _, _ = make(parking=FakeExchange(fail=ConnectionResetError()))
    message = FakeMessage(b"{}")
    await consumer(message)
    assert message.decisions == ["reject"]


@pytest.mark.parametrize("error", [RecursionError(), KeyError("x"), MemoryError(), TypeError()])
async def test_an_unexpected_error_while_decoding_parks_the_message(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(consumer_module, "decode_message", broken)
    consumer, ledger, exchange, _, _ = make()
    message = event_message()
    await consumer(message)
    assert message.decisions == ["ack"]
    [(copy, _)] = exchange.published
    assert copy.headers[PARK_CODE] == "undecodable"
    assert type(error).__name__ in copy.headers[PARK_REASON]
    assert ledger.record_attempts == 0


async def test_while_the_database_is_away_the_delivery_waits_and_is_recorded_once_it_answers() -> (
    None
):
    consumer, ledger, _, gate, _ = make(failing(ConnectionRefusedError()))
    message = event_message()
    task = asyncio.create_task(consumer(message))
    await asyncio.sleep(0.05)
    assert gate.reports == 1 and not gate.is_open
    assert message.decisions == []  # held: not handed back, not counted
    gate.reopen()
    await task
    assert message.decisions == ["ack"]
    assert ledger.record_attempts == 2 and list(ledger.inbox) == [message.message_id]


async def test_a_database_away_longer_than_the_hold_hands_the_delivery_back_once() -> None:
    consumer, _, _, _, _ = make(failing(always=OSError()), hold_s=0.1)
    message = event_message()
    await consumer(message)
    assert message.decisions == ["nack"]


@pytest.mark.parametrize(
    "error", [asyncpg.exceptions.DiskFullError(), asyncpg.exceptions.TooManyConnectionsError()]
)
async def test_a_database_out_of_resources_is_waited_out_like_one_away(error: Exception) -> None:
    consumer, _, _, gate, _ = make(failing(error))
    message = event_message()
    task = asyncio.create_task(consumer(message))
    await asyncio.sleep(0.05)
    assert gate.reports == 1
    gate.reopen()
    await task
    assert message.decisions == ["ack"]


@pytest.mark.parametrize("delivery", range(1, RECORD_ATTEMPTS + 2))
async def test_a_recording_that_fails_otherwise_is_retried_then_parked(delivery: int) -> None:
    error = asyncpg.exceptions.DataError("a value the database refuses: G110108202001097076")
    consumer, _, exchange, gate, _ = make(failing(always=error))
    message = event_message(headers={"x-delivery-count": delivery - 1})
    await consumer(message)
    assert gate.reports == 0
    if delivery < RECORD_ATTEMPTS:
        assert message.decisions == ["reject_requeue"]  # a failed attempt, counted
        assert exchange.published == []
    else:
        assert message.decisions == ["ack"]
        [(copy, _)] = exchange.published
        assert copy.headers[PARK_CODE] == "record_failed"
        assert "DataError" in copy.headers[PARK_REASON]
        assert "G110108" not in copy.headers[PARK_REASON]


async def test_a_redelivery_without_a_delivery_count_is_parked_when_it_fails_again() -> None:
    consumer, _, exchange, _, _ = make(failing(always=ValueError()))
    message = event_message(redelivered=True)
    await consumer(message)
    assert message.decisions == ["ack"]
    assert exchange.published[0][0].headers[PARK_CODE] == "record_failed"


async def test_a_decision_on_a_closed_channel_does_not_escape_and_is_not_repeated() -> None:
    consumer, _, _, _, _ = make()
    message = event_message(channel_closed=True)
    await consumer(message)  # no exception reaches aio-pika
    assert message.decisions == ["ack"]


async def test_a_failure_after_the_decision_makes_no_second_one() -> None:
    consumer, _, _, _, _ = make()
    consumer._on_recorded = lambda: (_ for _ in ()).throw(RuntimeError("boom"))
    message = event_message()
    await consumer(message)
    assert message.decisions == ["ack"]


async def test_logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    event = graduated(G, 1)
    error = asyncpg.exceptions.DataError(f"invalid input {G} {event['data']['child']['name']}")
    consumer, _, _, _, _ = make(failing(always=error))
    message = FakeMessage(orjson.dumps(event), message_id=G, headers={"x-delivery-count": 5})
    with caplog.at_level("DEBUG"):
        await consumer(message)
    assert G not in caplog.text and G[1:] not in caplog.text
    assert event["data"]["child"]["name"] not in caplog.text
    assert "DataError" in caplog.text
