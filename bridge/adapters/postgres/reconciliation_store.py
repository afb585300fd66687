"""Reconciliation runs in PostgreSQL: the run lock, the ledger stream, findings and reports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson
from pydantic import TypeAdapter

from bridge.adapters.postgres.advisory import try_lock
from bridge.adapters.postgres.connection import Connection
from bridge.domain.reconciliation import Category, Finding, LedgerEntry
from bridge.services.ports.reconciliation import ALL, Item, N, RunInfo, Scope

# Advisory-lock key space of reconciliation: one lock per entry year.
_LOCK_BASE = 7_301_926_500_000
# Rows per batch (ledger fetch, COPY hand-over): large enough to amortise a round trip,
# small enough to bound memory.
BATCH_ROWS = 5000
# Batches a COPY may fall behind the merge before the merge waits for it.
COPY_DEPTH = 4
# A school has pulled a child's record file once the admitting school took in the current
# file through the bridge's school API (table school_pulls, migration 003).
FILE_PULLED = (
    "EXISTS (SELECT 1 FROM school_pulls sp WHERE sp.child_id = c.child_id"
    " AND sp.sha256 = c.handoff ->> 'verified_file_sha256')"
)
# The child's stored file failed authentication (record_files.damaged_at, a tiny index).
FILE_DAMAGED = (
    "EXISTS (SELECT 1 FROM record_files f WHERE f.damaged_at IS NOT NULL"
    " AND f.sha256 = c.handoff ->> 'verified_file_sha256')"
)
# What a run COPYs of each finding. 'since' is not among them: NULL reads as "since this
# run" (its started_at), and encoding one timestamp into every row cost more than the rest
# of the row; findings the previous run had too take its 'since' (ItemWriter).
_ITEM_COLUMNS = (
    "run_id", "category", "student_number", "county_code", "kindergarten_code",
    "school_code", "detail",
)  # fmt: skip


def _run(row: asyncpg.Record) -> RunInfo:
    return RunInfo(
        row["run_id"], row["entry_year"], row["trigger"], row["actor"], row["status"],
        row["started_at"], row["finished_at"], row["as_of"], row["provisional"],
        json.loads(row["sides"]), json.loads(row["counts"]), row["repairs"], row["error"],
    )  # fmt: skip


# Each column of the ledger stream, in LedgerEntry's field order: a row becomes an entry
# positionally (LedgerEntry._make(row)), without a lookup by name per field.
_LEDGER_COLUMNS = {
    "child_id": "c.child_id",
    "student_number": "c.student_number",
    "status": "c.status",
    "phase": "c.phase",
    "id_number": "c.id_number",
    "county_code": "c.county_code",
    "kindergarten_code": "c.kindergarten_code",
    "school_code": "c.school_code",
    "deferred_until": "c.deferred_until",
    "set_aside_reason": "c.set_aside_reason",
    "set_aside_code": "coalesce(c.handoff #>> '{set_aside,detail,code}',"
    " c.handoff #>> '{set_aside,detail,status}')",
    "last_childseq": "c.last_childseq",
    "first_graduated_on": "(c.first_graduated_at AT TIME ZONE 'Asia/Shanghai')::date",
    "handed_over_on": "(c.handed_over_at AT TIME ZONE 'Asia/Shanghai')::date",
    "file_sha256": "c.handoff ->> 'verified_file_sha256'",
    "arrived": "(c.phase = 'enrolled' OR jsonb_typeof(c.handoff -> 'arrival') = 'object')",
    "file_pulled": FILE_PULLED,
    "erased": "(c.erased_at IS NOT NULL)",
    "file_damaged": FILE_DAMAGED,
}
_LEDGER_STREAM = (
    "SELECT "
    + ", ".join(_LEDGER_COLUMNS[name] for name in LedgerEntry._fields)
    + ' FROM children c WHERE c.entry_year = $1 ORDER BY c.entry_year, c.student_number COLLATE "C"'
)

# The children that once held one of the numbers and hold another now, as the stream
# gives them.
_FORMER_HOLDERS = (
    "SELECT n.student_number AS former_number, "
    + ", ".join(_LEDGER_COLUMNS[name] for name in LedgerEntry._fields)
    + " FROM child_numbers n JOIN children c ON c.child_id = n.child_id"
    " WHERE n.student_number = ANY($1::text[]) AND c.student_number <> n.student_number"
)

# The fields of ListedFinding, in its order.
FindingFields = tuple[str, str, str | None, str | None, str | None, dict[str, str]]
_SCOPE = "($2::text IS NULL OR county_code = $2) AND ($3::text IS NULL OR kindergarten_code = $3)"


def finding_fields(r: asyncpg.Record) -> FindingFields:
    """A recon_items row's fields that every listed finding starts with (``ListedFinding``)."""
    detail: dict[str, str] = json.loads(r["detail"]) if r["detail"] else {}
    return (
        r["category"], r["student_number"], r["county_code"], r["kindergarten_code"],
        r["school_code"], detail,
    )  # fmt: skip


class _CopyStream:
    """One COPY into a table, fed batch by batch by a task of its own.

    The merge hands a batch over and goes on; it waits only when the database falls
    COPY_DEPTH batches behind. One COPY for the whole run: nothing of a run that fails is
    left behind, and no round trip is paid per batch.
    """

    def __init__(self, conn: Connection, table: str, columns: tuple[str, ...]) -> None:
        self._queue: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(COPY_DEPTH)
        self._task = asyncio.ensure_future(
            conn.copy_records_to_table(table, records=self._rows(), columns=columns)
        )
        # A COPY that failed takes no more batches: free a merge waiting to hand one over.
        self._task.add_done_callback(lambda _: self._drain())

    async def _rows(self) -> AsyncIterator[tuple[Any, ...]]:
        while (batch := await self._queue.get()) is not None:
            for row in batch:
                yield row

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def put(self, batch: list[tuple[Any, ...]] | None) -> None:
        """Hand *batch* over (None: the end); raises the COPY's error if it failed."""
        if self._task.done():
            self._task.result()
            raise asyncpg.InterfaceError("the COPY ended before its rows did")
        await self._queue.put(batch)

    async def close(self) -> None:
        """End the COPY and wait until the database has every row."""
        await self.put(None)
        await self._task

    async def abort(self) -> None:
        """Give up: the COPY is cancelled and none of its rows stay."""
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class ItemWriter:
    """Streams a run's findings and the identities it saw to PostgreSQL while the merge goes on.

    Three COPYs, each on a connection of its own:

    - matched findings (most of a cohort) go straight into recon_items;
    - the others go to a temporary table first and reach recon_items in one INSERT at the
      end, each taking its 'since' from the previous run if that found it too: written
      once, complete, rather than updated afterwards;
    - every (identity number, student number) pair seen, once, goes to an unindexed
      temporary table; at the end one sort finds the identities held under more than
      one number, and only those become findings.

    Temporary tables write no WAL and PostgreSQL spills them to disk: memory stays bounded.
    """

    def __init__(
        self, matched: Connection, others: Connection, identities: Connection, run_id: int,
        previous: int | None,
    ) -> None:  # fmt: skip
        self._others_conn, self._ids_conn = others, identities
        self._run_id, self._previous = run_id, previous
        self._matched_out = _CopyStream(matched, "recon_items", _ITEM_COLUMNS)
        self._others_out = _CopyStream(others, _FINDINGS, _ITEM_COLUMNS)
        self._ids_out = _CopyStream(identities, _IDENTITIES, ("id_number", "student_number"))
        self._matched: list[tuple[Any, ...]] = []
        self._others: list[tuple[Any, ...]] = []
        self._identities: list[tuple[str, str]] = []
        self.closed = False

    def add(self, finding: Finding, identities: Iterable[str]) -> None:
        """Keep *finding*'s rows and the identity numbers the sides gave its student number."""
        number, run_id = finding.student_number, self._run_id
        county, kindergarten, school = (
            finding.county_code, finding.kindergarten_code, finding.school_code
        )  # fmt: skip
        detail: str | None = None
        # Category is a StrEnum: each member is the very string stored.
        for category in finding.categories:
            if category is Category.MATCHED:
                self._matched.append((run_id, category, number, county, kindergarten, school, None))
                continue
            if detail is None and finding.detail:
                detail = orjson.dumps(finding.detail).decode()
            self._others.append((run_id, category, number, county, kindergarten, school, detail))
        self._identities.extend((i, number) for i in identities)

    async def hand_over(self) -> None:
        """Pass full batches on to the COPYs (awaited between pages of the merge)."""
        if len(self._matched) >= BATCH_ROWS:
            batch, self._matched = self._matched, []
            await self._matched_out.put(batch)
        if len(self._others) >= BATCH_ROWS:
            batch, self._others = self._others, []
            await self._others_out.put(batch)
        if len(self._identities) >= BATCH_ROWS:
            pairs, self._identities = self._identities, []
            await self._ids_out.put(pairs)

    async def close(self) -> int:
        """Write the rest, then the two_numbers_one_identity findings; returns how many.

        The other findings and the identities are settled while PostgreSQL is still
        storing the last matched ones.
        """
        for out, rest in (
            (self._matched_out, self._matched),
            (self._others_out, self._others),
            (self._ids_out, self._identities),
        ):
            if rest:
                await out.put(rest)
        self._matched, self._others, self._identities = [], [], []
        _, _, found = await asyncio.gather(
            self._matched_out.close(), self._insert_others(), self._two_numbers()
        )
        self.closed = True
        return found

    async def _insert_others(self) -> None:
        await self._others_out.close()
        await self._others_conn.execute(_INSERT_FINDINGS, self._previous)

    async def _two_numbers(self) -> int:
        await self._ids_out.close()
        status = await self._ids_conn.execute(_TWO_NUMBERS, self._run_id, self._previous)
        return int(status.rsplit(" ", 1)[1])

    async def abort(self) -> None:
        """Give up the run's rows."""
        for out in (self._matched_out, self._others_out, self._ids_out):
            await out.abort()


_FINDINGS = "recon_run_findings"
_CREATE_FINDINGS = (
    f"CREATE TEMP TABLE {_FINDINGS} (LIKE recon_items INCLUDING DEFAULTS) ON COMMIT DROP"
)
# 'since': from the previous run ($1) if it found the child in that category too (NULL
# there means since that run began); NULL otherwise, i.e. since this run.
_SINCE = "CASE WHEN prev.student_number IS NOT NULL THEN coalesce(prev.since, p.started_at) END"
_INSERT_FINDINGS = f"""
INSERT INTO recon_items (run_id, category, student_number, county_code, kindergarten_code,
                         school_code, detail, since)
SELECT f.run_id, f.category, f.student_number, f.county_code, f.kindergarten_code,
       f.school_code, f.detail, {_SINCE}
FROM {_FINDINGS} f
LEFT JOIN recon_runs p ON p.run_id = $1
LEFT JOIN recon_items prev ON prev.run_id = $1 AND prev.category = f.category
     AND prev.student_number = f.student_number
"""
_IDENTITIES = "recon_seen_identities"
# Byte-wise collation: the grouping sorts by plain comparison, not by locale rules.
_CREATE_IDENTITIES = (
    f'CREATE TEMP TABLE {_IDENTITIES} (id_number text COLLATE "C", student_number text)'
    " ON COMMIT DROP"
)
# Each (identity, number) pair reaches the table once (one row per number and identity),
# so an identity under two numbers is one with two rows: found by sorting the identities
# alone (narrow, byte-wise) and comparing neighbours, then only those are looked up again.
_TWO_NUMBERS = f"""
WITH sorted AS (
    SELECT id_number, lag(id_number) OVER (ORDER BY id_number) AS previous
    FROM {_IDENTITIES}),
dup AS MATERIALIZED (
    SELECT DISTINCT id_number FROM sorted WHERE id_number = previous),
numbers AS (
    SELECT id_number, array_agg(student_number ORDER BY student_number) AS numbers
    FROM {_IDENTITIES} WHERE id_number IN (SELECT id_number FROM dup) GROUP BY id_number),
found AS (
    SELECT DISTINCT ON (n.number) n.number,
           array_to_string(array_remove(d.numbers, n.number), ' ') AS others
    FROM numbers d CROSS JOIN LATERAL unnest(d.numbers) AS n(number)
    ORDER BY n.number, d.id_number)
INSERT INTO recon_items (run_id, category, student_number, detail, since)
SELECT $1, 'two_numbers_one_identity', f.number, jsonb_build_object('other_numbers', f.others),
       {_SINCE}
FROM found f
LEFT JOIN recon_runs p ON p.run_id = $2
LEFT JOIN recon_items prev ON prev.run_id = $2 AND prev.category = 'two_numbers_one_identity'
     AND prev.student_number = f.number
"""


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
        async with try_lock(self._pool, _LOCK_BASE + entry_year) as got:
            yield got

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
        """A writer of findings on connections of its own; call close() at the end.

        What it wrote reaches recon_items when leaving. Leaving without close() (by an
        exception, say) aborts it: none of the run's rows stay.
        """
        previous = await self.previous(run)
        async with (
            self._pool.acquire() as matched,
            self._pool.acquire() as others,
            self._pool.acquire() as identities,
            others.transaction(),
            identities.transaction(),
        ):
            await others.execute(_CREATE_FINDINGS)
            await identities.execute(_CREATE_IDENTITIES)
            writer = ItemWriter(matched, others, identities, run.run_id, previous)
            try:
                yield writer
            finally:
                if not writer.closed:
                    await writer.abort()

    @contextlib.asynccontextmanager
    async def ledger_stream(
        self, entry_year: int, *, batch: int = BATCH_ROWS
    ) -> AsyncIterator[AsyncIterator[list[LedgerEntry]]]:
        """The cohort's ledger rows by student number, *batch* at a time.

        A server-side cursor; the next batch is fetched while the merge works on this one.
        """
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(_LEDGER_STREAM, entry_year)

            async def batches() -> AsyncGenerator[list[LedgerEntry]]:
                pending: asyncio.Future[list[asyncpg.Record]] | None = asyncio.ensure_future(
                    cursor.fetch(batch)
                )
                try:
                    while pending is not None:
                        rows = await pending
                        more = len(rows) == batch
                        pending = asyncio.ensure_future(cursor.fetch(batch)) if more else None
                        if rows:
                            yield list(map(LedgerEntry._make, rows))
                finally:
                    if pending is not None:
                        pending.cancel()
                        with contextlib.suppress(BaseException):
                            await pending

            # Closed before the transaction ends: no fetch may be in flight by then.
            stream = batches()
            try:
                yield stream
            finally:
                await stream.aclose()

    async def former_holders(self, numbers: Sequence[str]) -> dict[str, LedgerEntry]:
        """Former number -> the child that held it, for those of *numbers* the ledger knows
        as a child's former number."""
        rows = await self._pool.fetch(_FORMER_HOLDERS, list(numbers))
        return {r["former_number"]: LedgerEntry._make(tuple(r.values())[1:]) for r in rows}

    async def finish(
        self, run: RunInfo, *, sides: Mapping[str, int], counts: Mapping[str, int],
        provisional: bool, repairs: int, keep_runs: int,
    ) -> RunInfo:  # fmt: skip
        """Fill in scopes, and close the run with its *counts* per category."""
        run_id = run.run_id
        async with self._pool.acquire() as conn:
            # Freshly COPYed rows have no statistics; without them the joins below are
            # planned as nested loops over a million rows.
            await conn.execute("ANALYZE recon_items")
        async with self._pool.acquire() as conn, conn.transaction():
            # Children the ledger knows under a number another side used: their scope.
            await conn.execute(
                "UPDATE recon_items i SET county_code = c.county_code,"
                " kindergarten_code = coalesce(i.kindergarten_code, c.kindergarten_code)"
                " FROM child_numbers n JOIN children c USING (child_id)"
                " WHERE i.run_id = $1 AND i.county_code IS NULL"
                " AND n.student_number = i.student_number",
                run_id,
            )
            # Children only the roster knows: their kindergarten's county, as the ledger has
            # it (its newest child's). Only the kindergartens needed are looked up, and by
            # hashing, not by sorting the whole ledger.
            await conn.execute(
                "WITH need AS (SELECT DISTINCT kindergarten_code FROM recon_items"
                "  WHERE run_id = $1 AND county_code IS NULL AND kindergarten_code IS NOT NULL),"
                " newest AS (SELECT kindergarten_code, max(child_id) AS child_id FROM children"
                "  WHERE county_code IS NOT NULL"
                "  AND kindergarten_code IN (SELECT kindergarten_code FROM need)"
                "  GROUP BY kindergarten_code)"
                " UPDATE recon_items i SET county_code = c.county_code"
                " FROM newest k JOIN children c USING (child_id)"
                " WHERE i.run_id = $1 AND i.county_code IS NULL"
                " AND i.kindergarten_code = k.kindergarten_code",
                run_id,
            )
            every = {c.value: 0 for c in Category} | dict(counts)
            row = await conn.fetchrow(
                "UPDATE recon_runs SET status = 'finished', finished_at = now(), counts = $2,"
                " sides = $3, provisional = $4, repairs = $5 WHERE run_id = $1 RETURNING *",
                run_id, json.dumps(every), json.dumps(dict(sides)), provisional, repairs,
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

    async def record_repair(
        self, run: RunInfo, child_id: int, student_number: str, category: str, outcome: str
    ) -> None:
        """Keep what a repair did."""
        await self._pool.execute(
            "INSERT INTO recon_repairs (run_id, child_id, student_number, category, outcome)"
            " VALUES ($1, $2, $3, $4, $5)",
            run.run_id, child_id, student_number, category, outcome,
        )  # fmt: skip

    async def sorted_by_number(
        self, pages: AsyncIterator[Sequence[N]], adapter: TypeAdapter[list[N]]
    ) -> AsyncGenerator[Sequence[N]]:
        """*pages* sorted by student number, via a temporary table (for an unsorted side)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE recon_stage (student_number text, body bytea) ON COMMIT DROP"
            )
            async for page in pages:
                await conn.copy_records_to_table(
                    "recon_stage", records=[(x.student_number, orjson.dumps(x)) for x in page]
                )
            cursor = await conn.cursor(
                'SELECT body FROM recon_stage ORDER BY student_number COLLATE "C"'
            )
            while rows := await cursor.fetch(BATCH_ROWS):
                yield adapter.validate_json(b"[" + b",".join(r["body"] for r in rows) + b"]")

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
            SELECT i.category, i.student_number, i.county_code, i.kindergarten_code,
                   i.school_code, i.detail, coalesce(i.since, $9) AS since,
                   (prev.student_number IS NULL) AS new
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
            new_only and previous is not None, limit, offset, run.started_at,
        )  # fmt: skip
        return [
            Item(
                *finding_fields(r),
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

    async def pseudonym_key(self) -> bytes:
        """The key of export pseudonyms (made by migration 005; never leaves the database)."""
        value: str = await self._pool.fetchval(
            "SELECT value FROM operator_secrets WHERE name = 'export_pseudonym_key'"
        )
        return value.encode()

    async def history(self, entry_year: int, limit: int = 12) -> list[RunInfo]:
        """Finished runs of a cohort, oldest first (for the overview's chart)."""
        rows = await self._pool.fetch(
            "SELECT * FROM (SELECT * FROM recon_runs WHERE entry_year = $1"
            " AND status = 'finished' ORDER BY run_id DESC LIMIT $2) r ORDER BY run_id",
            entry_year, limit,
        )  # fmt: skip
        return [_run(r) for r in rows]
