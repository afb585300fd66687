"""What the school API reads and keeps: children as schools see them, downloads, arrivals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.domain.access import PresentedToken, Principal
from bridge.domain.arrival import Arrival
from bridge.services.ports.access import TokenRow
from bridge.services.ports.files import SealedFile


@dataclass(frozen=True, slots=True)
class ChildView:
    """One child as the school API shows it (before masking)."""

    child_id: int
    student_number: str
    entry_year: int | None
    school_code: str | None
    county_code: str | None
    phase: str
    set_aside_reason: str | None
    name: str | None
    gender: str | None
    birth_date: dt.date | None
    id_number: str | None
    file_sha256: str | None
    file_size: int | None
    file_media_type: str | None
    arrived_on: dt.date | None
    pulled_at: dt.datetime | None
    state: str
    visible_at: dt.datetime | None
    updated_at: dt.datetime
    file_erased_at: dt.datetime | None = None  # erased after its retention period
    file_damaged: bool = False  # failed authentication at rest; not served until repaired


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Filters of a school's hand-over list."""

    school_code: str
    entry_year: int | None = None
    state: str | None = None
    since: dt.datetime | None = None
    after_child_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ChildFile:
    """A child's record file as a download needs it: its key material, and its sealed bytes
    only for a small file (opened after the lookup, never in the shared statement)."""

    child_id: int
    student_number: str
    school_code: str | None
    sha256: str | None
    size: int | None
    media_type: str | None
    sealed: SealedFile | None
    erased_at: dt.datetime | None = None  # erased after its retention period
    erased_reason: str | None = None
    damaged: bool = False  # failed authentication at rest; not served until repaired

    @property
    def servable(self) -> bool:
        """False for a file erased after its retention period or damaged at rest."""
        return self.erased_at is None and not self.damaged


@dataclass(frozen=True, slots=True)
class FileLookup:
    """The token's row (to admit) and, if it may see it, the child's file."""

    token: TokenRow | None
    child: ChildFile | None


@dataclass(frozen=True, slots=True)
class ListLookup:
    """The token's row (to admit) and the page's children it may see (limit + 1 at most,
    to tell whether more follow)."""

    token: TokenRow | None
    children: list[ChildView]


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One audit_log row about a child (or about no child, e.g. a malformed number), or,
    with *student_numbers*, about every child a list page showed."""

    principal: Principal
    action: str
    outcome: str
    student_number: str | None
    remote: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    student_numbers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """One download, whole or in part."""

    principal: Principal
    child_id: int
    student_number: str
    sha256: str
    via: str
    range_start: int | None
    range_end: int | None
    bytes_sent: int
    complete: bool
    remote: str | None


@dataclass(frozen=True, slots=True)
class ReadEntry:
    """What one request leaves behind; it is committed whole or not at all.

    *pulled* is (child id, school code, sha256): the admitting school now has the file.
    """

    audit: tuple[AuditLine, ...] = ()
    receipt: Receipt | None = None
    pulled: tuple[int, str, str] | None = None


@dataclass(frozen=True, slots=True)
class ArrivalReport:
    """A school's arrival report as kept: the report, its audit line and, when the
    registry is to be told, the arrival for the hand-over (*request*)."""

    child_id: int
    student_number: str
    principal: Principal
    arrived_on: dt.date
    outcome: str
    audit: AuditLine
    request: Arrival | None = None


class SchoolReads(Protocol):
    """Children as a principal may see them."""

    async def child(self, principal: Principal, student_number: str) -> ChildView | None:
        """The child holding (or having held) *student_number*, if *principal* may see it."""
        ...

    async def school_children(self, principal: Principal, query: ListQuery) -> list[ChildView]:
        """One page (limit + 1 rows, to tell whether more follow) of a school's children."""
        ...


class SharedLookups(Protocol):
    """The hot reads, each with its token check, shared by requests waiting together.

    The caller must still admit the token before going on.
    """

    async def file_for(
        self, presented: PresentedToken, student_number: str | None, *, inline_max: int
    ) -> FileLookup:
        """The token's row and the child's file (bytes up to *inline_max*) if in scope."""
        ...

    async def list_for(self, presented: PresentedToken, query: ListQuery) -> ListLookup:
        """The token's row and one page of the school's children if in scope."""
        ...


class Receipts(Protocol):
    """Receipts, pulls and audit lines of reads, committed before the answer completes."""

    async def keep(self, entry: ReadEntry) -> None:
        """Return once *entry* is committed."""
        ...


class ArrivalBook(Protocol):
    """Arrival reports, kept in one transaction with their effect on the hand-over."""

    async def record(self, report: ArrivalReport) -> bool:
        """Keep the report, its audit line and (if any) the arrival on the hand-over, all or
        nothing; False (nothing kept) if the child is gone (merged a moment ago)."""
        ...
