"""What the school API reads and keeps, in memory: children as schools see them, the
token checks of the shared lookups, receipts and arrival reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

from bridge.domain.access import PresentedToken, Principal, Role
from bridge.services.ports.access import TokenRow
from bridge.services.ports.schools import (
    ArrivalReport,
    ChildFile,
    ChildView,
    FileLookup,
    ListLookup,
    ListQuery,
    ReadEntry,
)
from tests.fakes.clock import FakeClock
from tests.fakes.ledger import MemoryLedger
from tests.fakes.stores import MemoryAudit, MemoryRecordFiles


def child_view(child_id: int, number: str, school: str, county: str, **fields: object) -> ChildView:
    """A handed-over child as a school sees it; *fields* override the defaults."""
    view = ChildView(
        child_id=child_id, student_number=number, entry_year=2026, school_code=school,
        county_code=county, phase="file_delivered", set_aside_reason=None, name="王小明",
        gender="M", birth_date=dt.date(2019, 3, 7), id_number=number[1:], file_sha256=None,
        file_size=None, file_media_type=None, arrived_on=None, pulled_at=None,
        state="not_pulled", visible_at=dt.datetime(2026, 7, 10, tzinfo=dt.UTC),
        updated_at=dt.datetime(2026, 7, 10, tzinfo=dt.UTC),
    )  # fmt: skip
    return dataclasses.replace(view, **fields)  # type: ignore[arg-type]


@dataclass
class MemorySchools:
    """SchoolReads, SharedLookups, Receipts and ArrivalBook in memory.

    Audit lines land in *audit* (one log, as in PostgreSQL); an arrival's request goes to
    *ledger* if one is given.
    """

    clock: FakeClock = field(default_factory=FakeClock)
    children: list[ChildView] = field(default_factory=list)
    files: MemoryRecordFiles = field(default_factory=MemoryRecordFiles)
    audit: MemoryAudit = field(default_factory=MemoryAudit)
    ledger: MemoryLedger | None = None
    tokens: dict[str, TokenRow] = field(default_factory=dict)  # token id -> row
    kept: list[ReadEntry] = field(default_factory=list)
    reports: list[ArrivalReport] = field(default_factory=list)
    fail_keep: BaseException | None = None  # the next keep() fails with this

    def admit_token(self, principal: Principal, secret_hash: str) -> None:
        """A token the lookups accept for *principal*."""
        self.tokens[principal.token_id] = TokenRow(
            principal.token_id, principal.role.value, principal.school_code,
            principal.county_code, secret_hash, False, False, False, self.clock.now(),
        )  # fmt: skip

    # --- SchoolReads --------------------------------------------------------------------
    def _with_file_state(self, child: ChildView) -> ChildView:
        """The child with its file's state at rest (erased, damaged), as the join reads it."""
        stored = self.files.files.get(child.file_sha256) if child.file_sha256 else None
        if stored is None:
            return child
        return dataclasses.replace(
            child, file_erased_at=stored.erased_at, file_damaged=stored.damaged
        )

    async def child(self, principal: Principal, student_number: str) -> ChildView | None:
        """The child under *student_number* if *principal* may see it."""
        return next(
            (self._with_file_state(c) for c in self.children
             if c.student_number == student_number
             and principal.may_see(school_code=c.school_code, county_code=c.county_code)),
            None,
        )  # fmt: skip

    async def school_children(self, principal: Principal, query: ListQuery) -> list[ChildView]:
        """One page (limit + 1) of a school's children in scope."""
        return [
            self._with_file_state(c) for c in sorted(self.children, key=lambda c: c.child_id)
            if c.school_code == query.school_code and c.child_id > query.after_child_id
            and principal.may_see(school_code=c.school_code, county_code=c.county_code)
            and query.entry_year in (None, c.entry_year) and query.state in (None, c.state)
            and (query.since is None or (c.visible_at is not None and c.visible_at >= query.since))
        ][: query.limit + 1]  # fmt: skip

    # --- SharedLookups ------------------------------------------------------------------
    def _principal(self, presented: PresentedToken) -> tuple[TokenRow | None, Principal | None]:
        row = self.tokens.get(presented.token_id)
        if row is None or row.secret_hash != presented.secret_hash:
            return row, None
        if row.revoked or row.sealed or row.overdue:
            return row, None
        return row, Principal(row.token_id, Role(row.role), row.school_code, row.county_code)

    async def file_for(
        self, presented: PresentedToken, student_number: str | None, *, inline_max: int
    ) -> FileLookup:
        """The token's row and, in its scope, the child's file (small bytes included)."""
        row, principal = self._principal(presented)
        child = (
            await self.child(principal, student_number)
            if principal is not None and student_number
            else None
        )
        if child is None:
            return FileLookup(row, None)
        sha = child.file_sha256
        stored = self.files.files.get(sha) if sha else None
        if stored is None:
            return FileLookup(
                row,
                ChildFile(child.child_id, child.student_number, child.school_code, sha,
                          child.file_size, child.file_media_type, None),
            )  # fmt: skip
        # Sealed, as the real lookup reads it: the bytes only of a small file, opened after.
        small = len(stored.content) <= inline_max and stored.erased_at is None
        sealed = self.files.sealed_form(stored.content if small else None)
        return FileLookup(
            row,
            ChildFile(child.child_id, child.student_number, child.school_code, sha,
                      child.file_size, child.file_media_type, sealed, stored.erased_at,
                      stored.erased_reason, stored.damaged),
        )  # fmt: skip

    async def list_for(self, presented: PresentedToken, query: ListQuery) -> ListLookup:
        """The token's row and, in its scope, one page of the school's children."""
        row, principal = self._principal(presented)
        page = await self.school_children(principal, query) if principal is not None else []
        return ListLookup(row, page)

    # --- Receipts and ArrivalBook -------------------------------------------------------
    async def keep(self, entry: ReadEntry) -> None:
        """Keep a read's receipt and audit lines (or fail, if told to)."""
        if self.fail_keep is not None:
            failure, self.fail_keep = self.fail_keep, None
            raise failure
        self.kept.append(entry)
        for line in entry.audit:
            await self.audit.record(
                action=line.action, outcome=line.outcome, principal=line.principal,
                student_number=line.student_number, remote=line.remote, detail=line.detail,
                student_numbers=line.student_numbers,
            )  # fmt: skip

    async def record(self, report: ArrivalReport) -> bool:
        """Keep the report, its audit line and the arrival on the hand-over, or nothing."""
        if report.request is not None:
            if self.ledger is None or report.child_id not in self.ledger.rows:
                return False
            await self.ledger.request_arrival(report.child_id, report.request)
        self.reports.append(report)
        line = report.audit
        await self.audit.record(
            action=line.action, outcome=line.outcome, principal=line.principal,
            student_number=line.student_number, remote=line.remote, detail=line.detail or None,
        )  # fmt: skip
        return True
