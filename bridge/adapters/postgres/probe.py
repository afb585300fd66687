"""Readiness: does the database answer at all?"""

from __future__ import annotations

import asyncpg


class DatabaseProbe:
    """One trivial statement on the pool (Probe)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def answers(self) -> bool:
        """True once the database answered; its errors propagate."""
        return bool(await self._pool.fetchval("SELECT 1"))
