"""The steps a hand-over can take at the registries. Pure data: adapters perform them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bridge.domain.arrival import Arrival
from bridge.domain.events import Child, RecordFileClaim
from bridge.domain.intake import IntakeRequest


@dataclass(frozen=True, slots=True)
class FetchFile:
    """A1: get the record file by its claim check and verify size and sha256."""

    claim: RecordFileClaim


@dataclass(frozen=True, slots=True)
class SubmitIntake:
    """B1: register the child under its number for an entry year."""

    intake: IntakeRequest
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class UploadFile:
    """B2: hand over the record file's bytes."""

    student_number: str
    sha256: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    """B3: withdraw a registration (deferral, cancellation, stray number)."""

    student_number: str
    entry_year: int


@dataclass(frozen=True, slots=True)
class ChangeNumber:
    """B4: move the registration to the child's new number."""

    old_number: str
    new_number: str
    child: Child


@dataclass(frozen=True, slots=True)
class CorrectKeyInfo:
    """B5: apply an approved correction of key information."""

    student_number: str
    changes: dict[str, str | dt.date]


@dataclass(frozen=True, slots=True)
class ReportArrival:
    """B6: the child arrived at its school."""

    student_number: str
    arrival: Arrival


Action = (
    FetchFile | SubmitIntake | UploadFile | Withdraw | ChangeNumber | CorrectKeyInfo | ReportArrival
)
