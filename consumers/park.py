"""Setting a message aside in the parking queue, with the reason in its headers."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

PARK_CODE = "x-park-code"
PARK_REASON = "x-park-reason"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"


async def park(
    exchange: AbstractExchange, message: AbstractIncomingMessage, code: str, reason: str
) -> None:
    """Republish *message* to the parking exchange; returns once the broker confirmed it.

    Raises if the copy cannot be written (say, a header that is not UTF-8) or the broker
    refuses it: the caller then rejects the message, and the broker dead-letters the
    original, byte for byte, to the same parking queue.
    """
    headers = dict(message.headers or {})
    headers.update(
        {PARK_CODE: code, PARK_REASON: reason[:1000],
         ORIGINAL_ROUTING_KEY: message.routing_key or ""}
    )  # fmt: skip
    await exchange.publish(
        aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            app_id=message.app_id,
            timestamp=message.timestamp,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key="",
    )
