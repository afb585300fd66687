"""Session-level advisory locks: one instance at a time runs a scheduled job."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def try_lock(pool: asyncpg.Pool, key: int) -> AsyncIterator[bool]:
    """Hold lock *key* while inside; yields False if another session holds it.

    On a connection of its own, at session level: it dies with the process, so a crashed
    instance never blocks the others.
    """
    async with pool.acquire() as conn:
        got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        try:
            yield got
        finally:
            if got:
                # A lost connection took the lock with it; its error is the news, not this.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
