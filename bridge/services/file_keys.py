"""Long-running work on the keys of stored record files, batch after batch.

``xueji migrate`` seals files stored in the clear before encryption; ``xueji files
rotate-key`` re-wraps every data key under the active key-encryption key, after which the
old key wraps nothing and can leave the configuration. Both resume where they stopped and
can run on two instances at once (FileKeyStore's batches); a file found damaged on the way
is reported and left for reconciliation to fetch again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.adapters.postgres.file_keys import Batch, FileKeyStore
from bridge.adapters.postgres.record_files import RecordFileStore

Progress = Callable[[int], None]  # files done so far

SEAL_BATCH = 100  # files of tens of KB: a few MB per transaction
REWRAP_BATCH = 1000  # only 40-byte keys change


@dataclass(frozen=True, slots=True)
class Totals:
    """Files handled, and those found damaged."""

    done: int
    damaged: tuple[str, ...]


async def _until_done(
    step: Callable[[], Awaitable[Batch]],
    files: RecordFileStore,
    where: str,
    progress: Progress | None,
) -> Totals:
    done, damaged = 0, list[str]()
    while True:
        batch = await step()
        for sha in batch.damaged:
            await files.report_damage(sha, where)
        done += batch.done
        damaged += batch.damaged
        if progress:
            progress(done)
        if not batch.done and not batch.damaged:
            return Totals(done, tuple(damaged))


async def seal_files_in_clear(
    keys: FileKeyStore, files: RecordFileStore, *, batch: int = SEAL_BATCH,
    progress: Progress | None = None,
) -> Totals:  # fmt: skip
    """Seal every file still stored in the clear (keys checked first)."""
    await keys.check()
    return await _until_done(lambda: keys.seal_batch(batch), files, "migrate", progress)


async def rotate_keys(
    keys: FileKeyStore, files: RecordFileStore, *, batch: int = REWRAP_BATCH,
    progress: Progress | None = None,
) -> Totals:  # fmt: skip
    """Re-wrap every data key under the active key (keys checked first)."""
    await keys.check()
    return await _until_done(lambda: keys.rewrap_batch(batch), files, "rotate", progress)
