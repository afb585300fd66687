"""The lost-child list and its exports, with fakes of the casebook: who is shown, in what
order, with how long each has waited, and what the audit log is told."""

from __future__ import annotations

import datetime as dt

from bridge.domain.access import Principal, Role
from bridge.services.acting import Acting
from bridge.services.casework import Casework
from bridge.services.ports.casework import LostItem
from bridge.services.ports.reconciliation import RunInfo, Scope
from tests.fakes.casebook import FixedCalendars, MemoryCasebook
from tests.fakes.clock import FakeClock
from tests.fakes.reconciliation import MemoryRuns

COUNTY = Principal("tok_000000000001", Role.COUNTY, county_code="110105")
RUN = RunInfo(
    7, 2026, "test", None, "finished", dt.datetime(2026, 9, 20, tzinfo=dt.UTC), None,
    dt.date(2026, 9, 21), False, {}, {}, 0, None,
)  # fmt: skip


def _item(n: str, category: str, due: dt.date | None, school: str = "2111010501") -> LostItem:
    return LostItem(category, n, "110105", "1111010501", school, {}, due, None)


def _casework(book: MemoryCasebook) -> Casework:
    # Monday 2026-09-21, 10:00 China time.
    clock = FakeClock(dt.datetime(2026, 9, 21, 2, 0, tzinfo=dt.UTC))
    return Casework(book, MemoryRuns(), FixedCalendars(), clock)


async def test_the_list_is_longest_waiting_first_in_working_days_and_one_audit_line() -> None:
    book = MemoryCasebook(
        items=[
            _item("G110105201903070012", "not_arrived", dt.date(2026, 9, 18)),  # Friday
            _item("G110105201903070021", "overdue", dt.date(2026, 9, 10)),
            _item("G110105201903070039", "file_not_pulled", None),
        ],
        names={"G110105201903070012": "王小明"},
    )
    page = await _casework(book).lost(
        Acting.by(COUNTY), RUN, Scope("110105"), school=None, category=None, limit=50, offset=0
    )
    assert [r.item.student_number for r in page.rows] == [
        "G110105201903070021", "G110105201903070012", "G110105201903070039",
    ]  # fmt: skip
    # After 10 Sep up to 21 Sep: 11, 14-18, Sunday 20 (a 调休 working day) and 21 are working
    # days; after 18 Sep: Sunday 20 and Monday 21.
    assert [r.waited for r in page.rows] == [8, 2, None]
    assert page.rows[1].name == "王小明"
    assert page.total == 3
    assert book.views == [{
        "action": "console.lost", "numbers": sorted(r.item.student_number for r in page.rows),
        "run_id": 7, "offset": 0, "school": "",
    }]  # fmt: skip


async def test_an_export_is_de_identified_unless_a_purpose_is_given_and_then_audited() -> None:
    book = MemoryCasebook(
        items=[_item("G110105201903070012", "not_arrived", dt.date(2026, 9, 18))],
        names={"G110105201903070012": '=HYPERLINK("x")'},
        places={"2111010501": "朝阳区实验小学"},
    )
    casework = _casework(book)
    who = Acting.by(COUNTY)
    plain = "".join([t async for t in casework.lost_csv(
        who, RUN, Scope("110105"), school=None, category=None, purpose=None)])  # fmt: skip
    assert plain.startswith("\ufeffcategory,category_zh,child_key,student_number_masked,")
    assert "G110105201903070012" not in plain and "HYPERLINK" not in plain
    assert "朝阳区实验小学" in plain and book.views == []
    named = "".join([t async for t in casework.lost_csv(
        who, RUN, Scope("110105"), school=None, category=None, purpose="电话核实")])  # fmt: skip
    assert "G110105201903070012" in named
    assert "'=HYPERLINK" in named  # a name a spreadsheet would run is shown as text
    assert book.views == [{
        "action": "console.export_identified", "numbers": ["G110105201903070012"],
        "run_id": 7, "purpose": "电话核实",
    }]  # fmt: skip
