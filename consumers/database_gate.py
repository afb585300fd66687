"""While the database is away, the consumers take no messages, and none is handed back.

A message handed back to a quorum queue counts towards its delivery limit (every return
does before RabbitMQ 4.3). So when a consumer finds the database away, the gate closes:
every consumer cancels its subscription (no new deliveries), the messages already
delivered wait unacked for the gate to open again, and a probe asks the database every
PROBE_INTERVAL_S. When it answers, the gate opens, the waiting messages go on and the
consumers subscribe again: seconds after the database returns, with no delivery spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ConsumerTag

from bridge.services.ports.health import Probe

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 2.0


class Switchable(Protocol):
    """Something that stops taking work while the database is away."""

    async def pause(self) -> None:
        """Stop taking new work."""

    async def resume(self) -> None:
        """Take work again."""


class Gate(Protocol):
    """The gate as a consumer holding a delivery uses it."""

    async def opened(self, timeout_s: float) -> bool:
        """Wait up to *timeout_s* for the gate to be open; whether it is."""

    def report_unavailable(self) -> None:
        """The database was found away."""


class DatabaseGate:
    """Open while the database answers, as far as the consumers saw; probes it while shut."""

    def __init__(
        self,
        probe: Probe,
        *,
        probe_interval_s: float = PROBE_INTERVAL_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        """*probe* answers when the database does; *on_change(open)* hears of changes."""
        self._probe = probe
        self._interval_s = probe_interval_s
        self._timeout_s = probe_timeout_s
        self._on_change = on_change or (lambda is_open: None)
        self._open = asyncio.Event()
        self._open.set()
        self._switches: list[Switchable] = []
        self._probing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        """True unless the database was found away and has not answered since."""
        return self._open.is_set()

    def attach(self, switch: Switchable) -> None:
        """Pause *switch* while the gate is shut."""
        self._switches.append(switch)

    def report_unavailable(self) -> None:
        """A consumer found the database away: shut, pause everyone, probe until it answers."""
        if not self._open.is_set():
            return
        self._open.clear()
        log.warning("the database is away: consumers pause until it answers")
        self._on_change(False)
        for switch in self._switches:
            self._spawn(switch.pause())
        self._probing = asyncio.create_task(self._probe_until_back(), name="database-probe")

    async def opened(self, timeout_s: float) -> bool:
        """Wait up to *timeout_s* for the gate to be open; whether it is."""
        if self._open.is_set():
            return True
        # asyncio.timeout: wait_for (Python 3.11) may swallow a cancellation at reopening.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await self._open.wait()
        return self._open.is_set()

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                if await asyncio.wait_for(self._probe.answers(), self._timeout_s):
                    break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("database probe: %s", type(exc).__name__)
        log.warning("the database answers again: consumers resume")
        self._open.set()
        self._on_change(True)
        for switch in self._switches:
            self._spawn(switch.resume())

    def _spawn(self, step: Awaitable[None]) -> None:
        async def run() -> None:
            await step

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop probing (on shutdown)."""
        tasks = [t for t in (self._probing, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ConsumerSwitch:
    """One queue's subscription, which the gate can cancel and renew."""

    def __init__(
        self,
        queue: AbstractQueue,
        callback: Callable[[AbstractIncomingMessage], Awaitable[Any]],
        *,
        retry_s: float = 1.0,
    ) -> None:
        self._queue = queue
        self._callback = callback
        self._retry_s = retry_s
        self._tag: ConsumerTag | None = None
        self._wanted = False
        self._lock = asyncio.Lock()

    @property
    def consuming(self) -> bool:
        """Subscribed now."""
        return self._tag is not None

    async def start(self) -> None:
        """Subscribe (raises if the broker refuses: the bridge cannot start without it)."""
        self._wanted = True
        async with self._lock:
            self._tag = await self._queue.consume(self._callback)

    async def pause(self) -> None:
        """Cancel the subscription: delivered messages stay with us, unacked."""
        self._wanted = False
        async with self._lock:
            if self._tag is None:
                return
            tag, self._tag = self._tag, None
            try:
                await self._queue.cancel(tag)
            except Exception as exc:  # the channel is gone: so is the subscription
                log.warning("cancelling a consumer: %s", type(exc).__name__)

    async def resume(self) -> None:
        """Subscribe again; while the broker is away, keep trying until it is back."""
        self._wanted = True
        while self._wanted:
            async with self._lock:
                if self._tag is not None or not self._wanted:
                    return
                try:
                    self._tag = await self._queue.consume(self._callback)
                    return
                except Exception as exc:
                    log.warning("resuming a consumer: %s", type(exc).__name__)
            await asyncio.sleep(self._retry_s)
