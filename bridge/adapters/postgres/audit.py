"""The append-only audit log: every read of a child's data, every arrival, every token act."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.domain.access import Principal


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log."""

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
    # A list page's line: every child the page showed (student_number is then the child
    # asked about, or None when the log is read by token).
    student_numbers: tuple[str, ...] = ()


# Fixed fragments, so that each way of asking is a plan of its own that uses its index
# (a catch-all "$1 IS NULL OR ..." gets one generic plan that scans the log backwards).
_BY_CHILD = "(student_number = ${n} OR student_numbers @> ARRAY[${n}::text])"
_BY_TOKEN = "(actor = ${n} OR target_token = ${n})"


class AuditLog:
    """Append and query; the table refuses updates and deletes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        *,
        action: str,
        outcome: str,
        principal: Principal | None = None,
        actor: str | None = None,
        student_number: str | None = None,
        target_token: str | None = None,
        remote: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry. *actor* names a non-token caller (e.g. ``cli:root``)."""
        await self._pool.execute(
            "INSERT INTO audit_log (actor, role, school_code, county_code, action,"
            " student_number, target_token, remote, outcome, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
            principal.token_id if principal else (actor or "anonymous"),
            principal.role.value if principal else None,
            principal.school_code if principal else None,
            principal.county_code if principal else None,
            action, student_number, target_token, remote, outcome, json.dumps(detail or {}),
        )  # fmt: skip

    async def query(
        self,
        *,
        student_number: str | None = None,
        actor: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first, by child or by token (or both)."""
        where: list[str] = []
        args: list[object] = []
        for fragment, value in ((_BY_CHILD, student_number), (_BY_TOKEN, actor)):
            if value is not None:
                args.append(value)
                where.append(fragment.format(n=len(args)))
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT * FROM audit_log WHERE {' AND '.join(where) or 'true'}"
            f" ORDER BY id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_entry(r, student_number) for r in rows]


def _entry(row: asyncpg.Record, asked_about: str | None) -> AuditEntry:
    numbers = tuple(row["student_numbers"] or ())
    about = row["student_number"]
    if about is None and asked_about is not None and asked_about in numbers:
        about = asked_about
    return AuditEntry(
        row["at"], row["actor"], row["role"], row["school_code"], row["county_code"],
        row["action"], about, row["target_token"], row["remote"], row["outcome"],
        json.loads(row["detail"]), numbers,
    )  # fmt: skip
