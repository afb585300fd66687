"""The two registries of registry-api.md, as the hand-over and reconciliation call them.

Refusals come back as the typed errors of bridge.errors (NeedsOperator, RetryLater,
NotRegistered), whatever the transport.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from bridge.domain.events import Child, RecordFileClaim
from bridge.domain.intake import IntakeRequest
from schemas.registry import IntakeResult, RosterPage, StudentPage


class SourceRegistry(Protocol):
    """The preschool registry (section A)."""

    async def fetch_record_file(self, claim: RecordFileClaim) -> bytes:
        """A1: the file's bytes, verified against the claim."""
        ...

    async def roster_page(self, entry_year: int, cursor: str | None, limit: int) -> RosterPage:
        """A2: one page of a cohort's roster, in student-number order."""
        ...


class TargetRegistry(Protocol):
    """The primary/secondary registry (section B)."""

    async def put_intake(self, intake: IntakeRequest, idempotency_key: str) -> IntakeResult:
        """B1: register the child; idempotent by *idempotency_key*."""
        ...

    async def put_record_file(
        self, student_number: str, content: bytes, media_type: str, sha256: str
    ) -> None:
        """B2: hand over the record file's bytes."""
        ...

    async def withdraw(self, student_number: str, entry_year: int) -> None:
        """B3: withdraw the intake for *entry_year* (a no-op if there is none)."""
        ...

    async def change_number(self, old: str, new: str, child: Child) -> None:
        """B4: move the registration to the child's new number."""
        ...

    async def correct(self, student_number: str, changes: dict[str, str | dt.date]) -> None:
        """B5: apply an approved correction of key information."""
        ...

    async def report_arrival(self, student_number: str, school_code: str, on: dt.date) -> None:
        """B6: the child arrived at *school_code*."""
        ...

    async def list_cohort(self, entry_year: int, cursor: str | None, limit: int) -> StudentPage:
        """B8: one page of a cohort, in a stable order."""
        ...
