"""A reconciliation run on in-memory ports: three sides merged page by page, findings
kept, safe repairs made and recorded."""

from __future__ import annotations

import datetime as dt

import pytest

from bridge.domain.reconciliation import LedgerEntry
from bridge.domain.working_days import WorkingCalendar, YearSchedule
from bridge.errors import RegistryUnavailable
from bridge.services.reconciliation import (
    ReconcileConfig,
    ReconcilePorts,
    Reconciler,
    ReconciliationBusy,
)
from schemas.registry import CohortStudent, RosterItem
from tests.fakes.reconciliation import MemoryRuns
from tests.fakes.stores import MemoryAudit
from tests.support import wire_events as wire
from tests.unit.handoff_rig import SCHOOL, SHA, Rig, graduated_with

TODAY = dt.date(2026, 7, 20)  # before term starts: nobody is expected to have arrived
MATCHED, LOST = "G110105201903070012", "G110105201903070039"


class Calendars:
    """The working calendar with no loaded years (chinese-calendar covers 2026)."""

    async def calendar(self) -> WorkingCalendar:
        return WorkingCalendar({})

    async def load(self, schedule: YearSchedule, *, actor: str, source: str | None) -> None:
        raise AssertionError("not loaded in these tests")


def entry(child_id: int, number: str) -> LedgerEntry:
    """A child handed over on time, its file pulled, as the ledger derives it."""
    return LedgerEntry(
        child_id, number, "graduated", "file_delivered", number[1:], "110108", "1111010873",
        SCHOOL, None, None, None, 1, dt.date(2026, 7, 10), dt.date(2026, 7, 11), SHA, False,
        True,
    )  # fmt: skip


def roster(number: str) -> RosterItem:
    return RosterItem(
        student_number=number, id_number=number[1:], state="graduated", childseq=1,
        kindergarten_code="1111010873",
    )  # fmt: skip


class Office:
    """A reconciler over a hand-over rig (its ledger takes the repairs) and MemoryRuns."""

    def __init__(self, page_size: int = 2) -> None:
        self.rig = Rig()
        self.runs = MemoryRuns(self.rig.clock)
        self.audit = MemoryAudit(self.rig.clock)
        self.wakes = 0
        ports = ReconcilePorts(
            self.runs, self.rig.ledger, Calendars(), self.rig.source, self.rig.target,
            self.audit, self.wake, self.rig.clock,
        )  # fmt: skip
        self.reconciler = Reconciler(ports, ReconcileConfig(page_size=page_size))

    def wake(self) -> None:
        self.wakes += 1

    async def cohort(self) -> None:
        """One child matched, one lost at the registry (ours, repairable), one the ledger
        never heard of."""
        await self.rig.receive(graduated_with(wire.G, 1))
        await self.rig.work()
        ours = self.rig.ledger.child_of(wire.G).child_id
        self.runs.ledger = [entry(900, MATCHED), entry(ours, wire.G)]
        self.rig.source.roster = [roster(n) for n in sorted((MATCHED, LOST, wire.G))]
        self.rig.target.listing = [
            CohortStudent(student_number=MATCHED, id_number=MATCHED[1:], status="registered",
                          school_code=SCHOOL, record_file_sha256=SHA),
        ]  # fmt: skip

    def found(self, run_id: int) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for item in self.runs.found[run_id]:
            out.setdefault(item.student_number, set()).add(item.category)
        return out


async def test_three_sides_are_merged_and_the_safe_repair_is_made() -> None:
    office = Office()
    await office.cohort()
    run = await office.reconciler.run(2026, trigger="test", actor="cli:test", today=TODAY)
    assert run.status == "finished"
    assert run.sides == {"roster": 3, "ledger": 2, "registry": 1}
    assert office.found(run.run_id) == {
        MATCHED: {"matched"}, wire.G: {"missing_at_registry"}, LOST: {"lost_upstream"},
    }  # fmt: skip
    assert run.counts["matched"] == 1 and run.counts["missing_at_registry"] == 1
    # The repair: the hand-over is told its registration is missing, the worker woken.
    assert run.repairs == 1 and office.wakes == 1
    assert [r[2:] for r in office.runs.repairs] == [(wire.G, "missing_at_registry", "scheduled")]
    assert office.audit.actions() == [("reconcile.repair.missing_at_registry", "scheduled")]
    await office.rig.work()
    assert office.rig.target.held() == {wire.G: (2026, "registered", SHA)}


async def test_a_cohort_is_reconciled_once_at_a_time() -> None:
    office = Office()
    async with office.runs.exclusive(2026):
        with pytest.raises(ReconciliationBusy):
            await office.reconciler.run(2026, trigger="test", today=TODAY)
        assert await office.reconciler.run_if_due(2026, 3600) is None
    assert office.runs.stored == {}


async def test_a_scheduled_run_waits_for_its_interval() -> None:
    office = Office()
    first = await office.reconciler.run_if_due(2026, 3600)
    assert first is not None and first.trigger == "schedule"
    assert await office.reconciler.run_if_due(2026, 3600) is None
    office.rig.clock.advance(3601)
    assert await office.reconciler.run_if_due(2026, 3600) is not None


async def test_a_side_listed_out_of_order_is_read_again_sorted() -> None:
    office = Office(page_size=1)
    await office.cohort()
    office.rig.source.roster.reverse()
    run = await office.reconciler.run(2026, trigger="test", today=TODAY)
    assert office.runs.staged == 1
    first = office.runs.stored[1]
    assert (
        first.status == "failed"
        and first.error == "restarted: roster is not in student-number order"
    )
    assert run.run_id == 2 and run.status == "finished"
    assert office.found(run.run_id)[LOST] == {"lost_upstream"}


async def test_a_run_whose_registry_fails_is_kept_as_failed() -> None:
    office = Office()
    await office.cohort()
    office.rig.target.failures.add("list_cohort", RegistryUnavailable("list_cohort: HTTP 503"))
    with pytest.raises(RegistryUnavailable):
        await office.reconciler.run(2026, trigger="test", today=TODAY)
    [failed] = office.runs.stored.values()
    assert failed.status == "failed"
    assert failed.error == "RegistryUnavailable: list_cohort: HTTP 503"
    assert failed.run_id not in office.runs.found  # none of its findings stay


async def test_a_stored_file_that_failed_authentication_is_fetched_again() -> None:
    office = Office()
    await office.rig.receive(graduated_with(wire.G, 1))
    await office.rig.work()
    ours = office.rig.ledger.child_of(wire.G).child_id
    office.runs.ledger = [entry(ours, wire.G)._replace(file_damaged=True)]
    office.rig.source.roster = [roster(wire.G)]
    office.rig.target.listing = [
        CohortStudent(student_number=wire.G, id_number=wire.G[1:], status="registered",
                      school_code=SCHOOL, record_file_sha256=SHA),
    ]  # fmt: skip
    run = await office.reconciler.run(2026, trigger="test", today=TODAY)
    assert "stored_file_damaged" in office.found(run.run_id)[wire.G]
    assert [r[2:] for r in office.runs.repairs] == [(wire.G, "stored_file_damaged", "scheduled")]
    assert office.rig.ledger.child_of(wire.G).handoff.verified_file_sha256 == ""
    await office.rig.work()
    # Fetched again from the preschool registry, checked against its claim, kept anew.
    assert len(office.rig.source.fetched) == 2
    assert office.rig.ledger.child_of(wire.G).handoff.verified_file_sha256 == SHA
    assert office.rig.target.held() == {wire.G: (2026, "registered", SHA)}
