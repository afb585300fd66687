"""A database that fails over: connect to the writable server, leave one gone read-only.

``BRIDGE_DATABASE_URL`` may name a primary and its standbys (a libpq multi-host URL,
``postgresql://u@db1:5432,db2:5432/xueji?target_session_attrs=read-write``); asyncpg
tries them in turn and keeps the first that takes writes. The bridge only ever writes,
so it asks for ``read-write`` itself when the URL (or ``PGTARGETSESSIONATTRS``) names no
attribute. When the primary dies, its connections break and the pool replaces them on
the next acquire, which finds the promoted standby. A pooled connection to a server that
stays up but has turned read-only (fenced, or demoted behind a proxy) fails its writes
with ``ReadOnlySQLTransactionError``; the first such refusal expires every connection of
the pool, so that none is handed out again to that server.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from asyncpg.connect_utils import SessionAttribute
from asyncpg.connection import LoggedQuery


def connect_options(dsn: str) -> dict[str, Any]:
    """asyncpg keyword arguments for *dsn*: a writable server unless it asks otherwise."""
    query = parse_qs(urlsplit(dsn).query)
    if "target_session_attrs" in query or os.environ.get("PGTARGETSESSIONATTRS"):
        return {}
    return {"target_session_attrs": SessionAttribute.read_write}


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection to the writable server of *dsn*."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, **connect_options(dsn))
    return conn


class DemotionWatch:
    """Expires a pool's connections when one of them finds its server read-only.

    Installed as the pool's ``init``; a query logger costs one check per statement.
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._expiring: set[asyncio.Task[None]] = set()
        self.expired = 0

    def watch(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(self._heard)

    def _heard(self, query: LoggedQuery) -> None:
        if self._pool is None or not isinstance(
            query.exception, asyncpg.ReadOnlySQLTransactionError
        ):
            return
        self.expired += 1
        task = asyncio.get_running_loop().create_task(self._pool.expire_connections())
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """A pool on the writable server of *dsn* that leaves it when it turns read-only."""
    watch = DemotionWatch()
    pool = await asyncpg.create_pool(dsn, init=watch, **connect_options(dsn), **kwargs)
    assert pool is not None
    watch.watch(pool)
    return pool
