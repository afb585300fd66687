"""A school's arrival report on in-memory ports: kept whole or not at all, then told."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from bridge.domain.access import Principal, Role
from bridge.domain.school_view import InvalidArrival
from bridge.errors import ArrivalRefused, NotFound
from bridge.services.arrivals import ArrivalOutcome, Arrivals
from tests.fakes.schools import MemorySchools, child_view
from tests.support import wire_events as wire
from tests.unit.handoff_rig import SCHOOL, Rig, graduated_with

CHINA = dt.timezone(dt.timedelta(hours=8))
SCHOOL_TOKEN = Principal("tok_00000000000a", Role.SCHOOL, SCHOOL)


@dataclass
class Desk:
    """Arrivals over a hand-over rig's ledger; the school sees its child as handed over."""

    rig: Rig = field(default_factory=Rig)
    wakes: int = 0

    def __post_init__(self) -> None:
        # 2026-09-01 09:00 in China: term has started.
        self.rig.clock.set(dt.datetime(2026, 9, 1, 9, tzinfo=CHINA))
        self.schools = MemorySchools(self.rig.clock, ledger=self.rig.ledger)
        self.arrivals = Arrivals(self.schools, self.schools.audit, self.rig.clock, self.wake)

    def wake(self) -> None:
        self.wakes += 1

    async def handed_over(self, **view: object) -> None:
        await self.rig.receive(graduated_with(wire.G, 1))
        await self.rig.work()
        child_id = self.rig.ledger.child_of(wire.G).child_id
        self.schools.children = [child_view(child_id, wire.G, SCHOOL, "110108", **view)]

    async def report(self, on: dt.date) -> ArrivalOutcome:
        child = self.schools.children[0]
        return await self.arrivals.report(SCHOOL_TOKEN, child, on, "10.1.1.1")


async def test_an_arrival_is_kept_in_one_piece_and_the_worker_woken() -> None:
    desk = Desk()
    await desk.handed_over()
    assert await desk.report(dt.date(2026, 9, 1)) is ArrivalOutcome.ACCEPTED
    [kept] = desk.schools.reports
    assert (kept.outcome, kept.arrived_on, kept.request) == (
        "accepted",
        dt.date(2026, 9, 1),
        kept.request,
    )
    assert kept.request is not None and kept.request.school_code == SCHOOL
    assert desk.schools.audit.actions() == [("arrival.report", "accepted")]
    assert desk.schools.audit.entries[0].detail == {"arrived_on": "2026-09-01"}
    assert desk.wakes == 1
    await desk.rig.work()
    assert desk.rig.target.students[wire.G].status == "enrolled"


async def test_an_arrival_of_an_enrolled_child_changes_nothing() -> None:
    desk = Desk()
    await desk.handed_over(phase="enrolled")
    assert await desk.report(dt.date(2026, 9, 1)) is ArrivalOutcome.UNCHANGED
    assert [r.request for r in desk.schools.reports] == [None]
    assert desk.schools.audit.actions() == [("arrival.report", "unchanged")]
    assert desk.wakes == 0


@pytest.mark.parametrize("on", [dt.date(2026, 9, 2), dt.date(2025, 9, 1)])
async def test_an_arrival_that_cannot_be_true_is_refused_and_audited(on: dt.date) -> None:
    desk = Desk()
    await desk.handed_over()
    with pytest.raises(InvalidArrival):
        await desk.report(on)  # tomorrow in China, or before the child's entry year
    assert desk.schools.reports == [] and desk.wakes == 0
    assert desk.schools.audit.actions() == [("arrival.report", "invalid")]


async def test_an_arrival_at_the_wrong_school_is_refused_for_an_operator() -> None:
    desk = Desk()
    await desk.handed_over(set_aside_reason="school_mismatch")
    with pytest.raises(ArrivalRefused):
        await desk.report(dt.date(2026, 9, 1))
    assert desk.schools.reports == []
    assert desk.schools.audit.actions() == [("arrival.report", "school_mismatch")]


async def test_an_arrival_for_a_child_merged_a_moment_ago_keeps_nothing() -> None:
    desk = Desk()
    await desk.handed_over()
    desk.rig.ledger.rows.clear()  # merged into another row meanwhile
    with pytest.raises(NotFound):
        await desk.report(dt.date(2026, 9, 1))
    assert desk.schools.reports == [] and desk.schools.audit.entries == []
    assert desk.wakes == 0


async def test_today_is_the_day_in_china() -> None:
    desk = Desk()
    await desk.handed_over()
    # 17:00 UTC on 31 August is 01:00 on 1 September in China: that day is not the future.
    desk.rig.clock.set(dt.datetime(2026, 8, 31, 17, tzinfo=dt.UTC))
    assert await desk.report(dt.date(2026, 9, 1)) is ArrivalOutcome.ACCEPTED
