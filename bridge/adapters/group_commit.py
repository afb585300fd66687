"""Group commit: the small writes of many concurrent callers go out as one statement.

Profiling the hand-over showed the bridge paying per statement, not per row: a round trip,
a commit and a wake-up of the server process for every child's every write. A
``GroupCommit`` lets each caller keep its own simple "write this, then go on" while the
writes of everyone waiting at that moment share one statement. The school API's hot reads
use it the same way (school_lookups): there a "write" is a read shared by the requests
waiting together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Collects items from concurrent callers and writes them in batches.

    At most *concurrency* batches are being written at a time; what is submitted meanwhile
    forms the next batch. Batches therefore grow with load, and a lone caller waits for
    nothing but its own write: there is no timer. A caller's result is its own item's, and
    it has it only once the batch holding it is written. A caller that is cancelled while
    it waits does not take its item out: the batch is written all the same.

    If a batch of several items fails, each of them is written again on its own with
    *write_one* (when given): one item that breaks the statement must not fail its
    neighbours. Failures in *batch_wide* (say, the database is away) concern the batch as a
    whole and reach every caller at once.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int,
        concurrency: int = 1,
        write_one: Callable[[T], Awaitable[R]] | None = None,
        batch_wide: tuple[type[BaseException], ...] = (),
        on_batch: Callable[[int], None] | None = None,
        name: str = "group commit",
    ) -> None:
        """*write* answers each item with its result or with the exception it alone met."""
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self._name = name
        self._write = write
        self._write_one = write_one
        self._batch_wide = batch_wide
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._on_batch = on_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writing: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Write *item* with whatever else is waiting; its result, or its exception."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start_writing()
        return await future

    def _start_writing(self) -> None:
        while self._pending and len(self._writing) < self._concurrency:
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            task = asyncio.create_task(self._write_batch(batch))
            self._writing.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        self._start_writing()

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        items = [item for item, _ in batch]
        try:
            results: Sequence[R | BaseException] = await self._write(items)
            if len(results) != len(batch):
                raise AssertionError("a batch writer must answer every item")
        except Exception as exc:
            if len(batch) == 1 or self._write_one is None or isinstance(exc, self._batch_wide):
                results = [exc] * len(batch)
            else:
                log.warning(
                    "%s: %d writes failed together (%s); writing each on its own",
                    self._name, len(batch), type(exc).__name__,
                )  # fmt: skip
                results = await self._each_on_its_own(items)
        except BaseException:  # cancelled (shutting down): the callers hear of it too
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its caller was cancelled meanwhile
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _each_on_its_own(self, items: Sequence[T]) -> list[R | BaseException]:
        assert self._write_one is not None
        results: list[R | BaseException] = []
        for item in items:
            try:
                results.append(await self._write_one(item))
            except Exception as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        """Wait for the batches being written (callers still waiting get their answers)."""
        while self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
