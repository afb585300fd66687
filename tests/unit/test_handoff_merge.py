"""Pure rules the ledger's guards and merges rest on."""

from __future__ import annotations

import datetime as dt

from bridge.domain.child_record import RecordStatus, fold
from bridge.domain.handoff import Arrival, Handoff, Registration, SetAside, SetAsideReason
from bridge.domain.intake import IntakeRequest
from tests.support.wire_events import G, L, cancelled, ev, graduated, key_info


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
