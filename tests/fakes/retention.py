"""What the purge reads and erases, in memory (Erasures): children with the moment their
hand-over closed, the record files of a MemoryRecordFiles, resolved parked messages.

It keeps the rules of the PostgreSQL store that the service relies on: a child is due
once closed before the cut-off and still whole, an erased child written to since is due
again, a child whose erasure would change its hand-over is left as it is (skipped), and a
file goes once no child with whole data refers to it (a file no child refers to only once
it was stored before the grace's start).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bridge.domain.retention import ErasureReason
from bridge.services.ports.retention import ChildBatch, ErasedChild, ErasedFile, Holders
from tests.fakes.clock import FakeClock
from tests.fakes.stores import MemoryAudit, MemoryRecordFiles

RETENTION_ACTOR = "system:retention"


@dataclass
class Child:
    """A child as the purge sees it."""

    child_id: int
    student_number: str
    phase: str
    closed_at: dt.datetime | None
    file_sha256: str | None
    updated_at: dt.datetime
    erased_at: dt.datetime | None = None
    erased_reason: str | None = None
    settled: bool = True  # False: a step is still due, erasing would change the hand-over


@dataclass
class Run:
    """One purge as kept."""

    run_id: int
    trigger: str
    actor: str | None
    cutoff: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    counts: tuple[int, int, int] = (0, 0, 0)  # children, files, parked
    error: str | None = None


@dataclass
class Parked:
    """A parked message: resolved or not, its body erased or not."""

    id: int
    resolved_at: dt.datetime | None
    erased: bool = False


@dataclass
class MemoryErasures:
    """Erasures in memory; files are erased in *files*, audit lines land in *audit*."""

    clock: FakeClock = field(default_factory=FakeClock)
    files: MemoryRecordFiles = field(default_factory=MemoryRecordFiles)
    audit: MemoryAudit = field(default_factory=MemoryAudit)
    children: dict[int, Child] = field(default_factory=dict)
    parked: list[Parked] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)  # children shown again to schools
    locked: bool = False  # another instance holds the purge lock

    def __post_init__(self) -> None:
        self.files.clock = self.audit.clock = self.clock  # one time for the whole office

    def child(self, number: str, phase: str, *, closed_days_ago: float | None, file: str | None,
              settled: bool = True) -> Child:  # fmt: skip
        """A child closed *closed_days_ago* (None: under way) referring to *file*."""
        now = self.clock.now()
        closed = None if closed_days_ago is None else now - dt.timedelta(days=closed_days_ago)
        row = Child(len(self.children) + 1, number, phase, closed, file, closed or now,
                    settled=settled)  # fmt: skip
        self.children[row.child_id] = row
        return row

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """The purge lock: False while another instance holds it."""
        if self.locked:
            yield False
            return
        self.locked = True
        try:
            yield True
        finally:
            self.locked = False

    async def last_started(self) -> dt.datetime | None:
        return max((r.started_at for r in self.runs), default=None)

    async def start(self, *, trigger: str, actor: str | None, cutoff: dt.datetime) -> int:
        self.runs.append(Run(len(self.runs) + 1, trigger, actor, cutoff, self.clock.now()))
        return len(self.runs)

    async def finish(
        self, run_id: int, *, children: int, files: int, parked: int, error: str | None = None
    ) -> None:
        run = self.runs[run_id - 1]
        run.finished_at, run.counts, run.error = self.clock.now(), (children, files, parked), error

    # --- children -----------------------------------------------------------------------
    def _due(self, cutoff: dt.datetime | None, skip: Sequence[int]) -> list[Child]:
        if cutoff is None:  # erased, and written to since
            found = [c for c in self.children.values()
                     if c.erased_at is not None and c.updated_at > c.erased_at]  # fmt: skip
        else:
            found = [c for c in self.children.values()
                     if c.closed_at is not None and c.closed_at < cutoff
                     and c.erased_at is None]  # fmt: skip
        return [c for c in found if c.child_id not in skip]

    @staticmethod
    def _erased(c: Child, *, again: bool) -> ErasedChild:
        return ErasedChild(c.child_id, c.student_number, c.phase, c.closed_at,
                           ErasureReason.for_phase(c.phase), c.file_sha256, again)  # fmt: skip

    async def due_children(
        self, cutoff: dt.datetime, limit: int, *, skip: Sequence[int] = ()
    ) -> list[ErasedChild]:
        due = self._due(cutoff, skip)[:limit] + self._due(None, skip)[:limit]
        return [self._erased(c, again=c.erased_at is not None) for c in due]

    async def erase_children(
        self, cutoff: dt.datetime | None, limit: int, *, skip: Sequence[int], run_id: int
    ) -> ChildBatch:
        erased, skipped = [], []
        for c in self._due(cutoff, skip)[:limit]:
            if not c.settled:
                skipped.append(c.child_id)
                continue
            done = self._erased(c, again=cutoff is None)
            c.erased_at = c.updated_at = self.clock.now()
            c.erased_reason = done.reason.value
            erased.append(done)
            await self.audit.record(
                action="retention.erase", outcome="erased", actor=RETENTION_ACTOR,
                student_number=c.student_number,
                detail={"reason": done.reason.value, "again": done.again, "run_id": run_id},
            )  # fmt: skip
        return ChildBatch(erased, skipped)

    async def mark_visible(self, child_ids: Sequence[int]) -> None:
        self.visible += child_ids

    # --- files --------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def files_to_erase(
        self, stored_before: dt.datetime, children_files: Sequence[str]
    ) -> AsyncIterator[AsyncIterator[list[str]]]:
        held = {c.file_sha256 for c in self.children.values() if c.erased_at is None}
        shas = sorted(
            sha for sha, f in self.files.files.items()
            if f.erased_at is None and sha not in held
            and (sha in children_files or (f.stored_at is not None and f.stored_at < stored_before))
        )  # fmt: skip

        async def pages() -> AsyncIterator[list[str]]:
            for i in range(0, len(shas), 2):  # small pages: the service goes page by page
                yield shas[i : i + 2]

        yield pages()

    async def holders(self, shas: Sequence[str]) -> Holders:
        found: Holders = {}
        for c in self.children.values():
            if c.file_sha256 in shas:
                found.setdefault(c.file_sha256, []).append((c.student_number, c.erased_reason))
        return found

    async def erase_files(self, files: Sequence[ErasedFile], *, run_id: int) -> list[ErasedFile]:
        done = []
        for f in files:
            stored = self.files.files.get(f.sha256)
            if stored is None or stored.erased_at is not None:
                continue
            size = len(stored.content)
            self.files.erase(f.sha256, f.reason.value)
            done.append(ErasedFile(f.sha256, f.reason, f.student_numbers, size))
            await self.audit.record(
                action="record_file.erase", outcome="erased", actor=RETENTION_ACTOR,
                student_number=f.student_numbers[0] if len(f.student_numbers) == 1 else None,
                detail={"sha256": f.sha256, "reason": f.reason.value, "run_id": run_id},
            )  # fmt: skip
        return done

    # --- parked messages ----------------------------------------------------------------
    def _parked_due(self, cutoff: dt.datetime) -> list[Parked]:
        return [
            p for p in self.parked
            if p.resolved_at is not None and p.resolved_at < cutoff and not p.erased
        ]  # fmt: skip

    async def parked_due(self, cutoff: dt.datetime) -> int:
        return len(self._parked_due(cutoff))

    async def erase_parked(self, cutoff: dt.datetime, limit: int, *, run_id: int) -> list[int]:
        batch = self._parked_due(cutoff)[:limit]
        for p in batch:
            p.erased = True
        return [p.id for p in batch]
