"""What the purge reads and erases: children closed long enough, the files no child with
whole data refers to, resolved parked messages; and the runs that did it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bridge.domain.retention import ErasureReason


@dataclass(frozen=True, slots=True)
class ErasedChild:
    """A child whose personal data was (or, in a dry run, would be) erased."""

    child_id: int
    student_number: str
    phase: str
    closed_at: dt.datetime | None
    reason: ErasureReason
    file_sha256: str | None
    again: bool = False  # erased before; data that came later erased now


@dataclass(frozen=True, slots=True)
class ErasedFile:
    """A record file whose sealed bytes and data key were (or would be) erased."""

    sha256: str
    reason: ErasureReason
    student_numbers: tuple[str, ...]
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ChildBatch:
    """One batch: the children erased, and those left as they were (not settled)."""

    erased: list[ErasedChild]
    skipped: list[int]


# sha256 -> (student number, erasure reason or None while its data is whole) of the
# children that refer to a file.
Holders = dict[str, list[tuple[str, str | None]]]


class Erasures(Protocol):
    """The purge's reads and writes; every erasure is committed with its audit lines."""

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        """Hold the purge lock while inside; yields False if another instance holds it."""
        ...

    async def last_started(self) -> dt.datetime | None:
        """When the latest purge started (any instance)."""
        ...

    async def start(self, *, trigger: str, actor: str | None, cutoff: dt.datetime) -> int:
        """Open a run; returns its id."""
        ...

    async def finish(
        self, run_id: int, *, children: int, files: int, parked: int, error: str | None = None
    ) -> None:
        """Close a run with what it erased."""
        ...

    async def due_children(
        self, cutoff: dt.datetime, limit: int, *, skip: Sequence[int] = ()
    ) -> list[ErasedChild]:
        """Children a purge would erase now (nothing is locked or written)."""
        ...

    async def erase_children(
        self, cutoff: dt.datetime | None, limit: int, *, skip: Sequence[int], run_id: int
    ) -> ChildBatch:
        """Erase one batch of children closed before *cutoff*, or (*cutoff* None) of erased
        children written to since; *skip* lists children this run left as they were."""
        ...

    async def mark_visible(self, child_ids: Sequence[int]) -> None:
        """Their files changed for the schools: the next `since` poll shows them again."""
        ...

    def files_to_erase(
        self, stored_before: dt.datetime, children_files: Sequence[str]
    ) -> AbstractAsyncContextManager[AsyncIterator[list[str]]]:
        """Pages of the sha256s of files no child with whole data refers to: stored before
        *stored_before*, or among *children_files* (those of children just erased)."""
        ...

    async def holders(self, shas: Sequence[str]) -> Holders:
        """The children that refer to each of *shas*."""
        ...

    async def erase_files(self, files: Sequence[ErasedFile], *, run_id: int) -> list[ErasedFile]:
        """Erase the sealed bytes and data keys of *files* (those not erased already)."""
        ...

    async def parked_due(self, cutoff: dt.datetime) -> int:
        """Resolved parked messages whose bodies a purge would replace by a digest."""
        ...

    async def erase_parked(self, cutoff: dt.datetime, limit: int, *, run_id: int) -> list[int]:
        """Replace the bodies of up to *limit* messages resolved before *cutoff*."""
        ...
