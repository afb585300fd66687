"""RabbitMQ topology of the bridge, declared idempotently by every instance."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aio_pika.exceptions import ChannelPreconditionFailed

log = logging.getLogger(__name__)

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
    # Replicas of each quorum queue when it is created (None: the broker's default).
    quorum_initial_group_size: int | None = None


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
    parked_queue = await _declare_quorum_queue(channel, names.parked_queue, names, {})
    await parked_queue.bind(parked_exchange, routing_key="")
    await _declare_quorum_queue(channel, names.unrecorded_queue, names, {})
    events_queue = await _declare_quorum_queue(
        channel,
        names.events_queue,
        names,
        {
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


async def _declare_quorum_queue(
    channel: AbstractChannel, name: str, names: TopologyNames, arguments: dict[str, Any]
) -> AbstractQueue:
    """Declare a quorum queue with *arguments*, replicated as *names* asks when it is new.

    The group size only counts when the queue is created, yet the broker compares it on
    every declaration: a queue made before (by an older bridge, or with another size)
    is taken as it is, and its membership is the operator's (``rabbitmq-queues grow``).
    """
    arguments = {"x-queue-type": "quorum", **arguments}
    if names.quorum_initial_group_size is None:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    try:
        return await channel.declare_queue(
            name, durable=True,
            arguments={**arguments, "x-quorum-initial-group-size": names.quorum_initial_group_size},
        )  # fmt: skip
    except ChannelPreconditionFailed as exc:
        if "x-quorum-initial-group-size" not in str(exc):
            raise
        log.info("queue %s exists with another initial group size; keeping its replicas", name)
        await channel.reopen()  # the broker closed it over the refusal
        return await channel.declare_queue(name, passive=True)
