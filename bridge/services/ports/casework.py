"""What an operator works a child's case with: identified lists, the case file, names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.domain.access import Principal
from bridge.services.ports.reconciliation import ListedFinding, Scope


@dataclass(frozen=True, slots=True)
class LostItem(ListedFinding):
    """One finding of the lost-child list, as a county operator works it."""

    due: dt.date | None  # the deadline it missed (report_by, pull_by or deadline)
    since: dt.datetime | None


@dataclass(frozen=True, slots=True)
class LostGroup:
    """The lost-child list's findings of one school (or kindergarten)."""

    code: str | None
    count: int
    per_category: dict[str, int]
    oldest_due: dt.date | None


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One stored event of the child, in childseq order."""

    childseq: int
    event_type: str
    received_at: dt.datetime
    occurred_at: str | None


@dataclass(frozen=True, slots=True)
class CaseCall:
    """One call to a registry about the child."""

    operation: str
    status: int | None
    outcome: str
    duration_ms: int
    attempted_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CaseFinding:
    """What one reconciliation run found of the child."""

    run_id: int
    finished_at: dt.datetime | None
    categories: list[str]


@dataclass(frozen=True, slots=True)
class CaseAct:
    """An operator's act on the child (a retry, a resolution)."""

    at: dt.datetime
    actor: str
    act: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChildCase:
    """Everything the bridge knows of one child's hand-over, for its case page."""

    child_id: int
    student_number: str
    former_numbers: list[str]
    name: str | None
    entry_year: int | None
    status: str
    phase: str
    county_code: str | None
    kindergarten_code: str | None
    school_code: str | None
    set_aside_reason: str | None
    set_aside_at: dt.datetime | None
    first_graduated_at: dt.datetime | None
    handed_over_at: dt.datetime | None
    arrived_on: str | None
    next_attempt_at: dt.datetime | None
    events: list[CaseEvent] = field(default_factory=list)
    calls: list[CaseCall] = field(default_factory=list)
    findings: list[CaseFinding] = field(default_factory=list)
    acts: list[CaseAct] = field(default_factory=list)


class Casebook(Protocol):
    """The reads behind the operators' identified lists and case pages."""

    async def lost_items(
        self, run_id: int, categories: Sequence[str], scope: Scope, *,
        school_code: str | None, limit: int, offset: int,
    ) -> list[LostItem]:  # fmt: skip
        """A page of the run's findings in *categories*, longest overdue first."""
        ...

    async def lost_total(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, school_code: str | None
    ) -> int:
        """How many findings lost_items pages through."""
        ...

    async def lost_groups(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, by: str
    ) -> list[LostGroup]:
        """The findings counted per school (by='school') or kindergarten."""
        ...

    async def child_names(self, student_numbers: Iterable[str]) -> dict[str, str]:
        """The children's names as the registries gave them (where the ledger still has
        them)."""
        ...

    async def school_names(self, codes: Iterable[str]) -> dict[str, str]:
        """Names of schools and kindergartens by code (those loaded)."""
        ...

    async def load_school_names(
        self, rows: Sequence[tuple[str, str]], *, actor: str, source: str | None
    ) -> int:
        """Store (or replace) names by code; how many."""
        ...

    async def case(self, student_number: str, county_code: str | None) -> ChildCase | None:
        """The child holding (or having held) *student_number*, within *county_code*."""
        ...

    async def record_view(
        self, *, actor: str, principal: Principal | None, action: str,
        student_numbers: Sequence[str], remote: str | None, detail: dict[str, Any],
    ) -> None:  # fmt: skip
        """One audit line naming every child a page showed identified."""
        ...
