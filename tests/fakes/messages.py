"""A delivery, an exchange and a database gate that record what is done with them.

``FakeMessage`` answers what the consumers read of an aio-pika ``IncomingMessage`` and keeps
every ack, nack and reject in ``decisions``: a test asserts there is exactly one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from pamqp import encode


@dataclass
class FakeMessage:
    """One delivery of a quorum queue, as aio-pika hands it to a consumer."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = "application/cloudevents+json"
    content_encoding: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: Any = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    timestamp: dt.datetime | None = None
    priority: int | None = None
    delivery_mode: aio_pika.DeliveryMode = aio_pika.DeliveryMode.PERSISTENT
    exchange: str = "preschool.events"
    routing_key: str = "child.graduated"
    redelivered: bool = False
    # A closed channel: every decision raises, as aio-pika does then.
    channel_closed: bool = False
    decisions: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self._decide("ack")

    async def nack(self, requeue: bool = True) -> None:
        self._decide("nack" if requeue else "nack_drop")

    async def reject(self, requeue: bool = False) -> None:
        self._decide("reject_requeue" if requeue else "reject")

    def _decide(self, what: str) -> None:
        self.decisions.append(what)
        if self.channel_closed:
            raise RuntimeError("channel closed")


@dataclass
class FakeExchange:
    """Publishes into ``published`` (message, routing key); ``fail`` makes publishing raise."""

    fail: BaseException | None = None
    published: list[tuple[aio_pika.Message, str]] = field(default_factory=list)

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: Any) -> None:
        if self.fail is not None:
            raise self.fail
        # Encoded as aiormq would: a header or property that cannot be written fails here.
        encode.field_table(dict(message.headers or {}))
        for text in (message.content_type, message.message_id, message.content_encoding):
            if text is not None:
                encode.short_string(text)
        self.published.append((message, routing_key))


class FakeGate:
    """The database gate, opened and shut by the test; counts reports and waits."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.reports = 0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def report_unavailable(self) -> None:
        self.reports += 1
        self._open.clear()

    def reopen(self) -> None:
        self._open.set()

    async def opened(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._open.wait(), max(timeout_s, 0))
        return self._open.is_set()


class Scripted:
    """An async callable answering from a script: each entry a value, or an exception raised."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[Any, ...]] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args + tuple(sorted(kwargs.items())))
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            result = answer(*args, **kwargs)
            return await result if isinstance(result, Awaitable) else result
        return answer


def run_soon(coro: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Start *coro* as a task (handy for a delivery held while the gate is shut)."""

    async def run() -> None:
        await coro()

    return asyncio.create_task(run())
