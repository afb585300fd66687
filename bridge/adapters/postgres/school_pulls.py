"""What schools see of their children: one view of a child, scoped to the caller."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from bridge.domain.access import Principal, Role
from bridge.services.ports.schools import ChildView, ListQuery

# One view of a child as a school sees it; the registration under the current number
# carries the key information the registry holds. The few fields shown are taken out of
# the JSON here: a list page would otherwise parse every child's registration in Python.
CHILD_VIEW = """
SELECT v.child_id, v.student_number, v.entry_year, v.school_code, v.county_code, v.phase,
       v.set_aside_reason, v.id_number, v.school_visible_at, v.updated_at, v.sha256,
       v.reg -> 'key_info' ->> 'name' AS name, v.reg -> 'key_info' ->> 'gender' AS gender,
       v.reg -> 'key_info' ->> 'birth_date' AS birth_date,
       v.arrival ->> 'arrived_on' AS arrived_on,
       f.size AS file_size, f.media_type AS file_media_type, f.erased_at AS file_erased_at,
       f.damaged_at IS NOT NULL AS file_damaged,
       p.first_pulled_at AS pulled_at,
       CASE WHEN v.phase = 'enrolled' OR (v.arrival IS NOT NULL
                 AND v.set_aside_reason IS DISTINCT FROM 'school_mismatch') THEN 'arrived'
            WHEN p.child_id IS NOT NULL THEN 'pulled' ELSE 'not_pulled' END AS state
  FROM (
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
  ) v
  LEFT JOIN record_files f ON f.sha256 = v.sha256
  LEFT JOIN school_pulls p
         ON p.child_id = v.child_id AND p.school_code = v.school_code AND p.sha256 = v.sha256
"""


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def view_of(row: asyncpg.Record) -> ChildView:
    has_file = row["file_size"] is not None
    return ChildView(
        child_id=row["child_id"],
        student_number=row["student_number"],
        entry_year=row["entry_year"],
        school_code=row["school_code"],
        county_code=row["county_code"],
        phase=row["phase"],
        set_aside_reason=row["set_aside_reason"],
        name=row["name"],
        gender=row["gender"],
        birth_date=_date(row["birth_date"]),
        id_number=row["id_number"],
        file_sha256=row["sha256"] if has_file else None,
        file_size=row["file_size"],
        file_media_type=row["file_media_type"],
        arrived_on=_date(row["arrived_on"]),
        pulled_at=row["pulled_at"],
        state=row["state"],
        visible_at=row["school_visible_at"],
        updated_at=row["updated_at"],
        file_erased_at=row["file_erased_at"],
        file_damaged=bool(row["file_damaged"]),
    )


def _scope(principal: Principal, first: int) -> tuple[str, list[Any]]:
    """SQL condition (on alias c) limiting rows to what *principal* may see."""
    if principal.role is Role.SCHOOL:
        return f"c.school_code = ${first}", [principal.school_code]
    if principal.role is Role.COUNTY:
        return f"c.county_code = ${first}", [principal.county_code]
    return "TRUE", []


# _scope's rule as SQL on a token row `t` (as tokens_of_requests reads it), for statements that
# check the token and read the children at once (school_lookups).
TOKEN_SCOPE = (
    "(t.role = 'province' OR (t.role = 'school' AND c.school_code = t.school_code)"
    " OR (t.role = 'county' AND c.county_code = t.county_code))"
)


class SchoolPulls:
    """The children a principal may see (SchoolReads)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def child(self, principal: Principal, student_number: str) -> ChildView | None:
        """The child holding (or having held) *student_number*, if *principal* may see it."""
        scope, args = _scope(principal, 2)
        where = (
            "c.child_id = (SELECT child_id FROM child_numbers WHERE student_number = $1)"
            f" AND {scope}"
        )
        row = await self._pool.fetchrow(CHILD_VIEW.format(where=where), student_number, *args)
        return view_of(row) if row else None

    async def school_children(self, principal: Principal, query: ListQuery) -> list[ChildView]:
        """One page (limit + 1 rows, to tell whether more follow) of a school's children."""
        # Only the filters given are in the statement: with `($n IS NULL OR ...)` terms the
        # planner found every custom plan cheaper than the generic one and planned each
        # page afresh, which cost more than running it. One text per combination of
        # filters lets each prepared statement settle on its generic plan.
        args: list[Any] = [query.school_code, query.after_child_id]
        where = ["c.school_code = $1", "c.child_id > $2"]

        def term(sql: str, value: object) -> None:
            args.append(value)
            where.append(sql.format(f"${len(args)}"))

        if query.entry_year is not None:
            term("c.entry_year = {}", query.entry_year)
        if query.since is not None:
            term("c.school_visible_at >= {}", query.since)
        scope, scope_args = _scope(principal, len(args) + 1)
        args.extend(scope_args)
        where.append(scope)
        outer = ""
        if query.state is not None:
            args.append(query.state)
            outer = f" WHERE q.state = ${len(args)}"
        args.append(query.limit + 1)
        sql = (
            f"SELECT * FROM ({CHILD_VIEW.format(where=' AND '.join(where))}) q{outer}"
            f" ORDER BY q.child_id LIMIT ${len(args)}"
        )
        rows = await self._pool.fetch(sql, *args)
        return [view_of(r) for r in rows]
