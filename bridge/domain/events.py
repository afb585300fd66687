"""The preschool registry's events as the domain sees them (no wire details)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class EventType(enum.StrEnum):
    """Event types of events.md, by their routing key."""

    GRADUATED = "child.graduated"
    DEFERRED = "child.deferred"
    NUMBER_ASSIGNED = "child.number_assigned"
    KEY_INFO_CHANGED = "child.key_info_changed"
    CANCELLED = "child.cancelled"


@dataclass(frozen=True, slots=True)
class Child:
    """Who the record is about: the key information handed over with the number."""

    name: str
    gender: str
    birth_date: dt.date
    id_type: str
    id_number: str | None
    nationality: str


# The child of an event whose personal fields were erased after retention (retention.py):
# nothing of the person is left, and nothing of it may be sent anywhere.
ERASED_CHILD = Child(
    name="", gender="", birth_date=dt.date.min, id_type="erased", id_number=None, nationality=""
)
ERASED = "erased"  # stands for an erased free-text field (a deferral's reason)


@dataclass(frozen=True, slots=True)
class RecordFileClaim:
    """Claim check for the record file (学籍档案): where it is and what its bytes must be."""

    uri: str
    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class Graduated:
    """毕业: the child leaves kindergarten for primary school in ``entry_year``."""

    student_number: str
    child: Child
    kindergarten_code: str
    county_code: str
    graduated_on: dt.date
    entry_year: int
    destination_school_code: str | None
    record_file: RecordFileClaim


@dataclass(frozen=True, slots=True)
class Deferred:
    """缓学留园: the child stays in kindergarten and is not registered for ``entry_year``."""

    student_number: str
    entry_year: int
    deferred_until: dt.date
    approved_by_county_code: str
    reason: str
    kindergarten_code: str


@dataclass(frozen=True, slots=True)
class NumberAssigned:
    """A temporary or J number replaced by a formal G number."""

    previous_student_number: str
    student_number: str
    id_type: str
    id_number: str | None


@dataclass(frozen=True, slots=True)
class KeyInfoChanged:
    """关键信息修改: an approved correction of name, gender or birth date."""

    student_number: str
    changes: dict[str, str | dt.date]
    approved_by_county_code: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """注销: the record is cancelled; nothing is handed over afterwards."""

    student_number: str
    reason: str
    effective_on: dt.date


EventData = Graduated | Deferred | NumberAssigned | KeyInfoChanged | Cancelled


@dataclass(frozen=True, slots=True)
class ChildEvent:
    """One event of one child, placed by its ``childseq``."""

    event_id: str
    childseq: int
    type: EventType
    subject: str
    time: dt.datetime
    data: EventData
    erased: bool = False  # its personal fields were erased after retention

    @property
    def numbers(self) -> frozenset[str]:
        """Every student number this event names: how the ledger finds the child."""
        found = {self.subject, self.data.student_number}
        if isinstance(self.data, NumberAssigned):
            found.add(self.data.previous_student_number)
        return frozenset(found)
