"""A pure, in-memory stand-in for the primary registry, for domain property tests only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bridge.domain.actions import (
    Action,
    ChangeNumber,
    CorrectKeyInfo,
    FetchFile,
    ReportArrival,
    SubmitIntake,
    UploadFile,
    Withdraw,
)
from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff
from bridge.domain.intake import IntakeRequest, KeyInfo


@dataclass
class Entry:
    entry_year: int
    key_info: KeyInfo
    id_number: str | None
    file_sha256: str | None = None


@dataclass
class FakeRegistry:
    students: dict[str, Entry] = field(default_factory=dict)
    intakes_created: int = 0
    # Idempotency keys already answered: a repeat replays the answer and changes nothing.
    keys_seen: set[str] = field(default_factory=set)

    def perform(self, action: Action, record: ChildRecord, handoff: Handoff) -> Handoff:
        """Apply *action* as the registry would, and return the hand-over's new state."""
        match action:
            case FetchFile(claim):
                return handoff.file_verified(claim.sha256)
            case SubmitIntake(intake, key):
                if key in self.keys_seen:
                    return handoff.intake_registered(intake, intake.requested_school_code)
                self.keys_seen.add(key)
                old = self.students.get(intake.student_number)
                if old is None:
                    self.intakes_created += 1
                sha = old.file_sha256 if old and old.entry_year == intake.entry_year else None
                self.students[intake.student_number] = Entry(
                    intake.entry_year, intake.key_info, intake.child.id_number, sha
                )
                return handoff.intake_registered(intake, intake.requested_school_code)
            case UploadFile(number, sha256, _):
                if number not in self.students:
                    return handoff.registration_missing(number)
                self.students[number].file_sha256 = sha256
                return handoff.file_delivered(number, sha256)
            case ChangeNumber(old, new, child) if old not in self.students:
                # B4 repeated after it happened answers 200; never made: not_registered.
                if new in self.students:
                    return handoff.number_changed(old, new, IntakeRequest.for_record(record).terms)
                return handoff.registration_missing(old)
            case CorrectKeyInfo(number, _) if number not in self.students:
                return handoff.registration_missing(number)
            case Withdraw(number, _):
                self.students.pop(number, None)
                return handoff.withdrawn(number)
            case ChangeNumber(old, new, child):
                entry = self.students.pop(old)
                self.students[new] = dataclasses.replace(entry, id_number=child.id_number)
                return handoff.number_changed(old, new, IntakeRequest.for_record(record).terms)
            case CorrectKeyInfo(number, changes):
                entry = self.students[number]
                entry.key_info = dataclasses.replace(entry.key_info, **changes)  # type: ignore[arg-type]
                assert record.child is not None
                return handoff.key_info_corrected(number, KeyInfo.of(record.child))
            case ReportArrival(number, _):
                return handoff.arrival_reported(number)
        raise AssertionError(action)
