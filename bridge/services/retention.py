"""The purge: erase what has been kept as long as retention allows, on a schedule.

One instance at a time (a PostgreSQL advisory lock), like reconciliation: children whose
hand-over closed more than BRIDGE_FILE_RETENTION_DAYS ago lose their personal data, then
every record file no child with whole data refers to loses its sealed bytes and data key,
then resolved parked messages lose their bodies. Each step is a series of short
transactions with their audit lines, safe to interrupt and to run again; every run is kept
in retention_runs. A dry run says what would go and changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.domain.retention import UNREFERENCED_GRACE, ErasureReason, RetentionPolicy
from bridge.errors import BridgeError, Conflict
from bridge.services.ports.clock import Clock
from bridge.services.ports.retention import ErasedChild, ErasedFile, Erasures, Holders

log = logging.getLogger(__name__)

CHILDREN_PER_BATCH = 200
PARKED_PER_BATCH = 500


class PurgeBusy(Conflict):
    """Another instance is purging right now."""

    code = "purge_running"


@dataclass
class PurgeReport:
    """What a purge erased (or, dry, would erase)."""

    cutoff: dt.datetime
    dry_run: bool
    run_id: int | None = None
    children: list[ErasedChild] = field(default_factory=list)
    files: list[ErasedFile] = field(default_factory=list)
    parked: int = 0


class Retention:
    """Plans and runs purges."""

    def __init__(
        self,
        store: Erasures,
        policy: RetentionPolicy,
        clock: Clock,
        *,
        on_erased: Callable[[str, int], None] | None = None,
        batch: int = CHILDREN_PER_BATCH,
    ) -> None:
        """*on_erased(what, n)* hears of every batch erased (children, files, parked)."""
        self._store = store
        self._policy = policy
        self._clock = clock
        self._on_erased = on_erased or (lambda what, n: None)
        self._batch = batch

    async def plan(self, now: dt.datetime | None = None, *, limit: int = 100_000) -> PurgeReport:
        """What a purge now would erase; nothing is written."""
        now = now or self._clock.now()
        cutoff = self._policy.cutoff(now)
        report = PurgeReport(cutoff, dry_run=True)
        report.children = await self._store.due_children(cutoff, limit)
        shas = sorted({c.file_sha256 for c in report.children if c.file_sha256})
        async with self._store.files_to_erase(now - UNREFERENCED_GRACE, shas) as pages:
            unheld = [sha async for page in pages for sha in page]
        candidates = sorted(set(shas) | set(unheld))
        holders = await self._store.holders(candidates)
        due_numbers = {c.student_number for c in report.children}
        by_sha = _by_sha(report.children)
        for sha in candidates:
            held = holders.get(sha, [])
            # Goes if every child referring to it is erased already or due now.
            if all(reason is not None or n in due_numbers for n, reason in held):
                report.files.append(_file(sha, holders, by_sha))
        report.parked = await self._store.parked_due(cutoff)
        return report

    async def purge(
        self, *, trigger: str, actor: str | None = None, now: dt.datetime | None = None
    ) -> PurgeReport:
        """Erase what is due now; PurgeBusy if another instance is at it."""
        async with self._store.exclusive() as got:
            if not got:
                raise PurgeBusy("a purge is under way on another instance")
            return await self._purge_locked(trigger, actor, now)

    async def purge_if_due(self, interval_s: float) -> PurgeReport | None:
        """A scheduled purge, unless another instance runs or ran one within *interval_s*."""
        async with self._store.exclusive() as got:
            if not got:
                return None
            last = await self._store.last_started()
            if last is not None and (self._clock.now() - last).total_seconds() < interval_s:
                return None
            return await self._purge_locked("schedule", "scheduler", None)

    async def _purge_locked(
        self, trigger: str, actor: str | None, now: dt.datetime | None
    ) -> PurgeReport:
        now = now or self._clock.now()
        cutoff = self._policy.cutoff(now)
        run_id = await self._store.start(trigger=trigger, actor=actor, cutoff=cutoff)
        report = PurgeReport(cutoff, dry_run=False, run_id=run_id)
        try:
            await self._children(report, cutoff, run_id)
            await self._files(report, now, run_id)
            while ids := await self._store.erase_parked(cutoff, PARKED_PER_BATCH, run_id=run_id):
                report.parked += len(ids)
                self._on_erased("parked", len(ids))
        except BaseException as exc:
            error = type(exc).__name__ + (f": {exc}" if isinstance(exc, BridgeError) else "")
            finish = self._store.finish(
                run_id, children=len(report.children), files=len(report.files),
                parked=report.parked, error=error,
            )  # fmt: skip
            await asyncio.shield(finish)
            raise
        await self._store.finish(
            run_id, children=len(report.children), files=len(report.files), parked=report.parked
        )
        if report.children or report.files or report.parked:
            log.info(
                "retention: erased %d children's personal data, %d record files, %d parked"
                " message bodies (run %d)", len(report.children), len(report.files),
                report.parked, run_id,
            )  # fmt: skip
        return report

    async def _children(self, report: PurgeReport, cutoff: dt.datetime, run_id: int) -> None:
        skip: list[int] = []
        # Closed children due now, then erased ones that events written since have reached.
        for due_before in (cutoff, None):
            while True:
                batch = await self._store.erase_children(
                    due_before, self._batch, skip=skip, run_id=run_id
                )
                report.children += batch.erased
                skip += batch.skipped
                if batch.erased:
                    self._on_erased("children", len(batch.erased))
                if not batch.erased and not batch.skipped:
                    break

    async def _files(self, report: PurgeReport, now: dt.datetime, run_id: int) -> None:
        erased_now = sorted({c.file_sha256 for c in report.children if c.file_sha256})
        by_sha = _by_sha(report.children)
        async with self._store.files_to_erase(now - UNREFERENCED_GRACE, erased_now) as pages:
            async for page in pages:
                unknown = [sha for sha in page if sha not in by_sha]
                holders = await self._store.holders(unknown) if unknown else {}
                files = [_file(sha, holders, by_sha) for sha in page]
                done = await self._store.erase_files(files, run_id=run_id)
                report.files += done
                if done:
                    self._on_erased("files", len(done))
        gone = {f.sha256 for f in report.files}
        visible = [c.child_id for c in report.children if c.file_sha256 in gone]
        if visible:
            await self._store.mark_visible(visible)


def _by_sha(children: list[ErasedChild]) -> dict[str, list[ErasedChild]]:
    found: dict[str, list[ErasedChild]] = {}
    for c in children:
        if c.file_sha256:
            found.setdefault(c.file_sha256, []).append(c)
    return found


def _file(sha: str, holders: Holders, by_sha: dict[str, list[ErasedChild]]) -> ErasedFile:
    """The file's erasure with its reason and the children it was the file of."""
    mine = by_sha.get(sha)
    if mine:
        return ErasedFile(sha, mine[0].reason, tuple(c.student_number for c in mine))
    held = holders.get(sha, [])
    reasons = [r for _, r in held if r]
    reason = ErasureReason(reasons[0]) if reasons else ErasureReason.SUPERSEDED
    return ErasedFile(sha, reason, tuple(n for n, _ in held))
