"""PostgreSQL set-up: create the simulator's database if missing, its tables idempotently."""

from __future__ import annotations

import contextlib

import asyncpg
import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS reg_students (
    person_id bigserial PRIMARY KEY,
    student_number text NOT NULL UNIQUE,
    entry_year int NOT NULL,
    status text NOT NULL,
    name text NOT NULL,
    gender text NOT NULL,
    birth_date date NOT NULL,
    id_type text NOT NULL,
    id_number text,
    nationality text NOT NULL,
    kindergarten_code text NOT NULL,
    graduated_on date NOT NULL,
    requested_school_code text,
    school_code text,
    claim_sha256 text NOT NULL,
    claim_size bigint NOT NULL,
    claim_media_type text NOT NULL,
    file_sha256 text,
    arrived_on date,
    created_count int NOT NULL DEFAULT 1,
    replaced_count int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS reg_students_id_number
    ON reg_students (id_number) WHERE id_number IS NOT NULL;
CREATE INDEX IF NOT EXISTS reg_students_no_document
    ON reg_students (name, gender, birth_date) WHERE id_number IS NULL;
CREATE INDEX IF NOT EXISTS reg_students_cohort ON reg_students (entry_year, student_number);
CREATE TABLE IF NOT EXISTS reg_former_numbers (
    student_number text PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES reg_students ON DELETE CASCADE,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reg_former_numbers_person ON reg_former_numbers (person_id);
CREATE TABLE IF NOT EXISTS reg_record_files (
    person_id bigint PRIMARY KEY REFERENCES reg_students ON DELETE CASCADE,
    sha256 text NOT NULL,
    media_type text NOT NULL,
    content bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS reg_idempotency (
    key text PRIMARY KEY,
    request_hash text NOT NULL,
    status int NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pre_record_files (
    file_id text PRIMARY KEY,
    media_type text NOT NULL,
    sha256 text NOT NULL,
    content bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS pre_children (
    student_number text PRIMARY KEY,
    id_number text,
    state text NOT NULL,
    childseq int NOT NULL,
    kindergarten_code text NOT NULL,
    county_code text NOT NULL,
    entry_year int NOT NULL,
    file_id text
);
CREATE INDEX IF NOT EXISTS pre_children_cohort ON pre_children (entry_year, student_number);
"""

TABLES = (
    "reg_idempotency",
    "reg_record_files",
    "reg_former_numbers",
    "reg_students",
    "pre_children",
    "pre_record_files",
)


def _split_dsn(database_url: str) -> tuple[str, str]:
    """Split a DSN into (server DSN on the `postgres` database, database name)."""
    base, _, rest = database_url.rpartition("/")
    name = rest.split("?", 1)[0]
    if not name or "://" not in database_url or base.endswith(":/"):
        raise ValueError("the database URL must name a database")
    query = rest[len(name) :]
    return f"{base}/postgres{query}", name


async def ensure_database(database_url: str) -> None:
    """Create the database named in `database_url` if it does not exist yet."""
    server_dsn, name = _split_dsn(database_url)
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it between our check and our create.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    """Drop the database named in `database_url` (tests clean up with this)."""
    server_dsn, name = _split_dsn(database_url)
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, via orjson for speed.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def open_pool(database_url: str, *, max_size: int = 10) -> asyncpg.Pool:
    """Create the database and tables if needed and return a connection pool."""
    await ensure_database(database_url)
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size, init=_init_connection
    )
    async with pool.acquire() as conn, conn.transaction():
        # Serialise concurrent schema creation by several simulators on one database.
        await conn.execute("SELECT pg_advisory_xact_lock(7064112)")
        await conn.execute(SCHEMA)
    return pool


async def wipe(pool: asyncpg.Pool) -> None:
    """Delete all state (admin reset)."""
    await pool.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
