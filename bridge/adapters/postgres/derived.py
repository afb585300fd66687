"""The columns of `children` that summarise a child for queries, derived from its state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.adapters.postgres.handoff_codec import dump_handoff
from bridge.domain.child_record import ChildRecord, RecordStatus
from bridge.domain.handoff import Handoff, Phase

_HANDED_OVER = frozenset({Phase.FILE_DELIVERED, Phase.ENROLLED})


@dataclass(frozen=True, slots=True)
class Derived:
    """Always recomputed from the record and the hand-over, never edited by hand."""

    student_number: str
    status: str
    phase: Phase
    entry_year: int | None
    county_code: str | None
    kindergarten_code: str | None
    school_code: str | None
    id_number: str | None
    deferred_until: dt.date | None
    set_aside_reason: str | None
    last_childseq: int
    events_folded: int  # the save guard's measure of "no event arrived meanwhile"
    handoff: str  # the hand-over as JSON text (the jsonb column)
    arrival: str  # its arrival part as JSON text: the fast save's guard compares it
    has_work: bool
    graduated: bool
    handed_over: bool

    @classmethod
    def of(cls, record: ChildRecord, handoff: Handoff) -> Derived:
        """The columns for *record* and *handoff*."""
        registration = handoff.registered(record)
        aside = handoff.active_set_aside(record)
        phase = handoff.phase(record)
        dumped = dump_handoff(handoff)
        deferred = record.status is RecordStatus.DEFERRED and record.deferral is not None
        return cls(
            student_number=record.student_number,
            status=record.status.value,
            phase=phase,
            entry_year=record.entry_year,
            county_code=record.graduation.county_code if record.graduation else None,
            kindergarten_code=record.kindergarten_code,
            school_code=registration.school_code if registration else None,
            id_number=record.child.id_number if record.child else None,
            deferred_until=record.deferral.deferred_until if deferred and record.deferral else None,
            set_aside_reason=aside.reason.value if aside else None,
            last_childseq=record.last_childseq,
            events_folded=record.events_folded,
            handoff=orjson.dumps(dumped).decode(),
            arrival=orjson.dumps(dumped["arrival"]).decode(),
            has_work=handoff.next_action(record) is not None,
            graduated=record.status is RecordStatus.GRADUATED,
            handed_over=phase in _HANDED_OVER,
        )

    def update_args(self, child_id: int) -> list[Any]:
        """$1..$16 of UPDATE_DERIVED."""
        return [
            child_id, self.student_number, self.status, self.phase.value, self.entry_year,
            self.county_code, self.kindergarten_code, self.school_code, self.id_number,
            self.deferred_until, self.set_aside_reason, self.last_childseq, self.handoff,
            self.graduated, self.handed_over, self.events_folded,
        ]  # fmt: skip


UPDATE_DERIVED = """
UPDATE children SET
    student_number = $2, status = $3, phase = $4, entry_year = $5, county_code = $6,
    kindergarten_code = $7, school_code = $8, id_number = $9, deferred_until = $10,
    set_aside_reason = $11, last_childseq = $12, handoff = $13::jsonb,
    first_graduated_at = CASE WHEN $14 THEN coalesce(first_graduated_at, now())
                              ELSE first_graduated_at END,
    handed_over_at = CASE WHEN $15 THEN coalesce(handed_over_at, now()) ELSE NULL END,
    events_folded = $16, version = version + 1, updated_at = now()
WHERE child_id = $1
"""
