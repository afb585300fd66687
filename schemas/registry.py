"""Wire models of the registries' HTTP bodies (registry-api.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.domain.intake import IntakeRequest
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


class RegistryStudent(_Body):
    """B7 body, also the items of B8."""

    student_number: str
    id_number: str | None = None
    entry_year: int | None = None
    status: Literal["registered", "enrolled", "withdrawn"]
    school_code: str | None = None
    record_file_sha256: str | None = None
    updated_at: str | None = None


class StudentPage(_Body):
    """B8 answer."""

    items: list[RegistryStudent]
    next_cursor: str | None = None


class RosterItem(_Body):
    """One child of A2."""

    student_number: str
    id_number: str | None = None
    state: Literal["graduated", "deferred", "cancelled", "in_kindergarten"]
    childseq: int
    kindergarten_code: str | None = None


class RosterPage(_Body):
    """A2 answer."""

    items: list[RosterItem]
    next_cursor: str | None = None
