"""The parked-message recorder: every message kept somewhere, then exactly one decision."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.metrics import Metrics
from consumers.frame_tolerance import UNDECODABLE_HEADERS, OutOfRangeTimestamp
from consumers.park import ORIGINAL_ROUTING_KEY, PARK_CODE, PARK_REASON
from consumers.parked import ORIGINAL, ParkedRecorder, parked_row
from schemas.amqp_values import from_json, to_json
from tests.fakes.messages import FakeExchange, FakeGate, FakeMessage
from tests.fakes.stores import MemoryParkedArchive, ParkedRow

ODD_HEADERS: dict[str, Any] = {
    "nul": "a\x00b",
    "not-utf8": "caf\udce9",
    "nul\x00name": 1,
    "\udcffname": 2,
    "$amqp": "looks like a tag",
    "bytes": bytearray(b"\x00\xff"),
    "raw-long-string": b"\xff\xfe",
    "decimal": decimal.Decimal("1.50"),
    "when": dt.datetime(2026, 7, 1, tzinfo=dt.UTC),
    "beyond": OutOfRangeTimestamp(2**63 - 1),
    "nan": float("nan"),
    "table": {"inner": {"deeper": [1, "x\x00", None, True]}},
    UNDECODABLE_HEADERS: bytearray(b"\x02\xff\xfet\x01"),
}
DEAD_LETTERED = {
    "x-first-death-reason": "delivery_limit",
    "x-first-death-queue": "xueji.bridge.events",
    "x-first-death-exchange": "preschool.events",
    "x-death": [{
        "count": 20, "reason": "delivery_limit", "queue": "xueji.bridge.events",
        "time": dt.datetime(2026, 7, 1, tzinfo=dt.UTC), "exchange": "preschool.events",
        "routing-keys": ["child.graduated"],
    }],
    "x-delivery-count": 0,
}  # fmt: skip


def make(
    archive: MemoryParkedArchive | None = None,
    unrecorded: FakeExchange | None = None,
    hold_s: float = 5.0,
) -> tuple[ParkedRecorder, MemoryParkedArchive, FakeExchange, FakeGate, Metrics]:
    """A recorder over the in-memory archive (no delay before handing a message back)."""
    archive = archive or MemoryParkedArchive()
    exchange = unrecorded or FakeExchange()
    gate = FakeGate()
    metrics = Metrics()
    recorder = ParkedRecorder(
        archive, gate=gate, database_errors=DATABASE_UNAVAILABLE, unrecorded=exchange,
        unrecorded_queue="q.unrecorded", metrics=metrics, hold_s=hold_s, hand_back_delay_s=0,
    )  # fmt: skip
    return recorder, archive, exchange, gate, metrics


def refusing(*refusals: BaseException, always: BaseException | None = None) -> MemoryParkedArchive:
    """An archive whose next add() calls raise *refusals*, and every one *always*."""
    return MemoryParkedArchive(refusals=list(refusals), refuse_all=always)


def parked(**headers: Any) -> FakeMessage:
    return FakeMessage(
        b"\x00{not json", message_id="3f0d4b9e-5a43-4c2e-9a7e-3c1b2a1d0e9f",
        headers={PARK_CODE: "not_json", PARK_REASON: "body: the bytes are not JSON",
                 ORIGINAL_ROUTING_KEY: "child.graduated", **headers},
    )  # fmt: skip


def stored(archive: MemoryParkedArchive) -> ParkedRow:
    [row] = archive.messages
    return row


async def test_a_parked_message_is_stored_then_acked_once() -> None:
    recorder, archive, _, _, _ = make()
    message = parked()
    await recorder(message)
    assert message.decisions == ["ack"]
    row = stored(archive)
    assert (row.code, row.reason) == ("not_json", "body: the bytes are not JSON")
    assert row.routing_key == "child.graduated" and row.body == message.body


async def test_headers_the_database_cannot_hold_as_they_are_are_kept_encoded() -> None:
    recorder, archive, _, _, _ = make()
    message = parked(**ODD_HEADERS)
    message.message_id = "id\x00\udcff"
    message.content_type = "application/json\udcfe"
    await recorder(message)
    assert message.decisions == ["ack"]
    row = stored(archive)
    for text in (row.headers, row.properties, row.message_id, row.reason):
        assert "\\u0000" not in text and "\x00" not in text
        text.encode("utf-8")  # no lone surrogates: PostgreSQL stores it
    headers = from_json(orjson.loads(row.headers))
    assert headers["nul"] == "a\x00b" and headers["nul\x00name"] == 1
    assert headers["bytes"] == bytearray(b"\x00\xff")
    assert headers["raw-long-string"] == bytearray(b"\xff\xfe")
    assert headers["not-utf8"] == bytearray("caf\udce9".encode("utf-8", "surrogateescape"))
    assert headers["decimal"] == decimal.Decimal("1.50") and headers["$amqp"] == "looks like a tag"
    assert headers["table"] == {"inner": {"deeper": [1, "x\x00", None, True]}}
    assert headers[UNDECODABLE_HEADERS] == ODD_HEADERS[UNDECODABLE_HEADERS]
    properties = orjson.loads(row.properties)
    assert from_json(properties["content_type"]) == bytearray(b"application/json\xfe")
    assert row.message_id == "id\\x00\\xff"


def test_every_header_value_survives_the_round_trip() -> None:
    plain = {k: v for k, v in ODD_HEADERS.items() if k not in ("not-utf8", "\udcffname", "nan")}
    back = from_json(orjson.loads(orjson.dumps(to_json(plain))))
    assert back["raw-long-string"] == bytearray(b"\xff\xfe")
    back["raw-long-string"] = plain["raw-long-string"]
    assert back["beyond"] == 2**63 - 1
    back["beyond"] = plain["beyond"]
    assert back == plain


async def test_what_dead_lettering_brings_is_recorded_with_its_reason() -> None:
    recorder, archive, _, _, _ = make()
    message = FakeMessage(b'{"specversion": "1.0"}', headers=dict(DEAD_LETTERED))
    await recorder(message)
    assert message.decisions == ["ack"]
    row = stored(archive)
    assert row.code == "delivery_limit"
    assert "20 times" in row.reason
    death = orjson.loads(row.headers)["x-death"][0]
    assert death["count"] == 20 and death["routing-keys"] == ["child.graduated"]
    assert death["time"] == {"$amqp": "timestamp", "value": "2026-07-01T00:00:00+00:00"}


async def test_a_message_the_bridge_dead_lettered_gets_its_reason_found_again() -> None:
    recorder, archive, _, _, _ = make()
    message = FakeMessage(b"\x00{not json", headers={
        "x-first-death-reason": "rejected", "x-odd\udcff": 1})  # fmt: skip
    await recorder(message)
    row = stored(archive)
    assert row.code == "not_json"
    assert "no copy could be parked" in row.reason


async def test_while_the_database_is_away_the_message_waits_then_is_stored() -> None:
    recorder, archive, _, gate, _ = make(refusing(ConnectionRefusedError()))
    message = parked()
    task = asyncio.create_task(recorder(message))
    await asyncio.sleep(0.05)
    assert gate.reports == 1 and message.decisions == []
    gate.reopen()
    await task
    assert message.decisions == ["ack"] and archive.attempts == 2
    assert stored(archive).body == message.body


async def test_a_database_away_longer_than_the_hold_hands_the_message_back_once() -> None:
    recorder, _, _, _, _ = make(refusing(always=OSError()), hold_s=0.1)
    message = parked()
    await recorder(message)
    assert message.decisions == ["nack"]


@pytest.mark.parametrize(
    "refusal",
    [asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted to text"),
     asyncpg.exceptions.CharacterNotInRepertoireError(), asyncpg.exceptions.DataError()],
)  # fmt: skip
async def test_a_row_the_database_refuses_is_stored_in_the_minimal_form(refusal: Exception) -> None:
    recorder, archive, _, gate, _ = make(refusing(refusal))
    message = parked(**ODD_HEADERS)
    await recorder(message)
    assert message.decisions == ["ack"] and gate.reports == 0
    first, second = parked_row(message), stored(archive)
    assert archive.attempts == 2 and second.headers != first.headers
    wrapped = orjson.loads(second.headers)
    assert wrapped["$amqp"] == "json"
    assert second.reason.isascii() and second.body == message.body


async def test_what_the_database_refuses_in_every_form_goes_to_the_unrecorded_queue() -> None:
    recorder, archive, exchange, _, metrics = make(refusing(always=asyncpg.exceptions.DataError()))
    message = parked(**ODD_HEADERS)
    await recorder(message)
    assert message.decisions == ["ack"]
    assert archive.attempts == 2 and archive.messages == []
    [(copy, routing_key)] = exchange.published
    assert routing_key == "q.unrecorded" and copy.body == message.body
    assert orjson.loads(copy.headers[ORIGINAL])["headers"]
    assert metrics.parked_unrecorded._value.get() == 1


async def test_if_nothing_can_keep_it_the_message_is_handed_back_not_dropped() -> None:
    recorder, _, _, _, _ = make(
        refusing(always=asyncpg.exceptions.DataError()),
        unrecorded=FakeExchange(fail=RuntimeError("broker refuses")),
    )
    message = parked()
    await recorder(message)
    assert message.decisions == ["nack"]


async def test_a_message_without_any_reason_is_still_recorded() -> None:
    recorder, archive, _, _, _ = make()
    message = FakeMessage(b"", headers={}, message_id=None, content_type=None)
    await recorder(message)
    assert message.decisions == ["ack"]
    assert stored(archive).code == "unexplained"


def test_a_forged_code_is_not_taken_as_it_is() -> None:
    row = parked_row(parked(**{PARK_CODE: "x\x00'; drop table"}))  # type: ignore[arg-type]
    assert row.code == "unexplained"
