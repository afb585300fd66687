"""The operators' identified lists and case pages (Casebook) in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from bridge.adapters.postgres.reconciliation_store import finding_fields
from bridge.domain.access import Principal
from bridge.services.ports.casework import (
    CaseAct,
    CaseCall,
    CaseEvent,
    CaseFinding,
    ChildCase,
    LostGroup,
    LostItem,
)
from bridge.services.ports.reconciliation import Scope

_DUE = "coalesce(i.detail ->> 'report_by', i.detail ->> 'pull_by', i.detail ->> 'deadline')::date"
_LOST_WHERE = """
 WHERE i.run_id = $1 AND i.category = ANY($2::text[])
   AND ($3::text IS NULL OR i.county_code = $3)
   AND ($4::text IS NULL OR i.kindergarten_code = $4)
   AND ($5::text IS NULL OR i.school_code = $5)
"""
# The name the registry was given for the child's current number (else any registration).
_NAME = """
coalesce(
    jsonb_path_query_first(c.handoff, '$.registrations[*] ? (@.student_number == $n).key_info.name',
                           jsonb_build_object('n', c.student_number)),
    jsonb_path_query_first(c.handoff, '$.registrations[*].key_info.name')) #>> '{}'
"""
_FAR = dt.date.max
_AUDIT = (
    "INSERT INTO audit_log (actor, role, school_code, county_code, action, remote, outcome,"
    " detail, student_numbers) VALUES ($1, $2, $3, $4, $5, $6, 'ok', $7::jsonb, $8::text[])"
)


def _graduated_name(body: bytes) -> str | None:
    """The child's name in a stored graduation event (structured, or its data alone)."""
    if not body.startswith(b"{"):
        return None  # minimised after retention: no name left
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    data = event.get("data", event) if isinstance(event, dict) else None
    child = data.get("child") if isinstance(data, dict) else None
    name = child.get("name") if isinstance(child, dict) else None
    return name if isinstance(name, str) else None


class Casebook:
    """Reads for county operators' work; each page's audit line is written here too."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lost_items(
        self, run_id: int, categories: Sequence[str], scope: Scope, *,
        school_code: str | None, limit: int, offset: int,
    ) -> list[LostItem]:  # fmt: skip
        """A page of the run's findings in *categories*, longest overdue first."""
        rows = await self._pool.fetch(
            f"SELECT i.category, i.student_number, i.county_code, i.kindergarten_code,"
            f" i.school_code, i.detail, i.since, {_DUE} AS due FROM recon_items i {_LOST_WHERE}"
            f" ORDER BY due NULLS LAST, i.student_number, i.category LIMIT $6 OFFSET $7",
            run_id, list(categories), scope.county_code, scope.kindergarten_code, school_code,
            limit, offset,
        )  # fmt: skip
        return [
            LostItem(
                *finding_fields(r),
                r["due"],
                r["since"],
            )
            for r in rows
        ]

    async def lost_total(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, school_code: str | None
    ) -> int:
        """How many findings lost_items pages through."""
        total: int = await self._pool.fetchval(
            f"SELECT count(*) FROM recon_items i {_LOST_WHERE}",
            run_id, list(categories), scope.county_code, scope.kindergarten_code, school_code,
        )  # fmt: skip
        return total

    async def lost_groups(
        self, run_id: int, categories: Sequence[str], scope: Scope, *, by: str
    ) -> list[LostGroup]:
        """The findings counted per school (by='school') or kindergarten, most first."""
        column = "i.school_code" if by == "school" else "i.kindergarten_code"
        rows = await self._pool.fetch(
            f"SELECT {column} AS code, i.category, count(*) AS n, min({_DUE}) AS oldest"
            f" FROM recon_items i {_LOST_WHERE} GROUP BY {column}, i.category",
            run_id, list(categories), scope.county_code, scope.kindergarten_code, None,
        )  # fmt: skip
        groups: dict[str | None, tuple[dict[str, int], list[Any]]] = {}
        for r in rows:
            per, oldest = groups.setdefault(r["code"], ({}, []))
            per[r["category"]] = r["n"]
            if r["oldest"] is not None:
                oldest.append(r["oldest"])
        out = [
            LostGroup(code, sum(per.values()), per, min(oldest) if oldest else None)
            for code, (per, oldest) in groups.items()
        ]
        out.sort(key=lambda g: (-g.count, g.oldest_due or _FAR, g.code or "~"))
        return out

    async def child_names(self, student_numbers: Iterable[str]) -> dict[str, str]:
        """Names from the registrations, else from the graduation event the ledger keeps."""
        numbers = sorted(set(student_numbers))
        if not numbers:
            return {}
        rows = await self._pool.fetch(
            f"SELECT n.student_number, c.child_id, {_NAME} AS name"
            " FROM child_numbers n JOIN children c ON c.child_id = n.child_id"
            " WHERE n.student_number = ANY($1::text[])",
            numbers,
        )
        names = {r["student_number"]: r["name"] for r in rows if r["name"]}
        missing = {r["child_id"]: r["student_number"] for r in rows if not r["name"]}
        if missing:
            events = await self._pool.fetch(
                "SELECT DISTINCT ON (child_id) child_id, body FROM child_events"
                " WHERE child_id = ANY($1::bigint[]) AND event_type LIKE '%child.graduated'"
                " ORDER BY child_id, childseq DESC",
                list(missing),
            )
            for e in events:
                name = _graduated_name(bytes(e["body"]))
                if name:
                    names[missing[e["child_id"]]] = name
        return names

    async def school_names(self, codes: Iterable[str]) -> dict[str, str]:
        """Names of schools and kindergartens by code (those loaded)."""
        wanted = sorted({c for c in codes if c})
        if not wanted:
            return {}
        rows = await self._pool.fetch(
            "SELECT code, name FROM school_names WHERE code = ANY($1::text[])", wanted
        )
        return {r["code"]: r["name"] for r in rows}

    async def load_school_names(
        self, rows: Sequence[tuple[str, str]], *, actor: str, source: str | None
    ) -> int:
        """Store (or replace) names by code; how many."""
        await self._pool.executemany(
            "INSERT INTO school_names (code, name, source, loaded_by) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, source = EXCLUDED.source,"
            " loaded_by = EXCLUDED.loaded_by, loaded_at = now()",
            [(code, name, source, actor) for code, name in rows],
        )
        return len(rows)

    async def case(self, student_number: str, county_code: str | None) -> ChildCase | None:
        """The child holding (or having held) *student_number*, within *county_code*."""
        row = await self._pool.fetchrow(
            f"SELECT c.*, {_NAME} AS name,"
            " CASE WHEN jsonb_typeof(c.handoff -> 'arrival') = 'object'"
            "      THEN c.handoff -> 'arrival' ->> 'arrived_on' END AS arrived_on"
            " FROM children c WHERE c.child_id ="
            "   (SELECT child_id FROM child_numbers WHERE student_number = $1)"
            " AND ($2::text IS NULL OR c.county_code = $2)",
            student_number, county_code,
        )  # fmt: skip
        if row is None:
            return None
        child_id = row["child_id"]
        numbers = [
            r["student_number"]
            for r in await self._pool.fetch(
                "SELECT student_number FROM child_numbers WHERE child_id = $1 ORDER BY 1",
                child_id,
            )
        ]
        events = await self._pool.fetch(
            "SELECT childseq, event_type, received_at, body FROM child_events"
            " WHERE child_id = $1 ORDER BY childseq, received_at",
            child_id,
        )
        calls = await self._pool.fetch(
            "SELECT operation, status, outcome, duration_ms, attempted_at FROM registry_calls"
            " WHERE child_id = $1 ORDER BY attempted_at, id LIMIT 200",
            child_id,
        )
        findings = await self._pool.fetch(
            "SELECT r.run_id, r.finished_at, array_agg(i.category ORDER BY i.category) AS cats"
            " FROM recon_items i JOIN recon_runs r ON r.run_id = i.run_id"
            " WHERE i.student_number = ANY($1::text[]) GROUP BY r.run_id, r.finished_at"
            " ORDER BY r.run_id DESC LIMIT 20",
            numbers,
        )
        acts = await self._pool.fetch(
            "SELECT at, actor, 'retry' AS act, result AS detail FROM operator_retries"
            "  WHERE kind = 'handoff' AND target = $2"
            " UNION ALL SELECT resolved_at, resolved_by, 'resolve', note"
            "  FROM set_aside_resolutions WHERE child_id = $1 ORDER BY 1 DESC LIMIT 50",
            child_id,
            str(child_id),
        )
        name = row["name"]
        if not name:
            name = next(
                (n for e in reversed(events) if e["event_type"].endswith("child.graduated")
                 and (n := _graduated_name(bytes(e["body"])))),
                None,
            )  # fmt: skip
        return ChildCase(
            child_id=child_id, student_number=row["student_number"],
            former_numbers=[n for n in numbers if n != row["student_number"]], name=name,
            entry_year=row["entry_year"], status=row["status"], phase=row["phase"],
            county_code=row["county_code"], kindergarten_code=row["kindergarten_code"],
            school_code=row["school_code"], set_aside_reason=row["set_aside_reason"],
            set_aside_at=row["set_aside_at"], first_graduated_at=row["first_graduated_at"],
            handed_over_at=row["handed_over_at"], arrived_on=row["arrived_on"],
            next_attempt_at=row["next_attempt_at"],
            events=[
                CaseEvent(e["childseq"], e["event_type"], e["received_at"], _event_time(e["body"]))
                for e in events
            ],
            calls=[
                CaseCall(c["operation"], c["status"], c["outcome"], c["duration_ms"],
                         c["attempted_at"])
                for c in calls
            ],
            findings=[
                CaseFinding(f["run_id"], f["finished_at"], list(f["cats"])) for f in findings
            ],
            acts=[CaseAct(a["at"], a["actor"], a["act"], a["detail"] or "") for a in acts],
        )  # fmt: skip

    async def record_view(
        self, *, actor: str, principal: Principal | None, action: str,
        student_numbers: Sequence[str], remote: str | None, detail: dict[str, Any],
    ) -> None:  # fmt: skip
        """One audit line naming every child a page showed identified."""
        p = principal
        await self._pool.execute(
            _AUDIT, p.token_id if p else actor, p.role.value if p else None,
            p.school_code if p else None, p.county_code if p else None, action, remote,
            json.dumps(detail), sorted(set(student_numbers)),
        )  # fmt: skip


def _event_time(body: bytes) -> str | None:
    """The event's own time (when the change was approved), if the stored body has one."""
    raw = bytes(body)
    if not raw.startswith(b"{"):
        return None
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = event.get("time") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None
