"""Console sessions: the hash of each session cookie, its operator token and CSRF token."""

from __future__ import annotations

import asyncpg

from bridge.domain.access import Principal, Role


class ConsoleSessionStore:
    """The console_sessions table (ConsoleSessions)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self, session_hash: str, token_id: str, csrf: str, *, lifetime_s: float) -> None:
        """Keep a new session."""
        await self._pool.execute(
            "INSERT INTO console_sessions (session_hash, token_id, csrf_token, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            session_hash, token_id, csrf, lifetime_s,
        )  # fmt: skip

    async def find(self, session_hash: str) -> tuple[Principal, str] | None:
        """(principal, CSRF token) of a live session whose token is neither revoked nor
        sealed."""
        row = await self._pool.fetchrow(
            "SELECT s.csrf_token, t.* FROM console_sessions s JOIN api_tokens t USING (token_id)"
            " WHERE s.session_hash = $1 AND s.expires_at > now()"
            " AND t.revoked_at IS NULL AND t.sealed_at IS NULL",
            session_hash,
        )
        if row is None:
            return None
        principal = Principal(row["token_id"], Role(row["role"]), None, row["county_code"])
        return principal, row["csrf_token"]

    async def close(self, session_hash: str) -> None:
        """End a session."""
        await self._pool.execute(
            "DELETE FROM console_sessions WHERE session_hash = $1", session_hash
        )
