"""Set-aside work for operators: parked messages and set-aside hand-overs, grouped."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from bridge.services.ports.recovery import Group, ParkedMessage, SetAsideCase

# The registry's answer behind a set-aside, when the error carried one.
_ANSWER = (
    "coalesce(c.handoff #>> '{set_aside,detail,code}',"
    " c.handoff #>> '{set_aside,detail,status}', '')"
)
_OPEN_ASIDE = """
FROM children c
WHERE c.set_aside_reason IS NOT NULL
  AND ($1::text IS NULL OR c.county_code = $1)
  AND NOT EXISTS (SELECT 1 FROM set_aside_resolutions r WHERE r.child_id = c.child_id
      AND r.reason = c.set_aside_reason
      AND r.at_childseq = coalesce((c.handoff #>> '{set_aside,at_childseq}')::bigint, 0))
"""
_PARKED_OUTCOME = """
CASE WHEN p.retried_at IS NULL THEN NULL
     WHEN EXISTS (SELECT 1 FROM parked_messages q
                  WHERE q.message_id = p.message_id AND q.id > p.id) THEN 'parked_again'
     WHEN EXISTS (SELECT 1 FROM inbox i WHERE i.event_id::text = p.message_id) THEN 'processed'
     ELSE 'pending' END
"""


def _case(r: asyncpg.Record) -> SetAsideCase:
    handoff = json.loads(r["handoff"])
    aside = handoff.get("set_aside") or {}
    return SetAsideCase(
        r["child_id"], r["student_number"], r["set_aside_reason"], r["answer"],
        aside.get("detail", {}), int(aside.get("at_childseq", 0)), r["set_aside_at"],
        r["county_code"], r["kindergarten_code"], r["phase"], r["last_retry_at"],
    )  # fmt: skip


def _parked(r: asyncpg.Record) -> ParkedMessage:
    return ParkedMessage(
        r["id"], r["message_id"], r["routing_key"], r["reason_code"], r["reason"],
        r["parked_at"], r["body"], r["retries"], r["retried_at"], r["resolved_at"],
        r["resolution"], r["resolved_by"], r["outcome"],
        _object(r["headers"]), _object(r["properties"]),
    )  # fmt: skip


def _object(document: str | None) -> dict[str, Any]:
    value = json.loads(document) if document else {}
    return value if isinstance(value, dict) else {}


class RecoveryStore:
    """Queries and marks of the operators' recovery work (Worklist)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- set-aside hand-overs -----------------------------------------------------------
    async def set_aside_groups(self, county_code: str | None) -> list[Group]:
        """Open set-asides by reason and registry answer."""
        rows = await self._pool.fetch(
            f"SELECT c.set_aside_reason AS reason, {_ANSWER} AS answer, count(*) AS n,"
            f" min(c.set_aside_at) AS first, max(c.set_aside_at) AS last {_OPEN_ASIDE}"
            " GROUP BY 1, 2 ORDER BY n DESC, 1, 2",
            county_code,
        )
        return [
            Group("handoff", r["reason"], r["answer"], r["n"], r["first"], r["last"]) for r in rows
        ]

    async def set_aside_cases(
        self,
        county_code: str | None,
        *,
        reason: str | None = None,
        answer: str | None = None,
        student_number: str | None = None,
        limit: int = 500,
    ) -> list[SetAsideCase]:
        """Open set-asides, filtered."""
        rows = await self._pool.fetch(
            f"SELECT c.child_id, c.student_number, c.set_aside_reason, {_ANSWER} AS answer,"
            " c.handoff, c.set_aside_at, c.county_code, c.kindergarten_code, c.phase,"
            " (SELECT max(at) FROM operator_retries o WHERE o.kind = 'handoff'"
            "   AND o.target = c.child_id::text) AS last_retry_at"
            f" {_OPEN_ASIDE} AND ($2::text IS NULL OR c.set_aside_reason = $2)"
            f" AND ($3::text IS NULL OR {_ANSWER} = $3)"
            " AND ($4::text IS NULL OR c.child_id IN"
            "      (SELECT child_id FROM child_numbers WHERE student_number = $4))"
            " ORDER BY c.set_aside_at NULLS LAST, c.child_id LIMIT $5",
            county_code, reason, answer, student_number, limit,
        )  # fmt: skip
        return [_case(r) for r in rows]

    async def resolve_set_aside(self, case: SetAsideCase, note: str, actor: str) -> None:
        """Close one set-aside with an operator's note (a newer event re-opens the child)."""
        await self._pool.execute(
            "INSERT INTO set_aside_resolutions (child_id, at_childseq, reason, note, resolved_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            case.child_id, case.at_childseq, case.reason, note, actor,
        )  # fmt: skip

    async def handoff_state(self, child_id: int) -> tuple[str, str | None] | None:
        """(phase, set_aside_reason) of a child now."""
        row = await self._pool.fetchrow(
            "SELECT phase, set_aside_reason FROM children WHERE child_id = $1", child_id
        )
        return (row["phase"], row["set_aside_reason"]) if row else None

    # --- parked messages ----------------------------------------------------------------
    async def parked_groups(self) -> list[Group]:
        """Unresolved parked messages by reason."""
        rows = await self._pool.fetch(
            "SELECT reason_code, count(*) AS n, min(parked_at) AS first, max(parked_at) AS last"
            " FROM parked_messages WHERE resolved_at IS NULL GROUP BY 1 ORDER BY n DESC, 1"
        )
        return [
            Group("parked_message", r["reason_code"], "", r["n"], r["first"], r["last"])
            for r in rows
        ]

    async def parked_messages(
        self,
        *,
        reason_code: str | None = None,
        include_resolved: bool = False,
        limit: int = 500,
    ) -> list[ParkedMessage]:
        """Parked messages, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT p.*, {_PARKED_OUTCOME} AS outcome FROM parked_messages p"
            " WHERE ($1::text IS NULL OR p.reason_code = $1)"
            " AND ($2 OR p.resolved_at IS NULL) ORDER BY p.id LIMIT $3",
            reason_code, include_resolved, limit,
        )  # fmt: skip
        return [_parked(r) for r in rows]

    async def parked_message(self, message_id: int) -> ParkedMessage | None:
        """One parked message by its row id."""
        row = await self._pool.fetchrow(
            f"SELECT p.*, {_PARKED_OUTCOME} AS outcome FROM parked_messages p WHERE p.id = $1",
            message_id,
        )
        return _parked(row) if row else None

    async def mark_parked(
        self, message_id: int, *, resolution: str, actor: str, retried: bool
    ) -> bool:
        """Resolve a parked message (a retry resolves it as 'retried'); False if it was already."""
        result: str = await self._pool.execute(
            "UPDATE parked_messages SET resolved_at = now(), resolution = $2, resolved_by = $3,"
            " retried_at = CASE WHEN $4 THEN now() ELSE retried_at END,"
            " retries = retries + CASE WHEN $4 THEN 1 ELSE 0 END"
            " WHERE id = $1 AND resolved_at IS NULL",
            message_id, resolution, actor, retried,
        )  # fmt: skip
        return result.endswith(" 1")

    async def unmark_parked(self, message_id: int) -> None:
        """Undo mark_parked when the republish failed: the message stays parked."""
        await self._pool.execute(
            "UPDATE parked_messages SET resolved_at = NULL, resolution = NULL, resolved_by = NULL,"
            " retried_at = NULL, retries = greatest(retries - 1, 0) WHERE id = $1",
            message_id,
        )

    # --- retries ------------------------------------------------------------------------
    async def record_retry(
        self, *, actor: str, kind: str, target: str, group_key: str | None, result: str
    ) -> None:
        """Keep an operator's retry."""
        await self._pool.execute(
            "INSERT INTO operator_retries (actor, kind, target, group_key, result)"
            " VALUES ($1, $2, $3, $4, $5)",
            actor, kind, target, group_key, result,
        )  # fmt: skip

    async def recent_retries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest retries with what came of them so far."""
        rows = await self._pool.fetch(
            f"""
            SELECT o.*, CASE
              WHEN o.kind = 'handoff' THEN (
                SELECT CASE WHEN c.set_aside_reason IS NOT NULL AND c.set_aside_at > o.at
                            THEN 'set_aside_again:' || c.set_aside_reason ELSE c.phase END
                FROM children c WHERE c.child_id::text = o.target)
              ELSE (SELECT {_PARKED_OUTCOME} FROM parked_messages p WHERE p.id::text = o.target)
            END AS outcome,
            CASE WHEN o.kind = 'handoff' THEN (SELECT c.student_number FROM children c
                 WHERE c.child_id::text = o.target) END AS student_number,
            CASE WHEN o.kind = 'handoff' THEN (SELECT c.county_code FROM children c
                 WHERE c.child_id::text = o.target) END AS county_code
            FROM operator_retries o ORDER BY o.id DESC LIMIT $1
            """,
            limit,
        )
        return [dict(r) for r in rows]
