"""Reconciliation runs and their findings in memory (ReconciliationRuns and Findings).

The ledger's side is given as LedgerEntry rows, as the PostgreSQL store derives them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from bridge.domain.reconciliation import Category, Finding, LedgerEntry
from bridge.services.ports.reconciliation import ALL, Item, N, RunInfo, Scope
from tests.fakes.clock import FakeClock


@dataclass
class MemoryFindingsWriter:
    """FindingsWriter: findings kept in a list, two numbers of one identity found at close."""

    run_id: int
    findings: list[tuple[Finding, list[str]]] = field(default_factory=list)
    closed: bool = False
    handed_over: int = 0

    def add(self, finding: Finding, identities: Iterable[str]) -> None:
        """Keep *finding* and the identity numbers the sides gave its number."""
        self.findings.append((finding, list(identities)))

    async def hand_over(self) -> None:
        """Nothing to stream in memory: count the hand-overs."""
        self.handed_over += 1

    async def close(self) -> int:
        """The numbers held by an identity that holds more than one."""
        numbers: dict[str, set[str]] = {}
        for finding, ids in self.findings:
            for i in ids:
                numbers.setdefault(i, set()).add(finding.student_number)
        doubles = {n for held in numbers.values() if len(held) > 1 for n in held}
        self.closed = True
        return len(doubles)


class MemoryRuns:
    """ReconciliationRuns and Findings in memory."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.ledger: list[LedgerEntry] = []
        self.former: dict[str, LedgerEntry] = {}  # former number -> its child now
        self.stored: dict[int, RunInfo] = {}
        self.found: dict[int, list[Item]] = {}
        self.repairs: list[tuple[int, int, str, str, str]] = []
        self.held: set[int] = set()  # cohorts whose run lock is taken
        self.staged: int = 0  # sides read again in order

    @contextlib.asynccontextmanager
    async def exclusive(self, entry_year: int) -> AsyncIterator[bool]:
        """The cohort's run lock."""
        if entry_year in self.held:
            yield False
            return
        self.held.add(entry_year)
        try:
            yield True
        finally:
            self.held.discard(entry_year)

    async def last_started(self, entry_year: int) -> dt.datetime | None:
        """When the cohort's newest run started."""
        started = [r.started_at for r in self.stored.values() if r.entry_year == entry_year]
        return max(started) if started else None

    async def start(
        self, entry_year: int, *, trigger: str, actor: str | None, as_of: dt.date
    ) -> RunInfo:
        """Open a run."""
        run = RunInfo(
            len(self.stored) + 1, entry_year, trigger, actor, "running", self.clock.now(), None,
            as_of, False, {}, {}, 0, None,
        )  # fmt: skip
        self.stored[run.run_id] = run
        return run

    async def fail(self, run: RunInfo, error: str) -> None:
        """Close a run that could not finish."""
        self.stored[run.run_id] = dataclasses.replace(run, status="failed", error=error[:500])
        self.found.pop(run.run_id, None)

    async def finish(
        self, run: RunInfo, *, sides: Mapping[str, int], counts: Mapping[str, int],
        provisional: bool, repairs: int, keep_runs: int,
    ) -> RunInfo:  # fmt: skip
        """Close the run with its counts."""
        done = dataclasses.replace(
            run, status="finished", finished_at=self.clock.now(), sides=dict(sides),
            counts={c.value: 0 for c in Category} | dict(counts), provisional=provisional,
            repairs=repairs,
        )  # fmt: skip
        self.stored[run.run_id] = done
        return done

    @contextlib.asynccontextmanager
    async def ledger_stream(
        self, entry_year: int
    ) -> AsyncIterator[AsyncIterator[list[LedgerEntry]]]:
        """The ledger's entries in byte-wise student-number order, two at a time."""
        entries = sorted(self.ledger, key=lambda e: e.student_number.encode())

        async def batches() -> AsyncGenerator[list[LedgerEntry]]:
            for i in range(0, len(entries), 2):
                yield entries[i : i + 2]

        yield batches()

    @contextlib.asynccontextmanager
    async def writer(self, run: RunInfo) -> AsyncIterator[MemoryFindingsWriter]:
        """A writer; what it kept becomes the run's items only if it was closed."""
        writer = MemoryFindingsWriter(run.run_id)
        yield writer
        if writer.closed:
            self.found[run.run_id] = [
                Item(c.value, f.student_number, f.county_code, f.kindergarten_code,
                     f.school_code, dict(f.detail), None, True)
                for f, _ in writer.findings for c in f.categories
            ]  # fmt: skip

    async def former_holders(self, numbers: Sequence[str]) -> dict[str, LedgerEntry]:
        """Former number -> the child that held it."""
        return {n: self.former[n] for n in numbers if n in self.former}

    async def record_repair(
        self, run: RunInfo, child_id: int, student_number: str, category: str, outcome: str
    ) -> None:
        """Keep what a repair did."""
        self.repairs.append((run.run_id, child_id, student_number, category, outcome))

    async def sorted_by_number(
        self, pages: AsyncIterator[Sequence[N]], adapter: TypeAdapter[list[N]]
    ) -> AsyncGenerator[Sequence[N]]:
        """Every page, then all of it again in student-number order."""
        self.staged += 1
        collected = [x async for page in pages for x in page]
        yield sorted(collected, key=lambda x: x.student_number.encode())

    # --- Findings -----------------------------------------------------------------------
    async def get(self, run_id: int) -> RunInfo | None:
        """One run."""
        return self.stored.get(run_id)

    async def latest(self, entry_year: int) -> RunInfo | None:
        """The newest finished run of a cohort."""
        done = [r for r in self.stored.values()
                if r.entry_year == entry_year and r.status == "finished"]  # fmt: skip
        return max(done, key=lambda r: r.run_id) if done else None

    async def runs(self, entry_year: int | None = None, limit: int = 20) -> list[RunInfo]:
        """Newest first."""
        chosen = [r for r in self.stored.values() if entry_year in (None, r.entry_year)]
        return sorted(chosen, key=lambda r: -r.run_id)[:limit]

    async def history(self, entry_year: int, limit: int = 12) -> list[RunInfo]:
        """Finished runs, oldest first."""
        done = [r for r in await self.runs(entry_year, limit) if r.status == "finished"]
        return sorted(done, key=lambda r: r.run_id)

    async def entry_years(self) -> list[int]:
        """Cohorts with runs, newest first."""
        return sorted({r.entry_year for r in self.stored.values()}, reverse=True)

    async def previous(self, run: RunInfo) -> int | None:
        """The finished run before *run* with findings kept."""
        older = [i for i in self.found if i < run.run_id]
        return max(older) if older else None

    def _items(self, run: RunInfo, scope: Scope) -> list[Item]:
        return [
            i for i in self.found.get(run.run_id, [])
            if scope.county_code in (None, i.county_code)
            and scope.kindergarten_code in (None, i.kindergarten_code)
        ]  # fmt: skip

    async def counts(self, run: RunInfo, scope: Scope = ALL) -> dict[str, int]:
        """Children per category within *scope*."""
        counts = {c.value: 0 for c in Category}
        for i in self._items(run, scope):
            counts[i.category] += 1
        return counts

    async def numbers(
        self, run: RunInfo, category: str, scope: Scope = ALL
    ) -> AsyncIterator[list[str]]:
        """The numbers of one category, in one batch."""
        found = sorted(i.student_number for i in self._items(run, scope) if i.category == category)
        if found:
            yield found

    async def items(
        self,
        run: RunInfo,
        *,
        categories: Iterable[str] | None = None,
        scope: Scope = ALL,
        new_only: bool = False,
        limit: int = 200,
        offset: int = 0,
    ) -> list[Item]:
        """A page of findings."""
        wanted = set(categories) if categories is not None else None
        found = [i for i in self._items(run, scope) if wanted is None or i.category in wanted]
        found.sort(key=lambda i: (i.category, i.student_number))
        return found[offset : offset + limit]

    async def changes(
        self, run: RunInfo, scope: Scope = ALL, *, sample: int = 1000
    ) -> dict[str, dict[str, list[str]]]:
        """Nothing to compare with in these tests."""
        return {}

    async def pseudonym_key(self) -> bytes:
        """A fixed key."""
        return b"test-pseudonym-key"
