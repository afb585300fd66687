"""Erasing what retention says has been kept long enough, in batches, with audit lines.

Children: their events are minimised (minimised_events), their hand-over keeps numbers,
digests and dates only (Handoff.erased), their derived columns are refolded (the identity
number goes), all in one transaction per batch with one audit line per child. Files: the
sealed bytes and the wrapped data key are erased (crypto-shredding) once no child whose
data is still whole refers to them. Parked messages: a resolved one's body becomes a
digest. Every batch takes its rows with FOR UPDATE SKIP LOCKED and is safe to interrupt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import orjson

from bridge.adapters.postgres.advisory import try_lock
from bridge.adapters.postgres.derived import UPDATE_DERIVED, Derived
from bridge.adapters.postgres.handoff_codec import load_handoff
from bridge.adapters.postgres.minimised_events import minimise, parse_stored
from bridge.domain.child_record import fold
from bridge.domain.retention import ErasureReason
from bridge.services.ports.retention import ChildBatch, ErasedChild, ErasedFile, Holders

# Any constant works; the same for every instance (the migration lock is 7_301_926_001).
_PURGE_LOCK = 7_301_926_019
RETENTION_ACTOR = "system:retention"

_CHILD_COLUMNS = """
SELECT c.child_id, c.student_number, c.phase, c.closed_at, c.erased_at, c.handoff,
       c.handoff ->> 'verified_file_sha256' AS file_sha256,
       ARRAY(SELECT e.event_id FROM child_events e WHERE e.child_id = c.child_id
              ORDER BY e.event_id) AS event_ids,
       ARRAY(SELECT e.body FROM child_events e WHERE e.child_id = c.child_id
              ORDER BY e.event_id) AS bodies
  FROM children c
"""
# Closed before the cut-off and still whole (index children_retention), not leased now.
_DUE = (
    _CHILD_COLUMNS
    + """
 WHERE c.closed_at < $1 AND c.erased_at IS NULL AND c.child_id <> ALL($3::bigint[])
   AND (c.lease_until IS NULL OR c.lease_until < now())
 ORDER BY c.closed_at LIMIT $2
"""
)
# Erased children written to since (an event that came later brings personal data again).
_CHANGED = (
    _CHILD_COLUMNS
    + """
 WHERE c.erased_at IS NOT NULL AND c.updated_at > c.erased_at
   AND c.child_id <> ALL($1::bigint[]) AND (c.lease_until IS NULL OR c.lease_until < now())
 ORDER BY c.child_id LIMIT $2
"""
)
_ERASE_CHILD = UPDATE_DERIVED.replace(
    "updated_at = now()",
    "updated_at = now(), erased_at = now(), erased_reason = $17,"
    " lease_owner = NULL, lease_until = NULL",  # a stale lease holder's save must fail
)
_MINIMISE_EVENTS = """
UPDATE child_events e SET body = u.body
  FROM unnest($1::bigint[], $2::uuid[], $3::bytea[]) AS u(child_id, event_id, body)
 WHERE e.child_id = u.child_id AND e.event_id = u.event_id AND e.body <> u.body
"""
_AUDIT = """
INSERT INTO audit_log (actor, action, student_number, student_numbers, outcome, detail)
VALUES ($1, $2, $3, $4::text[], $5, $6::jsonb)
"""
# Sealed (or, before `xueji migrate`, clear) files no child with whole data refers to: the
# files of children just erased ($2), and others not stored in the last moments (a drive
# may be about to refer to a file it just stored).
_FILES_TO_ERASE = """
SELECT f.sha256 FROM record_files f
 WHERE f.erased_at IS NULL AND (f.ciphertext IS NOT NULL OR f.content IS NOT NULL)
   AND (f.fetched_at < $1 OR f.sha256 = ANY($2::text[]))
   AND NOT EXISTS (SELECT 1 FROM children c WHERE c.erased_at IS NULL
                     AND c.handoff ->> 'verified_file_sha256' = f.sha256)
 ORDER BY f.sha256
"""
_ERASE_FILES = """
UPDATE record_files f SET ciphertext = NULL, key_id = NULL, wrapped_key = NULL,
       nonce_prefix = NULL, content = NULL, damaged_at = NULL, erased_at = now(),
       erased_reason = u.reason
  FROM unnest($1::text[], $2::text[]) AS u(sha256, reason)
 WHERE f.sha256 = u.sha256 AND f.erased_at IS NULL
RETURNING f.sha256, f.size
"""
# The publisher's headers go with the body (a binary-mode event carries its attributes
# there, and a message that is no event may carry anything); what the broker and the bridge
# wrote, why it was parked, stays.
_KEPT_HEADERS = "^x-(death|(first|last)-death-.*|delivery-count|park-.*|original-routing-key)$"
_ERASE_PARKED = f"""
UPDATE parked_messages p SET erased_at = now(),
       body = convert_to(json_build_object(
           'erased_at', now(), 'sha256', encode(sha256(p.body), 'hex'),
           'bytes', octet_length(p.body))::text, 'UTF8'),
       headers = coalesce((
           SELECT jsonb_object_agg(h.key, h.value) FROM jsonb_each(p.headers) h
           WHERE h.key ~ '{_KEPT_HEADERS}'
       ), '{{}}'::jsonb)
 WHERE p.id IN (SELECT id FROM parked_messages WHERE resolved_at < $1 AND erased_at IS NULL
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING p.id
"""


def _erasure(row: asyncpg.Record, at: dt.datetime) -> tuple[list[bytes], Derived] | None:
    """The minimised bodies and derived columns of a child, or None if erasing it would
    change its hand-over (a step still due, or it is not where it was)."""
    bodies: list[bytes] = list(row["bodies"])
    if not bodies:
        return None
    minimised = [minimise(b, at=at) for b in bodies]
    record = fold(parse_stored(b) for b in minimised)
    handoff = load_handoff(orjson.loads(row["handoff"])).erased()
    derived = Derived.of(record, handoff)
    if derived.phase.value != row["phase"] or derived.has_work:
        return None
    return minimised, derived


class RetentionStore:
    """The purge's reads and writes (the RetentionStore port)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the purge lock while inside; yields False if another instance holds it."""
        return try_lock(self._pool, _PURGE_LOCK)

    async def last_started(self) -> dt.datetime | None:
        """When the latest purge started (any instance)."""
        value: dt.datetime | None = await self._pool.fetchval(
            "SELECT max(started_at) FROM retention_runs"
        )
        return value

    async def start(self, *, trigger: str, actor: str | None, cutoff: dt.datetime) -> int:
        """Open a run; returns its id."""
        run_id: int = await self._pool.fetchval(
            "INSERT INTO retention_runs (trigger, actor, cutoff) VALUES ($1, $2, $3)"
            " RETURNING run_id",
            trigger, actor, cutoff,
        )  # fmt: skip
        return run_id

    async def finish(
        self, run_id: int, *, children: int, files: int, parked: int, error: str | None = None
    ) -> None:
        """Close a run with what it erased."""
        await self._pool.execute(
            "UPDATE retention_runs SET finished_at = now(), children = $2, files = $3,"
            " parked = $4, error = $5 WHERE run_id = $1",
            run_id, children, files, parked, error,
        )  # fmt: skip

    # --- children -----------------------------------------------------------------------
    async def due_children(
        self, cutoff: dt.datetime, limit: int, *, skip: Sequence[int] = ()
    ) -> list[ErasedChild]:
        """Children a purge would erase now (dry run: nothing is locked or written)."""
        rows = await self._pool.fetch(_DUE, cutoff, limit, list(skip))
        rows += await self._pool.fetch(_CHANGED, list(skip), limit)
        return [self._child(r, again=r["erased_at"] is not None) for r in rows]

    async def erase_children(
        self, cutoff: dt.datetime | None, limit: int, *, skip: Sequence[int], run_id: int
    ) -> ChildBatch:
        """Erase one batch of due children (*cutoff*), or of erased children written to
        since (*cutoff* None); *skip* lists children this run left as they were."""
        async with self._pool.acquire() as conn, conn.transaction():
            if cutoff is not None:
                rows = await conn.fetch(_DUE + " FOR UPDATE OF c SKIP LOCKED", cutoff, limit,
                                        list(skip))  # fmt: skip
            else:
                rows = await conn.fetch(_CHANGED + " FOR UPDATE OF c SKIP LOCKED", list(skip),
                                        limit)  # fmt: skip
            at = await conn.fetchval("SELECT now()")
            events: list[tuple[int, Any, bytes]] = []
            updates: list[list[Any]] = []
            erased: list[ErasedChild] = []
            skipped: list[int] = []
            for row in rows:
                done = _erasure(row, at)
                if done is None:
                    skipped.append(row["child_id"])
                    continue
                minimised, derived = done
                child = self._child(row, again=cutoff is None)
                events += zip(
                    [row["child_id"]] * len(minimised), row["event_ids"], minimised, strict=True
                )
                updates.append([*derived.update_args(row["child_id"]), child.reason.value])
                erased.append(child)
            if events:
                await conn.execute(
                    _MINIMISE_EVENTS, [e[0] for e in events], [e[1] for e in events],
                    [e[2] for e in events],
                )  # fmt: skip
            if updates:
                await conn.executemany(_ERASE_CHILD, updates)
            await _audit(
                conn, "retention.erase", "erased",
                [(c.student_number, None, {
                    "what": "personal data of the child's events and hand-over; the record"
                            " file once no hand-over needs it",
                    "reason": c.reason.value, "again": c.again, "run_id": run_id,
                    "closed_at": c.closed_at.isoformat() if c.closed_at else None,
                    "file_sha256": c.file_sha256,
                }) for c in erased],
            )  # fmt: skip
        return ChildBatch(erased, skipped)

    @staticmethod
    def _child(row: asyncpg.Record, *, again: bool) -> ErasedChild:
        return ErasedChild(
            row["child_id"], row["student_number"], row["phase"], row["closed_at"],
            ErasureReason.for_phase(row["phase"]), row["file_sha256"] or None, again,
        )  # fmt: skip

    async def mark_visible(self, child_ids: Sequence[int]) -> None:
        """Their files changed for the schools: the next `since` poll shows them again."""
        await self._pool.execute(
            "UPDATE children SET school_visible_at = clock_timestamp()"
            " WHERE child_id = ANY($1::bigint[])",
            list(child_ids),
        )

    # --- files --------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def files_to_erase(
        self, stored_before: dt.datetime, children_files: Sequence[str], *, page: int = 1000
    ) -> AsyncIterator[AsyncIterator[list[str]]]:
        """Pages of the sha256s of files no child with whole data refers to: stored before
        *stored_before*, or among *children_files* (those of children just erased)."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(_FILES_TO_ERASE, stored_before, list(children_files))

            async def pages() -> AsyncIterator[list[str]]:
                while rows := await cursor.fetch(page):
                    yield [r["sha256"] for r in rows]

            yield pages()

    async def holders(self, shas: Sequence[str]) -> Holders:
        """sha256 -> (student number, erasure reason) of the children that refer to it."""
        rows = await self._pool.fetch(
            "SELECT handoff ->> 'verified_file_sha256' AS sha256, student_number, erased_reason"
            " FROM children WHERE handoff ->> 'verified_file_sha256' = ANY($1::text[])",
            list(shas),
        )
        found: Holders = {}
        for r in rows:
            found.setdefault(r["sha256"], []).append((r["student_number"], r["erased_reason"]))
        return found

    async def erase_files(self, files: Sequence[ErasedFile], *, run_id: int) -> list[ErasedFile]:
        """Erase the sealed bytes and data keys of *files*; one audit line each."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _ERASE_FILES, [f.sha256 for f in files], [f.reason.value for f in files]
            )
            sizes = {r["sha256"]: r["size"] for r in rows}
            done = [
                ErasedFile(f.sha256, f.reason, f.student_numbers, sizes[f.sha256])
                for f in files
                if f.sha256 in sizes
            ]
            await _audit(
                conn, "record_file.erase", "erased",
                [(f.student_numbers[0] if len(f.student_numbers) == 1 else None,
                  list(f.student_numbers) or None,
                  {"what": "sealed bytes and data key (crypto-shredded)", "sha256": f.sha256,
                   "size": f.size, "reason": f.reason.value, "run_id": run_id})
                 for f in done],
            )  # fmt: skip
        return done

    # --- parked messages ----------------------------------------------------------------
    async def parked_due(self, cutoff: dt.datetime) -> int:
        """Resolved parked messages whose bodies a purge would replace by a digest."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM parked_messages WHERE resolved_at < $1 AND erased_at IS NULL",
            cutoff,
        )
        return value

    async def erase_parked(self, cutoff: dt.datetime, limit: int, *, run_id: int) -> list[int]:
        """Replace the bodies of up to *limit* messages resolved before *cutoff*."""
        async with self._pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(_ERASE_PARKED, cutoff, limit)]
            if ids:
                await _audit(
                    conn, "parked_message.erase", "erased",
                    [(None, None, {"what": "bodies of resolved parked messages (a digest"
                                           " stays)", "ids": ids, "run_id": run_id})],
                )  # fmt: skip
        return ids


async def _audit(
    conn: Any,
    action: str,
    outcome: str,
    lines: Sequence[tuple[str | None, list[str] | None, dict[str, Any]]],
) -> None:
    """Audit lines in the caller's transaction: erased and audited, or neither."""
    if not lines:
        return
    await conn.executemany(
        _AUDIT,
        [(RETENTION_ACTOR, action, n, ns, outcome, json.dumps(d)) for n, ns, d in lines],
    )
