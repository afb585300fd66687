"""The one ack, nack or reject a delivery gets, made once and never raising."""

from __future__ import annotations

import logging
import uuid

from aio_pika.abc import AbstractIncomingMessage

log = logging.getLogger(__name__)


def label(message: AbstractIncomingMessage) -> str:
    """The message's id for a log line: a UUID as events.md has it, else nothing of it.

    Any other message id is the publisher's text, and could be a student number.
    """
    try:
        return str(uuid.UUID(str(message.message_id)))
    except ValueError:
        return "(no event id)"


class Decision:
    """What becomes of one delivery; the first call decides, later ones are refused."""

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.made: str | None = None

    async def ack(self) -> None:
        """Done: the effect is durable."""
        await self._decide("ack")

    async def nack(self) -> None:
        """Back to the queue untried: the bridge could not take it now (not a failure)."""
        await self._decide("nack")

    async def retry(self) -> None:
        """Back to the queue as a failed attempt: counts towards the delivery limit."""
        await self._decide("retry")

    async def dead_letter(self) -> None:
        """Refused for good: the broker dead-letters it to the parking queue."""
        await self._decide("dead_letter")

    async def _decide(self, decision: str) -> None:
        if self.made is not None:
            raise AssertionError(f"{decision} after {self.made}: one decision per delivery")
        self.made = decision
        try:
            if decision == "ack":
                await self._message.ack()
            elif decision == "nack":
                # basic.nack: from RabbitMQ 4.3 on not counted as a failed delivery.
                await self._message.nack(requeue=True)
            elif decision == "retry":
                # basic.reject: counted as a failed delivery by every version.
                await self._message.reject(requeue=True)
            else:
                await self._message.reject(requeue=False)
        except Exception as exc:
            # The channel is gone: the broker hands the message out again by itself.
            log.warning("%s of message %s failed: %s", decision, label(self._message),
                        type(exc).__name__)  # fmt: skip
