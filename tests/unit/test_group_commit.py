"""GroupCommit: concurrent callers share batches, and each gets its own item's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.adapters.group_commit import GroupCommit


class Recorder:
    """A batch writer that remembers its batches and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_batch: Exception | None = None
        self.alone: list[int] = []

    async def write(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_batch is not None:
            raise self.fail_batch
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async def write_one(self, item: int) -> int:
        self.alone.append(item)
        if item < 0:
            raise ValueError(f"negative {item}")
        return item * 10


async def test_callers_waiting_together_share_one_batch() -> None:
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=100)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)  # the first batch [0] is being written and held open
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 0
    assert [await t for t in rest] == [20, 40, 60]
    assert rec.batches == [[0], [2, 4, 6]]


async def test_batches_never_exceed_their_limit() -> None:
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=2)
    tasks = [asyncio.create_task(commit.submit(i * 2)) for i in range(5)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await asyncio.gather(*tasks) == [0, 20, 40, 60, 80]
    assert all(len(b) <= 2 for b in rec.batches)
    assert sorted(i for b in rec.batches for i in b) == [0, 2, 4, 6, 8]


async def test_each_caller_gets_its_own_items_exception() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10)
    good, bad = await asyncio.gather(commit.submit(2), commit.submit(3), return_exceptions=True)
    assert good == 20
    assert isinstance(bad, ValueError) and str(bad) == "odd 3"


async def test_a_batch_wide_failure_reaches_every_caller_and_nothing_goes_alone() -> None:
    rec = Recorder()
    rec.fail_batch = ConnectionError("database away")
    commit: GroupCommit[int, int] = GroupCommit(
        rec.write, write_one=rec.write_one, batch_wide=(ConnectionError,), max_batch=10
    )
    results = await asyncio.gather(*(commit.submit(i) for i in (0, 2)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert rec.alone == []
    rec.fail_batch = None
    assert await commit.submit(4) == 40  # the next batch goes out as usual


async def test_a_batch_that_fails_is_written_again_item_by_item() -> None:
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(
        rec.write, write_one=rec.write_one, batch_wide=(ConnectionError,), max_batch=10
    )
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)  # [0] is being written; the next three wait together
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, -4, 6)]
    await asyncio.sleep(0)
    rec.fail_batch = RuntimeError("one row breaks the statement")
    rec.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)  # alone already: nothing to retry
    assert results[1] == 20 and results[3] == 60
    assert isinstance(results[2], ValueError) and str(results[2]) == "negative -4"
    assert rec.batches == [[0], [2, -4, 6]] and rec.alone == [2, -4, 6]


async def test_a_cancelled_caller_does_not_take_its_item_out_of_the_batch() -> None:
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10)
    waiting = asyncio.create_task(commit.submit(8))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    rec.gate.set()
    await commit.aclose()
    assert rec.batches == [[8]]


async def test_aclose_waits_for_the_batch_being_written() -> None:
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10)
    caller = asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0)
    closing = asyncio.create_task(commit.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done()
    rec.gate.set()
    await closing
    assert await caller == 20


async def test_batch_sizes_are_reported() -> None:
    sizes: list[int] = []
    rec = Recorder()
    rec.gate.clear()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10, on_batch=sizes.append)
    tasks = [asyncio.create_task(commit.submit(i * 2)) for i in range(4)]
    await asyncio.sleep(0)
    rec.gate.set()
    await asyncio.gather(*tasks)
    assert sizes == [len(b) for b in rec.batches] and sum(sizes) == 4
