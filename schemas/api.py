"""Wire models of the bridge's own HTTP API (for schools and operators); OpenAPI comes from them.

Every query string and body is read into one of these models, or refused with the
reason: the handlers never parse a parameter by hand.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.query import EntryYearParam, Instant, QueryInt

PullStateName = Literal["not_pulled", "pulled", "arrived"]
ArrivalStatusName = Literal["pending", "enrolled", "refused"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecordFileOut(_Out):
    """The record file (学籍档案) as stored by the bridge: fetch it by the file endpoint."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]
    media_type: str
    erased_at: dt.datetime | None = Field(
        default=None,
        description="Set once the bridge erased the file after the hand-over completed"
        " (retention); the file endpoint then answers 410 gone.",
    )


class ArrivalOut(_Out):
    """The school's arrival report (实际报到) and how far it got at the registry."""

    arrived_on: dt.date | None
    status: ArrivalStatusName
    message: str


class SetAsideOut(_Out):
    """The hand-over waits for an operator."""

    reason: str
    message: str


class HandoffItem(_Out):
    """One child handed over to the school."""

    student_number: str
    entry_year: int | None
    school_code: str | None
    name: str | None = Field(description="Masked unless the caller is the child's school.")
    gender: Literal["M", "F"] | None
    birth_date: dt.date | None
    record_file: RecordFileOut | None
    state: PullStateName
    phase: str = Field(description="Where the hand-over to the registry stands.")
    changed_at: dt.datetime | None = Field(description="Last change a school can see.")


class HandoffPage(_Out):
    """A page of a school's hand-overs; pass `next_cursor` back as `cursor` for more."""

    items: list[HandoffItem]
    next_cursor: str | None
    as_of: dt.datetime = Field(
        description="Pass as `since` on the next poll: nothing is missed, a few repeat."
    )


class HandoffSummary(HandoffItem):
    """One child's hand-over in full."""

    county_code: str | None
    id_number: str | None = Field(description="Masked unless the caller is the child's school.")
    pulled_at: dt.datetime | None
    arrival: ArrivalOut | None
    set_aside: SetAsideOut | None


class ArrivalIn(BaseModel):
    """Body of an arrival report."""

    # Strict: only an ISO date string is a date here, never a number of seconds.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    arrived_on: dt.date


class ArrivalAccepted(_Out):
    """The arrival is recorded; the registry is told (B6) with durable retries."""

    student_number: str
    arrival: ArrivalOut
    state: PullStateName


class AuditEntryOut(_Out):
    """One line of the audit log (谁使用谁负责)."""

    at: dt.datetime
    actor: str
    role: str | None
    school_code: str | None
    county_code: str | None
    action: str
    student_number: str | None
    target_token: str | None
    remote: str | None
    outcome: str
    detail: dict[str, Any]
    student_numbers: list[str] = Field(
        default_factory=list,
        description="A list page's line: every child the page showed (one line per page).",
    )


class AuditPage(_Out):
    """Audit entries, newest first."""

    items: list[AuditEntryOut]


class Problem(_Out):
    """RFC 9457 problem details; `code` is stable, `message` repeats `detail`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    message: str


# --- queries ----------------------------------------------------------------------------
class _Query(BaseModel):
    # A parameter this endpoint does not know is refused: a typo must not widen the answer.
    model_config = ConfigDict(extra="forbid", frozen=True)


def encode_cursor(child_id: int) -> str:
    """The cursor of the page after *child_id*: opaque to clients."""
    return base64.urlsafe_b64encode(f"after:{child_id}".encode()).decode().rstrip("=")


def _decode_cursor(raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this API gave") from None
    match = re.fullmatch(r"after:([0-9]{1,18})", text)
    if not match:
        raise ValueError("cursor is not one this API gave")
    return int(match.group(1))


# A cursor as given (next_cursor of a page), read as the child id the next page follows.
Cursor = Annotated[int, BeforeValidator(_decode_cursor), Field(ge=0)]


class HandoffListQuery(_Query):
    """`GET /v1/schools/{school_code}/handoffs`."""

    entry_year: EntryYearParam | None = None
    state: PullStateName | None = None
    since: Instant | None = None
    cursor: Cursor = 0
    limit: Annotated[QueryInt, Field(ge=1, le=1000)] = 100


class ArchiveQuery(_Query):
    """`GET /v1/schools/{school_code}/record-files.zip`."""

    entry_year: EntryYearParam | None = None


class NoQuery(_Query):
    """An endpoint that takes no query parameters."""


class AuditQuery(_Query):
    """`GET /v1/audit`: by child, by token, or both (a malformed one finds nothing)."""

    student_number: Annotated[str, Field(max_length=100)] | None = None
    token_id: Annotated[str, Field(max_length=100)] | None = None
    limit: Annotated[QueryInt, Field(ge=1, le=1000)] = 100


API_MODELS: tuple[type[BaseModel], ...] = (
    RecordFileOut,
    ArrivalOut,
    SetAsideOut,
    HandoffItem,
    HandoffPage,
    HandoffSummary,
    ArrivalIn,
    ArrivalAccepted,
    AuditEntryOut,
    AuditPage,
    Problem,
)
