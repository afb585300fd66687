"""Retention: what erasing a child's personal data leaves, and what the hand-over does then."""

from __future__ import annotations

import datetime as dt
import hashlib

import orjson
import pytest

from bridge.adapters.postgres.derived import Derived
from bridge.adapters.postgres.handoff_codec import dump_handoff, load_handoff
from bridge.adapters.postgres.minimised_events import (
    is_minimised,
    minimise,
    parse_minimised,
    parse_stored,
)
from bridge.domain.actions import Withdraw
from bridge.domain.child_record import ChildRecord, fold
from bridge.domain.handoff import Arrival, Handoff, Phase
from bridge.domain.intake import ERASED_KEY_INFO, IntakeRequest
from bridge.domain.retention import ErasureReason, RetentionPolicy, erased_file_message
from bridge.errors import InvalidEvent
from schemas.events import parse_event
from tests.support.wire_events import CHILD, SHA, G, L, cancelled, graduated, key_info
from tests.support.wire_events import number_assigned as assigned

AT = dt.datetime(2027, 1, 5, 3, 0, tzinfo=dt.UTC)
SCHOOL = "2111010898"


def deferred(number: str, seq: int) -> dict[str, object]:
    wire = graduated(number, seq)
    wire["type"] = "cn.edu.preschool.child.deferred"
    wire["data"] = {
        "student_number": number, "entry_year": 2026, "deferred_until": "2027-07-31",
        "approved_by_county_code": "110108", "reason": "health",
        "kindergarten_code": "1111010873",
    }  # fmt: skip
    return wire


def bodies(*wires: dict[str, object]) -> list[bytes]:
    return [orjson.dumps(w) for w in wires]


def enrolled(record: ChildRecord) -> Handoff:
    """The hand-over of *record* carried through to the child's arrival."""
    intake = IntakeRequest.for_record(record)
    h = Handoff().file_verified(intake.file_sha256).intake_registered(intake, SCHOOL)
    h = h.file_delivered(intake.student_number, intake.file_sha256)
    h = h.arrival_requested(Arrival(SCHOOL, dt.date(2026, 9, 1)))
    return h.arrival_reported(intake.student_number)


LIFE = bodies(
    graduated(L, 2), assigned(L, G, 3), key_info(G, 4, name="刘晨晨"), deferred(L, 1)
)  # the deferral is older than the graduation: folded, no longer in force


def test_minimised_bodies_keep_numbers_codes_dates_and_digests_only() -> None:
    for body in [*LIFE, *bodies(cancelled(G, 5))]:
        small = minimise(body, at=AT)
        text = small.decode("utf-8", "replace")
        for personal in (CHILD["name"], "刘晨晨", '"gender"', "2020-01-09", '"id_number"',
                         '"nationality"', '"uri"', '"health"', "record-files/x"):  # fmt: skip
            assert personal not in text
        kept, wire = orjson.loads(small[small.index(b"{") :]), orjson.loads(body)
        assert kept["sha256"] == hashlib.sha256(body).hexdigest()
        assert (kept["id"], kept["childseq"]) == (wire["id"], wire["childseq"])
    grad = orjson.loads(minimise(LIFE[0], at=AT)[20:])
    assert grad["data"]["record_file"] == {"sha256": SHA, "size": 31174,
                                           "media_type": "application/json"}  # fmt: skip
    assert grad["data"]["graduated_on"] == "2026-07-05"
    assert orjson.loads(minimise(LIFE[2], at=AT)[20:])["data"]["changed"] == ["name"]


def test_minimising_twice_changes_nothing_and_either_form_reads_back() -> None:
    once = minimise(LIFE[0], at=AT)
    assert minimise(once, at=AT + dt.timedelta(days=1)) == once
    assert is_minimised(once) and not is_minimised(LIFE[0])
    assert parse_stored(LIFE[0]) == parse_event(LIFE[0])
    assert parse_stored(once) == parse_minimised(once) and parse_minimised(once).erased


def test_no_message_can_pass_for_a_minimised_body() -> None:
    """A minimised body starts with a NUL byte, which no accepted message can."""
    with pytest.raises(InvalidEvent):
        parse_event(minimise(LIFE[0], at=AT))


def test_an_erased_child_keeps_its_hand_over_and_has_nothing_left_to_do() -> None:
    whole = fold(parse_event(b) for b in LIFE)
    handoff = enrolled(whole)
    assert handoff.phase(whole) is Phase.ENROLLED and handoff.next_action(whole) is None

    erased = fold(parse_stored(minimise(b, at=AT)) for b in LIFE)
    after = handoff.erased()
    assert erased.erased and not whole.erased
    assert erased.student_number == G and erased.former_numbers == (L,)
    assert erased.last_childseq == whole.last_childseq
    assert erased.events_folded == whole.events_folded
    assert after.phase(erased) is Phase.ENROLLED and after.next_action(erased) is None
    derived, before = Derived.of(erased, after), Derived.of(whole, handoff)
    assert derived.id_number is None and before.id_number == G[1:]
    for column in ("student_number", "status", "phase", "entry_year", "county_code",
                   "kindergarten_code", "school_code", "last_childseq", "events_folded",
                   "has_work", "handed_over"):  # fmt: skip
        assert getattr(derived, column) == getattr(before, column), column
    # The registration keeps number, year, terms and file digest; its key info is null.
    dumped = dump_handoff(after)
    assert [r["key_info"] for r in dumped["registrations"]] == [None]
    assert dumped["registrations"][0]["terms"] == dump_handoff(handoff)["registrations"][0]["terms"]
    assert load_handoff(orjson.loads(orjson.dumps(dumped))) == after
    assert after.registrations[0].key_info == ERASED_KEY_INFO
    assert CHILD["name"] not in orjson.dumps(dumped).decode()


def test_after_erasure_a_cancellation_still_withdraws_and_a_correction_is_not_sent() -> None:
    erased_bodies = [minimise(b, at=AT) for b in LIFE]
    handoff = enrolled(fold(parse_event(b) for b in LIFE)).erased()
    cancel = fold(parse_stored(b) for b in [*erased_bodies, *bodies(cancelled(G, 9))])
    assert handoff.next_action(cancel) == Withdraw(G, 2026)
    corrected = fold(parse_stored(b) for b in [*erased_bodies, *bodies(key_info(G, 9))])
    assert handoff.next_action(corrected) is None  # nothing of the person left to correct


def test_retention_counts_from_the_close_of_the_hand_over() -> None:
    policy = RetentionPolicy(90)
    now = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    closed = now - dt.timedelta(days=91)
    assert policy.due("enrolled", closed, now) and policy.due("cancelled", closed, now)
    assert not policy.due("enrolled", now - dt.timedelta(days=89), now)
    assert not policy.due("file_delivered", closed, now)
    assert not policy.due("enrolled", None, now)
    assert ErasureReason.for_phase("cancelled") is ErasureReason.CANCELLED
    assert ErasureReason.for_phase("enrolled") is ErasureReason.HANDOVER_COMPLETE


def test_a_school_is_told_when_and_why_a_file_was_erased() -> None:
    message = erased_file_message("handover_complete", dt.datetime(2027, 3, 1, 20, tzinfo=dt.UTC))
    assert "2027-03-02" in message  # China time
    assert "after the hand-over completed" in message and "keep their copies" in message
    assert "cancelled" in erased_file_message("cancelled", AT)
    assert "retention" in erased_file_message(None, AT)
