"""What schools see of their children, what they downloaded, and what they reported."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.domain.access import Principal, Role

# One view of a child as a school sees it; the registration under the current number
# carries the key information the registry holds.
_VIEW = """
WITH v AS (
    SELECT c.child_id, c.student_number, c.entry_year, c.school_code, c.county_code,
           c.phase, c.set_aside_reason, c.id_number, c.school_visible_at, c.updated_at,
           jsonb_path_query_first(
               c.handoff, '$.registrations[*] ? (@.student_number == $n)',
               jsonb_build_object('n', c.student_number)) AS reg,
           CASE WHEN jsonb_typeof(c.handoff -> 'arrival') = 'object'
                THEN c.handoff -> 'arrival' END AS arrival,
           c.handoff ->> 'verified_file_sha256' AS sha256
      FROM children c
     WHERE {where}
)
SELECT v.*, f.size AS file_size, f.media_type AS file_media_type,
       p.first_pulled_at AS pulled_at,
       CASE WHEN v.phase = 'enrolled' OR (v.arrival IS NOT NULL
                 AND v.set_aside_reason IS DISTINCT FROM 'school_mismatch') THEN 'arrived'
            WHEN p.child_id IS NOT NULL THEN 'pulled' ELSE 'not_pulled' END AS state
  FROM v
  LEFT JOIN record_files f ON f.sha256 = v.sha256
  LEFT JOIN school_pulls p
         ON p.child_id = v.child_id AND p.school_code = v.school_code AND p.sha256 = v.sha256
"""


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


def _view(row: asyncpg.Record) -> ChildView:
    reg = json.loads(row["reg"]) if row["reg"] else None
    key = reg["key_info"] if reg else {}
    arrival = json.loads(row["arrival"]) if row["arrival"] else None
    has_file = row["file_size"] is not None
    return ChildView(
        child_id=row["child_id"],
        student_number=row["student_number"],
        entry_year=row["entry_year"],
        school_code=row["school_code"],
        county_code=row["county_code"],
        phase=row["phase"],
        set_aside_reason=row["set_aside_reason"],
        name=key.get("name"),
        gender=key.get("gender"),
        birth_date=dt.date.fromisoformat(key["birth_date"]) if key.get("birth_date") else None,
        id_number=row["id_number"],
        file_sha256=row["sha256"] if has_file else None,
        file_size=row["file_size"],
        file_media_type=row["file_media_type"],
        arrived_on=dt.date.fromisoformat(arrival["arrived_on"]) if arrival else None,
        pulled_at=row["pulled_at"],
        state=row["state"],
        visible_at=row["school_visible_at"],
        updated_at=row["updated_at"],
    )


def _scope(principal: Principal, first: int) -> tuple[str, list[Any]]:
    """SQL condition (on alias c) limiting rows to what *principal* may see."""
    if principal.role is Role.SCHOOL:
        return f"c.school_code = ${first}", [principal.school_code]
    if principal.role is Role.COUNTY:
        return f"c.county_code = ${first}", [principal.county_code]
    return "TRUE", []


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Filters of a school's hand-over list."""

    school_code: str
    entry_year: int | None = None
    state: str | None = None
    since: dt.datetime | None = None
    after_child_id: int = 0
    limit: int = 100


class SchoolPulls:
    """Queries and records behind the school API."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def child(self, principal: Principal, student_number: str) -> ChildView | None:
        """The child holding (or having held) *student_number*, if *principal* may see it."""
        scope, args = _scope(principal, 2)
        where = (
            "c.child_id = (SELECT child_id FROM child_numbers WHERE student_number = $1)"
            f" AND {scope}"
        )
        row = await self._pool.fetchrow(_VIEW.format(where=where), student_number, *args)
        return _view(row) if row else None

    async def school_children(self, principal: Principal, query: ListQuery) -> list[ChildView]:
        """One page (limit + 1 rows, to tell whether more follow) of a school's children."""
        scope, args = _scope(principal, 5)
        where = (
            "c.school_code = $1 AND ($2::int IS NULL OR c.entry_year = $2)"
            " AND ($3::timestamptz IS NULL OR c.school_visible_at >= $3)"
            f" AND c.child_id > $4 AND {scope}"
        )
        n = 5 + len(args)
        sql = (
            f"SELECT * FROM ({_VIEW.format(where=where)}) q"
            f" WHERE (${n}::text IS NULL OR q.state = ${n}) ORDER BY q.child_id LIMIT ${n + 1}"
        )
        rows = await self._pool.fetch(
            sql, query.school_code, query.entry_year, query.since, query.after_child_id, *args,
            query.state, query.limit + 1,
        )  # fmt: skip
        return [_view(r) for r in rows]

    async def now(self) -> dt.datetime:
        """The database's clock: `since` is compared with it, never with ours."""
        value: dt.datetime = await self._pool.fetchval("SELECT now()")
        return value

    async def record_download(
        self,
        principal: Principal,
        child: ChildView,
        *,
        via: str,
        range_start: int | None,
        range_end: int | None,
        bytes_sent: int,
        complete: bool,
        outcome: str,
        remote: str | None,
    ) -> None:
        """The receipt, the pull (the admitting school's complete download) and the audit line.

        One statement: downloads are the hot path, and the three stand or fall together.
        """
        own = principal.role is Role.SCHOOL and principal.school_code == child.school_code
        detail: dict[str, Any] = {"sha256": child.file_sha256, "bytes": bytes_sent, "via": via}
        if range_start is not None:
            detail["range"] = f"{range_start}-{range_end}"
        await self._pool.execute(
            """
            WITH receipt AS (
                INSERT INTO record_file_receipts (token_id, role, school_code, county_code,
                    child_id, student_number, sha256, via, range_start, range_end, bytes_sent,
                    complete, remote)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)),
            pulled AS (
                INSERT INTO school_pulls (child_id, school_code, sha256)
                SELECT $5, $3, $7 WHERE $12 AND $14
                ON CONFLICT (child_id, school_code, sha256) DO UPDATE SET last_pulled_at = now())
            INSERT INTO audit_log (actor, role, school_code, county_code, action,
                student_number, remote, outcome, detail)
            VALUES ($1, $2, $3, $4, 'record_file.read', $6, $13, $15, $16::jsonb)
            """,
            principal.token_id, principal.role.value, principal.school_code,
            principal.county_code, child.child_id, child.student_number, child.file_sha256,
            via, range_start, range_end, bytes_sent, complete, remote, own, outcome,
            json.dumps(detail),
        )  # fmt: skip

    async def record_arrival_report(
        self, principal: Principal, child: ChildView, arrived_on: dt.date, outcome: str
    ) -> None:
        """Keep the school's report as sent, beside the hand-over that acts on it."""
        await self._pool.execute(
            "INSERT INTO arrival_reports (child_id, student_number, school_code, arrived_on,"
            " token_id, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
            child.child_id, child.student_number, principal.school_code, arrived_on,
            principal.token_id, outcome,
        )  # fmt: skip

    async def receipts(self, student_number: str) -> list[dict[str, Any]]:
        """Every receipt of a child's file, oldest first (operators, tests)."""
        rows = await self._pool.fetch(
            "SELECT r.* FROM record_file_receipts r WHERE r.child_id ="
            " (SELECT child_id FROM child_numbers WHERE student_number = $1) ORDER BY r.id",
            student_number,
        )
        return [dict(r) for r in rows]
