"""RabbitMQ topology of the bridge, declared idempotently by every instance."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

CLOUDEVENTS_JSON = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class TopologyNames:
    """Names of what the bridge declares; the events exchange is fixed by events.md."""

    events_exchange: str = "preschool.events"
    events_queue: str = "xueji.bridge.events"
    parked_exchange: str = "xueji.bridge.parked"
    parked_queue: str = "xueji.bridge.parked"
    # Where the parked-message recorder keeps what PostgreSQL refuses (consumers/parked.py).
    unrecorded_queue: str = "xueji.bridge.unrecorded"
    delivery_limit: int = 20


@dataclass(frozen=True, slots=True)
class Topology:
    """The declared objects."""

    events_exchange: AbstractExchange
    events_queue: AbstractQueue
    parked_exchange: AbstractExchange
    parked_queue: AbstractQueue


async def declare(channel: AbstractChannel, names: TopologyNames) -> Topology:
    """Declare exchanges and quorum queues; safe to repeat."""
    events_exchange = await channel.declare_exchange(
        names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    parked_exchange = await channel.declare_exchange(
        names.parked_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    parked_queue = await channel.declare_queue(
        names.parked_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await parked_queue.bind(parked_exchange, routing_key="")
    await channel.declare_queue(
        names.unrecorded_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    events_queue = await channel.declare_queue(
        names.events_queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            # A message that keeps failing is dead-lettered after this many deliveries,
            # never retried forever ...
            "x-delivery-limit": names.delivery_limit,
            "x-dead-letter-exchange": names.parked_exchange,
            # ... and never lost on the way: at-least-once dead-lettering needs the
            # source queue to refuse publishes rather than drop its head when full.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    await events_queue.bind(events_exchange, routing_key="child.*")
    return Topology(events_exchange, events_queue, parked_exchange, parked_queue)
