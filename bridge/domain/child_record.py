"""A child's preschool record as the fold of its events in ``childseq`` order.

Events arrive in any order and more than once. Folding the whole event log sorted by
``childseq`` gives exactly what in-order processing would: a late event takes its place
in the sequence, so it can never override a later one (events.md: stale events change
nothing), and duplicates are dropped by event id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge.domain.events import (
    Cancelled,
    Child,
    ChildEvent,
    Deferred,
    Graduated,
    KeyInfoChanged,
    NumberAssigned,
    RecordFileClaim,
)


class RecordStatus(enum.StrEnum):
    """Where the child stands in the preschool registry."""

    IN_KINDERGARTEN = "in_kindergarten"
    GRADUATED = "graduated"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Graduation:
    """The facts of the child's latest graduation."""

    entry_year: int
    kindergarten_code: str
    county_code: str
    graduated_on: dt.date
    destination_school_code: str | None
    record_file: RecordFileClaim


@dataclass(frozen=True, slots=True)
class Deferral:
    """The child's latest deferral (缓学留园)."""

    entry_year: int
    deferred_until: dt.date
    approved_by_county_code: str
    reason: str
    kindergarten_code: str

    def expired(self, today: dt.date) -> bool:
        """True once the deferral has run out (the child may be out of school)."""
        return today > self.deferred_until


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """What the preschool registry says of one child, after its known events."""

    student_number: str
    former_numbers: tuple[str, ...] = ()
    status: RecordStatus = RecordStatus.IN_KINDERGARTEN
    child: Child | None = None
    graduation: Graduation | None = None
    deferral: Deferral | None = None
    cancelled_reason: str | None = None
    last_childseq: int = 0
    event_ids: frozenset[str] = field(default_factory=frozenset)
    # Distinct events folded, applied or not: grows with every event recorded, even one
    # whose childseq is lower than the highest seen, which last_childseq cannot tell.
    events_folded: int = 0
    # The child's personal data was erased after retention: nothing that needs it (an
    # intake, a file, a correction, a number change) can be done any more.
    erased: bool = False

    @property
    def numbers(self) -> frozenset[str]:
        """Every number the child has held, current first in meaning."""
        return frozenset((self.student_number, *self.former_numbers))

    @property
    def kindergarten_code(self) -> str | None:
        """The child's kindergarten, from the latest fact that names one."""
        if self.status is RecordStatus.DEFERRED and self.deferral:
            return self.deferral.kindergarten_code
        return self.graduation.kindergarten_code if self.graduation else None

    @property
    def entry_year(self) -> int | None:
        """The primary-school year the latest graduation or deferral concerns."""
        if self.status is RecordStatus.DEFERRED and self.deferral:
            return self.deferral.entry_year
        return self.graduation.entry_year if self.graduation else None


def _renumber(record: ChildRecord, new_number: str) -> ChildRecord:
    if new_number == record.student_number:
        return record
    former = tuple(n for n in (*record.former_numbers, record.student_number) if n != new_number)
    return dataclasses.replace(record, student_number=new_number, former_numbers=former)


def _corrected(child: Child, event: KeyInfoChanged) -> Child:
    changes = event.changes
    name, gender, birth_date = changes.get("name"), changes.get("gender"), changes.get("birth_date")
    return dataclasses.replace(
        child,
        name=name if isinstance(name, str) else child.name,
        gender=gender if isinstance(gender, str) else child.gender,
        birth_date=birth_date if isinstance(birth_date, dt.date) else child.birth_date,
    )


def _apply(record: ChildRecord, event: ChildEvent) -> ChildRecord:
    data = event.data
    cancelled = record.status is RecordStatus.CANCELLED
    if isinstance(data, NumberAssigned):
        record = _renumber(record, data.student_number)
        if record.child is not None:
            child = dataclasses.replace(
                record.child, id_type=data.id_type, id_number=data.id_number
            )
            record = dataclasses.replace(record, child=child)
    elif isinstance(data, KeyInfoChanged):
        if record.child is not None:
            record = dataclasses.replace(record, child=_corrected(record.child, data))
    elif cancelled:
        pass  # 注销 is final: nothing after it hands the child over again
    elif isinstance(data, Graduated):
        record = _renumber(record, data.student_number)
        graduation = Graduation(
            entry_year=data.entry_year,
            kindergarten_code=data.kindergarten_code,
            county_code=data.county_code,
            graduated_on=data.graduated_on,
            destination_school_code=data.destination_school_code,
            record_file=data.record_file,
        )
        record = dataclasses.replace(
            record, status=RecordStatus.GRADUATED, child=data.child, graduation=graduation
        )
    elif isinstance(data, Deferred):
        deferral = Deferral(
            entry_year=data.entry_year,
            deferred_until=data.deferred_until,
            approved_by_county_code=data.approved_by_county_code,
            reason=data.reason,
            kindergarten_code=data.kindergarten_code,
        )
        record = dataclasses.replace(record, status=RecordStatus.DEFERRED, deferral=deferral)
    elif isinstance(data, Cancelled):
        record = dataclasses.replace(
            record, status=RecordStatus.CANCELLED, cancelled_reason=data.reason
        )
    return dataclasses.replace(
        record,
        last_childseq=max(record.last_childseq, event.childseq),
        event_ids=record.event_ids | {event.event_id},
        erased=record.erased or event.erased,
    )


def fold(events: Iterable[ChildEvent]) -> ChildRecord:
    """The child's record from its events, whatever order and duplication they came in.

    Raises ValueError on an empty log: a record exists only through an event.
    """
    unique: dict[str, ChildEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    ordered = sorted(unique.values(), key=lambda e: (e.childseq, e.event_id))
    if not ordered:
        raise ValueError("a child record needs at least one event")
    first = ordered[0]
    start_number = (
        first.data.previous_student_number
        if isinstance(first.data, NumberAssigned)
        else first.data.student_number
    )
    record = ChildRecord(student_number=start_number)
    seen_seq: set[int] = set()
    for event in ordered:
        # childseq is unique per child; a second event at one seq is a publisher fault and
        # must not be applied twice. The lower event id wins, so every order folds the same.
        if event.childseq in seen_seq:
            continue
        seen_seq.add(event.childseq)
        record = _apply(record, event)
    return dataclasses.replace(record, events_folded=len(unique))
