"""Reconciliation runs, their findings and reports, and the working calendar they count by."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import TypeAdapter

from bridge.domain.reconciliation import Finding, LedgerEntry
from bridge.domain.working_days import WorkingCalendar, YearSchedule


class Numbered(Protocol):
    """A listed child: every side of a reconciliation is in student-number order."""

    @property
    def student_number(self) -> str: ...


N = TypeVar("N", bound=Numbered)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which children a report covers: a county operator's, or filters an operator chose."""

    county_code: str | None = None
    kindergarten_code: str | None = None


ALL = Scope()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One stored run."""

    run_id: int
    entry_year: int
    trigger: str
    actor: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    as_of: dt.date
    provisional: bool
    sides: dict[str, int]
    counts: dict[str, int]
    repairs: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ListedFinding:
    """A child in one category of a run: what every list of findings shows."""

    category: str
    student_number: str
    county_code: str | None
    kindergarten_code: str | None
    school_code: str | None
    detail: dict[str, str]


@dataclass(frozen=True, slots=True)
class Item(ListedFinding):
    """One finding of a run, as listed to operators."""

    since: dt.datetime | None
    new: bool


class FindingsWriter(Protocol):
    """Keeps a run's findings while the merge goes on."""

    def add(self, finding: Finding, identities: Iterable[str]) -> None:
        """Keep *finding* and the identity numbers the sides gave its student number."""
        ...

    async def hand_over(self) -> None:
        """Pass what was kept on (awaited between pages of the merge)."""
        ...

    async def close(self) -> int:
        """Write the rest, then the two_numbers_one_identity findings; how many."""
        ...


class ReconciliationRuns(Protocol):
    """What one run reads and writes besides the registries."""

    def exclusive(self, entry_year: int) -> AbstractAsyncContextManager[bool]:
        """The cohort's run lock while inside; False if another run holds it."""
        ...

    async def last_started(self, entry_year: int) -> dt.datetime | None:
        """When the newest run of the cohort started."""
        ...

    async def start(
        self, entry_year: int, *, trigger: str, actor: str | None, as_of: dt.date
    ) -> RunInfo:
        """Open a run (under the lock)."""
        ...

    async def fail(self, run: RunInfo, error: str) -> None:
        """Close a run that could not finish; its partial findings go."""
        ...

    async def finish(
        self, run: RunInfo, *, sides: Mapping[str, int], counts: Mapping[str, int],
        provisional: bool, repairs: int, keep_runs: int,
    ) -> RunInfo:  # fmt: skip
        """Close the run with its counts per category."""
        ...

    def ledger_stream(
        self, entry_year: int
    ) -> AbstractAsyncContextManager[AsyncIterator[list[LedgerEntry]]]:
        """The cohort's ledger entries by student number (byte-wise), a batch at a time."""
        ...

    def writer(self, run: RunInfo) -> AbstractAsyncContextManager[FindingsWriter]:
        """A writer of the run's findings; leaving it without close() keeps none."""
        ...

    async def former_holders(self, numbers: Sequence[str]) -> dict[str, LedgerEntry]:
        """Former number -> the child that held it, for numbers the ledger knows so."""
        ...

    async def record_repair(
        self, run: RunInfo, child_id: int, student_number: str, category: str, outcome: str
    ) -> None:
        """Keep what a repair did."""
        ...

    def sorted_by_number(
        self, pages: AsyncIterator[Sequence[N]], adapter: TypeAdapter[list[N]]
    ) -> AsyncGenerator[Sequence[N]]:
        """*pages* again in student-number order (for a side listed out of order)."""
        ...


class Findings(Protocol):
    """Stored runs and their findings, for operators."""

    async def get(self, run_id: int) -> RunInfo | None:
        """One run."""
        ...

    async def latest(self, entry_year: int) -> RunInfo | None:
        """The newest finished run of a cohort."""
        ...

    async def runs(self, entry_year: int | None = None, limit: int = 20) -> list[RunInfo]:
        """Newest first."""
        ...

    async def history(self, entry_year: int, limit: int = 12) -> list[RunInfo]:
        """Finished runs of a cohort, oldest first."""
        ...

    async def entry_years(self) -> list[int]:
        """Cohorts with runs or children, newest first."""
        ...

    async def previous(self, run: RunInfo) -> int | None:
        """The finished run before *run* whose findings are still kept."""
        ...

    async def counts(self, run: RunInfo, scope: Scope = ALL) -> dict[str, int]:
        """Children per category within *scope*."""
        ...

    def numbers(self, run: RunInfo, category: str, scope: Scope = ALL) -> AsyncIterator[list[str]]:
        """The student numbers of one category, in batches."""
        ...

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
        """A page of findings, with whether each is new since the previous run."""
        ...

    async def changes(
        self, run: RunInfo, scope: Scope = ALL, *, sample: int = 1000
    ) -> dict[str, dict[str, list[str]]]:
        """Per category: children new in *run* and resolved since the previous run."""
        ...

    async def pseudonym_key(self) -> bytes:
        """The key of export pseudonyms (it never leaves the data centre)."""
        ...


class Calendars(Protocol):
    """Official working-day schedules loaded by operators."""

    async def calendar(self) -> WorkingCalendar:
        """The working calendar with every loaded year."""
        ...

    async def load(self, schedule: YearSchedule, *, actor: str, source: str | None) -> None:
        """Store (or replace) one year's official schedule."""
        ...
