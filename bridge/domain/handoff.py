"""The hand-over of one child: what the registry holds, and the next step to take.

``Handoff`` is what the bridge knows the primary registry holds for the child. Given the
child's record (the fold of its events) it names the one next action that brings the
registry closer to what the record calls for; the service performs it and feeds the
outcome back. Repeating this until no action is left converges from any starting point,
which is what makes every event order, duplicate and crash come out the same.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
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
from bridge.domain.arrival import Arrival
from bridge.domain.child_record import ChildRecord, RecordStatus
from bridge.domain.intake import ERASED_KEY_INFO, IntakeRequest, KeyInfo


class SetAsideReason(enum.StrEnum):
    """Why a hand-over waits for a person. Names are part of the operator interface."""

    IDENTITY_CONFLICT = "identity_conflict"
    BAD_SOURCE_FILE = "bad_source_file"
    SOURCE_FILE_MISSING = "source_file_missing"
    ALREADY_ENROLLED = "already_enrolled"
    REGISTRY_REJECTED = "registry_rejected"
    FILE_REJECTED = "file_rejected"
    SCHOOL_MISMATCH = "school_mismatch"
    # The bridge itself failed on this child again and again (a defect, not the data's
    # fault as far as it can tell): for an engineer, with the error's type in the detail.
    INTERNAL_ERROR = "internal_error"


class Phase(enum.StrEnum):
    """Where a hand-over stands, for ledgers, metrics and reports."""

    WAITING = "waiting"  # no graduation known yet
    RECEIVED = "received"
    FILE_FETCHED = "file_fetched"
    REGISTERED = "registered"
    FILE_DELIVERED = "file_delivered"
    ENROLLED = "enrolled"
    WITHDRAWING = "withdrawing"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    SET_ASIDE = "set_aside"


# Terms of a registration whose data the registry has not answered with: never equal to
# an intake's, so the next step submits B1 (idempotent) and learns them.
UNKNOWN_TERMS = ""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registration the primary registry holds for this child."""

    student_number: str
    entry_year: int
    terms: str
    key_info: KeyInfo
    school_code: str | None = None
    file_sha256: str | None = None
    enrolled: bool = False
    # False while a call that may have created it (B1, B4) has no answer yet: a time-out
    # or a crash can hide an effect, so the registry is assumed to hold it until a
    # definite answer says otherwise — a cancellation then withdraws it all the same.
    confirmed: bool = True


@dataclass(frozen=True, slots=True)
class SetAside:
    """A case parked for an operator, valid until a newer event arrives."""

    reason: SetAsideReason
    detail: dict[str, str] = field(default_factory=dict)
    at_childseq: int = 0


@dataclass(frozen=True, slots=True)
class Handoff:
    """What the registry holds for one child, as far as the bridge knows."""

    registrations: tuple[Registration, ...] = ()
    verified_file_sha256: str | None = None
    set_aside: SetAside | None = None
    arrival: Arrival | None = None
    # Bumped whenever a registration is withdrawn or found missing (see idempotency_key).
    generation: int = 0

    @classmethod
    def merge(cls, handoffs: Sequence[Handoff]) -> Handoff:
        """One hand-over from those of ledger rows found to be one child (first wins ties).

        Nothing either row knew of the registry may be lost: every registration (each may
        have to be withdrawn or renumbered), the school's arrival report, the latest
        set-aside, and the highest generation, so that no idempotency key is used again.
        """
        registrations: dict[str, Registration] = {}
        for h in handoffs:
            for reg in h.registrations:
                registrations.setdefault(reg.student_number, reg)
        asides = [h.set_aside for h in handoffs if h.set_aside is not None]
        return cls(
            registrations=tuple(registrations.values()),
            verified_file_sha256=next(
                (h.verified_file_sha256 for h in handoffs if h.verified_file_sha256), None
            ),
            set_aside=max(asides, key=lambda a: a.at_childseq, default=None),
            arrival=next((h.arrival for h in handoffs if h.arrival is not None), None),
            generation=max((h.generation for h in handoffs), default=0),
        )

    # --- deciding ---------------------------------------------------------------------
    def active_set_aside(self, record: ChildRecord) -> SetAside | None:
        """The set-aside still in force: a newer event re-opens the case."""
        if self.set_aside and record.last_childseq <= self.set_aside.at_childseq:
            return self.set_aside
        return None

    def next_action(self, record: ChildRecord) -> Action | None:
        """The one step that brings the registry closer to *record*, or None when done."""
        if self.active_set_aside(record):
            return None
        if record.status is not RecordStatus.GRADUATED:
            # Deferred, cancelled, or not graduated yet: nothing may stay registered.
            for reg in self.registrations:
                return Withdraw(reg.student_number, reg.entry_year)
            return None
        if record.erased:
            # The child's data was erased after the hand-over completed: a withdrawal (above)
            # needs none of it, everything else would send what is no longer there.
            return None
        intake = IntakeRequest.for_record(record)
        if self.verified_file_sha256 != intake.file_sha256:
            assert record.graduation is not None
            return FetchFile(record.graduation.record_file)
        current = self._registration(intake.student_number)
        for reg in self.registrations:
            if reg.student_number == intake.student_number:
                continue
            if current is None or not current.confirmed:
                # B4 is idempotent: repeating it after an unanswered attempt is safe.
                return ChangeNumber(reg.student_number, intake.student_number, intake.child)
            # The child is registered under its current number already: the old one is stray.
            return Withdraw(reg.student_number, reg.entry_year)
        if current is not None and current.entry_year != intake.entry_year:
            return Withdraw(current.student_number, current.entry_year)
        if current is None or current.terms != intake.terms:
            return SubmitIntake(intake, intake.idempotency_key(self.generation))
        changes = current.key_info.changes_to(intake.key_info)
        if changes:
            return CorrectKeyInfo(intake.student_number, changes)
        if current.file_sha256 != intake.file_sha256:
            return UploadFile(intake.student_number, intake.file_sha256, intake.file_media_type)
        if self.arrival and not current.enrolled:
            return ReportArrival(intake.student_number, self.arrival)
        return None

    def phase(self, record: ChildRecord) -> Phase:
        """A one-word summary of where the hand-over stands."""
        if self.active_set_aside(record):
            return Phase.SET_ASIDE
        if record.status is RecordStatus.CANCELLED:
            return Phase.WITHDRAWING if self.registrations else Phase.CANCELLED
        if record.status is RecordStatus.DEFERRED:
            return Phase.WITHDRAWING if self.registrations else Phase.DEFERRED
        if record.status is RecordStatus.IN_KINDERGARTEN:
            return Phase.WITHDRAWING if self.registrations else Phase.WAITING
        intake = IntakeRequest.for_record(record)
        current = self._registration(intake.student_number)
        if current is not None and current.confirmed and current.entry_year == intake.entry_year:
            if current.enrolled:
                return Phase.ENROLLED
            if current.file_sha256 == intake.file_sha256:
                return Phase.FILE_DELIVERED
            return Phase.REGISTERED
        if self.verified_file_sha256 == intake.file_sha256:
            return Phase.FILE_FETCHED
        return Phase.RECEIVED

    def registered(self, record: ChildRecord) -> Registration | None:
        """The registration under the child's current number, if any."""
        return self._registration(record.student_number)

    def _registration(self, number: str) -> Registration | None:
        return next((r for r in self.registrations if r.student_number == number), None)

    # --- recording outcomes -----------------------------------------------------------
    def attempting(self, action: Action) -> Handoff:
        """Before a call that may create a registration: assume it might (see confirmed)."""
        if isinstance(action, SubmitIntake):
            intake = action.intake
            if self._registration(intake.student_number) is None:
                maybe = Registration(
                    intake.student_number, intake.entry_year, terms=UNKNOWN_TERMS,
                    key_info=intake.key_info, confirmed=False,
                )  # fmt: skip
                return self._replace(intake.student_number, maybe)
        if isinstance(action, ChangeNumber):
            old = self._registration(action.old_number)
            if old is not None and self._registration(action.new_number) is None:
                maybe = dataclasses.replace(
                    old, student_number=action.new_number, terms=UNKNOWN_TERMS, confirmed=False
                )
                return self._replace(action.new_number, maybe)
        return self

    def refused(self, action: Action) -> Handoff:
        """A definite refusal (409/422): the call created nothing after all."""
        number = None
        if isinstance(action, SubmitIntake):
            number = action.intake.student_number
        elif isinstance(action, ChangeNumber):
            number = action.new_number
        reg = self._registration(number) if number else None
        if reg is not None and not reg.confirmed and number is not None:
            return self._replace(number, None)
        return self

    def _replace(self, number: str, reg: Registration | None) -> Handoff:
        others = tuple(r for r in self.registrations if r.student_number != number)
        regs = (*others, reg) if reg is not None else others
        return dataclasses.replace(self, registrations=regs)

    def file_verified(self, sha256: str) -> Handoff:
        """The record file's bytes were fetched, checked and stored."""
        return dataclasses.replace(self, verified_file_sha256=sha256)

    def intake_registered(self, intake: IntakeRequest, school_code: str | None) -> Handoff:
        """B1 answered 200/201."""
        previous = self._registration(intake.student_number)
        same_file = previous and previous.entry_year == intake.entry_year
        reg = Registration(
            student_number=intake.student_number,
            entry_year=intake.entry_year,
            terms=intake.terms,
            key_info=intake.key_info,
            school_code=school_code,
            file_sha256=previous.file_sha256 if previous and same_file else None,
            enrolled=bool(previous and same_file and previous.enrolled),
        )
        return self._replace(intake.student_number, reg)

    def key_info_corrected(self, number: str, key_info: KeyInfo) -> Handoff:
        """B5 answered 200."""
        reg = self._registration(number)
        if reg is None:
            return self
        return self._replace(number, dataclasses.replace(reg, key_info=key_info))

    def file_delivered(self, number: str, sha256: str) -> Handoff:
        """B2 answered 204."""
        reg = self._registration(number)
        if reg is None:
            return self
        return self._replace(number, dataclasses.replace(reg, file_sha256=sha256))

    def withdrawn(self, number: str) -> Handoff:
        """B3 answered 204: nothing stays registered under *number*."""
        return dataclasses.replace(self._replace(number, None), generation=self.generation + 1)

    def number_changed(self, old: str, new: str, terms: str) -> Handoff:
        """B4 answered 200: the registration now stands under *new*.

        The identity document changed with the number, so the stored terms are the
        new intake's; the key information and the delivered file carry over. If B1 under
        the old number was never answered, the 200 proves the registration exists but not
        what it holds (nor the school): its terms stay unknown, so B1 is submitted again
        under the new number and answers with both.
        """
        reg = self._registration(old)
        if reg is None:
            return self
        moved = dataclasses.replace(
            reg, student_number=new, terms=terms if reg.confirmed else UNKNOWN_TERMS, confirmed=True
        )
        return self._replace(old, None)._replace(new, moved)

    def registration_missing(self, number: str) -> Handoff:
        """The registry answered not_registered: forget what we thought was there."""
        return dataclasses.replace(self._replace(number, None), generation=self.generation + 1)

    def stray_found(self, record: ChildRecord, number: str, entry_year: int) -> Handoff | None:
        """The registry holds a registration under *number*, a former number of the child.

        Put on the hand-over, it is moved to the current number (B4) while that has none,
        or else withdrawn (B3). What it holds is unknown (terms and school), as after an
        unanswered call. None if there is nothing to add: *number* is not a former number
        of the child, or the hand-over knows of that registration already.
        """
        if number not in record.former_numbers or self._registration(number) is not None:
            return None
        if record.child is None:
            # Only number changes known, no graduation or deferral: nothing to carry the
            # key information from. The report goes on showing the stray.
            return None
        stray = Registration(
            number, entry_year, terms=UNKNOWN_TERMS, key_info=KeyInfo.of(record.child),
            confirmed=False,
        )  # fmt: skip
        return self._replace(number, stray)

    def arrival_reported(self, number: str) -> Handoff:
        """B6 answered 200: the child is enrolled at the school."""
        reg = self._registration(number)
        if reg is None:
            return self
        return self._replace(number, dataclasses.replace(reg, enrolled=True))

    def arrival_requested(self, arrival: Arrival) -> Handoff:
        """A school reported the child's arrival; B6 is still to be called."""
        return dataclasses.replace(self, arrival=arrival)

    def aside(self, record: ChildRecord, reason: SetAsideReason, **detail: str) -> Handoff:
        """Park the case for an operator until a newer event or an operator's retry."""
        return dataclasses.replace(
            self, set_aside=SetAside(reason, dict(detail), record.last_childseq)
        )

    def erased(self) -> Handoff:
        """The hand-over once the child's personal data is erased (retention): what the
        registry holds stays known by number, year, terms digest and file digest."""
        return dataclasses.replace(
            self,
            registrations=tuple(
                dataclasses.replace(r, key_info=ERASED_KEY_INFO) for r in self.registrations
            ),
        )

    def released(self) -> Handoff:
        """An operator's retry: decide again from the facts.

        The registry replays its stored answer to a key it has seen (registry-api.md B1),
        so asking again under the old key would only repeat the refusal: the retry asks
        under a new generation. That cannot register twice: the registry keys people by
        number and identity, and answers 200 to the same number with the same data.
        """
        return dataclasses.replace(self, set_aside=None, generation=self.generation + 1)
