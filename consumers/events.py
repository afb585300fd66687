"""Consumer of the preschool registry's events: decode, record durably, then ack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from bridge.domain.student_number import mask
from bridge.errors import InvalidEvent
from bridge.metrics import Metrics
from bridge.services.ports.ledger import EventLedger
from consumers.park import park
from consumers.topology import CLOUDEVENTS_JSON
from schemas.events import parse_event

log = logging.getLogger(__name__)
T = TypeVar("T")

ACCEPTED_CONTENT_TYPES = frozenset({CLOUDEVENTS_JSON, "application/json", None, ""})
# How long one message waits for the database to come back before it is handed back to
# the broker (which counts the delivery towards the limit).
DATABASE_PATIENCE_S = 60.0


class EventConsumer:
    """One message at a time per delivery; the ack decision is made here and only here."""

    def __init__(
        self,
        ledger: EventLedger,
        parked_exchange: AbstractExchange,
        metrics: Metrics,
        on_recorded: Callable[[], None],
        database_errors: tuple[type[BaseException], ...],
    ) -> None:
        self._ledger = ledger
        self._parked = parked_exchange
        self._metrics = metrics
        self._on_recorded = on_recorded
        self._database_errors = database_errors

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery: ack after the effect is committed, park what is no event."""
        try:
            if message.content_type not in ACCEPTED_CONTENT_TYPES:
                raise InvalidEvent(
                    f"content_type {message.content_type!r} is not CloudEvents JSON",
                    code="content_type",
                )
            event = parse_event(message.body)
        except InvalidEvent as exc:
            await self._set_aside(message, exc.code, str(exc))
            return
        try:
            recorded = await self._with_patience(
                lambda: self._ledger.record_event(event, message.body)
            )
        except Exception:
            log.exception("event %s of child %s not recorded", event.event_id, mask(event.subject))
            self._metrics.events.labels(event.type.value, "error").inc()
            # Back to the queue; the delivery limit dead-letters it to the parking queue
            # if it never succeeds.
            await message.nack(requeue=True)
            return
        await message.ack()
        outcome = "duplicate" if recorded.duplicate else "recorded"
        self._metrics.events.labels(event.type.value, outcome).inc()
        if not recorded.duplicate:
            self._on_recorded()

    async def _with_patience(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except self._database_errors:
            pass  # the database is away: wait for it (the retry machinery only now)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(self._database_errors),
            stop=stop_after_delay(DATABASE_PATIENCE_S),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                return await op()
        raise AssertionError("unreachable")

    async def _set_aside(self, message: AbstractIncomingMessage, code: str, reason: str) -> None:
        try:
            await park(self._parked, message, code, reason)
        except Exception:
            log.exception("could not park message %s", message.message_id)
            await message.nack(requeue=True)
            return
        await message.ack()
        self._metrics.parked.labels(code).inc()
        log.info("parked message %s: %s", message.message_id, code)
