"""Leases children with due work from the ledger and drives them, bounded in concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge.services.handoff import HandoffDriver
from bridge.services.ports.ledger import ChildState, WorkQueue

log = logging.getLogger(__name__)


class HandoffWorker:
    """The loop that turns due ledger rows into registry calls.

    Woken at once when an event is recorded; otherwise polls, which also picks up
    retries whose time has come and children whose lease died with another instance.
    """

    def __init__(
        self,
        ledger: WorkQueue,
        driver: HandoffDriver,
        *,
        owner: str,
        concurrency: int,
        poll_interval_s: float,
    ) -> None:
        self._ledger = ledger
        self._driver = driver
        self._owner = owner
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        # Lease in batches while busy: one statement leases many children, rather than one
        # statement for each drive that finishes.
        self._claim_at = max(1, concurrency // 4)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.running = False

    def wake(self) -> None:
        """New work may be due: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Lease and drive until cancelled."""
        self.running = True
        try:
            await self._take_back_leases()
            while True:
                free = self._concurrency - len(self._tasks)
                if free < self._claim_at and self._tasks:
                    await self._wait(self._poll_interval_s)  # a finishing drive wakes us
                    continue
                try:
                    claimed = await self._ledger.claim_due_loaded(self._owner, free)
                except Exception as exc:  # database away: keep trying, never die
                    log.warning("cannot lease work: %s", type(exc).__name__)
                    await asyncio.sleep(self._poll_interval_s)
                    continue
                for state, lease in claimed:
                    task = asyncio.create_task(self._drive(state, lease))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
                if len(claimed) < free:
                    await self._wait(self._poll_interval_s)  # nothing more due right now
        finally:
            self.running = False
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _take_back_leases(self) -> None:
        # Leases of this instance's previous run died with it; waiting for them to lapse
        # would only delay those children.
        try:
            freed = await self._ledger.release_instance_leases(self._owner)
        except Exception as exc:
            log.warning("cannot take back old leases: %s", type(exc).__name__)
            return
        if freed:
            log.info("took back %d leases of this instance's previous run", freed)

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()

    async def _drive(self, state: ChildState, lease: str) -> None:
        child_id = state.child_id
        try:
            await self._driver.drive(child_id, lease, state)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease lapses and the child is leased again later: nothing is lost.
            log.exception("driving child %s failed", child_id)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free
