"""Consumer of the parking queue: keeps each parked message in PostgreSQL for operators.

Whatever a parked message carries, it ends in one of three places, in this order:

1. ``parked_messages`` as it arrived: the body as bytea, the headers and properties as
   JSON, with what jsonb cannot hold as it is encoded (``schemas.amqp_values``);
2. ``parked_messages`` in a safe minimum form, should PostgreSQL refuse the first (headers
   and properties as base64 of their JSON, reason and ids escaped);
3. the ``unrecorded`` queue, a copy with its headers as one JSON text, if PostgreSQL
   refuses even that (logged as an error, counted in ``xueji_parked_unrecorded_total``).

Only then is it acked. While the database is away the recorder pauses like the event
consumer (``consumers.database_gate``); the parking queue has no delivery limit, so a
message handed back after ``hold_s`` is not lost either.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bridge.errors import InvalidEvent
from bridge.metrics import Metrics
from bridge.services.ports.recovery import ParkedArchive
from consumers.database_gate import Gate
from consumers.decision import Decision, label
from consumers.events import DATABASE_HOLD_S
from consumers.park import ORIGINAL_ROUTING_KEY, PARK_CODE, PARK_REASON
from schemas.amqp_binding import decode_message
from schemas.amqp_values import to_json

log = logging.getLogger(__name__)

ORIGINAL = "x-xueji-original"
# Before handing back a message nothing could keep: it is delivered again at once, and a
# database and a broker that both refuse it are not asked again in a busy loop.
HAND_BACK_DELAY_S = 5.0
_CODE = re.compile(r"[a-z0-9_.-]{1,64}")


def storable(value: str | None, limit: int = 1000) -> str | None:
    """Text PostgreSQL keeps as it is: NUL and bytes that were not UTF-8 escaped."""
    if value is None:
        return None
    raw = value.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    return text[:limit]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _death_routing_key(headers: Mapping[str, Any]) -> str | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys:
            return _text(keys[0])
    return None


def _death_count(headers: Mapping[str, Any]) -> int | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        count = deaths[0].get("count")
        if isinstance(count, int):
            return count
    return None


def park_reason(headers: Mapping[str, Any], message: AbstractIncomingMessage) -> tuple[str, str]:
    """(code, reason) of a parked message: ours, or what dead-lettering says."""
    code = _text(headers.get(PARK_CODE))
    if code is not None:
        return code, _text(headers.get(PARK_REASON)) or ""
    death = _text(headers.get("x-first-death-reason"))
    if death == "delivery_limit":
        count = _death_count(headers)
        times = f" ({count} times)" if count else ""
        return "delivery_limit", f"the bridge failed to process it on every delivery{times}"
    if death == "rejected":
        # The bridge dead-letters what it could not park as a copy: say why it was no event.
        try:
            decode_message(
                message.body, content_type=message.content_type,
                content_encoding=message.content_encoding, headers=message.headers,
            )  # fmt: skip
        except InvalidEvent as exc:
            return exc.code, f"{exc} (dead-lettered as it was: no copy could be parked)"
        except Exception as exc:
            return "undecodable", f"the bridge could not decode it ({type(exc).__name__})"
        return "rejected", "dead-lettered by the bridge (it is an event: retry it)"
    if death is not None:
        return death, f"dead-lettered by the broker ({death})"
    return "unexplained", "arrived in the parking queue without a reason"


def _properties(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "expiration": message.expiration,
        "type": message.type,
        "user_id": message.user_id,
        "app_id": message.app_id,
        "timestamp": message.timestamp,
        "priority": message.priority,
        "delivery_mode": int(message.delivery_mode) if message.delivery_mode else None,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "redelivered": message.redelivered,
    }


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """One row of parked_messages, every text storable."""

    message_id: str | None
    routing_key: str | None
    code: str
    reason: str
    headers: str  # JSON
    properties: str  # JSON
    body: bytes

    def minimal(self) -> ParkedRow:
        """The same row in the safest form: JSON as base64, ids and texts in ASCII."""
        return replace(
            self,
            message_id=_ascii(self.message_id),
            routing_key=_ascii(self.routing_key),
            code=_ascii(self.code) or "unexplained",
            reason=_ascii(self.reason) or "",
            headers=_wrapped(self.headers),
            properties=_wrapped(self.properties),
        )


def _ascii(value: str | None) -> str | None:
    return None if value is None else value.encode("ascii", "backslashreplace").decode("ascii")


def _wrapped(document: str) -> str:
    encoded = base64.b64encode(document.encode("utf-8", "surrogateescape")).decode("ascii")
    return orjson.dumps({"$amqp": "json", "base64": encoded}).decode()


def parked_row(message: AbstractIncomingMessage) -> ParkedRow:
    """The row that keeps *message* faithfully."""
    headers = dict(message.headers or {})
    code, reason = park_reason(headers, message)
    routing_key = (
        _text(headers.get(ORIGINAL_ROUTING_KEY))
        or _death_routing_key(headers)
        or message.routing_key
    )
    safe_code = storable(code, 64) or "unexplained"
    return ParkedRow(
        message_id=storable(message.message_id),
        routing_key=storable(routing_key),
        code=safe_code if _CODE.fullmatch(safe_code) else "unexplained",
        reason=storable(reason) or "",
        headers=orjson.dumps(to_json(headers)).decode(),
        properties=orjson.dumps(to_json(_properties(message))).decode(),
        body=message.body,
    )


class ParkedRecorder:
    """Writes parked messages to the ledger, acking only once they are kept."""

    def __init__(
        self,
        store: ParkedArchive,
        *,
        gate: Gate,
        database_errors: tuple[type[BaseException], ...],
        unrecorded: AbstractExchange,
        unrecorded_queue: str,
        metrics: Metrics,
        hold_s: float = DATABASE_HOLD_S,
        hand_back_delay_s: float = HAND_BACK_DELAY_S,
    ) -> None:
        self._store = store
        self._hand_back_delay_s = hand_back_delay_s
        self._gate = gate
        self._waits = database_errors
        self._unrecorded = unrecorded
        self._unrecorded_queue = unrecorded_queue
        self._metrics = metrics
        self._hold_s = hold_s

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Store, then ack; while the database is away, hold the message and wait."""
        decision = Decision(message)
        try:
            await self._handle(message, decision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("parked message %s: %s", label(message), type(exc).__name__)
            if decision.made is None:
                await decision.nack()

    async def _handle(self, message: AbstractIncomingMessage, decision: Decision) -> None:
        try:
            row = parked_row(message)
        except Exception as exc:  # a header no encoder foresaw: keep what surely stores
            log.warning("parked message %s: headers unreadable (%s)", label(message),
                        type(exc).__name__)  # fmt: skip
            row = ParkedRow(
                storable(None), storable(message.routing_key), "unexplained",
                f"the bridge could not read its headers ({type(exc).__name__})",
                orjson.dumps({"$amqp": "unreadable"}).decode(), "{}", message.body,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold_s
        for form in (row, row.minimal()):
            while True:
                if not await self._gate.opened(deadline - loop.time()):
                    await decision.nack()  # no delivery limit on the parking queue
                    return
                try:
                    await self._store.add(
                        message_id=form.message_id, routing_key=form.routing_key,
                        code=form.code, reason=form.reason, headers=form.headers,
                        body=form.body, properties=form.properties,
                    )  # fmt: skip
                except self._waits:
                    self._gate.report_unavailable()
                    continue
                except Exception as exc:
                    log.warning("parked message %s not stored as it is (%s)", label(message),
                                type(exc).__name__)  # fmt: skip
                    break
                await decision.ack()
                return
        await self._keep_unrecorded(message, decision, row)

    async def _keep_unrecorded(
        self, message: AbstractIncomingMessage, decision: Decision, row: ParkedRow
    ) -> None:
        original = orjson.dumps({"headers": row.headers, "properties": row.properties}).decode()
        try:
            await self._unrecorded.publish(
                aio_pika.Message(
                    body=message.body,
                    headers={ORIGINAL: original, PARK_CODE: row.code},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self._unrecorded_queue,
            )
        except Exception as exc:
            log.error("parked message %s could not be kept anywhere (%s); handed back",
                      label(message), type(exc).__name__)  # fmt: skip
            await asyncio.sleep(self._hand_back_delay_s)
            await decision.nack()
            return
        log.error("parked message %s refused by PostgreSQL: kept in queue %s",
                  label(message), self._unrecorded_queue)  # fmt: skip
        self._metrics.parked_unrecorded.inc()
        await decision.ack()
