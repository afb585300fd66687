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
        rows = await self._pool.fetch(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR student_number = $1)"
            " AND ($2::text IS NULL OR actor = $2 OR target_token = $2)"
            " ORDER BY id DESC LIMIT $3",
            student_number, actor, limit,
        )  # fmt: skip
        return [
            AuditEntry(
                r["at"],
                r["actor"],
                r["role"],
                r["school_code"],
                r["county_code"],
                r["action"],
                r["student_number"],
                r["target_token"],
                r["remote"],
                r["outcome"],
                json.loads(r["detail"]),
            )
            for r in rows
        ]
