"""Pure rules the ledger's guards, merges and stray repairs rest on."""

from __future__ import annotations

import datetime as dt

from bridge.domain.actions import ChangeNumber, Withdraw
from bridge.domain.arrival import Arrival
from bridge.domain.child_record import RecordStatus, fold
from bridge.domain.handoff import Handoff, Registration, SetAside, SetAsideReason
from bridge.domain.intake import IntakeRequest
from tests.support.wire_events import G, L, cancelled, ev, graduated, key_info, number_assigned


def test_a_late_event_with_a_lower_childseq_changes_the_count_of_events_folded() -> None:
    grad, late, correction = ev(graduated(G, 7))[0], ev(cancelled(G, 9))[0], ev(key_info(G, 10))[0]
    before = fold([grad, correction])
    after = fold([grad, correction, late])
    assert after.status is RecordStatus.CANCELLED
    assert after.last_childseq == before.last_childseq  # what the old guard compared
    assert (before.events_folded, after.events_folded) == (2, 3)
    assert fold([grad, grad, correction]).events_folded == 2  # a duplicate is not an event


def test_a_merge_keeps_registrations_arrival_latest_set_aside_and_highest_generation() -> None:
    record = fold([ev(graduated(L, 5))[0]])
    reg = Registration(L, 2026, "t", IntakeRequest.for_record(record).key_info)
    arrival = Arrival("2111010898", dt.date(2026, 9, 1))
    old_aside = SetAside(SetAsideReason.IDENTITY_CONFLICT, {}, at_childseq=3)
    new_aside = SetAside(SetAsideReason.SCHOOL_MISMATCH, {}, at_childseq=6)
    survivor = Handoff(generation=1, set_aside=old_aside, verified_file_sha256=None)
    other = Handoff(
        registrations=(reg,), verified_file_sha256="f" * 64, set_aside=new_aside,
        arrival=arrival, generation=4,
    )  # fmt: skip
    merged = Handoff.merge([survivor, other])
    assert merged == Handoff(
        registrations=(reg,), verified_file_sha256="f" * 64, set_aside=new_aside,
        arrival=arrival, generation=4,
    )  # fmt: skip
    assert Handoff.merge([Handoff()]) == Handoff()


def test_a_stray_under_a_former_number_is_moved_to_the_current_one_or_withdrawn() -> None:
    record = fold([ev(number_assigned(L, G, 8))[0], ev(graduated(L, 5))[0]])
    assert record.student_number == G and L in record.former_numbers
    intake = IntakeRequest.for_record(record)
    fetched = Handoff().file_verified(intake.file_sha256)
    found = fetched.stray_found(record, L, 2026)
    assert found is not None
    # Nothing under the current number yet: B4 moves the stray there.
    assert found.next_action(record) == ChangeNumber(L, G, intake.child)
    # Registered under the current number already: the stray is withdrawn.
    handed_over = fetched.intake_registered(intake, None)
    with_stray = handed_over.stray_found(record, L, 2026)
    assert with_stray is not None
    assert with_stray.next_action(record) == Withdraw(L, 2026)
    # Not a former number, the current one, or a registration it knows of: nothing to add.
    assert Handoff().stray_found(record, G, 2026) is None
    assert Handoff().stray_found(record, "L" + "9" * 18, 2026) is None
    assert with_stray.stray_found(record, L, 2026) is None
