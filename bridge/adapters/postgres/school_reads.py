"""What schools and operators read, kept: receipts, pulls and audit lines, group-committed.

Every download leaves a receipt and an audit line, and a list page one audit line naming
every child it showed. Written one request at a time, that bookkeeping was a statement
and a commit per request, one of the hot path's largest costs. Here the entries of all
requests waiting at one moment go out in one statement; each request still waits until
its own entry is committed, so nothing is answered before its audit line is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from bridge.adapters.group_commit import GroupCommit
from bridge.services.ports.schools import ReadEntry

# Enough for any burst of 200 schools at once, small enough to keep one statement short.
MAX_BATCH = 500

# The statement is answered about its rows (a constraint, a bad value): retrying the
# entries one by one keeps one bad entry from failing everyone else's.
_ABOUT_THE_ROWS: tuple[type[BaseException], ...] = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,
    asyncpg.exceptions.RaiseError,  # a trigger refusing a row
    ValueError,  # an argument the driver could not encode
    TypeError,
)


_WRITE = """
WITH receipts AS (
    INSERT INTO record_file_receipts (token_id, role, school_code, county_code, child_id,
        student_number, sha256, via, range_start, range_end, bytes_sent, complete, remote)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
        $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],
        $12::boolean[], $13::text[])),
pulls AS (
    INSERT INTO school_pulls (child_id, school_code, sha256)
    SELECT * FROM unnest($14::bigint[], $15::text[], $16::text[])
    ON CONFLICT (child_id, school_code, sha256) DO UPDATE SET last_pulled_at = now())
INSERT INTO audit_log (actor, role, school_code, county_code, action, student_number,
    remote, outcome, detail, student_numbers)
SELECT a, r, s, c, act, n, rem, o, d::jsonb, string_to_array(ns, ',')
  FROM unnest($17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
              $22::text[], $23::text[], $24::text[], $25::text[], $26::text[])
       AS u(a, r, s, c, act, n, rem, o, d, ns)
"""
# A text[] per row cannot go through unnest (it flattens arrays of arrays): each line's
# numbers travel joined, and student numbers never hold a comma.
_NUMBERS_SEPARATOR = ","


def _arguments(entries: Sequence[ReadEntry]) -> list[list[Any]]:
    receipts: list[list[Any]] = [[] for _ in range(13)]
    audit: list[list[Any]] = [[] for _ in range(10)]
    # One row per key: ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    # Sorted, so that two instances' batches lock shared rows in the same order.
    pulled = sorted({e.pulled for e in entries if e.pulled is not None})
    for entry in entries:
        if (r := entry.receipt) is not None:
            p = r.principal
            values: tuple[Any, ...] = (
                p.token_id, p.role.value, p.school_code, p.county_code, r.child_id,
                r.student_number, r.sha256, r.via, r.range_start, r.range_end, r.bytes_sent,
                r.complete, r.remote,
            )  # fmt: skip
            for column, value in zip(receipts, values, strict=True):
                column.append(value)
        for line in entry.audit:
            p = line.principal
            values = (
                p.token_id, p.role.value, p.school_code, p.county_code, line.action,
                line.student_number, line.remote, line.outcome,
                orjson.dumps(line.detail).decode(),
                _NUMBERS_SEPARATOR.join(line.student_numbers) if line.student_numbers else None,
            )  # fmt: skip
            for column, value in zip(audit, values, strict=True):
                column.append(value)
    pulls: list[list[Any]] = [[k[i] for k in pulled] for i in range(3)]
    return [*receipts, *pulls, *audit]


async def write_entries(pool: asyncpg.Pool, entries: Sequence[ReadEntry]) -> None:
    """Commit *entries* in one statement (one transaction)."""
    await pool.execute(_WRITE, *_arguments(entries))


class ReadBook:
    """ReadEntry group-committed (GroupCommit): one statement for all entries waiting then.

    One batch is written at a time, and what arrives meanwhile forms the next, so batches
    grow with load while a lone request waits for nothing but its own write (no timer).
    The write belongs to the book, not to the request: an entry, once kept, is written
    even if its request is cancelled while it waits, and so is never lost.
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self.batches = 0  # written so far (for tests and benchmarks)
        self._commit: GroupCommit[ReadEntry, None] = GroupCommit(
            self._write, max_batch=max_batch, on_batch=self._count
        )

    async def keep(self, entry: ReadEntry) -> None:
        """Return once *entry* is committed; raise what its write met."""
        if not entry.audit and entry.receipt is None and entry.pulled is None:
            return  # e.g. an empty list page: nothing to keep
        await self._commit.submit(entry)

    def _count(self, size: int) -> None:
        self.batches += 1

    async def _write(self, entries: Sequence[ReadEntry]) -> Sequence[BaseException | None]:
        try:
            await write_entries(self._pool, entries)
        except _ABOUT_THE_ROWS:
            if len(entries) == 1:
                raise
            # Find the bad entry: the others still go in, each answered on its own.
            results: list[BaseException | None] = []
            for entry in entries:
                try:
                    await write_entries(self._pool, [entry])
                except Exception as exc:
                    results.append(exc)
                else:
                    results.append(None)
            return results
        # Any other failure (the database is away) reaches every waiter of the batch.
        return [None] * len(entries)

    async def aclose(self) -> None:
        """Wait until everything kept is written (the pool must still be open)."""
        await self._commit.aclose()
