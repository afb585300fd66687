"""The record files' keys: the start-up check, what each key wraps, and the long-running
work on them, batch after batch.

``xueji migrate`` seals files stored in the clear before encryption; ``xueji files
rotate-key`` re-wraps every data key under the active key-encryption key, after which the
old key wraps nothing and can leave the configuration. Both resume where they stopped and
can run on two instances at once (the FileKeyBook's batches); a file found damaged on the
way is reported and left for reconciliation to fetch again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.errors import RecordFilesInClear
from bridge.services.ports.file_keys import Batch, FileKeyBook, KeyUsage
from bridge.services.ports.files import DamageReports

Progress = Callable[[int], None]  # files done so far

SEAL_BATCH = 100  # files of tens of KB: a few MB per transaction
REWRAP_BATCH = 1000  # only 40-byte keys change


@dataclass(frozen=True, slots=True)
class Totals:
    """Files handled, and those found damaged."""

    done: int
    damaged: tuple[str, ...]


class FileKeyAdministration:
    """What operators do with the keys of the stored record files."""

    def __init__(self, book: FileKeyBook, damage: DamageReports) -> None:
        self._book = book
        self._damage = damage

    @property
    def active_id(self) -> str:
        """The id of the key that wraps new files (FileKeysInvalid if no key is given)."""
        return self._book.active_id

    async def ready_to_serve(self) -> None:
        """The start-up check of ``xueji run``: the keys open every stored file, and none is
        left in the clear (RecordFilesInClear: ``xueji migrate`` first)."""
        await self._book.check()
        left = await self._book.in_clear()
        if left:
            raise RecordFilesInClear(
                f"{left} record files are still stored in the clear: run `xueji migrate`"
                " (resumable, safe beside a second instance) before `xueji run`"
            )

    async def check(self) -> None:
        """Refuse (FileKeysInvalid, naming what to fix) unless the keys open every file."""
        await self._book.check()

    async def usage(self) -> list[KeyUsage]:
        """Every key the database or the configuration knows, with what it wraps."""
        return await self._book.usage()

    async def counts(self) -> dict[str, int]:
        """Stored files by state: sealed, in_clear, erased, damaged."""
        return await self._book.counts()

    async def in_clear(self) -> int:
        """Files still stored in the clear; needs no key."""
        return await self._book.in_clear()

    async def seal_in_clear(
        self, *, batch: int = SEAL_BATCH, progress: Progress | None = None
    ) -> Totals:
        """Seal every file still stored in the clear (keys checked first), then let the
        database reclaim the space their bytes in the clear took."""
        await self._book.check()
        totals = await self._until_done(lambda: self._book.seal_batch(batch), "migrate", progress)
        if totals.done:
            await self._book.reclaim()
        return totals

    async def rotate(
        self, *, batch: int = REWRAP_BATCH, progress: Progress | None = None
    ) -> Totals:
        """Re-wrap every data key under the active key (keys checked first)."""
        await self._book.check()
        return await self._until_done(lambda: self._book.rewrap_batch(batch), "rotate", progress)

    async def _until_done(
        self, step: Callable[[], Awaitable[Batch]], where: str, progress: Progress | None
    ) -> Totals:
        done, damaged = 0, list[str]()
        while True:
            batch = await step()
            for sha in batch.damaged:
                await self._damage.report_damage(sha, where)
            done += batch.done
            damaged += batch.damaged
            if progress:
                progress(done)
            if not batch.done and not batch.damaged:
                return Totals(done, tuple(damaged))
