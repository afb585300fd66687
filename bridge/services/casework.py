"""A county operator's casework: the lost-child list, identified lists, a child's case page.

A county operator sees its county's children identified (full student number, name,
kindergarten and school); a provincial operator the province's. Every page that shows
children identified writes one audit line naming them all, as a school's list does
(谁使用谁负责). Exports are de-identified unless the operator chooses an identified one
and says what for; that choice is audited with its purpose.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from bridge.domain.reconciliation import Category
from bridge.domain.student_number import mask
from bridge.domain.wording import CATEGORY_WORDING
from bridge.domain.working_days import day_in_china
from bridge.services.acting import Acting
from bridge.services.ports.casework import Casebook, ChildCase, LostGroup, LostItem
from bridge.services.ports.clock import Clock
from bridge.services.ports.reconciliation import Calendars, Findings, RunInfo, Scope
from bridge.services.reports import BOM, csv_safe, pseudonym

# The lost-child list: children handed over whom nobody has seen arrive, files nobody took
# in, hand-overs stuck past their 10 working days.
LOST = (Category.NOT_ARRIVED.value, Category.FILE_NOT_PULLED.value, Category.OVERDUE.value)


@dataclass(frozen=True, slots=True)
class LostRow:
    """One line of the lost-child list, identified."""

    item: LostItem
    name: str | None
    waited: int | None  # working days since the deadline it missed


@dataclass(frozen=True, slots=True)
class LostPage:
    """A page of the lost-child list with its groups and the names it needs."""

    rows: list[LostRow]
    total: int
    by_school: list[LostGroup]
    by_kindergarten: list[LostGroup]
    places: dict[str, str]


@dataclass(frozen=True, slots=True)
class Identified:
    """Names for a page's children and the schools and kindergartens it names."""

    names: dict[str, str]
    places: dict[str, str]


class Casework:
    """Identified views and exports for operators, each audited."""

    def __init__(
        self, book: Casebook, findings: Findings, calendars: Calendars, clock: Clock
    ) -> None:
        self._book, self._findings = book, findings
        self._calendars, self._clock = calendars, clock

    async def _seen(
        self, who: Acting, action: str, numbers: Sequence[str], **detail: object
    ) -> None:
        if numbers:
            await self._book.record_view(
                actor=who.actor, principal=who.principal, action=action,
                student_numbers=numbers, remote=who.remote, detail=dict(detail),
            )  # fmt: skip

    async def _waited(self, items: Iterable[LostItem]) -> list[int | None]:
        calendar = await self._calendars.calendar()
        today = day_in_china(self._clock.now())
        return [
            calendar.working_days_between(i.due, today) if i.due is not None else None
            for i in items
        ]

    async def lost(
        self, who: Acting, run: RunInfo, scope: Scope, *, school: str | None,
        category: str | None, limit: int, offset: int,
    ) -> LostPage:  # fmt: skip
        """A page of the lost-child list, longest waiting first, with its groups."""
        cats = [category] if category else list(LOST)
        items = await self._book.lost_items(
            run.run_id, cats, scope, school_code=school, limit=limit, offset=offset
        )
        total = await self._book.lost_total(run.run_id, cats, scope, school_code=school)
        by_school = await self._book.lost_groups(run.run_id, cats, scope, by="school")
        by_kg = await self._book.lost_groups(run.run_id, cats, scope, by="kindergarten")
        names = await self._book.child_names(i.student_number for i in items)
        codes = [g.code for g in by_school + by_kg if g.code]
        codes += [c for i in items for c in (i.school_code, i.kindergarten_code) if c]
        places = await self._book.school_names(codes)
        waited = await self._waited(items)
        await self._seen(
            who, "console.lost", [i.student_number for i in items], run_id=run.run_id,
            offset=offset, school=school or "",
        )  # fmt: skip
        rows = [
            LostRow(i, names.get(i.student_number), w) for i, w in zip(items, waited, strict=True)
        ]
        return LostPage(rows, total, by_school, by_kg, places)

    async def identify(
        self, who: Acting, page: str, numbers: Sequence[str], codes: Iterable[str | None],
        *, channel: str = "console",
    ) -> Identified:  # fmt: skip
        """Names for a list page's children (audited as one line naming them) and places."""
        names = await self._book.child_names(numbers)
        places = await self._book.school_names(c for c in codes if c)
        await self._seen(who, f"{channel}.{page}", numbers)
        return Identified(names, places)

    async def listed(self, who: Acting, page: str, numbers: Sequence[str]) -> None:
        """An API page listed these children identified: one audit line naming them."""
        await self._seen(who, f"api.{page}", numbers)

    async def case(self, who: Acting, student_number: str) -> ChildCase | None:
        """A child's case file within the operator's scope; its read audited."""
        found = await self._book.case(student_number, who.county_code)
        if found is not None:
            await self._seen(who, "console.case", [found.student_number])
        return found

    async def lost_csv(
        self, who: Acting, run: RunInfo, scope: Scope, *, school: str | None,
        category: str | None, purpose: str | None,
    ) -> AsyncIterator[str]:  # fmt: skip
        """The lost-child list as CSV (UTF-8 with a BOM): de-identified unless a *purpose*
        is given, which makes it identified and is audited with it."""
        cats = [category] if category else list(LOST)
        identified = bool(purpose)
        key = await self._findings.pseudonym_key()
        head = ["category", "category_zh", "child_key", "student_number_masked"]
        if identified:
            head += ["student_number", "name"]
        head += ["kindergarten_code", "kindergarten_name", "school_code", "school_name",
                 "due", "waited_working_days"]  # fmt: skip
        yield BOM + _row(head)
        offset, page = 0, 2000
        while True:
            items = await self._book.lost_items(
                run.run_id, cats, scope, school_code=school, limit=page, offset=offset
            )
            names = (
                await self._book.child_names(i.student_number for i in items) if identified else {}
            )
            places = await self._book.school_names(
                c for i in items for c in (i.school_code, i.kindergarten_code) if c
            )
            waited = await self._waited(items)
            out = []
            for i, w in zip(items, waited, strict=True):
                wording = CATEGORY_WORDING.get(Category(i.category)) if i.category in LOST else None
                cells: list[object] = [
                    i.category,
                    wording.zh.split("：")[0] if wording else "",
                    pseudonym(key, i.student_number),
                    mask(i.student_number),
                ]
                if identified:
                    cells += [i.student_number, names.get(i.student_number, "")]
                cells += [
                    i.kindergarten_code,
                    places.get(i.kindergarten_code or "", ""),
                    i.school_code,
                    places.get(i.school_code or "", ""),
                    i.due.isoformat() if i.due else "",
                    "" if w is None else w,
                ]
                out.append(_row(cells))
            if identified:
                await self._seen(
                    who, "console.export_identified", [i.student_number for i in items],
                    run_id=run.run_id, purpose=purpose or "",
                )  # fmt: skip
            yield "".join(out)
            if len(items) < page:
                break
            offset += page

    async def load_school_names(
        self, rows: Sequence[tuple[str, str]], who: Acting, *, source: str | None
    ) -> int:
        """Store names of schools and kindergartens by code."""
        return await self._book.load_school_names(rows, actor=who.actor, source=source)


_CODE = re.compile(r"[0-9]{10}")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def read_school_names(text: str) -> list[tuple[str, str]]:
    """(code, name) rows of a names file: CSV `code,name` (a header row is skipped), UTF-8
    with or without a BOM. ValueError naming the first bad line."""
    rows: list[tuple[str, str]] = []
    for n, cells in enumerate(csv.reader(io.StringIO(text.removeprefix(BOM))), start=1):
        if not cells or not "".join(cells).strip():
            continue
        code, name = [*cells, "", ""][:2]
        code, name = code.strip(), name.strip()
        if n == 1 and not _CODE.fullmatch(code) and code.lower() in ("code", "学校标识码"):
            continue
        if not _CODE.fullmatch(code):
            raise ValueError(f"line {n}: the code must be a 10-digit 学校标识码")
        if not _NAME.fullmatch(name):
            raise ValueError(f"line {n}: the name must be 1-200 printable characters")
        rows.append((code, name))
    return rows


def _row(cells: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([csv_safe(c) for c in cells])
    return out.getvalue()
