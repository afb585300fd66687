"""Wire models of the registries' HTTP bodies (registry-api.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from bridge.domain.intake import IntakeRequest
from bridge.errors import RegistryRejected
from schemas.codes import Sha256Hex
from schemas.events import ChildIn


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class IntakeRecordFile(_Body):
    """The record file as B1 announces it (bytes follow with B2)."""

    sha256: Sha256Hex
    size: int
    media_type: str


class IntakeBody(_Body):
    """B1 request body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_year: int
    child: ChildIn
    kindergarten_code: str
    graduated_on: dt.date
    requested_school_code: str | None
    record_file: IntakeRecordFile

    @classmethod
    def from_intake(cls, intake: IntakeRequest) -> IntakeBody:
        """The body for a domain intake."""
        return cls(
            entry_year=intake.entry_year,
            child=ChildIn.model_validate(dataclasses.asdict(intake.child)),
            kindergarten_code=intake.kindergarten_code,
            graduated_on=intake.graduated_on,
            requested_school_code=intake.requested_school_code,
            record_file=IntakeRecordFile(
                sha256=intake.file_sha256, size=intake.file_size, media_type=intake.file_media_type
            ),
        )


class IntakeResult(_Body):
    """B1 answer 200/201."""

    status: str
    student_number: str
    school_code: str | None = None


RosterState = Literal["graduated", "deferred", "cancelled", "in_kindergarten"]
RegistryStatus = Literal["registered", "enrolled", "withdrawn"]


class RegistryStudent(_Body):
    """B7 body."""

    student_number: str
    id_number: str | None = None
    entry_year: int | None = None
    status: RegistryStatus
    school_code: str | None = None
    record_file_sha256: str | None = None
    updated_at: str | None = None


# The listings reconciliation pages through (A2, B8) are plain frozen dataclasses, not
# models: pydantic validates a raw 5000-item page straight into them in its Rust core,
# several times faster than into models, and refuses a page that breaks the contract
# just the same. Their items go to classify() as they are.


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CohortStudent:
    """One item of B8 (a B7 body), as far as reconciliation reads it: the other fields
    (entry_year, updated_at) are neither kept nor checked."""

    student_number: str
    id_number: str | None = None
    status: RegistryStatus
    school_code: str | None = None
    record_file_sha256: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StudentPage:
    """B8 answer."""

    items: list[CohortStudent]
    next_cursor: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RosterItem:
    """One child of A2."""

    student_number: str
    id_number: str | None = None
    state: RosterState
    childseq: int
    kindergarten_code: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RosterPage:
    """A2 answer."""

    items: list[RosterItem]
    next_cursor: str | None = None


ROSTER_PAGE = TypeAdapter(RosterPage)
STUDENT_PAGE = TypeAdapter(StudentPage)
ROSTER_ITEMS = TypeAdapter(list[RosterItem])
COHORT_STUDENTS = TypeAdapter(list[CohortStudent])


def _reason(exc: ValidationError) -> str:
    # Field paths and messages only: pydantic's input echo could carry an identity number.
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc or 'body'}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


P = TypeVar("P")


def parse_page(adapter: TypeAdapter[P], operation: str, body: bytes) -> P:
    """A page of a listing, or RegistryRejected saying where it breaks the contract."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        reason = _reason(exc)
        raise RegistryRejected(f"{operation}: the page breaks the contract: {reason}") from None
