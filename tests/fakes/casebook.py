"""An in-memory Casebook (bridge.services.ports.casework) for unit tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.domain.access import Principal
from bridge.domain.working_days import WorkingCalendar, YearSchedule
from bridge.services.ports.casework import ChildCase, LostGroup, LostItem
from bridge.services.ports.reconciliation import Scope


@dataclass
class MemoryCasebook:
    """Lost items of one run, names, and the audit lines written."""

    items: list[LostItem] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    places: dict[str, str] = field(default_factory=dict)
    views: list[dict[str, Any]] = field(default_factory=list)

    def _matching(
        self, categories: Sequence[str], scope: Scope, school_code: str | None
    ) -> list[LostItem]:
        found = [
            i for i in self.items
            if i.category in categories
            and (scope.county_code is None or i.county_code == scope.county_code)
            and (scope.kindergarten_code is None or i.kindergarten_code == scope.kindergarten_code)
            and (school_code is None or i.school_code == school_code)
        ]  # fmt: skip
        return sorted(found, key=lambda i: (i.due is None, i.due, i.student_number))

    async def lost_items(
        self, run_id: int, categories: Sequence[str], scope: Scope, *,
        school_code: str | None, limit: int, offset: int,
    ) -> list[LostItem]:  # fmt: skip
        return self._matching(categories, scope, school_code)[offset : offset + limit]

    async def lost_total(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, school_code: str | None
    ) -> int:
        return len(self._matching(categories, scope, school_code))

    async def lost_groups(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, by: str
    ) -> list[LostGroup]:
        groups: dict[str | None, list[LostItem]] = {}
        for i in self._matching(categories, scope, None):
            groups.setdefault(i.school_code if by == "school" else i.kindergarten_code, []).append(
                i
            )
        return [
            LostGroup(code, len(items), {i.category: 1 for i in items},
                      min((i.due for i in items if i.due), default=None))
            for code, items in groups.items()
        ]  # fmt: skip

    async def child_names(self, student_numbers: Iterable[str]) -> dict[str, str]:
        return {n: self.names[n] for n in student_numbers if n in self.names}

    async def school_names(self, codes: Iterable[str]) -> dict[str, str]:
        return {c: self.places[c] for c in codes if c in self.places}

    async def load_school_names(
        self, rows: Sequence[tuple[str, str]], *, actor: str, source: str | None
    ) -> int:
        self.places.update(rows)
        return len(rows)

    async def case(self, student_number: str, county_code: str | None) -> ChildCase | None:
        return None

    async def record_view(
        self, *, actor: str, principal: Principal | None, action: str,
        student_numbers: Sequence[str], remote: str | None, detail: dict[str, Any],
    ) -> None:  # fmt: skip
        self.views.append({"action": action, "numbers": sorted(student_numbers), **detail})


class FixedCalendars:
    """Calendars with no loaded year: the library's official schedule."""

    async def calendar(self) -> WorkingCalendar:
        return WorkingCalendar()

    async def load(self, schedule: YearSchedule, *, actor: str, source: str | None) -> None:
        raise NotImplementedError
