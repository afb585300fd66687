"""One three-way reconciliation run: roster (A2), ledger, registry (B8), merge-joined.

All three sides are streamed in student-number order and merged one number at a time,
so memory stays bounded by a few pages whatever the cohort's size; findings go to
PostgreSQL in batches. A side that is not in order is staged in a temporary table and
read back sorted. Safe repairs are made at the end and recorded; the rest is the
operators' worklist.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import orjson

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.calendar import CalendarStore
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.reconciliation_store import ReconciliationStore, RunInfo
from bridge.adapters.preschool_registry import PreschoolRegistry
from bridge.adapters.primary_registry import PrimaryRegistry
from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff
from bridge.domain.reconciliation import (
    AUTO_REPAIRED,
    Category,
    LedgerEntry,
    Policy,
    RegistryEntry,
    RosterEntry,
    classify,
)
from bridge.errors import BridgeError
from schemas.registry import RegistryStudent, RosterItem

log = logging.getLogger(__name__)

CHINA = dt.timezone(dt.timedelta(hours=8))  # no daylight saving: a fixed offset is exact
MAX_PAGE = 5000  # registry-api.md: limit at most 5000
REPAIR_ACTOR = "reconciliation"

T = TypeVar("T")
Progress = Callable[[str, int], None]


class ReconciliationBusy(BridgeError):
    """Another run of this cohort is under way (on this or another instance)."""

    code = "reconciliation_running"


class OutOfOrder(BridgeError):
    """A registry listed a number before the one it listed last."""

    code = "out_of_order"


class _Page(Protocol[T]):  # type: ignore[misc]
    @property
    def items(self) -> Sequence[T]: ...
    @property
    def next_cursor(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """The knobs of reconciliation (from Settings)."""

    page_size: int = MAX_PAGE
    max_repairs: int = 5000
    keep_runs: int = 20
    overdue_days: int = 10
    file_not_pulled_days: int = 5
    not_arrived_days: int = 5
    term_start: str = "09-01"  # MM-DD of the entry year


@dataclass(frozen=True, slots=True)
class ReconcilePorts:
    """What a run needs."""

    pool: asyncpg.Pool
    store: ReconciliationStore
    ledger: Ledger
    calendars: CalendarStore
    preschool: PreschoolRegistry
    registry: PrimaryRegistry
    audit: AuditLog
    wake: Callable[[], None]


@dataclass
class _Repair:
    child_id: int
    student_number: str
    category: Category


class _Counter(Generic[T]):
    """Counts what passes and checks it comes in strictly increasing student-number order."""

    def __init__(self, side: str, source: AsyncIterator[T], progress: Progress | None) -> None:
        self.side, self.seen = side, 0
        self._source, self._progress, self._last = source, progress, ""

    async def __aiter__(self) -> AsyncIterator[T]:
        async for item in self._source:
            number: str = item.student_number  # type: ignore[attr-defined]
            if number <= self._last:
                raise OutOfOrder(f"{self.side} is not in student-number order")
            self._last = number
            self.seen += 1
            if self._progress and self.seen % MAX_PAGE == 0:
                self._progress(self.side, self.seen)
            yield item


async def _paged(
    fetch: Callable[[int, str | None, int], Awaitable[_Page[T]]], entry_year: int, limit: int
) -> AsyncIterator[T]:
    """Every item of a paged listing, the next page fetched while this one is used."""
    pending: asyncio.Task[_Page[T]] | None = asyncio.ensure_future(fetch(entry_year, None, limit))
    try:
        while pending is not None:
            page = await pending
            pending = (
                asyncio.ensure_future(fetch(entry_year, page.next_cursor, limit))
                if page.next_cursor
                else None
            )
            for item in page.items:
                yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def _staged(
    pool: asyncpg.Pool, items: AsyncIterator[Any], model: type[RosterItem] | type[RegistryStudent]
) -> AsyncIterator[Any]:
    """*items* sorted by student number, via a temporary table (for an unsorted side)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE recon_stage (student_number text, body bytea) ON COMMIT DROP"
        )
        batch: list[tuple[str, bytes]] = []
        async for item in items:
            batch.append((item.student_number, orjson.dumps(item.model_dump())))
            if len(batch) >= MAX_PAGE:
                await conn.copy_records_to_table("recon_stage", records=batch)
                batch = []
        if batch:
            await conn.copy_records_to_table("recon_stage", records=batch)
        async for r in conn.cursor(
            'SELECT body FROM recon_stage ORDER BY student_number COLLATE "C"', prefetch=MAX_PAGE
        ):
            yield model.model_validate(orjson.loads(r["body"]))


async def _merge(
    roster: AsyncIterator[RosterItem],
    ledger: AsyncIterator[LedgerEntry],
    registry: AsyncIterator[RegistryStudent],
) -> AsyncIterator[tuple[RosterItem | None, LedgerEntry | None, RegistryStudent | None]]:
    """Merge-join three sorted streams by student number."""
    r = await anext(roster, None)
    led = await anext(ledger, None)
    g = await anext(registry, None)
    while r is not None or led is not None or g is not None:
        key = min(x.student_number for x in (r, led, g) if x is not None)
        take_r = r if r is not None and r.student_number == key else None
        take_l = led if led is not None and led.student_number == key else None
        take_g = g if g is not None and g.student_number == key else None
        yield take_r, take_l, take_g
        if take_r is not None:
            r = await anext(roster, None)
        if take_l is not None:
            led = await anext(ledger, None)
        if take_g is not None:
            g = await anext(registry, None)


def _roster_entry(item: RosterItem) -> RosterEntry:
    return RosterEntry(
        item.student_number, item.id_number, item.state, item.childseq, item.kindergarten_code
    )


def _registry_entry(item: RegistryStudent) -> RegistryEntry:
    return RegistryEntry(
        item.student_number, item.id_number, item.status, item.school_code,
        item.record_file_sha256,
    )  # fmt: skip


def today_in_china() -> dt.date:
    """The calendar day in China now: deadlines are counted in Chinese working days."""
    return dt.datetime.now(CHINA).date()


class Reconciler:
    """Runs reconciliations and makes their safe repairs."""

    def __init__(self, ports: ReconcilePorts, config: ReconcileConfig) -> None:
        self._p = ports
        self._c = config

    async def run(
        self,
        entry_year: int,
        *,
        trigger: str,
        actor: str | None = None,
        today: dt.date | None = None,
        progress: Progress | None = None,
    ) -> RunInfo:
        """One run now; raises ReconciliationBusy if one is under way already."""
        async with self._p.store.exclusive(entry_year) as got:
            if not got:
                raise ReconciliationBusy(f"a reconciliation of {entry_year} is under way")
            return await self._run_locked(entry_year, trigger, actor, today, progress)

    async def run_if_due(self, entry_year: int, interval_s: float) -> RunInfo | None:
        """A scheduled run, unless another instance runs or ran one within *interval_s*."""
        async with self._p.store.exclusive(entry_year) as got:
            if not got:
                return None
            last = await self._p.store.last_started(entry_year)
            if last is not None and (dt.datetime.now(dt.UTC) - last).total_seconds() < interval_s:
                return None
            return await self._run_locked(entry_year, "schedule", "scheduler", None, None)

    async def _run_locked(
        self,
        entry_year: int,
        trigger: str,
        actor: str | None,
        today: dt.date | None,
        progress: Progress | None,
    ) -> RunInfo:
        day = today or today_in_china()
        run = await self._p.store.start(entry_year, trigger=trigger, actor=actor, as_of=day)
        staged: set[str] = set()
        while True:
            try:
                return await self._attempt(run, day, staged, progress)
            except OutOfOrder as exc:
                side = str(exc).split(" ", 1)[0]
                if side in staged:
                    await self._p.store.fail(run, str(exc))
                    raise
                log.warning("%s; staging it and starting over", exc)
                staged.add(side)
                await self._p.store.fail(run, "restarted: " + str(exc))
                run = await self._p.store.start(entry_year, trigger=trigger, actor=actor, as_of=day)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._p.store.fail(run, type(exc).__name__))
                raise

    async def _attempt(
        self, run: RunInfo, day: dt.date, staged: set[str], progress: Progress | None
    ) -> RunInfo:
        entry_year = run.entry_year
        month, dom = (int(x) for x in self._c.term_start.split("-"))
        policy = Policy(
            today=day,
            calendar=await self._p.calendars.calendar(),
            term_start=dt.date(entry_year, month, dom),
            overdue_days=self._c.overdue_days,
            file_not_pulled_days=self._c.file_not_pulled_days,
            not_arrived_days=self._c.not_arrived_days,
        )
        size = min(self._c.page_size, MAX_PAGE)
        roster_src: AsyncIterator[Any] = _paged(self._p.preschool.roster_page, entry_year, size)
        registry_src: AsyncIterator[Any] = _paged(self._p.registry.list_cohort, entry_year, size)
        if "roster" in staged:
            roster_src = _staged(self._p.pool, roster_src, RosterItem)
        if "registry" in staged:
            registry_src = _staged(self._p.pool, registry_src, RegistryStudent)
        roster = _Counter("roster", roster_src, progress)
        registry = _Counter("registry", registry_src, progress)
        repairs: list[_Repair] = []
        provisional = False
        async with (
            self._p.store.ledger_stream(entry_year) as ledger_rows,
            self._p.store.writer(run) as writer,
        ):
            ledger = _Counter("ledger", ledger_rows, progress)
            async for r, led, g in _merge(aiter(roster), aiter(ledger), aiter(registry)):
                finding = classify(
                    _roster_entry(r) if r else None,
                    led,
                    _registry_entry(g) if g else None,
                    policy,
                )
                provisional = provisional or finding.provisional
                identities = {
                    (x.id_number, x.student_number)
                    for x in (r, led, g)
                    if x is not None and x.id_number
                }
                await writer.add(finding, identities)
                if led is not None and len(repairs) < self._c.max_repairs:
                    for category in finding.categories & AUTO_REPAIRED:
                        repairs.append(_Repair(led.child_id, led.student_number, category))
                        break  # one repair per child: re-submitting re-uploads as well
        done = await self._repair(run, repairs)
        sides = {"roster": roster.seen, "ledger": ledger.seen, "registry": registry.seen}
        finished = await self._p.store.finish(
            run, sides=sides, provisional=provisional, repairs=done, keep_runs=self._c.keep_runs
        )
        log.info(
            "reconciliation %s of %s finished: %s", run.run_id, entry_year,
            {k: v for k, v in finished.counts.items() if v},
        )  # fmt: skip
        return finished

    async def _repair(self, run: RunInfo, repairs: list[_Repair]) -> int:
        """Make the safe repairs: tell each hand-over what the registry lacks; it does the rest."""
        scheduled = 0
        for repair in sorted(repairs, key=lambda x: x.category != Category.MISSING_AT_REGISTRY):
            number = repair.student_number
            change = _repair_change(repair.category, number)
            phase = await self._p.ledger.amend(repair.child_id, change)
            outcome = "scheduled" if phase is not None else "skipped"
            scheduled += phase is not None
            await self._p.store.record_repair(
                run, repair.child_id, number, repair.category.value, outcome
            )
            await self._p.audit.record(
                action=f"reconcile.repair.{repair.category.value}", outcome=outcome,
                actor=REPAIR_ACTOR, student_number=number, detail={"run_id": run.run_id},
            )  # fmt: skip
        if scheduled:
            self._p.wake()
        return scheduled


def _repair_change(
    category: Category, number: str
) -> Callable[[ChildRecord, Handoff], Handoff | None]:
    """The repair of every auto-repaired category: re-submit the hand-over, then re-upload.

    Telling the hand-over its registration is missing makes it submit the intake anew
    (the registry answers 200 if its terms still stand, or takes ours back if someone
    changed them) and upload the verified file after it, which covers a missing or a
    differing file too.
    """

    def change(record: ChildRecord, handoff: Handoff) -> Handoff | None:
        if handoff.registered(record) is None or record.student_number != number:
            return None  # moved on since the run looked: nothing to repair any more
        return handoff.registration_missing(number)

    return change
