"""The worker: a drive that fails gets one decision, and none is retried without a bound."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from bridge.adapters.postgres.ledger import DriveFailure
from bridge.domain.retry_policy import RetryPolicy
from bridge.metrics import Metrics
from bridge.services.handoff_worker import HandoffWorker
from tests.fakes.messages import Scripted
from tests.support.waiting import eventually


class Ledger:
    """The ledger as the worker uses it: hands out *leased* once, records what is asked."""

    def __init__(self, leased: list[tuple[Any, str]], *, note: Any = None) -> None:
        self._leased = list(leased)
        self.claims = 0
        self.released: list[list[tuple[int, str]]] = []
        self.note = Scripted(note)

    async def release_instance_leases(self, owner: str) -> int:
        return 0

    async def claim_due_loaded(self, owner: str, limit: int) -> list[tuple[Any, str]]:
        self.claims += 1
        out, self._leased = self._leased, []
        return out

    async def release_leases(self, leases: list[tuple[int, str]]) -> int:
        self.released.append(sorted(leases))
        return len(leases)

    async def note_drive_failure(self, *args: Any, **kwargs: Any) -> Any:
        return await self.note(*args, **kwargs)


def child(child_id: int) -> Any:
    return types.SimpleNamespace(child_id=child_id)


async def run_worker(ledger: Ledger, drive: Scripted, metrics: Metrics, until: Any) -> None:
    driver: Any = types.SimpleNamespace(drive=drive)
    worker = HandoffWorker(
        ledger, driver, owner="i", concurrency=4, poll_interval_s=0.01,  # type: ignore[arg-type]
        metrics=metrics, retry=RetryPolicy(0.01, 0.1), failure_limit=3,
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        await eventually(until, bool, timeout_s=5, interval_s=0.01, what="worker step")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unexpected_failure_is_noted_once_for_a_durable_retry() -> None:
    ledger = Ledger([(child(7), "i/1")], note=DriveFailure(1, False, None))
    metrics = Metrics()

    async def noted() -> bool:
        return bool(ledger.note.calls)

    await run_worker(ledger, Scripted(TypeError("G110108202001097076")), metrics, noted)
    await asyncio.sleep(0.05)
    [call] = ledger.note.calls
    assert call[:3] == (7, "i/1", "TypeError")
    assert ("limit", 3) in call
    assert metrics.drive_failures.labels("retry")._value.get() == 1
    assert ledger.released == []


async def test_the_limitth_failure_sets_the_child_aside_as_internal_error() -> None:
    ledger = Ledger([(child(7), "i/1")], note=DriveFailure(3, True, None))
    metrics = Metrics()

    async def noted() -> bool:
        return bool(ledger.note.calls)

    await run_worker(ledger, Scripted(KeyError("x")), metrics, noted)
    assert metrics.set_aside.labels("internal_error")._value.get() == 1
    assert metrics.drive_failures.labels("set_aside")._value.get() == 1


async def test_drives_the_database_cut_off_are_given_back_as_soon_as_it_answers() -> None:
    ledger = Ledger([(child(7), "i/1"), (child(8), "i/2")])
    metrics = Metrics()

    async def given_back() -> bool:
        return sum(len(batch) for batch in ledger.released) == 2

    await run_worker(ledger, Scripted(ConnectionResetError()), metrics, given_back)
    assert sorted(pair for batch in ledger.released for pair in batch) == [(7, "i/1"), (8, "i/2")]
    assert ledger.note.calls == []  # the database away is no failure of the child


async def test_leases_are_given_back_once_even_if_the_first_attempt_meets_the_database_away() -> (
    None
):
    ledger = Ledger([(child(9), "i/9")])
    metrics = Metrics()
    calls = 0
    real_release = ledger.release_leases

    async def release(leases: list[tuple[int, str]]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError()
        return await real_release(leases)

    ledger.release_leases = release  # type: ignore[method-assign]

    async def given_back() -> bool:
        return bool(ledger.released)

    await run_worker(ledger, Scripted(OSError()), metrics, given_back)
    assert ledger.released == [[(9, "i/9")]]


async def test_a_failure_while_noting_a_failure_lets_the_lease_lapse(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger([(child(7), "i/1")], note=RuntimeError("G110108202001097076"))

    async def noted() -> bool:
        return bool(ledger.note.calls)

    await run_worker(ledger, Scripted(ValueError("王小明")), Metrics(), noted)
    assert "G110108202001097076" not in caplog.text and "王小明" not in caplog.text
    assert "ValueError" in caplog.text
