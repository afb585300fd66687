"""Leases children with due work from the ledger and drives them, bounded in concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge.domain.retry_policy import RetryPolicy
from bridge.failures import log_failure
from bridge.metrics import Metrics
from bridge.services.handoff import HandoffDriver
from bridge.services.ports.ledger import ChildState, WorkQueue

log = logging.getLogger(__name__)

# Unexpected failures of one child's drives before it is set aside as internal_error.
DRIVE_FAILURE_LIMIT = 8


class HandoffWorker:
    """The loop that turns due ledger rows into registry calls.

    Woken at once when an event is recorded; otherwise polls, which also picks up
    retries whose time has come and children whose lease died with another instance.

    A drive that fails unexpectedly is noted in the ledger: retried after the durable
    backoff, set aside as internal_error after *failure_limit* failures. A drive the
    database cut off leaves its lease with us; the worker gives such leases back as soon as
    the database answers again, so those children are driven at once, not when the lease
    lapses.
    """

    def __init__(
        self,
        ledger: WorkQueue,
        driver: HandoffDriver,
        *,
        owner: str,
        concurrency: int,
        poll_interval_s: float,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        failure_limit: int = DRIVE_FAILURE_LIMIT,
        database_errors: tuple[type[BaseException], ...],
    ) -> None:
        """*database_errors*: what the ledger raises while the database is away (a drive
        they cut off is no failure of the child)."""
        self._ledger = ledger
        self._driver = driver
        self._metrics = metrics or Metrics()
        self._retry = retry or RetryPolicy()
        self._failure_limit = failure_limit
        self._database_errors = database_errors
        # Leases of drives the database cut off: ours still, to give back when it answers.
        self._stranded: dict[int, str] = {}
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
                    if self._stranded:
                        await self._take_up_stranded()
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

    async def _take_up_stranded(self) -> None:
        stranded, self._stranded = self._stranded, {}
        try:
            freed = await self._ledger.release_leases(list(stranded.items()))
        except BaseException:
            stranded.update(self._stranded)
            self._stranded = stranded
            raise
        log.info("the database answers: %d children cut off mid-drive are due again", freed)

    async def _wait(self, timeout_s: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that meets a wake-up set at the same moment, and the worker would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        self._wake.clear()

    async def _drive(self, state: ChildState, lease: str) -> None:
        child_id = state.child_id
        try:
            await self._driver.drive(child_id, lease, state)
        except asyncio.CancelledError:
            raise
        except self._database_errors as exc:
            log.warning("driving child %s: the database is away (%s)", child_id,
                        type(exc).__name__)  # fmt: skip
            self._stranded[child_id] = lease
        except Exception as exc:
            log_failure(log, "driving child %s failed", child_id, exc=exc)
            await self._note_failure(child_id, lease, exc)

    async def _note_failure(self, child_id: int, lease: str, exc: Exception) -> None:
        try:
            noted = await self._ledger.note_drive_failure(
                child_id, lease, type(exc).__name__, limit=self._failure_limit, retry=self._retry
            )
        except self._database_errors:
            self._stranded[child_id] = lease
            return
        except Exception as note_exc:  # the lease lapses and the child is leased again
            log_failure(log, "noting the failure of child %s failed", child_id, exc=note_exc)
            return
        if noted is None:
            return  # another instance holds the child now
        outcome = "set_aside" if noted.set_aside else "retry"
        self._metrics.drive_failures.labels(outcome).inc()
        if noted.set_aside:
            self._metrics.set_aside.labels("internal_error").inc()
            log.error("child %s set aside: internal_error after %d failed drives", child_id,
                      noted.failures)  # fmt: skip

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free
