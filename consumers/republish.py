"""Republishing to the events exchange as the preschool registry does (events.md): how an
operator's retry sends a parked message back through the same idempotent path.

Over a cluster (issue #20) the connection may lose its node between the publish and the
broker's confirm: ``publish_confirmed`` sends the message again on the next node (a copy
is harmless: the ledger's inbox records an event once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractMessage, AbstractRobustConnection
from aio_pika.exceptions import ChannelInvalidStateError

from bridge.services.ports.recovery import OriginalMessage, Publish
from consumers.topology import CLOUDEVENTS_JSON

# A publish cut off from its confirm by a lost node is sent again for this long.
REPUBLISH_WITHIN_S = 60.0
# What a lost connection looks like to a publisher: the frame could not go out, or went
# out and its confirm cannot come back.
_CONNECTION_LOST = (ConnectionError, ChannelInvalidStateError)


async def publish_confirmed(
    exchange: AbstractExchange, message: AbstractMessage, routing_key: str
) -> None:
    """Publish and wait for the broker's confirm, again on the next node if need be.

    Raises TimeoutError when no node confirmed it within REPUBLISH_WITHIN_S.
    """
    async with asyncio.timeout(REPUBLISH_WITHIN_S):
        while True:
            try:
                await exchange.publish(message, routing_key=routing_key)
                return
            except _CONNECTION_LOST:
                # The robust channel waits for the new connection before it publishes.
                await asyncio.sleep(0.1)


def exchange_publisher(exchange: AbstractExchange) -> Publish:
    """Publish persistent CloudEvents to *exchange*, confirmed by the broker (on another
    node if need be); with *original*, as the message arrived (its content type, encoding
    and headers: a binary CloudEvent keeps its attributes)."""

    async def publish(
        routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        await publish_confirmed(
            exchange,
            aio_pika.Message(
                body=body,
                content_type=original.content_type if original else CLOUDEVENTS_JSON,
                content_encoding=original.content_encoding if original else None,
                headers=original.headers if original else None,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key,
        )

    return publish


class LazyPublisher:
    """A command's publisher: the broker is opened only when a parked message is retried."""

    def __init__(
        self, connect: Callable[[], Awaitable[AbstractRobustConnection]], exchange: str
    ) -> None:
        """*connect* opens the broker connection (the composition root's: over a cluster,
        to any node that answers)."""
        self._connect, self._exchange = connect, exchange
        self._connection: AbstractRobustConnection | None = None

    async def __call__(
        self, routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        """Publish one message (Publish)."""
        if self._connection is None:
            self._connection = await self._connect()
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
