"""The hand-over reaches the in-order result whatever order and duplication events come in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain.actions import SubmitIntake
from bridge.domain.child_record import ChildRecord, RecordStatus, fold
from bridge.domain.events import (
    Child,
    ChildEvent,
    EventType,
    Graduated,
    NumberAssigned,
    RecordFileClaim,
)
from bridge.domain.handoff import Handoff, Phase
from bridge.domain.intake import IntakeRequest
from tests.unit.fake_registry import Entry, FakeRegistry
from tests.unit.lifecycles import G_NUMBER, ID_NUMBER, L_NUMBER, TIME, lifecycles

MAX_STEPS = 50


def drive(
    record: ChildRecord,
    handoff: Handoff,
    registry: FakeRegistry,
    limit: int,
    lost_answers: list[bool] | None = None,
) -> Handoff:
    """Step the hand-over; a True in *lost_answers* means the registry acted but its answer
    never came back (a time-out, or a crash before the outcome was saved)."""
    for step in range(limit):
        action = handoff.next_action(record)
        if action is None:
            return handoff
        handoff = handoff.attempting(action)
        outcome = registry.perform(action, record, handoff)
        if lost_answers and lost_answers[step % len(lost_answers)]:
            continue
        handoff = outcome
    return handoff


def expected_registry(record: ChildRecord) -> dict[str, Entry]:
    """What rules.md says the registry must hold once the hand-over has settled."""
    if record.status is not RecordStatus.GRADUATED:
        return {}
    intake = IntakeRequest.for_record(record)
    return {
        intake.student_number: Entry(
            intake.entry_year, intake.key_info, intake.child.id_number, intake.file_sha256
        )
    }


def in_order(events: list[ChildEvent]) -> tuple[FakeRegistry, ChildRecord]:
    registry, handoff, seen = FakeRegistry(), Handoff(), []
    for event in events:
        seen.append(event)
        record = fold(seen)
        handoff = drive(record, handoff, registry, MAX_STEPS)
        assert handoff.next_action(record) is None
    return registry, fold(events)


@settings(max_examples=300, deadline=None)
@given(lifecycles())
def test_in_order_processing_leaves_the_registry_as_the_rules_say(events: list[ChildEvent]) -> None:
    registry, record = in_order(events)
    assert registry.students == expected_registry(record)


@settings(max_examples=400, deadline=None)
@given(lifecycles(), st.data())
def test_any_order_with_duplicates_and_interruptions_converges_to_in_order(
    events: list[ChildEvent], data: st.DataObject
) -> None:
    expected, _ = in_order(events)
    deliveries = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
    registry, handoff, seen = FakeRegistry(), Handoff(), []
    for event in deliveries:
        seen.append(event)
        # The bridge may be interrupted at any point between steps (crash, lease lost), and
        # the registry may act without its answer reaching us.
        lost = data.draw(st.lists(st.booleans(), max_size=4))
        handoff = drive(fold(seen), handoff, registry, data.draw(st.integers(0, 4)), lost)
    record = fold(seen)
    handoff = drive(record, handoff, registry, MAX_STEPS)
    assert handoff.next_action(record) is None
    assert registry.students == expected.students
    # Nothing left to do means the phase says so: a row left "under way" with no next
    # action would never be driven again (a stranded ledger row).
    assert handoff.phase(record) is settled_phase(record)
    # One person, one number: never two registrations for the child at once.
    assert len(registry.students) <= 1


@given(lifecycles())
def test_duplicates_fold_to_the_same_record(events: list[ChildEvent]) -> None:
    assert fold(events + events[::-1]) == fold(events)


@given(lifecycles())
def test_a_late_event_never_overrides_a_later_one(events: list[ChildEvent]) -> None:
    record = fold(events)
    late = dataclasses.replace(events[0], event_id="00000000-0000-0000-0000-00000000ffff")
    # Same childseq as an applied event: a publisher fault, not a change.
    assert fold([*events, late]).status == record.status


@given(lifecycles())
def test_settled_phase_matches_the_record(events: list[ChildEvent]) -> None:
    registry, record = in_order(events)
    handoff = Handoff()
    handoff = drive(record, handoff, registry, MAX_STEPS)
    assert handoff.phase(record) is settled_phase(record)


def settled_phase(record: ChildRecord) -> Phase:
    """The phase a hand-over with nothing left to do must show for *record*."""
    if record.status is RecordStatus.GRADUATED:
        return Phase.FILE_DELIVERED
    if record.status is RecordStatus.CANCELLED:
        return Phase.CANCELLED
    if record.status is RecordStatus.DEFERRED:
        return Phase.DEFERRED
    return Phase.WAITING


def test_number_change_after_an_unanswered_intake_finishes_the_hand_over() -> None:
    # The fault suite's stranded child: B1 took effect but its answer was lost, then the
    # number changed before the retry. B4 moves the registration; the hand-over must not
    # stop "under way" with nothing left to do, and must learn the school from B1.
    child = Child("王小明", "M", dt.date(2019, 3, 7), "none", None, "CN")
    graduated = ChildEvent(
        str(uuid.UUID(int=1)), 1, EventType.GRADUATED, L_NUMBER, TIME,
        Graduated(L_NUMBER, child, "1111010501", "110105", dt.date(2026, 7, 3), 2026,
                  "2111010502", RecordFileClaim("http://f/1", "1" * 64, 1001, "application/json")),
    )  # fmt: skip
    renumbered = ChildEvent(
        str(uuid.UUID(int=2)), 2, EventType.NUMBER_ASSIGNED, G_NUMBER, TIME,
        NumberAssigned(L_NUMBER, G_NUMBER, "resident_id", ID_NUMBER),
    )  # fmt: skip
    registry, handoff = FakeRegistry(), Handoff()
    record = fold([graduated])
    handoff = drive(record, handoff, registry, 1)  # the record file
    intake = handoff.next_action(record)
    assert isinstance(intake, SubmitIntake)
    handoff = handoff.attempting(intake)
    registry.perform(intake, record, handoff)  # registered at the registry; answer lost

    record = fold([graduated, renumbered])
    handoff = drive(record, handoff, registry, MAX_STEPS)
    assert handoff.next_action(record) is None
    assert handoff.phase(record) is Phase.FILE_DELIVERED
    assert list(registry.students) == [G_NUMBER]
    assert handoff.registrations[0].school_code == "2111010502"
