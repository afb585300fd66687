"""The key-encryption keys of the stored record files, and the batch work on them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """One key-encryption key as the database and the configuration know it."""

    key_id: str
    files: int  # sealed files whose data key it wraps
    sealed_bytes: int
    first_used_at: dt.datetime | None
    configured: bool
    active: bool

    @property
    def retirable(self) -> bool:
        """Nothing uses it and it wraps no new files: it may leave the configuration."""
        return self.files == 0 and not self.active


@dataclass(frozen=True, slots=True)
class Batch:
    """What one batch did: files handled, and those found damaged (sha256s)."""

    done: int
    damaged: tuple[str, ...] = ()


class FileKeyBook(Protocol):
    """Which keys the stored files need, and the resumable batches over them.

    Each batch is committed whole or not at all and takes rows no other batch holds, so
    the work is safe to interrupt, to run again, and to run on two instances at once.
    """

    @property
    def active_id(self) -> str:
        """The id of the key that wraps new data keys (FileKeysInvalid if none is given)."""
        ...

    async def check(self) -> None:
        """Refuse (FileKeysInvalid) unless the configured keys open every stored file."""
        ...

    async def in_clear(self) -> int:
        """Files still stored in the clear (from before encryption); needs no key."""
        ...

    async def counts(self) -> dict[str, int]:
        """Stored files by state: sealed, in_clear, erased, damaged; needs no key."""
        ...

    async def usage(self) -> list[KeyUsage]:
        """Every key known to the database or the configuration, with what it wraps."""
        ...

    async def seal_batch(self, limit: int) -> Batch:
        """Seal up to *limit* files stored in the clear (one not matching its sha256 is
        sealed all the same and marked damaged)."""
        ...

    async def rewrap_batch(self, limit: int) -> Batch:
        """Re-wrap up to *limit* data keys another key wraps under the active key."""
        ...

    async def reclaim(self) -> None:
        """Let the database reclaim the space of the rows the batches rewrote (their old
        versions still hold the files' bytes in the clear until then)."""
        ...
