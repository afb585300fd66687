"""The append-only audit log: every read of a child's data, every arrival, every token act."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from bridge.adapters.postgres.connection import Connection
from bridge.domain.access import Principal
from schemas.api import AuditEntryOut

_INSERT = (
    "INSERT INTO audit_log (actor, role, school_code, county_code, action,"
    " student_number, target_token, remote, outcome, detail)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)"
)
# Fixed fragments, so that each way of asking is a plan of its own that uses its index
# (a catch-all "$1 IS NULL OR ..." gets one generic plan that scans the log backwards).
_BY_CHILD = "(student_number = ${n} OR student_numbers @> ARRAY[${n}::text])"
_BY_TOKEN = "(actor = ${n} OR target_token = ${n})"


async def append(
    conn: asyncpg.Pool | Connection,
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
    """Append one entry on *conn* (a pool, or a connection inside a transaction)."""
    await conn.execute(
        _INSERT,
        principal.token_id if principal else (actor or "anonymous"),
        principal.role.value if principal else None,
        principal.school_code if principal else None,
        principal.county_code if principal else None,
        action, student_number, target_token, remote, outcome, json.dumps(detail or {}),
    )  # fmt: skip


class AuditLog:
    """Append and query (Audit); the table refuses updates and deletes."""

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
        await append(
            self._pool, action=action, outcome=outcome, principal=principal, actor=actor,
            student_number=student_number, target_token=target_token, remote=remote,
            detail=detail,
        )  # fmt: skip

    async def query(
        self,
        *,
        student_number: str | None = None,
        actor: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntryOut]:
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


def _entry(row: asyncpg.Record, asked_about: str | None) -> AuditEntryOut:
    # A list page's line names every child it showed (student_numbers); read by one of
    # them, it is about that child.
    numbers = list(row["student_numbers"] or ())
    about = row["student_number"]
    if about is None and asked_about is not None and asked_about in numbers:
        about = asked_about
    return AuditEntryOut(
        at=row["at"], actor=row["actor"], role=row["role"], school_code=row["school_code"],
        county_code=row["county_code"], action=row["action"], student_number=about,
        target_token=row["target_token"], remote=row["remote"], outcome=row["outcome"],
        detail=json.loads(row["detail"]), student_numbers=numbers,
    )  # fmt: skip
