"""A connection to a RabbitMQ cluster: to any listed node, and to the next when it goes.

aio-pika's robust connection reconnects to the one URL it was given, and restores its
channels, QoS, exchanges, queues, bindings and consumers on the new connection. Over a
cluster that is all we need, but for the node: ``ClusterConnection`` moves the URL to
the next node whenever a connection closes or an attempt fails (aio-pika tells both to
``_on_connection_close``), so the next attempt goes elsewhere. Messages a consumer had
not acked when its node went are handed out again by the queue; a publish waiting for a
confirm fails, and ``consumers.republish.publish_confirmed`` sends it again (a copy is
harmless: the ledger's inbox records an event once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

# Between a failed attempt and the next, on the next node (aio-pika's default: 5 s).
# The first attempt after a loss goes out at once.
RECONNECT_INTERVAL_S = 1.0
# A node whose host is gone (rather than refusing) must not hold an attempt for minutes.
CONNECT_TIMEOUT_S = 15.0


def node_urls(amqp_url: str) -> list[URL]:
    """The nodes of ``BRIDGE_AMQP_URL``: one AMQP URL, or several separated by commas."""
    urls = [URL(part.strip()) for part in amqp_url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no AMQP URL given")
    for url in urls:
        if url.scheme not in ("amqp", "amqps") or not url.host:
            raise ValueError(f"not an AMQP URL: {url.with_password(None)}")
    return urls


class ClusterConnection(RobustConnection):
    """A robust connection whose every new attempt goes to the next node of the list."""

    def __init__(
        self,
        url: URL,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        nodes: Sequence[URL] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(url, loop=loop, **kwargs)
        self.nodes = list(nodes) or [self.url]
        self._at = self.nodes.index(url) if url in self.nodes else 0

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # aio-pika (10.2, pinned) calls this for a lost connection and for a failed attempt
        # alike; tests/integration/test_broker_failover.py holds it to that.
        if not self.close_called:
            self._at = (self._at + 1) % len(self.nodes)
            self.url = self.nodes[self._at]
        await super()._on_connection_close(closing)


async def connect_cluster(amqp_url: str, **kwargs: Any) -> AbstractRobustConnection:
    """Connect to the first node that answers; stay connected to one of them thereafter.

    Raises the last node's error when none answers at start.
    """
    nodes = node_urls(amqp_url)
    if "reconnect_interval" not in nodes[0].query:
        kwargs.setdefault("reconnect_interval", RECONNECT_INTERVAL_S)
    error: BaseException | None = None
    for start in nodes:
        connection = ClusterConnection(start, nodes=nodes, **kwargs)
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT_S)
        except CONNECTION_EXCEPTIONS as exc:
            error = exc
            await connection.close()
            continue
        return connection
    assert error is not None
    raise error
