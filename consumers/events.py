"""Consumer of the preschool registry's events: decode, record durably, then ack.

Every delivery ends in exactly one decision (``consumers.decision``):

- an event, recorded: ack;
- not an event (any bytes, any headers): parked with its code and reason, then ack; if the
  copy cannot be parked, rejected, and the broker dead-letters the original to parking;
- the database away: held unacked while the gate is shut (no new deliveries meanwhile),
  recorded once it answers; after ``hold_s`` handed back once (nack);
- recording failed otherwise: retried by redelivery, parked as ``record_failed`` on the
  RECORD_ATTEMPTS-th delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bridge.domain.student_number import mask
from bridge.errors import InvalidEvent
from bridge.failures import log_failure
from bridge.metrics import Metrics
from bridge.services.ports.ledger import EventLedger
from consumers.database_gate import Gate
from consumers.decision import Decision, label
from consumers.park import park
from schemas.amqp_binding import DecodedEvent, decode_message

log = logging.getLogger(__name__)

# Deliveries of a message whose recording fails (the database answering) before it is
# parked as record_failed: enough to ride out a passing fault, few enough to say so soon.
RECORD_ATTEMPTS = 3
# How long a delivery waits for the database before it is handed back: well inside the
# broker's consumer_timeout (30 minutes by default), after which it would close the channel.
DATABASE_HOLD_S = 900.0
PARK_TIMEOUT_S = 30.0


def deliveries(message: AbstractIncomingMessage) -> int:
    """Which delivery of *message* this is (1 = the first), as the quorum queue counts."""
    count = (message.headers or {}).get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count + 1
    # No count (not a quorum queue): a redelivery is taken as the last one allowed.
    return RECORD_ATTEMPTS if message.redelivered else 1


class EventConsumer:
    """One message at a time per delivery; the ack decision is made here and only here."""

    def __init__(
        self,
        ledger: EventLedger,
        parked_exchange: AbstractExchange,
        metrics: Metrics,
        on_recorded: Callable[[], None],
        database_errors: tuple[type[BaseException], ...],
        *,
        gate: Gate,
        hold_s: float = DATABASE_HOLD_S,
    ) -> None:
        self._ledger = ledger
        self._parked = parked_exchange
        self._metrics = metrics
        self._on_recorded = on_recorded
        self._waits = database_errors
        self._gate = gate
        self._hold_s = hold_s

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery: ack after the effect is committed, park what is no event."""
        decision = Decision(message)
        try:
            await self._handle(message, decision)
        except asyncio.CancelledError:
            raise  # shutting down: the broker hands the message out again
        except Exception as exc:
            log_failure(log, "message %s", label(message), exc=exc)
            if decision.made is None:
                await decision.retry()

    async def _handle(self, message: AbstractIncomingMessage, decision: Decision) -> None:
        try:
            decoded = decode_message(
                message.body, content_type=message.content_type,
                content_encoding=message.content_encoding, headers=message.headers,
            )  # fmt: skip
        except InvalidEvent as exc:
            await self._set_aside(message, decision, exc.code, str(exc))
            return
        except Exception as exc:
            log_failure(log, "decoding message %s failed", label(message), exc=exc)
            reason = f"the bridge could not decode it ({type(exc).__name__}); see its log"
            await self._set_aside(message, decision, "undecodable", reason)
            return
        await self._record(message, decision, decoded)

    async def _record(
        self, message: AbstractIncomingMessage, decision: Decision, decoded: DecodedEvent
    ) -> None:
        event = decoded.event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold_s
        while True:
            if not await self._gate.opened(deadline - loop.time()):
                log.warning("event %s: the database stayed away; handed back", event.event_id)
                await decision.nack()
                return
            try:
                recorded = await self._ledger.record_event(event, decoded.stored)
            except self._waits:
                self._gate.report_unavailable()
                continue
            except Exception as exc:
                log_failure(
                    log, "event %s of child %s not recorded", event.event_id,
                    mask(event.subject), exc=exc,
                )  # fmt: skip
                self._metrics.events.labels(event.type.value, "error").inc()
                attempt = deliveries(message)
                if attempt >= RECORD_ATTEMPTS:
                    reason = (
                        f"the bridge could not record it on {attempt} deliveries"
                        f" ({type(exc).__name__}); see its log"
                    )
                    await self._set_aside(message, decision, "record_failed", reason)
                else:
                    await decision.retry()
                return
            break
        await decision.ack()
        outcome = "duplicate" if recorded.duplicate else "recorded"
        self._metrics.events.labels(event.type.value, outcome).inc()
        if not recorded.duplicate:
            self._on_recorded()

    async def _set_aside(
        self, message: AbstractIncomingMessage, decision: Decision, code: str, reason: str
    ) -> None:
        try:
            await asyncio.wait_for(park(self._parked, message, code, reason), PARK_TIMEOUT_S)
        except Exception as exc:
            # The copy cannot be written or the broker did not take it: the original goes
            # to parking by dead-lettering instead, where the recorder finds the reason again.
            log.warning(
                "message %s (%s) could not be parked (%s); dead-lettering it",
                label(message), code, type(exc).__name__,
            )  # fmt: skip
            await decision.dead_letter()
        else:
            await decision.ack()
            log.info("parked message %s: %s", label(message), code)
        self._metrics.parked.labels(code).inc()
