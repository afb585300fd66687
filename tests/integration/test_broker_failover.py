"""The bridge's broker connection over a list of nodes, on the real RabbitMQ.

Two TCP forwarders to the machine's broker stand in for two nodes of a cluster: cutting
one resets every connection through it, as a node's death does for its clients. (The
HA suite, tests/faults_ha, kills real nodes of a real cluster.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bridge.adapters.amqp_cluster import ClusterConnection, connect_cluster
from consumers.republish import publish_confirmed
from consumers.topology import TopologyNames, declare
from tests.conftest import AMQP_URL
from tests.support.bridge_process import free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.live

HOST, PORT = "127.0.0.1", 5672
T = TypeVar("T")


def names_for(amqp_names: dict[str, str], group_size: int | None = 3) -> TopologyNames:
    prefix = amqp_names["prefix"]
    return TopologyNames(
        events_exchange=amqp_names["exchange"], events_queue=f"{prefix}.events",
        parked_exchange=f"{prefix}.parked", parked_queue=f"{prefix}.parked",
        unrecorded_queue=f"{prefix}.unrecorded", quorum_initial_group_size=group_size,
    )  # fmt: skip


def node_url(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    started = [await TcpProxy(HOST, PORT).start() for _ in range(3)]
    yield started
    for proxy in started:
        await proxy.close()


async def test_the_first_node_that_answers_is_used(proxies: list[TcpProxy]) -> None:
    nobody = free_port()
    connection = await connect_cluster(f"{node_url(nobody)},{node_url(proxies[1].port)}")
    try:
        assert isinstance(connection, ClusterConnection)
        assert connection.url.port == proxies[1].port
    finally:
        await connection.close()


async def test_no_node_answering_fails_the_start() -> None:
    with pytest.raises(ConnectionError):
        await connect_cluster(f"{node_url(free_port())},{node_url(free_port())}")


async def test_consumer_and_confirmed_publishes_move_to_the_next_node(
    proxies: list[TcpProxy], amqp_names: dict[str, str]
) -> None:
    connection = await connect_cluster(",".join(node_url(p.port) for p in proxies[:2]))
    assert isinstance(connection, ClusterConnection)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=10)
        topology = await declare(channel, names_for(amqp_names))
        deliveries: list[tuple[str | None, bool | None]] = []
        held: list[AbstractIncomingMessage] = []

        async def consume(message: AbstractIncomingMessage) -> None:
            deliveries.append((message.message_id, message.redelivered))
            if message.message_id == "m1" and not message.redelivered:
                held.append(message)  # in flight when the node goes: never acked
                return
            await message.ack()

        await topology.events_queue.consume(consume)

        async def publish(message_id: str) -> None:
            await publish_confirmed(
                topology.events_exchange,
                aio_pika.Message(b"{}", message_id=message_id),
                "child.graduated",
            )

        await publish("m1")
        await eventually(lambda: _value(held), bool, what="m1 delivered")
        await proxies[0].cut()
        # A publish cut off from its confirm goes out again once the connection is back,
        # on the other node, and waits for the broker's confirm there.
        await asyncio.wait_for(publish("m2"), 30)
        assert connection.url.port == proxies[1].port
        await eventually(
            lambda: _value(deliveries), lambda d: len(d) >= 3, timeout_s=30, what="redelivery"
        )
        assert sorted(deliveries) == [("m1", False), ("m1", True), ("m2", False)]
        # Nothing is left: the redelivered m1 and m2 were acked on the new connection.
        probe = await connection.channel()
        queue = await probe.declare_queue(topology.events_queue.name, passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()


async def test_an_attempt_that_fails_moves_on_to_the_node_after(
    proxies: list[TcpProxy], amqp_names: dict[str, str]
) -> None:
    connection = await connect_cluster(",".join(node_url(p.port) for p in proxies))
    assert isinstance(connection, ClusterConnection)
    try:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare(channel, names_for(amqp_names))
        # The node it is on and the next one go at once: the attempt on the next fails,
        # and the one after that is tried.
        await asyncio.gather(proxies[0].cut(), proxies[1].cut())
        await asyncio.wait_for(
            publish_confirmed(topology.events_exchange, aio_pika.Message(b"{}"), "child.graduated"),
            30,
        )
        assert connection.url.port == proxies[2].port
        assert proxies[2].accepted == 1
    finally:
        await connection.close()


async def test_a_queue_made_before_without_a_group_size_is_taken_as_it_is(
    amqp_names: dict[str, str],
) -> None:
    older = await aio_pika.connect(AMQP_URL)
    async with older:
        await declare(await older.channel(), names_for(amqp_names, group_size=None))
    connection = await connect_cluster(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare(channel, names_for(amqp_names, group_size=3))
        await topology.events_exchange.publish(
            aio_pika.Message(b"{}", message_id="x"), routing_key="child.graduated"
        )
        message = await topology.events_queue.get(timeout=10)
        assert message.message_id == "x"
        await message.ack()
    finally:
        await connection.close()


async def _value(value: T) -> T:
    return value
