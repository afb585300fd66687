"""Parked messages (not events, or never processable), kept for operators."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class ParkedGroup:
    """Parked messages sharing one reason."""

    reason_code: str
    count: int
    first_parked_at: str
    last_parked_at: str


class ParkedMessages:
    """The parked-messages table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self,
        *,
        message_id: str | None,
        routing_key: str | None,
        code: str,
        reason: str,
        headers: str,
        body: bytes,
        properties: str = "{}",
    ) -> None:
        """Keep one parked message (*headers* and *properties* as JSON text)."""
        await self._pool.execute(
            "INSERT INTO parked_messages (message_id, routing_key, reason_code, reason, headers,"
            " body, properties) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb)",
            message_id, routing_key, code, reason, headers, body, properties,
        )  # fmt: skip

    async def groups(self) -> list[ParkedGroup]:
        """Unresolved parked messages grouped by reason."""
        rows = await self._pool.fetch(
            "SELECT reason_code, count(*) AS n, min(parked_at)::text AS first,"
            " max(parked_at)::text AS last FROM parked_messages WHERE resolved_at IS NULL"
            " GROUP BY reason_code ORDER BY n DESC"
        )
        return [ParkedGroup(r["reason_code"], r["n"], r["first"], r["last"]) for r in rows]

    async def count(self) -> int:
        """How many parked messages are unresolved."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM parked_messages WHERE resolved_at IS NULL"
        )
        return value
