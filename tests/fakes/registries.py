"""Both registries of registry-api.md in memory, with failures a test can script.

Written from the contract, as the simulator is: B1 replays its answer to the same
idempotency key and refuses a second number for one identity; B2-B6 are idempotent; a
number the registry does not hold is not_registered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from bridge.domain.events import Child, RecordFileClaim
from bridge.domain.intake import IntakeRequest
from bridge.domain.record_file import verify_record_file
from bridge.errors import (
    AlreadyEnrolled,
    FileRejected,
    IdentityConflict,
    NotRegistered,
    SchoolMismatch,
    SourceFileMissing,
)
from schemas.registry import CohortStudent, IntakeResult, RosterItem, RosterPage, StudentPage


class Failures:
    """Errors to raise on the next calls of an operation, in order."""

    def __init__(self) -> None:
        self._next: dict[str, list[BaseException]] = defaultdict(list)

    def add(self, operation: str, *errors: BaseException) -> None:
        """Raise *errors* on the next calls of *operation*, one per call."""
        self._next[operation].extend(errors)

    def check(self, operation: str) -> None:
        """Raise the next scripted error of *operation*, if any."""
        if self._next[operation]:
            raise self._next[operation].pop(0)


def _page(items: list[object], cursor: str | None, limit: int) -> tuple[list[object], str | None]:
    start = int(cursor or 0)
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


@dataclass
class FakeSourceRegistry:
    """SourceRegistry: the preschool registry's record files (A1) and roster (A2)."""

    files: dict[str, bytes] = field(default_factory=dict)  # uri -> bytes
    roster: list[RosterItem] = field(default_factory=list)
    failures: Failures = field(default_factory=Failures)
    fetched: list[str] = field(default_factory=list)

    async def fetch_record_file(self, claim: RecordFileClaim) -> bytes:
        """A1, verified against the claim (BadSourceFile if the bytes differ)."""
        self.failures.check("fetch_file")
        self.fetched.append(claim.uri)
        content = self.files.get(claim.uri)
        if content is None:
            raise SourceFileMissing("the preschool registry does not know this record file")
        verify_record_file(claim, content)
        return content

    async def roster_page(self, entry_year: int, cursor: str | None, limit: int) -> RosterPage:
        """A2: the roster as listed (a test may list it out of order on purpose)."""
        self.failures.check("roster")
        items, after = _page(list(self.roster), cursor, limit)
        return RosterPage(items=items, next_cursor=after)  # type: ignore[arg-type]


@dataclass
class Student:
    """One registration the registry holds."""

    student_number: str
    entry_year: int
    child: Child
    school_code: str | None
    file_sha256: str | None = None
    file_expected: str | None = None  # the sha256 B1 announced
    status: str = "registered"
    created_count: int = 1


@dataclass
class FakeTargetRegistry:
    """TargetRegistry: the primary registry (B1-B8)."""

    students: dict[str, Student] = field(default_factory=dict)
    answers: dict[str, IntakeResult] = field(default_factory=dict)  # idempotency key -> B1
    failures: Failures = field(default_factory=Failures)
    calls: list[str] = field(default_factory=list)
    # Listed by B8 in this order when set (reconciliation tests), else by number.
    listing: list[CohortStudent] | None = None

    def _holder(self, id_number: str | None) -> Student | None:
        if id_number is None:
            return None
        return next(
            (s for s in self.students.values()
             if s.child.id_number == id_number and s.status != "withdrawn"),
            None,
        )  # fmt: skip

    def _held(self, number: str) -> Student:
        student = self.students.get(number)
        if student is None or student.status == "withdrawn":
            raise NotRegistered(f"{number}: not registered")
        return student

    async def put_intake(self, intake: IntakeRequest, idempotency_key: str) -> IntakeResult:
        """B1."""
        self.calls.append("intake")
        self.failures.check("intake")
        if idempotency_key in self.answers:
            return self.answers[idempotency_key]
        number = intake.student_number
        holder = self._holder(intake.child.id_number)
        if holder is not None and holder.student_number != number:
            raise IdentityConflict(
                "intake: identity already holds another number",
                existing_student_number=holder.student_number,
            )
        old = self.students.get(number)
        if old is not None and old.status == "enrolled" and old.entry_year != intake.entry_year:
            raise AlreadyEnrolled("intake: child already enrolled")
        fresh = old is None or old.status == "withdrawn"
        created = (old.created_count + 1 if old else 1) if fresh else old.created_count
        kept_file = None if fresh or old is None else old.file_sha256
        self.students[number] = Student(
            number, intake.entry_year, intake.child, intake.requested_school_code, kept_file,
            intake.file_sha256, created_count=created,
        )  # fmt: skip
        result = IntakeResult(
            status="registered", student_number=number, school_code=intake.requested_school_code
        )
        self.answers[idempotency_key] = result
        return result

    async def put_record_file(
        self, student_number: str, content: bytes, media_type: str, sha256: str
    ) -> None:
        """B2."""
        self.calls.append("record_file")
        self.failures.check("record_file")
        student = self._held(student_number)
        if hashlib.sha256(content).hexdigest() != sha256 or sha256 != student.file_expected:
            raise FileRejected("record_file: digest mismatch", code="digest_mismatch")
        student.file_sha256 = sha256

    async def withdraw(self, student_number: str, entry_year: int) -> None:
        """B3 (nothing to withdraw is fine)."""
        self.calls.append("withdraw")
        self.failures.check("withdraw")
        student = self.students.get(student_number)
        if student is None or student.entry_year != entry_year:
            return
        if student.status == "enrolled":
            raise AlreadyEnrolled("withdraw: child already enrolled")
        student.status = "withdrawn"

    async def change_number(self, old: str, new: str, child: Child) -> None:
        """B4 (a repeat after it happened answers as done)."""
        self.calls.append("number_change")
        self.failures.check("number_change")
        if old not in self.students and new in self.students:
            return
        student = self._held(old)
        holder = self._holder(child.id_number)
        if holder is not None and holder.student_number not in (old, new):
            raise IdentityConflict(
                "number_change: identity already holds another number",
                existing_student_number=holder.student_number,
            )
        del self.students[old]
        self.students[new] = dataclasses.replace(
            student, student_number=new,
            child=dataclasses.replace(student.child, id_type=child.id_type,
                                      id_number=child.id_number),
        )  # fmt: skip

    async def correct(self, student_number: str, changes: dict[str, str | dt.date]) -> None:
        """B5."""
        self.calls.append("correct")
        self.failures.check("correct")
        student = self._held(student_number)
        student.child = dataclasses.replace(student.child, **changes)  # type: ignore[arg-type]

    async def report_arrival(self, student_number: str, school_code: str, on: dt.date) -> None:
        """B6."""
        self.calls.append("arrival")
        self.failures.check("arrival")
        student = self._held(student_number)
        if student.school_code is not None and student.school_code != school_code:
            raise SchoolMismatch("arrival: another school admitted the child")
        student.status, student.school_code = "enrolled", school_code

    async def list_cohort(self, entry_year: int, cursor: str | None, limit: int) -> StudentPage:
        """B8."""
        self.failures.check("list_cohort")
        if self.listing is not None:
            listed: list[object] = list(self.listing)
        else:
            listed = [
                CohortStudent(
                    student_number=s.student_number, id_number=s.child.id_number,
                    status=s.status, school_code=s.school_code,  # type: ignore[arg-type]
                    record_file_sha256=s.file_sha256,
                )
                for s in sorted(self.students.values(), key=lambda s: s.student_number)
                if s.entry_year == entry_year
            ]  # fmt: skip
        items, after = _page(listed, cursor, limit)
        return StudentPage(items=items, next_cursor=after)  # type: ignore[arg-type]

    # --- for tests ----------------------------------------------------------------------
    def held(self) -> dict[str, tuple[int, str, str | None]]:
        """What the registry holds now: number -> (entry year, status, file sha256)."""
        return {
            n: (s.entry_year, s.status, s.file_sha256)
            for n, s in self.students.items() if s.status != "withdrawn"
        }  # fmt: skip
