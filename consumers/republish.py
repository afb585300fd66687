"""Republishing to the events exchange as the preschool registry does (events.md): how an
operator's retry sends a parked message back through the same idempotent path."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from bridge.services.ports.recovery import OriginalMessage, Publish
from consumers.topology import CLOUDEVENTS_JSON


def exchange_publisher(exchange: AbstractExchange) -> Publish:
    """Publish persistent CloudEvents to *exchange*, confirmed by the broker; with
    *original*, as the message arrived (its content type, encoding and headers: a binary
    CloudEvent keeps its attributes)."""

    async def publish(
        routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        await exchange.publish(
            aio_pika.Message(
                body=body,
                content_type=original.content_type if original else CLOUDEVENTS_JSON,
                content_encoding=original.content_encoding if original else None,
                headers=original.headers if original else None,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )

    return publish


class LazyPublisher:
    """A command's publisher: the broker is opened only when a parked message is retried."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self._url, self._exchange = amqp_url, exchange
        self._connection: AbstractRobustConnection | None = None

    async def __call__(
        self, routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        """Publish one message (Publish)."""
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange_publisher(exchange)(routing_key, body, message_id, original=original)
        await channel.close()

    async def aclose(self) -> None:
        """Close the broker connection, if one was opened."""
        if self._connection is not None:
            await self._connection.close()
