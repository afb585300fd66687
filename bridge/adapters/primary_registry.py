"""Client of the primary/secondary registry (registry-api.md section B)."""

from __future__ import annotations

import base64
import datetime as dt

from bridge.adapters.http_transport import Answer, RegistryTransport, fetch_page
from bridge.domain.events import Child
from bridge.domain.intake import IntakeRequest
from bridge.errors import (
    AlreadyEnrolled,
    BridgeError,
    FileRejected,
    IdentityConflict,
    NotRegistered,
    RegistryRejected,
    SchoolMismatch,
)
from schemas.registry import (
    STUDENT_PAGE,
    IntakeBody,
    IntakeResult,
    RegistryStudent,
    StudentPage,
)


def _unexpected(operation: str, answer: Answer) -> BridgeError:
    # An answer outside the contract: the registry or our reading of it is wrong. A person
    # must look; retrying would only repeat it.
    return RegistryRejected(
        f"{operation}: unexpected HTTP {answer.status}",
        status=str(answer.status),
        code=str(answer.code),
    )


def _conflict(operation: str, answer: Answer) -> BridgeError:
    code = answer.code
    if code == "identity_conflict":
        existing = answer.body.get("existing_student_number") if answer.body else None
        return IdentityConflict(
            f"{operation}: identity already holds another number",
            existing_student_number=str(existing),
        )
    if code == "already_enrolled":
        return AlreadyEnrolled(f"{operation}: child already enrolled")
    if code == "digest_mismatch":
        return FileRejected(f"{operation}: digest mismatch", code="digest_mismatch")
    if code == "school_mismatch":
        return SchoolMismatch(f"{operation}: another school admitted the child")
    return _unexpected(operation, answer)


def _refused(operation: str, answer: Answer) -> BridgeError:
    if answer.status == 404:
        return NotRegistered(f"{operation}: not registered")
    if answer.status == 409:
        return _conflict(operation, answer)
    if answer.status == 413:
        return FileRejected(f"{operation}: file too large", code="too_large")
    if answer.status == 422:
        errors = answer.body.get("errors") if isinstance(answer.body, dict) else None
        return RegistryRejected(f"{operation}: body refused", errors=str(errors)[:500])
    return _unexpected(operation, answer)


def content_digest(sha256_hex: str) -> str:
    """RFC 9530 Content-Digest for a sha-256 given in hex."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


class PrimaryRegistry:
    """B1-B8 of registry-api.md. Refusals come back as typed errors (bridge.errors)."""

    def __init__(self, transport: RegistryTransport) -> None:
        self._t = transport

    async def put_intake(self, intake: IntakeRequest, idempotency_key: str) -> IntakeResult:
        """B1: register the child; idempotent by *idempotency_key*."""
        body = IntakeBody.from_intake(intake).model_dump(mode="json")
        answer = await self._t.call(
            "intake", "PUT", f"/v1/students/{intake.student_number}/intake",
            json=body, headers={"Idempotency-Key": idempotency_key},
        )  # fmt: skip
        if answer.status in (200, 201):
            return IntakeResult.model_validate(answer.body)
        raise _refused("intake", answer)

    async def put_record_file(
        self, student_number: str, content: bytes, media_type: str, sha256: str
    ) -> None:
        """B2: hand over the record file's bytes with their RFC 9530 digest."""
        answer = await self._t.call(
            "record_file", "PUT", f"/v1/students/{student_number}/record-file", data=content,
            headers={"Content-Type": media_type, "Content-Digest": content_digest(sha256)},
        )  # fmt: skip
        if answer.status not in (200, 201, 204):
            raise _refused("record_file", answer)

    async def withdraw(self, student_number: str, entry_year: int) -> None:
        """B3: withdraw the intake for *entry_year* (a no-op if there is none)."""
        answer = await self._t.call(
            "withdraw", "DELETE", f"/v1/students/{student_number}/intake",
            params={"entry_year": str(entry_year)},
        )  # fmt: skip
        if answer.status not in (200, 204, 404):
            raise _refused("withdraw", answer)

    async def change_number(self, old: str, new: str, child: Child) -> None:
        """B4: move the registration to the child's new number."""
        answer = await self._t.call(
            "number_change", "POST", f"/v1/students/{old}/number-change",
            json={"new_student_number": new, "id_type": child.id_type,
                  "id_number": child.id_number},
        )  # fmt: skip
        if answer.status != 200:
            raise _refused("number_change", answer)

    async def correct(self, student_number: str, changes: dict[str, str | dt.date]) -> None:
        """B5: apply an approved correction of key information."""
        body = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in changes.items()}
        answer = await self._t.call("correct", "PATCH", f"/v1/students/{student_number}", json=body)
        if answer.status != 200:
            raise _refused("correct", answer)

    async def report_arrival(self, student_number: str, school_code: str, on: dt.date) -> None:
        """B6: the child arrived at *school_code*."""
        answer = await self._t.call(
            "arrival", "POST", f"/v1/students/{student_number}/arrival",
            json={"school_code": school_code, "arrived_on": on.isoformat()},
        )  # fmt: skip
        if answer.status != 200:
            raise _refused("arrival", answer)

    async def get_student(self, student_number: str) -> RegistryStudent | None:
        """B7: the registry's view of one number, or None."""
        answer = await self._t.call("read", "GET", f"/v1/students/{student_number}")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise _refused("read", answer)
        return RegistryStudent.model_validate(answer.body)

    async def list_cohort(self, entry_year: int, cursor: str | None, limit: int) -> StudentPage:
        """B8: one page of a cohort (RegistryRejected if it breaks the contract)."""
        path = f"/v1/cohorts/{entry_year}/students"
        return await fetch_page(self._t, "list_cohort", path, cursor, limit, STUDENT_PAGE, _refused)
