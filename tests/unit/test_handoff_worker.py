"""The worker: a drive that fails gets one decision, and none is retried without a bound.

The ledger is the in-memory one (tests/fakes), its clock standing still: a child leased
again before its lease or its retry ran out was given back by the worker.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bridge.domain.handoff import SetAsideReason
from bridge.domain.retry_policy import RetryPolicy
from bridge.metrics import Metrics
from bridge.services.handoff_worker import HandoffWorker
from tests.fakes.ledger import MemoryLedger, Row
from tests.fakes.messages import Scripted
from tests.support import wire_events as wire
from tests.support.waiting import eventually

DATABASE_AWAY = (ConnectionError, OSError)
LATER = RetryPolicy(60.0, 60.0)  # a retry the standing clock never reaches
AT_ONCE = RetryPolicy(0.0, 0.0)


async def ledger_with(*numbers: str) -> MemoryLedger:
    """A ledger with one child due per number."""
    ledger = MemoryLedger()
    for number in numbers:
        await ledger.record_event(*wire.ev(wire.graduated(number, 1)))
    return ledger


def driven(drive: Scripted) -> list[int]:
    """The child ids *drive* was called with, in order."""
    return [call[0] for call in drive.calls]


async def run_worker(
    ledger: MemoryLedger,
    drive: Scripted,
    metrics: Metrics,
    until: Callable[[], Awaitable[bool]],
    *,
    retry: RetryPolicy = LATER,
) -> None:
    driver: Any = types.SimpleNamespace(drive=drive)
    worker = HandoffWorker(
        ledger, driver, owner="i", concurrency=4, poll_interval_s=0.01, metrics=metrics,
        retry=retry, failure_limit=3, database_errors=DATABASE_AWAY,
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        await eventually(until, bool, timeout_s=5, interval_s=0.01, what="worker step")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def only_row(ledger: MemoryLedger) -> Row:
    [row] = ledger.rows.values()
    return row


async def test_an_unexpected_failure_is_noted_once_for_a_durable_retry() -> None:
    ledger = await ledger_with(wire.G)
    row = only_row(ledger)
    drive = Scripted(TypeError(wire.G))
    metrics = Metrics()

    async def noted() -> bool:
        return row.drive_failures == 1

    await run_worker(ledger, drive, metrics, noted)
    await asyncio.sleep(0.05)  # the worker polled meanwhile: nothing due before the retry
    assert driven(drive) == [row.child_id]
    assert row.last_error == "internal_error:TypeError" and row.lease is None
    assert row.due_at is not None and row.due_at > ledger.clock.now()
    assert row.handoff.set_aside is None
    assert metrics.drive_failures.labels("retry")._value.get() == 1


async def test_the_limitth_failure_sets_the_child_aside_as_internal_error() -> None:
    ledger = await ledger_with(wire.G)
    row = only_row(ledger)
    drive = Scripted(KeyError("x"))
    metrics = Metrics()

    async def set_aside() -> bool:
        return row.handoff.set_aside is not None

    await run_worker(ledger, drive, metrics, set_aside, retry=AT_ONCE)
    await asyncio.sleep(0.05)
    assert driven(drive) == [row.child_id] * 3  # and no fourth: set aside means done
    assert row.handoff.set_aside is not None
    assert row.handoff.set_aside.reason is SetAsideReason.INTERNAL_ERROR
    assert row.handoff.set_aside.detail == {"error": "KeyError"}
    assert row.due_at is None and row.lease is None
    assert metrics.set_aside.labels("internal_error")._value.get() == 1
    assert metrics.drive_failures.labels("set_aside")._value.get() == 1
    assert metrics.drive_failures.labels("retry")._value.get() == 2


async def test_drives_the_database_cut_off_are_given_back_as_soon_as_it_answers() -> None:
    ledger = await ledger_with(wire.G, wire.L)
    drive = Scripted(ConnectionResetError())
    metrics = Metrics()

    async def driven_again() -> bool:
        return len(drive.calls) >= 4

    await run_worker(ledger, drive, metrics, driven_again)
    # Leased again before their leases ran out (the clock stands still): given back.
    first, second = driven(drive)[:2], driven(drive)[2:4]
    assert sorted(first) == sorted(second) == sorted(ledger.rows)
    # The database away is no failure of the child.
    assert all(r.drive_failures == 0 and r.last_error is None for r in ledger.rows.values())
    assert metrics.drive_failures.labels("retry")._value.get() == 0


async def test_leases_are_given_back_once_even_if_the_first_attempt_meets_the_database_away() -> (
    None
):
    ledger = await ledger_with(wire.G)
    row = only_row(ledger)
    real_release = ledger.release_leases
    releases: list[list[tuple[int, str]]] = []

    async def release(leases: Any) -> int:
        releases.append(sorted(leases))
        if len(releases) == 1:
            raise OSError()
        return await real_release(leases)

    ledger.release_leases = release  # type: ignore[method-assign]
    drive = Scripted(OSError(), None)

    async def driven_again() -> bool:
        return len(drive.calls) == 2

    await run_worker(ledger, drive, Metrics(), driven_again)
    [(child_id, _)] = releases[0]
    assert child_id == row.child_id
    assert releases[0] == releases[1]  # the same lease, offered again
    assert len(releases) == 2 and driven(drive) == [row.child_id] * 2


async def test_a_failure_while_noting_a_failure_lets_the_lease_lapse(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = await ledger_with(wire.G)
    row = only_row(ledger)
    noting = Scripted(RuntimeError(wire.G))
    ledger.note_drive_failure = noting  # type: ignore[method-assign]

    async def noted() -> bool:
        return bool(noting.calls)

    await run_worker(ledger, Scripted(ValueError("王小明")), Metrics(), noted)
    assert row.lease is not None  # still ours: it lapses, and the child is leased again
    assert wire.G not in caplog.text and "王小明" not in caplog.text
    assert "ValueError" in caplog.text
