"""Consumer of the parking queue: keeps each parked message in PostgreSQL for operators."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from bridge.services.ports.recovery import ParkedArchive
from consumers.park import ORIGINAL_ROUTING_KEY, PARK_CODE, PARK_REASON

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """AMQP header values (bytes, nested tables, datetimes) as JSON-ready values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def park_reason(headers: dict[str, Any]) -> tuple[str, str]:
    """(code, reason) of a parked message: ours, or the broker's dead-lettering."""
    if PARK_CODE in headers:
        return str(headers[PARK_CODE]), str(headers.get(PARK_REASON, ""))
    death = str(headers.get("x-first-death-reason", "dead_lettered"))
    if death == "delivery_limit":
        return "delivery_limit", "the bridge failed to process it on every delivery"
    return death, f"dead-lettered by the broker ({death})"


class ParkedRecorder:
    """Writes parked messages to the ledger, acking only once they are stored."""

    def __init__(self, store: ParkedArchive) -> None:
        self._store = store

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Store, then ack; while the database is away, keep the message and wait."""
        headers = _plain(dict(message.headers or {}))
        code, reason = park_reason(headers)
        routing_key = headers.get(ORIGINAL_ROUTING_KEY) or message.routing_key
        delay = 0.5
        while True:
            try:
                await self._store.add(
                    message_id=message.message_id, routing_key=routing_key, code=code,
                    reason=reason, headers=json.dumps(headers), body=message.body,
                )  # fmt: skip
                break
            except Exception as exc:
                log.warning("cannot store parked message yet: %s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await message.ack()
