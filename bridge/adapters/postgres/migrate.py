"""Versioned SQL migrations, safe when several bridge instances start at once."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

from bridge.adapters.postgres import failover
from bridge.adapters.postgres.connection import Connection

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every instance of this service.
_MIGRATION_LOCK = 7_301_926_001


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bridge.adapters.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: Connection) -> list[str]:
    """Apply every migration not applied yet; return the names applied now."""
    applied_now: list[str] = []
    # A session-level advisory lock serialises concurrent starters; the loser then finds
    # everything applied and does nothing.
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def ensure_database(dsn: str) -> None:
    """Create the database named in *dsn* if it does not exist (localhost convenience)."""
    try:
        conn = await failover.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    base, _, name = dsn.rpartition("/")
    name, _, query = name.partition("?")  # the query names the hosts' attributes: keep it
    admin = await failover.connect(f"{base}/postgres" + (f"?{query}" if query else ""))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        pass  # another instance created it first
    finally:
        await admin.close()
