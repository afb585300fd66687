"""Reconciliation runs in PostgreSQL: the run lock, the ledger stream, findings and reports."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.adapters.postgres.connection import Connection
from bridge.domain.reconciliation import Category, Finding, LedgerEntry

# Advisory-lock key space of reconciliation: one lock per entry year.
_LOCK_BASE = 7_301_926_500_000
# Rows per COPY: large enough to amortise the round trip, small enough to bound memory.
BATCH_ROWS = 5000
# A school has pulled a child's record file once the admitting school took in the current
# file through the bridge's school API (table school_pulls, migration 003).
FILE_PULLED = (
    "EXISTS (SELECT 1 FROM school_pulls sp WHERE sp.child_id = c.child_id"
    " AND sp.sha256 = c.handoff ->> 'verified_file_sha256')"
)
_ITEM_COLUMNS = (
    "run_id", "category", "student_number", "county_code", "kindergarten_code",
    "school_code", "detail", "since",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scope:
    """Which children a report covers: a county operator's, or filters an operator chose."""

    county_code: str | None = None
    kindergarten_code: str | None = None


ALL = Scope()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One stored run."""

    run_id: int
    entry_year: int
    trigger: str
    actor: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    as_of: dt.date
    provisional: bool
    sides: dict[str, int]
    counts: dict[str, int]
    repairs: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Item:
    """One finding of a run, as listed to operators."""

    category: str
    student_number: str
    county_code: str | None
    kindergarten_code: str | None
    school_code: str | None
    detail: dict[str, str]
    since: dt.datetime | None
    new: bool


def _run(row: asyncpg.Record) -> RunInfo:
    return RunInfo(
        row["run_id"], row["entry_year"], row["trigger"], row["actor"], row["status"],
        row["started_at"], row["finished_at"], row["as_of"], row["provisional"],
        json.loads(row["sides"]), json.loads(row["counts"]), row["repairs"], row["error"],
    )  # fmt: skip


def _ledger_entry(r: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(
        child_id=r["child_id"], student_number=r["student_number"], status=r["status"],
        phase=r["phase"], id_number=r["id_number"], county_code=r["county_code"],
        kindergarten_code=r["kindergarten_code"], school_code=r["school_code"],
        deferred_until=r["deferred_until"], set_aside_reason=r["set_aside_reason"],
        set_aside_code=r["set_aside_code"], last_childseq=r["last_childseq"],
        first_graduated_on=r["first_graduated_on"], handed_over_on=r["handed_over_on"],
        file_sha256=r["file_sha256"], arrived=r["arrived"], file_pulled=r["file_pulled"],
    )  # fmt: skip


_LEDGER_STREAM = f"""
SELECT c.child_id, c.student_number, c.status, c.phase, c.id_number, c.county_code,
       c.kindergarten_code, c.school_code, c.deferred_until, c.set_aside_reason,
       coalesce(c.handoff #>> '{{set_aside,detail,code}}',
                c.handoff #>> '{{set_aside,detail,status}}') AS set_aside_code,
       c.last_childseq,
       (c.first_graduated_at AT TIME ZONE 'Asia/Shanghai')::date AS first_graduated_on,
       (c.handed_over_at AT TIME ZONE 'Asia/Shanghai')::date AS handed_over_on,
       c.handoff ->> 'verified_file_sha256' AS file_sha256,
       (c.phase = 'enrolled' OR jsonb_typeof(c.handoff -> 'arrival') = 'object') AS arrived,
       {FILE_PULLED} AS file_pulled
FROM children c
WHERE c.entry_year = $1
ORDER BY c.entry_year, c.student_number COLLATE "C"
"""

_SCOPE = "($2::text IS NULL OR county_code = $2) AND ($3::text IS NULL OR kindergarten_code = $3)"


class ItemWriter:
    """Buffers a run's findings and identities and COPYs them in batches."""

    def __init__(self, conn: Connection, run_id: int, since: dt.datetime) -> None:
        self._conn, self._run_id, self._since = conn, run_id, since
        self._items: list[tuple[Any, ...]] = []
        self._identities: list[tuple[int, str, str]] = []

    async def add(self, finding: Finding, identities: Iterable[tuple[str, str]]) -> None:
        """Keep *finding*'s rows and the (id_number, student_number) pairs seen for it."""
        detail = json.dumps(finding.detail) if finding.detail else None
        for category in finding.categories:
            self._items.append((
                self._run_id, category.value, finding.student_number, finding.county_code,
                finding.kindergarten_code, finding.school_code,
                None if category is Category.MATCHED else detail, self._since,
            ))  # fmt: skip
        self._identities.extend((self._run_id, i, n) for i, n in identities)
        if len(self._items) >= BATCH_ROWS or len(self._identities) >= BATCH_ROWS:
            await self.flush()

    async def flush(self) -> None:
        """Write what is buffered."""
        if self._items:
            await self._conn.copy_records_to_table(
                "recon_items", records=self._items, columns=_ITEM_COLUMNS
            )
            self._items = []
        if self._identities:
            await self._conn.copy_records_to_table(
                "recon_identities", records=self._identities,
                columns=("run_id", "id_number", "student_number"),
            )  # fmt: skip
            self._identities = []


class ReconciliationStore:
    """recon_runs, recon_items and friends."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- running ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def exclusive(self, entry_year: int) -> AsyncIterator[bool]:
        """Hold the cohort's run lock while inside; yields False if another run holds it.

        A session-level advisory lock on a connection of its own: it dies with the
        process, so a crashed instance never blocks the others.
        """
        async with self._pool.acquire() as conn:
            key = _LOCK_BASE + entry_year
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield got
            finally:
                if got:
                    # A lost connection took the lock with it; its error is the news, not this.
                    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def start(
        self, entry_year: int, *, trigger: str, actor: str | None, as_of: dt.date
    ) -> RunInfo:
        """Open a run (call under the lock; a 'running' run left by a crash is failed)."""
        await self._pool.execute(
            "UPDATE recon_runs SET status = 'failed', error = 'abandoned', finished_at = now()"
            " WHERE entry_year = $1 AND status = 'running'",
            entry_year,
        )
        row = await self._pool.fetchrow(
            "INSERT INTO recon_runs (entry_year, trigger, actor, as_of) VALUES ($1, $2, $3, $4)"
            " RETURNING *",
            entry_year, trigger, actor, as_of,
        )  # fmt: skip
        assert row is not None
        return _run(row)

    @contextlib.asynccontextmanager
    async def writer(self, run: RunInfo) -> AsyncIterator[ItemWriter]:
        """A writer of findings on a connection of its own; flushed on leaving."""
        async with self._pool.acquire() as conn:
            writer = ItemWriter(conn, run.run_id, run.started_at)
            yield writer
            await writer.flush()

    @contextlib.asynccontextmanager
    async def ledger_stream(
        self, entry_year: int, *, prefetch: int = BATCH_ROWS
    ) -> AsyncIterator[AsyncIterator[LedgerEntry]]:
        """The cohort's ledger rows by student number, through a server-side cursor."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):

            async def rows() -> AsyncIterator[LedgerEntry]:
                async for r in conn.cursor(_LEDGER_STREAM, entry_year, prefetch=prefetch):
                    yield _ledger_entry(r)

            yield rows()

    async def finish(
        self, run: RunInfo, *, sides: Mapping[str, int], provisional: bool, repairs: int,
        keep_runs: int,
    ) -> RunInfo:  # fmt: skip
        """Find identities under two numbers, fill scopes and 'since', count, and close."""
        run_id = run.run_id
        async with self._pool.acquire() as conn:
            # Freshly COPYed rows have no statistics; without them the joins below are
            # planned as nested loops over a million rows.
            await conn.execute("ANALYZE recon_items")
            await conn.execute("ANALYZE recon_identities")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                WITH dup AS (
                    SELECT id_number FROM recon_identities WHERE run_id = $1
                    GROUP BY id_number HAVING count(DISTINCT student_number) > 1),
                pairs AS (
                    SELECT DISTINCT i.id_number, i.student_number
                    FROM recon_identities i JOIN dup USING (id_number) WHERE i.run_id = $1)
                INSERT INTO recon_items (run_id, category, student_number, detail, since)
                SELECT $1, 'two_numbers_one_identity', p.student_number,
                       jsonb_build_object('other_numbers', (
                           SELECT string_agg(DISTINCT q.student_number, ' ') FROM pairs q
                           WHERE q.id_number = p.id_number
                             AND q.student_number <> p.student_number)), $2
                FROM pairs p
                ON CONFLICT DO NOTHING
                """,
                run_id, run.started_at,
            )  # fmt: skip
            await conn.execute("DELETE FROM recon_identities WHERE run_id = $1", run_id)
            # Children the ledger knows under a number another side used: their scope.
            await conn.execute(
                "UPDATE recon_items i SET county_code = c.county_code,"
                " kindergarten_code = coalesce(i.kindergarten_code, c.kindergarten_code)"
                " FROM child_numbers n JOIN children c USING (child_id)"
                " WHERE i.run_id = $1 AND i.county_code IS NULL"
                " AND n.student_number = i.student_number",
                run_id,
            )
            # Children only the roster knows: their kindergarten's county, as the ledger has it.
            await conn.execute(
                "WITH k AS MATERIALIZED (SELECT DISTINCT ON (kindergarten_code)"
                "  kindergarten_code, county_code FROM children"
                "  WHERE county_code IS NOT NULL AND kindergarten_code IS NOT NULL"
                "  ORDER BY kindergarten_code, child_id DESC)"
                " UPDATE recon_items i SET county_code = k.county_code FROM k"
                " WHERE i.run_id = $1 AND i.county_code IS NULL"
                " AND i.kindergarten_code = k.kindergarten_code",
                run_id,
            )
            previous = await self._previous_id(conn, run)
            if previous is not None:
                await conn.execute(
                    "UPDATE recon_items cur SET since = prev.since FROM recon_items prev"
                    " WHERE cur.run_id = $1 AND prev.run_id = $2 AND cur.category <> 'matched'"
                    " AND prev.category = cur.category"
                    " AND prev.student_number = cur.student_number",
                    run_id, previous,
                )  # fmt: skip
            rows = await conn.fetch(
                "SELECT category, count(*) AS n FROM recon_items WHERE run_id = $1"
                " GROUP BY category",
                run_id,
            )
            counts = {c.value: 0 for c in Category} | {r["category"]: r["n"] for r in rows}
            row = await conn.fetchrow(
                "UPDATE recon_runs SET status = 'finished', finished_at = now(), counts = $2,"
                " sides = $3, provisional = $4, repairs = $5 WHERE run_id = $1 RETURNING *",
                run_id, json.dumps(counts), json.dumps(dict(sides)), provisional, repairs,
            )  # fmt: skip
            # Old runs keep their counts (the overview's chart); their items go.
            await conn.execute(
                "DELETE FROM recon_items WHERE run_id IN (SELECT run_id FROM recon_runs"
                " WHERE entry_year = $1 AND status = 'finished' ORDER BY run_id DESC OFFSET $2)",
                run.entry_year, keep_runs,
            )  # fmt: skip
        assert row is not None
        return _run(row)

    async def fail(self, run: RunInfo, error: str) -> None:
        """Close a run that could not finish; its partial findings go."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE recon_runs SET status = 'failed', finished_at = now(), error = $2"
                " WHERE run_id = $1",
                run.run_id, error[:500],
            )  # fmt: skip
            await conn.execute("DELETE FROM recon_items WHERE run_id = $1", run.run_id)
            await conn.execute("DELETE FROM recon_identities WHERE run_id = $1", run.run_id)

    async def record_repair(
        self, run: RunInfo, child_id: int, student_number: str, category: str, outcome: str
    ) -> None:
        """Keep what a repair did."""
        await self._pool.execute(
            "INSERT INTO recon_repairs (run_id, child_id, student_number, category, outcome)"
            " VALUES ($1, $2, $3, $4, $5)",
            run.run_id, child_id, student_number, category, outcome,
        )  # fmt: skip

    # --- reading --------------------------------------------------------------------------
    @staticmethod
    async def _previous_id(conn: Connection, run: RunInfo) -> int | None:
        value: int | None = await conn.fetchval(
            "SELECT max(run_id) FROM recon_runs WHERE entry_year = $1 AND run_id < $2"
            " AND status = 'finished' AND EXISTS (SELECT 1 FROM recon_items i"
            " WHERE i.run_id = recon_runs.run_id)",
            run.entry_year, run.run_id,
        )  # fmt: skip
        return value

    async def previous(self, run: RunInfo) -> int | None:
        """The finished run before *run* whose findings are still kept."""
        async with self._pool.acquire() as conn:
            return await self._previous_id(conn, run)

    async def get(self, run_id: int) -> RunInfo | None:
        """One run."""
        row = await self._pool.fetchrow("SELECT * FROM recon_runs WHERE run_id = $1", run_id)
        return _run(row) if row else None

    async def latest(self, entry_year: int) -> RunInfo | None:
        """The newest finished run of a cohort."""
        row = await self._pool.fetchrow(
            "SELECT * FROM recon_runs WHERE entry_year = $1 AND status = 'finished'"
            " ORDER BY run_id DESC LIMIT 1",
            entry_year,
        )
        return _run(row) if row else None

    async def runs(self, entry_year: int | None = None, limit: int = 20) -> list[RunInfo]:
        """Newest first."""
        rows = await self._pool.fetch(
            "SELECT * FROM recon_runs WHERE $1::int IS NULL OR entry_year = $1"
            " ORDER BY run_id DESC LIMIT $2",
            entry_year, limit,
        )  # fmt: skip
        return [_run(r) for r in rows]

    async def entry_years(self) -> list[int]:
        """Cohorts with runs or children, newest first."""
        rows = await self._pool.fetch(
            "SELECT entry_year FROM recon_runs UNION"
            " SELECT DISTINCT entry_year FROM children WHERE entry_year IS NOT NULL"
            " ORDER BY 1 DESC"
        )
        return [r["entry_year"] for r in rows]

    async def last_started(self, entry_year: int) -> dt.datetime | None:
        """When the newest run of the cohort started (any trigger, any outcome)."""
        value: dt.datetime | None = await self._pool.fetchval(
            "SELECT max(started_at) FROM recon_runs WHERE entry_year = $1", entry_year
        )
        return value

    async def counts(self, run: RunInfo, scope: Scope = ALL) -> dict[str, int]:
        """Children per category within *scope*."""
        if scope == ALL:
            return {c.value: 0 for c in Category} | run.counts
        rows = await self._pool.fetch(
            f"SELECT category, count(*) AS n FROM recon_items WHERE run_id = $1 AND {_SCOPE}"
            " GROUP BY category",
            run.run_id, scope.county_code, scope.kindergarten_code,
        )  # fmt: skip
        return {c.value: 0 for c in Category} | {r["category"]: r["n"] for r in rows}

    async def numbers(
        self, run: RunInfo, category: str, scope: Scope = ALL
    ) -> AsyncIterator[list[str]]:
        """The student numbers of one category, in batches, through a cursor."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            batch: list[str] = []
            async for r in conn.cursor(
                f"SELECT student_number FROM recon_items WHERE run_id = $1 AND {_SCOPE}"
                " AND category = $4 ORDER BY student_number",
                run.run_id, scope.county_code, scope.kindergarten_code, category,
                prefetch=BATCH_ROWS,
            ):  # fmt: skip
                batch.append(r["student_number"])
                if len(batch) >= BATCH_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch

    async def items(
        self,
        run: RunInfo,
        *,
        categories: Iterable[str] | None = None,
        scope: Scope = ALL,
        new_only: bool = False,
        limit: int = 200,
        offset: int = 0,
    ) -> list[Item]:
        """A page of findings, with whether each is new since the previous run."""
        previous = await self.previous(run)
        cats = list(categories) if categories is not None else None
        rows = await self._pool.fetch(
            """
            SELECT i.*, (prev.student_number IS NULL) AS new
            FROM recon_items i LEFT JOIN recon_items prev
              ON prev.run_id = $4 AND prev.category = i.category
             AND prev.student_number = i.student_number
            WHERE i.run_id = $1 AND ($5::text[] IS NULL OR i.category = ANY($5))
              AND ($2::text IS NULL OR i.county_code = $2)
              AND ($3::text IS NULL OR i.kindergarten_code = $3)
              AND (NOT $6 OR prev.student_number IS NULL)
            ORDER BY i.category, i.student_number LIMIT $7 OFFSET $8
            """,
            run.run_id, scope.county_code, scope.kindergarten_code, previous, cats,
            new_only and previous is not None, limit, offset,
        )  # fmt: skip
        return [
            Item(
                r["category"],
                r["student_number"],
                r["county_code"],
                r["kindergarten_code"],
                r["school_code"],
                json.loads(r["detail"]) if r["detail"] else {},
                r["since"],
                bool(r["new"]) and previous is not None,
            )
            for r in rows
        ]

    async def changes(
        self, run: RunInfo, scope: Scope = ALL, *, sample: int = 1000
    ) -> dict[str, dict[str, list[str]]]:
        """Per category: children new in *run* and resolved since the previous run.

        Lists hold at most *sample* numbers each; matched is left out (it is the norm).
        """
        previous = await self.previous(run)
        if previous is None:
            return {}
        out: dict[str, dict[str, list[str]]] = {}
        for label, newer, older in (
            ("new", run.run_id, previous),
            ("resolved", previous, run.run_id),
        ):
            rows = await self._pool.fetch(
                f"""
                SELECT category, student_number FROM (
                  SELECT category, student_number,
                         row_number() OVER (PARTITION BY category ORDER BY student_number) AS k
                  FROM recon_items i WHERE run_id = $1 AND category <> 'matched' AND {_SCOPE}
                  AND NOT EXISTS (SELECT 1 FROM recon_items o WHERE o.run_id = $4
                      AND o.category = i.category AND o.student_number = i.student_number)
                ) x WHERE k <= $5 ORDER BY category, student_number
                """,
                newer, scope.county_code, scope.kindergarten_code, older, sample,
            )  # fmt: skip
            for r in rows:
                entry = out.setdefault(r["category"], {"new": [], "resolved": []})
                entry[label].append(r["student_number"])
        return out

    async def history(self, entry_year: int, limit: int = 12) -> list[RunInfo]:
        """Finished runs of a cohort, oldest first (for the overview's chart)."""
        rows = await self._pool.fetch(
            "SELECT * FROM (SELECT * FROM recon_runs WHERE entry_year = $1"
            " AND status = 'finished' ORDER BY run_id DESC LIMIT $2) r ORDER BY run_id",
            entry_year, limit,
        )  # fmt: skip
        return [_run(r) for r in rows]
