"""Per-key transaction locks, so concurrent requests about one child or number serialise."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool.
Conn = asyncpg.Connection | PoolConnectionProxy


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


async def lock_keys(conn: Conn, keys: Iterable[str]) -> None:
    """Take transaction-scoped advisory locks on `keys`, in one global order (no deadlocks)."""
    # One round trip; a plain scan of unnest() takes the locks in array order.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
        sorted({_lock_id(k) for k in keys}),
    )
