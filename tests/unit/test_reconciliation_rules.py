"""classify(): one child as the roster, the ledger and the registry see it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.reconciliation import (
    AUTO_REPAIRED,
    CATEGORIES,
    WORKLIST,
    Category,
    LedgerEntry,
    Policy,
    RegistryEntry,
    RosterEntry,
    classify,
)
from bridge.domain.working_days import WorkingCalendar

C = Category
N = "G110105201903070012"
ID = N[1:]
SHA = "a" * 64
POLICY = Policy(
    today=dt.date(2026, 8, 3), calendar=WorkingCalendar(), term_start=dt.date(2026, 9, 1)
)

roster = RosterEntry(N, ID, "graduated", 7, "1111010501")
ledger = LedgerEntry(
    child_id=1, student_number=N, status="graduated", phase="file_delivered", id_number=ID,
    county_code="110105", kindergarten_code="1111010501", school_code="2111010502",
    last_childseq=7, first_graduated_on=dt.date(2026, 7, 20),
    handed_over_on=dt.date(2026, 7, 31), file_sha256=SHA,
)  # fmt: skip
registry = RegistryEntry(N, ID, "registered", "2111010502", SHA)


def cats(
    r: RosterEntry | None, led: LedgerEntry | None, g: RegistryEntry | None, **policy: object
) -> set[Category]:
    when = dataclasses.replace(POLICY, **policy)  # type: ignore[arg-type]
    return set(classify(r, led, g, when).categories)


def L(**changes: object) -> LedgerEntry:
    return ledger._replace(**changes)  # type: ignore[arg-type]


def aside(reason: str) -> LedgerEntry:
    return L(phase="set_aside", set_aside_reason=reason, handed_over_on=None)


def deferred_until(day: dt.date) -> LedgerEntry:
    return L(status="deferred", phase="deferred", deferred_until=day)


def R(**changes: object) -> RosterEntry:
    return dataclasses.replace(roster, **changes)  # type: ignore[arg-type]


def G(**changes: object) -> RegistryEntry:
    return dataclasses.replace(registry, **changes)  # type: ignore[arg-type]


def test_every_category_has_labels_and_a_handling() -> None:
    assert set(CATEGORIES) == set(Category)
    assert all(i.zh and i.en and i.action for i in CATEGORIES.values())
    assert {
        C.MISSING_AT_REGISTRY, C.FILE_DIGEST_MISMATCH, C.FILE_NOT_DELIVERED,
        C.FORMER_NUMBER_REGISTERED, C.STORED_FILE_DAMAGED,
    } == AUTO_REPAIRED  # fmt: skip
    assert C.MATCHED not in WORKLIST and C.NOT_ARRIVED in WORKLIST


@pytest.mark.parametrize(
    ("r", "led", "g", "expected"),
    [
        (roster, ledger, registry, {C.MATCHED}),
        (roster, L(phase="enrolled", arrived=True), G(status="enrolled"), {C.MATCHED}),
        (roster, L(school_code=None), registry, {C.MATCHED}),
        (roster, L(school_code="2111010599"), registry, set()),
        (roster, ledger, G(id_number="X"), set()),
        (roster, L(phase="registered", handed_over_on=None), G(record_file_sha256=None),
         {C.IN_FLIGHT}),
        (roster, L(phase="received", handed_over_on=None), None, {C.IN_FLIGHT}),
        (roster, None, None, {C.LOST_UPSTREAM}),
        (roster, L(status="in_kindergarten", phase="waiting", last_childseq=3), None,
         {C.LOST_UPSTREAM}),
        (roster, ledger, None, {C.MISSING_AT_REGISTRY}),
        (roster, ledger, G(status="withdrawn"), {C.MISSING_AT_REGISTRY}),
        (R(state="in_kindergarten"), ledger, registry, {C.REGISTERED_NOT_GRADUATED}),
        (R(state="deferred"), ledger, registry, {C.DEFERRED_BUT_REGISTERED}),
        (R(state="cancelled"), L(status="cancelled", phase="withdrawing"), registry,
         {C.CANCELLED_BUT_REGISTERED}),
        (roster, aside("identity_conflict"), None, {C.IDENTITY_CONFLICT}),
        (roster, aside("bad_source_file"), None, {C.BAD_SOURCE_FILE}),
        (roster, ledger, G(record_file_sha256="b" * 64), {C.FILE_DIGEST_MISMATCH}),
        (roster, ledger, G(record_file_sha256=None), {C.FILE_NOT_DELIVERED}),
        (None, ledger, registry, {C.NOT_IN_ROSTER}),
        (None, None, registry, {C.NOT_IN_ROSTER}),
        (None, None, G(status="withdrawn"), set()),
        (R(state="deferred"), deferred_until(dt.date(2026, 7, 31)), None, {C.DEFERRAL_EXPIRED}),
        (R(state="deferred"), deferred_until(dt.date(2027, 8, 31)), None, set()),
        (R(state="cancelled"), L(status="cancelled", phase="cancelled"), None, set()),
    ],
)  # fmt: skip
def test_each_situation_is_named(
    r: RosterEntry | None, led: LedgerEntry | None, g: RegistryEntry | None, expected: set[Category]
) -> None:
    assert cats(r, led, g) == expected


def test_a_registration_under_a_childs_former_number_is_a_stray_not_a_child_without_record() -> (
    None
):
    former = "L" + N[1:]
    stray = RegistryEntry(former, None, "registered", "2111010502", None)
    finding = classify(None, None, stray, POLICY, former_holder=ledger)
    assert finding.categories == {C.FORMER_NUMBER_REGISTERED}
    assert C.FORMER_NUMBER_REGISTERED in AUTO_REPAIRED
    assert finding.detail["current_number"] == N
    assert (finding.county_code, finding.kindergarten_code) == ("110105", "1111010501")
    # Without the ledger's word it is what it looks like; withdrawn, it is nothing.
    assert classify(None, None, stray, POLICY).categories == {C.NOT_IN_ROSTER}
    withdrawn = dataclasses.replace(stray, status="withdrawn")
    assert classify(None, None, withdrawn, POLICY, former_holder=ledger).categories == set()


def test_overdue_after_ten_working_days_otherwise_in_flight() -> None:
    stuck = L(phase="file_fetched", handed_over_on=None, first_graduated_on=dt.date(2026, 9, 28))
    assert cats(roster, stuck, None, today=dt.date(2026, 10, 16)) == {C.IN_FLIGHT}
    assert cats(roster, stuck, None, today=dt.date(2026, 10, 17)) == {C.OVERDUE}
    aside = L(phase="set_aside", set_aside_reason="registry_rejected", handed_over_on=None,
              first_graduated_on=dt.date(2026, 9, 28))  # fmt: skip
    finding = classify(
        roster, aside, None, dataclasses.replace(POLICY, today=dt.date(2026, 10, 19))
    )
    assert finding.categories == {C.OVERDUE}
    assert finding.detail == {"set_aside_reason": "registry_rejected", "deadline": "2026-10-16"}


def test_file_not_pulled_after_the_allowance_while_still_matched() -> None:
    assert cats(roster, ledger, registry, today=dt.date(2026, 8, 7)) == {C.MATCHED}
    assert cats(roster, ledger, registry, today=dt.date(2026, 8, 8)) == {
        C.MATCHED,
        C.FILE_NOT_PULLED,
    }
    assert cats(roster, L(file_pulled=True), registry, today=dt.date(2026, 8, 8)) == {C.MATCHED}


def test_not_arrived_after_term_start_plus_allowance() -> None:
    assert cats(roster, ledger, registry, today=dt.date(2026, 9, 8)) == {
        C.MATCHED,
        C.FILE_NOT_PULLED,
    }
    late = cats(roster, ledger, registry, today=dt.date(2026, 9, 9))
    assert late == {C.MATCHED, C.FILE_NOT_PULLED, C.NOT_ARRIVED}
    arrived = cats(roster, L(arrived=True, file_pulled=True), registry, today=dt.date(2026, 9, 9))
    assert arrived == {C.MATCHED}
    enrolled = cats(roster, L(file_pulled=True), G(status="enrolled"), today=dt.date(2026, 9, 9))
    assert enrolled == {C.MATCHED}


def test_deadlines_in_a_year_without_a_schedule_are_provisional() -> None:
    stuck = L(phase="file_fetched", handed_over_on=None, first_graduated_on=dt.date(2027, 7, 1))
    finding = classify(roster, stuck, None, dataclasses.replace(POLICY, today=dt.date(2027, 7, 2)))
    assert finding.provisional and finding.detail["provisional"] == "true"
    assert not classify(roster, ledger, registry, POLICY).provisional


def test_a_finding_takes_scope_from_the_ledger_then_the_roster() -> None:
    finding = classify(roster, None, None, POLICY)
    assert (finding.county_code, finding.kindergarten_code) == (None, "1111010501")
    finding = classify(roster, ledger, registry, POLICY)
    assert (finding.county_code, finding.school_code) == ("110105", "2111010502")
    with pytest.raises(ValueError):
        classify(None, None, None, POLICY)


states = st.sampled_from(["graduated", "deferred", "cancelled", "in_kindergarten"])
phases = st.sampled_from(
    ["waiting", "received", "file_fetched", "registered", "file_delivered", "enrolled",
     "withdrawing", "deferred", "cancelled", "set_aside"]
)  # fmt: skip
maybe_date = st.none() | st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31))


@given(
    r=st.none() | st.builds(RosterEntry, st.just(N), st.sampled_from([ID, None]), states,
                            st.integers(1, 9)),
    led=st.none() | st.builds(
        LedgerEntry, st.just(1), st.just(N), states, phases, st.sampled_from([ID, None]),
        set_aside_reason=st.sampled_from([None, "identity_conflict", "bad_source_file"]),
        first_graduated_on=maybe_date, handed_over_on=maybe_date, deferred_until=maybe_date,
        file_sha256=st.sampled_from([SHA, None]), arrived=st.booleans(), file_pulled=st.booleans(),
    ),
    g=st.none() | st.builds(RegistryEntry, st.just(N), st.sampled_from([ID, "X"]),
                            st.sampled_from(["registered", "enrolled", "withdrawn"]),
                            st.sampled_from([None, "2111010502"]),
                            st.sampled_from([None, SHA, "b" * 64])),
    today=st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)),
)  # fmt: skip
def test_the_categories_never_contradict_each_other(
    r: RosterEntry | None, led: LedgerEntry | None, g: RegistryEntry | None, today: dt.date
) -> None:
    if r is None and led is None and g is None:
        return
    found = cats(r, led, g, today=today)
    if C.MATCHED in found:
        assert not found & {C.MISSING_AT_REGISTRY, C.FILE_DIGEST_MISMATCH, C.FILE_NOT_DELIVERED,
                            C.LOST_UPSTREAM, C.NOT_IN_ROSTER, C.IN_FLIGHT, C.OVERDUE}  # fmt: skip
    assert not {C.IN_FLIGHT, C.OVERDUE} <= found
    assert not {C.FILE_DIGEST_MISMATCH, C.FILE_NOT_DELIVERED} <= found
    at_registry = g is not None and g.status != "withdrawn"
    if found & {C.REGISTERED_NOT_GRADUATED, C.DEFERRED_BUT_REGISTERED, C.CANCELLED_BUT_REGISTERED,
                C.NOT_IN_ROSTER}:  # fmt: skip
        assert at_registry
    if C.MISSING_AT_REGISTRY in found:
        assert not at_registry


def test_a_child_whose_data_was_erased_still_matches_without_its_identity_number() -> None:
    erased = L(phase="enrolled", id_number=None, erased=True, arrived=True)
    finding = classify(roster, erased, G(status="enrolled"), POLICY)
    assert set(finding.categories) == {C.MATCHED}
    assert finding.detail["personal_data_erased"] == "true"
    # Not erased, a missing identity number is a mismatch as before.
    assert C.MATCHED not in cats(roster, L(id_number=None), registry)


def test_an_erased_file_is_not_a_file_to_remind_the_school_to_pull() -> None:
    late = dt.date(2026, 9, 30)
    assert C.FILE_NOT_PULLED in cats(roster, L(phase="enrolled"), registry, today=late)
    erased = L(phase="enrolled", id_number=None, erased=True)
    found = cats(roster, erased, registry, today=late)
    assert C.FILE_NOT_PULLED not in found
    assert not found & {C.FILE_NOT_DELIVERED, C.FILE_DIGEST_MISMATCH, C.MISSING_AT_REGISTRY}


def test_a_stored_file_that_failed_authentication_is_flagged_until_erased() -> None:
    assert C.STORED_FILE_DAMAGED in cats(roster, L(file_damaged=True), registry)
    assert C.STORED_FILE_DAMAGED not in cats(roster, L(file_damaged=False), registry)
    gone = L(file_damaged=True, erased=True, id_number=None, phase="enrolled")
    assert C.STORED_FILE_DAMAGED not in cats(roster, gone, registry)
