"""One three-way reconciliation run: roster (A2), ledger, registry (B8), merge-joined.

All three sides are streamed in student-number order, a page at a time, the next page of
each fetched while this one is merged; memory stays bounded by a few pages whatever the
cohort's size. The merge itself is a plain loop over the buffered pages: it awaits only
when a side's page runs out, and findings are COPYed to PostgreSQL by tasks of their own
meanwhile. A side that is not in order is staged in a temporary table and read back
sorted. Safe repairs are made at the end and recorded; the rest is the operators' worklist.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff
from bridge.domain.reconciliation import (
    AUTO_REPAIRED,
    Category,
    LedgerEntry,
    Policy,
    classify,
)
from bridge.domain.working_days import day_in_china
from bridge.errors import BridgeError, Conflict
from bridge.services.ports.access import Audit
from bridge.services.ports.clock import Clock
from bridge.services.ports.ledger import Amendments
from bridge.services.ports.reconciliation import (
    Calendars,
    FindingsWriter,
    Numbered,
    ReconciliationRuns,
    RunInfo,
)
from bridge.services.ports.registries import SourceRegistry, TargetRegistry
from schemas.registry import COHORT_STUDENTS, ROSTER_ITEMS, CohortStudent, RosterItem

log = logging.getLogger(__name__)

MAX_PAGE = 5000  # registry-api.md: limit at most 5000
REPAIR_ACTOR = "reconciliation"

Progress = Callable[[str, int], None]


T = TypeVar("T", bound=Numbered)


class ReconciliationBusy(Conflict):
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

    store: ReconciliationRuns
    ledger: Amendments
    calendars: Calendars
    preschool: SourceRegistry
    registry: TargetRegistry
    audit: Audit
    wake: Callable[[], None]
    clock: Clock


# Looks up the ledger's children that once held some of these numbers (former number ->
# the child as the ledger holds it now).
FormerHolders = Callable[[Sequence[str]], Awaitable[dict[str, LedgerEntry]]]
REGISTRY_ONLY_BATCH = 2000


@dataclass
class _Repair:
    child_id: int
    student_number: str
    category: Category


class _Side(Generic[T]):
    """One side's listing as the merge sees it: the page at hand and where it stands in it.

    Checks that the side comes in strictly increasing student-number order (byte-wise,
    as the merge compares), a page at a time, and counts what it saw.
    """

    def __init__(
        self, name: str, pages: AsyncIterator[Sequence[T]], progress: Progress | None
    ) -> None:
        self.name, self.seen = name, 0
        self.items: Sequence[T] = ()
        self.pos = 0
        self.done = False
        self._pages, self._progress, self._last = pages, progress, ""

    @property
    def dry(self) -> bool:
        """The page at hand is used up and more may follow: refill before merging on."""
        return self.pos >= len(self.items) and not self.done

    async def refill(self) -> None:
        """Take the next page (or note the end), checking its order."""
        page: Sequence[T] = ()
        while not page:
            got = await anext(self._pages, None)
            if got is None:
                self.items, self.pos, self.done = (), 0, True
                return
            page = got
        numbers = [x.student_number for x in page]
        # sorted() and set() run in C: the check costs far less than a Python loop.
        if numbers[0] <= self._last or sorted(numbers) != numbers or len(set(numbers)) < len(page):
            raise OutOfOrder(f"{self.name} is not in student-number order")
        self._last = numbers[-1]
        self.items, self.pos = page, 0
        self.seen += len(page)
        if self._progress:
            self._progress(self.name, self.seen)


async def _pages(
    fetch: Callable[[int, str | None, int], Awaitable[_Page[T]]], entry_year: int, limit: int
) -> AsyncGenerator[Sequence[T]]:
    """Every page of a paged listing, the next page fetched while this one is used."""
    pending: asyncio.Task[_Page[T]] | None = asyncio.ensure_future(fetch(entry_year, None, limit))
    try:
        while pending is not None:
            page = await pending
            pending = (
                asyncio.ensure_future(fetch(entry_year, page.next_cursor, limit))
                if page.next_cursor
                else None
            )
            yield page.items
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


class _FewerCollections:
    """While any scan runs, collect the youngest generation after 200,000 new objects, not 700.

    A scan makes a few objects per child and frees them a page later by reference counting;
    it makes no cycles. At 700 the collector would walk every page's objects again and
    again, promoting them to be walked yet again by full collections: a third of a scan's
    CPU time. The few pages a scan holds stay below the raised threshold, so it rarely
    collects at all. Scans may overlap (two cohorts); the last one out restores it.
    """

    THRESHOLD = 200_000

    def __init__(self) -> None:
        self._running = 0
        self._before = gc.get_threshold()

    def __enter__(self) -> None:
        if self._running == 0:
            self._before = gc.get_threshold()
            first, *older = self._before
            gc.set_threshold(max(first, self.THRESHOLD), *older)
        self._running += 1

    def __exit__(self, *exc: object) -> None:
        self._running -= 1
        if self._running == 0:
            gc.set_threshold(*self._before)


_fewer_collections = _FewerCollections()


class _Scan:
    """The merge of one attempt and what it found: counts, repairs, provisional deadlines."""

    def __init__(
        self,
        writer: FindingsWriter,
        policy: Policy,
        max_repairs: int,
        former_holders: FormerHolders,
    ) -> None:
        self.writer, self.policy, self.max_repairs = writer, policy, max_repairs
        self.former_holders = former_holders
        self.counts: dict[str, int] = {}
        self.repairs: list[_Repair] = []
        self.provisional = False
        # Numbers only the registry lists, classified once the ledger has said which of
        # them it knows as a child's former number (a few thousand at a time).
        self._registry_only: list[CohortStudent] = []

    async def run(
        self, roster: _Side[RosterItem], ledger: _Side[LedgerEntry], registry: _Side[CohortStudent]
    ) -> None:
        """Merge the three sides to their ends."""
        sides = (roster, ledger, registry)
        with _fewer_collections:
            while True:
                for side in sides:
                    if side.dry:
                        await side.refill()
                if all(side.done for side in sides):
                    await self._classify_registry_only()
                    return
                self._merge_pages(roster, ledger, registry)
                if len(self._registry_only) >= REGISTRY_ONLY_BATCH:
                    await self._classify_registry_only()
                await self.writer.hand_over()
                # Let the other tasks take a step: the next pages' requests go out and the
                # COPYs send what they were handed, so the registries and PostgreSQL work
                # while the next pages are merged rather than while the merge waits.
                await asyncio.sleep(0)

    def _merge_pages(
        self, roster: _Side[RosterItem], ledger: _Side[LedgerEntry], registry: _Side[CohortStudent]
    ) -> None:
        """Merge-join the pages at hand until one of them runs dry (a side that has ended
        never does). No awaits: the per-child path is a plain loop."""
        rs, ls, gs = roster.items, ledger.items, registry.items
        ri, li, gi = roster.pos, ledger.pos, registry.pos
        rn, ln, gn = len(rs), len(ls), len(gs)
        r_end, l_end, g_end = roster.done, ledger.done, registry.done
        r: RosterItem | None
        led: LedgerEntry | None
        g: CohortStudent | None
        while True:
            # Each side's next item (None once it has ended), and the smallest number.
            key: str | None = None
            if ri < rn:
                r = rs[ri]
                key = r.student_number
            elif r_end:
                r = None
            else:
                break
            if li < ln:
                led = ls[li]
                if key is None or led.student_number < key:
                    key = led.student_number
            elif l_end:
                led = None
            else:
                break
            if gi < gn:
                g = gs[gi]
                if key is None or g.student_number < key:
                    key = g.student_number
            elif g_end:
                g = None
            else:
                break
            if key is None:
                break  # every side has ended
            if r is not None:
                if r.student_number == key:
                    ri += 1
                else:
                    r = None
            if led is not None:
                if led.student_number == key:
                    li += 1
                else:
                    led = None
            if g is not None:
                if g.student_number == key:
                    gi += 1
                else:
                    g = None
            self._take(r, led, g)
        roster.pos, ledger.pos, registry.pos = ri, li, gi

    async def _classify_registry_only(self) -> None:
        batch, self._registry_only = self._registry_only, []
        if not batch:
            return
        holders = await self.former_holders([g.student_number for g in batch])
        for g in batch:
            self._keep(None, None, g, holders.get(g.student_number))

    def _take(self, r: RosterItem | None, led: LedgerEntry | None, g: CohortStudent | None) -> None:
        """Classify one student number and keep what was found."""
        if r is None and led is None and g is not None:
            self._registry_only.append(g)
        else:
            self._keep(r, led, g, None)

    def _keep(
        self,
        r: RosterItem | None,
        led: LedgerEntry | None,
        g: CohortStudent | None,
        former_holder: LedgerEntry | None,
    ) -> None:
        finding = classify(r, led, g, self.policy, former_holder=former_holder)
        if finding.provisional:
            self.provisional = True
        counts = self.counts
        for category in finding.categories:
            counts[category.value] = counts.get(category.value, 0) + 1
        # The identity numbers the sides give this number, each once.
        a = r.id_number if r is not None else None
        b = led.id_number if led is not None else None
        c = g.id_number if g is not None else None
        ids = [a] if a else []
        if b and b != a:
            ids.append(b)
        if c and c != a and c != b:
            ids.append(c)
        self.writer.add(finding, ids)
        holder = led or former_holder
        if holder is not None and len(self.repairs) < self.max_repairs:
            for category in finding.categories & AUTO_REPAIRED:
                # Under the number the finding is about: a former number, for a stray.
                self.repairs.append(_Repair(holder.child_id, finding.student_number, category))
                break  # one repair per child: re-submitting re-uploads as well


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
            if last is not None and (self._p.clock.now() - last).total_seconds() < interval_s:
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
        day = today or day_in_china(self._p.clock.now())
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
                # The bridge's own errors say what went wrong and carry no identity data;
                # of anything else only the kind is kept.
                reason = type(exc).__name__ + (f": {exc}" if isinstance(exc, BridgeError) else "")
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._p.store.fail(run, reason))
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
        async with contextlib.AsyncExitStack() as listings:
            # Whatever happens, each listing is closed here: its next page's request is
            # cancelled, a staged side's connection goes back to the pool.
            roster_pages: AsyncGenerator[Sequence[RosterItem]] = _pages(
                self._p.preschool.roster_page, entry_year, size
            )
            registry_pages: AsyncGenerator[Sequence[CohortStudent]] = _pages(
                self._p.registry.list_cohort, entry_year, size
            )
            listings.push_async_callback(roster_pages.aclose)
            listings.push_async_callback(registry_pages.aclose)
            if "roster" in staged:
                roster_pages = self._p.store.sorted_by_number(roster_pages, ROSTER_ITEMS)
                listings.push_async_callback(roster_pages.aclose)
            if "registry" in staged:
                registry_pages = self._p.store.sorted_by_number(registry_pages, COHORT_STUDENTS)
                listings.push_async_callback(registry_pages.aclose)
            roster = _Side("roster", roster_pages, progress)
            registry = _Side("registry", registry_pages, progress)
            async with (
                self._p.store.ledger_stream(entry_year) as ledger_pages,
                self._p.store.writer(run) as writer,
            ):
                ledger = _Side("ledger", ledger_pages, progress)
                scan = _Scan(writer, policy, self._c.max_repairs, self._p.store.former_holders)
                await scan.run(roster, ledger, registry)
                two_numbers = await writer.close()
        counts = scan.counts | {Category.TWO_NUMBERS_ONE_IDENTITY.value: two_numbers}
        done = await self._repair(run, scan.repairs)
        sides = {"roster": roster.seen, "ledger": ledger.seen, "registry": registry.seen}
        finished = await self._p.store.finish(
            run, sides=sides, counts=counts, provisional=scan.provisional, repairs=done,
            keep_runs=self._c.keep_runs,
        )  # fmt: skip
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
            change = _repair_change(repair.category, number, run.entry_year)
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
    category: Category, number: str, entry_year: int
) -> Callable[[ChildRecord, Handoff], Handoff | None]:
    """The repair of every auto-repaired category: re-submit the hand-over, then re-upload.

    Telling the hand-over its registration is missing makes it submit the intake anew
    (the registry answers 200 if its terms still stand, or takes ours back if someone
    changed them) and upload the verified file after it, which covers a missing or a
    differing file too. A registration under a former number is put on the hand-over,
    which then moves it to the current number (B4) or withdraws it (B3).
    """
    if category is Category.FORMER_NUMBER_REGISTERED:
        return lambda record, handoff: (
            None if record.erased else handoff.stray_found(record, number, entry_year)
        )
    if category is Category.STORED_FILE_DAMAGED:
        # Forgetting the verified file makes the hand-over fetch it again from the preschool
        # registry (which keeps its copy), check it against its claim and store it anew.
        return lambda record, handoff: (
            None if record.erased or handoff.verified_file_sha256 is None
            else handoff.file_verified("")
        )  # fmt: skip

    def change(record: ChildRecord, handoff: Handoff) -> Handoff | None:
        if record.erased:
            return None  # nothing left to re-submit with: the report shows it to operators
        if handoff.registered(record) is None or record.student_number != number:
            return None  # moved on since the run looked: nothing to repair any more
        return handoff.registration_missing(number)

    return change
