"""The hand-over ledger in PostgreSQL: children, their numbers, events and progress."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence

import asyncpg
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from bridge.adapters.group_commit import GroupCommit
from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE, Connection
from bridge.adapters.postgres.derived import UPDATE_DERIVED, Derived
from bridge.adapters.postgres.handoff_codec import dump_handoff, load_arrival, load_handoff
from bridge.adapters.postgres.ledger_batch import (
    CLAIM_DUE_LOADED,
    PARSED,
    NewChild,
    Progress,
    known,
    record_new_children,
    save_unchanged,
)
from bridge.adapters.postgres.record_files import REPLACE_UNSOUND, SEALED_COLUMNS
from bridge.domain.arrival import Arrival
from bridge.domain.child_record import ChildRecord, RecordStatus, fold
from bridge.domain.events import ChildEvent
from bridge.domain.handoff import Handoff, Phase, SetAsideReason
from bridge.domain.retry_policy import RetryPolicy
from bridge.errors import LeaseLost
from bridge.services.call_journal import RegistryCall
from bridge.services.ports.files import VerifiedFile
from bridge.services.ports.ledger import Change, ChildState, DriveFailure, RecordedEvent


class _NumberTakenMeanwhile(Exception):
    """A number of the event went to another child row while this transaction ran."""


# Concurrent first events of one child race to create it; the loser simply tries again,
# and then finds (and locks) the row the winner made.
_RACES = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError, _NumberTakenMeanwhile)
# Rows per group-committed statement: enough to amortise a round trip and a commit, few
# enough that one statement stays short and its arrays small.
EVENTS_PER_BATCH = 128
SAVES_PER_BATCH = 128

# The rows of every child the event names, locked in a fixed order, with their event logs.
_LOCK_CHILDREN = """
SELECT c.child_id, c.handoff,
       ARRAY(SELECT body FROM child_events e WHERE e.child_id = c.child_id) AS bodies
FROM children c
WHERE c.child_id IN (SELECT child_id FROM child_numbers WHERE student_number = ANY($1::text[]))
ORDER BY c.child_id FOR UPDATE
"""
_APPEND_EVENT = """
WITH inbox_row AS (INSERT INTO inbox (event_id, child_id) VALUES ($1, $2)),
number_rows AS (
    INSERT INTO child_numbers (student_number, child_id)
    SELECT n, $2 FROM unnest($3::text[]) AS n ON CONFLICT (student_number) DO NOTHING)
INSERT INTO child_events (child_id, event_id, childseq, event_type, body)
VALUES ($2, $1, $4, $5, $6)
"""
# Tables whose rows belong to one child row (by child_id, no key of their own on it).
_CHILD_TABLES = (
    "child_events", "child_numbers", "inbox", "registry_calls", "arrival_reports",
    "record_file_receipts", "recon_repairs",
)  # fmt: skip
# Tables keyed by child: the merged-away rows' entries are folded into the survivor's.
_MERGE_KEYED = (
    """WITH moved AS (DELETE FROM school_pulls WHERE child_id = ANY($2::bigint[]) RETURNING *)
       INSERT INTO school_pulls (child_id, school_code, sha256, first_pulled_at, last_pulled_at)
       SELECT $1, school_code, sha256, min(first_pulled_at), max(last_pulled_at)
       FROM moved GROUP BY school_code, sha256
       ON CONFLICT (child_id, school_code, sha256) DO UPDATE SET
           first_pulled_at = least(school_pulls.first_pulled_at, excluded.first_pulled_at),
           last_pulled_at = greatest(school_pulls.last_pulled_at, excluded.last_pulled_at)""",
    """WITH moved AS (
           DELETE FROM set_aside_resolutions WHERE child_id = ANY($2::bigint[]) RETURNING *)
       INSERT INTO set_aside_resolutions
           (child_id, at_childseq, reason, note, resolved_by, resolved_at)
       SELECT $1, at_childseq, reason, note, resolved_by, resolved_at FROM moved
       ON CONFLICT (child_id, at_childseq, reason) DO NOTHING""",
)
_NUMBER_ELSEWHERE = """
SELECT EXISTS (SELECT 1 FROM child_numbers WHERE student_number = ANY($1::text[])
                                             AND child_id <> $2)
"""
# A new event makes the child due now, whatever retry it was waiting for.
_UPDATE_DERIVED_DUE = UPDATE_DERIVED.replace(
    "updated_at = now()", "updated_at = now(), next_attempt_at = CASE WHEN $17 THEN now() END"
)
_UPDATE_DERIVED_PROGRESS = UPDATE_DERIVED.replace(
    "updated_at = now()",
    """updated_at = now(), attempts = $17, last_error = $18,
    next_attempt_at = CASE WHEN $19::timestamptz IS NOT NULL THEN $19
                           WHEN $20 THEN now() ELSE NULL END,
    lease_owner = CASE WHEN $21 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN $21 THEN NULL ELSE now() + make_interval(secs => $22) END""",
)


# An unexpected failure of a drive: the child waits for its retry, or is set aside as
# internal_error once it has failed *limit* times at its current childseq.
_DRIVE_FAILED = f"""
UPDATE children SET
    drive_failures = $3, drive_failures_at_childseq = last_childseq, last_error = $4,
    lease_owner = NULL, lease_until = NULL, updated_at = now(), version = version + 1,
    next_attempt_at = CASE WHEN $5 THEN NULL ELSE $6::timestamptz END,
    set_aside_reason = CASE WHEN $5 THEN '{SetAsideReason.INTERNAL_ERROR}'
                            ELSE set_aside_reason END,
    phase = CASE WHEN $5 THEN '{Phase.SET_ASIDE}' ELSE phase END,
    handoff = CASE WHEN $5 THEN jsonb_set(handoff, '{{set_aside}}', jsonb_build_object(
        'reason', '{SetAsideReason.INTERNAL_ERROR}',
        'detail', jsonb_build_object('error', $7::text), 'at_childseq', last_childseq))
        ELSE handoff END
WHERE child_id = $1 AND lease_owner = $2
"""


class Ledger:
    """Per-child ledger; every method is one transaction.

    Recording events and saving progress are group-committed: concurrent callers' writes
    share a statement, and each caller returns only once its own write is committed.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease_s: float = 60.0,
        observe_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        """*observe_batch(writer, rows)* hears of every group-committed statement."""
        self._pool = pool
        self._lease_s = lease_s
        observe = observe_batch or (lambda writer, rows: None)
        self._events: GroupCommit[tuple[ChildEvent, bytes], RecordedEvent] = GroupCommit(
            self._record_batch_racing, write_one=self._record_alone,
            batch_wide=DATABASE_UNAVAILABLE,
            max_batch=EVENTS_PER_BATCH, on_batch=lambda rows: observe("events", rows),
            name="recording events",
        )  # fmt: skip
        self._saves: GroupCommit[Progress, bool] = GroupCommit(
            self._write_saves, write_one=self._write_save, batch_wide=DATABASE_UNAVAILABLE,
            max_batch=SAVES_PER_BATCH, on_batch=lambda rows: observe("saves", rows),
            name="saving progress",
        )  # fmt: skip

    async def aclose(self) -> None:
        """Let the writes under way finish (before the pool closes)."""
        await self._events.aclose()
        await self._saves.aclose()

    # --- events -------------------------------------------------------------------------
    async def record_event(self, event: ChildEvent, raw: bytes) -> RecordedEvent:
        """Store *event* for its child (merging children the event shows to be one).

        Idempotent by event id: a redelivered event changes nothing.
        """
        PARSED.remember(raw, event)
        return await self._events.submit((event, raw))

    async def _record_batch_racing(
        self, batch: Sequence[tuple[ChildEvent, bytes]]
    ) -> list[RecordedEvent]:
        try:
            return await self._record_batch(batch)
        except _RACES:
            if len(batch) > 1:
                raise  # GroupCommit writes each alone, where a race is tried again
            # A batch of one is not written again by GroupCommit: another instance made
            # the child first (found by tests/faults_ha), so try again here, finding it.
            return [await self._record_alone(batch[0])]

    async def _record_batch(self, batch: Sequence[tuple[ChildEvent, bytes]]) -> list[RecordedEvent]:
        """Record *batch* in one transaction: new children in one statement, the rest each."""
        async with self._pool.acquire() as conn, conn.transaction():
            recorded, known_numbers = await known(
                conn,
                sorted({e.event_id for e, _ in batch}),
                sorted({n for e, _ in batch for n in e.numbers}),
            )
            results: list[RecordedEvent | None] = [None] * len(batch)
            first_of: dict[str, int] = {}  # event id -> index of its first copy in the batch
            for i, (event, _) in enumerate(batch):
                if event.event_id in recorded:
                    results[i] = RecordedEvent(recorded[event.event_id], duplicate=True)
                elif event.event_id not in first_of:
                    first_of[event.event_id] = i
            uses = Counter(n for i in first_of.values() for n in batch[i][0].numbers)
            new: list[int] = []
            general: list[int] = []
            for i in first_of.values():
                numbers = batch[i][0].numbers
                alone = all(n not in known_numbers and uses[n] == 1 for n in numbers)
                (new if alone else general).append(i)
            if new:
                children = [
                    NewChild(batch[i][0], batch[i][1], Derived.of(fold([batch[i][0]]), Handoff()))
                    for i in new
                ]
                ids = await record_new_children(conn, children)
                for i, child in zip(new, children, strict=True):
                    results[i] = RecordedEvent(
                        ids[child.derived.student_number], False, child.derived.phase
                    )
            for i in general:
                results[i] = await self._record_event(conn, *batch[i], inbox_checked=True)
            out: list[RecordedEvent] = []
            for i, (event, _) in enumerate(batch):
                result = results[i]
                if result is None:  # a second copy of an event recorded just above
                    first = results[first_of[event.event_id]]
                    assert first is not None
                    result = RecordedEvent(first.child_id, duplicate=True)
                out.append(result)
            return out

    async def _record_alone(self, item: tuple[ChildEvent, bytes]) -> RecordedEvent:
        event, raw = item
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RACES), stop=stop_after_attempt(5), reraise=True
        ):
            with attempt:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await self._record_event(conn, event, raw)
        raise AssertionError("unreachable")

    async def _record_event(
        self, conn: Connection, event: ChildEvent, raw: bytes, *, inbox_checked: bool = False
    ) -> RecordedEvent:
        """The general path: the child may exist under any of the event's numbers, or two."""
        if not inbox_checked:
            known_child = await conn.fetchval(
                "SELECT child_id FROM inbox WHERE event_id = $1", event.event_id
            )
            if known_child is not None:
                return RecordedEvent(child_id=known_child, duplicate=True)
        rows = await conn.fetch(_LOCK_CHILDREN, sorted(event.numbers))
        bodies: list[bytes] = []
        if not rows:
            child_id: int = await conn.fetchval(
                "INSERT INTO children (student_number, status, phase) VALUES ($1, $2, $3) "
                "RETURNING child_id",
                event.data.student_number, RecordStatus.IN_KINDERGARTEN.value, Phase.WAITING.value,
            )  # fmt: skip
            handoff = Handoff()
        else:
            child_id = rows[0]["child_id"]
            bodies = [b for r in rows for b in r["bodies"]]
            if len(rows) > 1:
                handoff = await self._merge(conn, child_id, [r["child_id"] for r in rows[1:]])
            else:
                handoff = load_handoff(orjson.loads(rows[0]["handoff"]))
        await conn.execute(
            _APPEND_EVENT, event.event_id, child_id, sorted(event.numbers), event.childseq,
            event.type.value, raw,
        )  # fmt: skip
        # Only rows that held a number were locked above, so another instance may have
        # given one of the numbers to a row of its own meanwhile (its insert then won
        # the ON CONFLICT). Going on would split one child into two rows: start again.
        if await conn.fetchval(_NUMBER_ELSEWHERE, sorted(event.numbers), child_id):
            raise _NumberTakenMeanwhile
        record = fold([*(PARSED.parse(b) for b in bodies), event])
        derived = Derived.of(record, handoff)
        # The current number may have been another child row's until the merge above.
        await conn.execute(_UPDATE_DERIVED_DUE, *derived.update_args(child_id), derived.has_work)
        return RecordedEvent(child_id=child_id, duplicate=False, phase=derived.phase)

    async def _merge(self, conn: Connection, survivor: int, others: Sequence[int]) -> Handoff:
        """Events under two numbers turned out to be one child: keep one row."""
        rows = await conn.fetch(
            "SELECT handoff FROM children WHERE child_id = ANY($1::bigint[]) ORDER BY child_id",
            [survivor, *others],
        )
        merged = Handoff.merge([load_handoff(orjson.loads(r["handoff"])) for r in rows])
        # Everything recorded of the merged-away rows follows the child, history included
        # (calls, downloads, arrivals, repairs), so that "who saw this child" stays whole.
        for table in _CHILD_TABLES:
            await conn.execute(
                f"UPDATE {table} SET child_id = $1 WHERE child_id = ANY($2::bigint[])",
                survivor, list(others),
            )  # fmt: skip
        for statement in _MERGE_KEYED:
            await conn.execute(statement, survivor, list(others))
        await conn.execute("DELETE FROM children WHERE child_id = ANY($1::bigint[])", list(others))
        await conn.execute(
            "UPDATE children SET handoff = $2::jsonb WHERE child_id = $1",
            survivor, orjson.dumps(dump_handoff(merged)).decode(),
        )  # fmt: skip
        return merged

    # --- hand-over work -----------------------------------------------------------------
    async def claim_due_loaded(self, owner: str, limit: int) -> list[tuple[ChildState, str]]:
        """Lease up to *limit* children with work due, loading each: one round trip."""
        rows = await self._pool.fetch(CLAIM_DUE_LOADED, owner, limit, self._lease_s)
        return [
            (
                ChildState(
                    r["child_id"],
                    fold(PARSED.parse(body) for body in r["bodies"]),
                    load_handoff(orjson.loads(r["handoff"])),
                    r["attempts"],
                ),
                r["lease_owner"],
            )
            for r in rows
        ]

    async def load(self, child_id: int) -> ChildState | None:
        """The child's record and hand-over, or None if it is gone (merged)."""
        row = await self._pool.fetchrow(
            "SELECT handoff, attempts,"
            " ARRAY(SELECT body FROM child_events e WHERE e.child_id = c.child_id) AS bodies"
            " FROM children c WHERE child_id = $1",
            child_id,
        )
        if row is None:
            return None
        record = fold(PARSED.parse(body) for body in row["bodies"])
        return ChildState(
            child_id, record, load_handoff(orjson.loads(row["handoff"])), row["attempts"]
        )

    async def save(
        self,
        state: ChildState,
        handoff: Handoff,
        lease: str,
        *,
        calls: Sequence[RegistryCall] = (),
        retry_at: dt.datetime | None = None,
        last_error: str | None = None,
        file: VerifiedFile | None = None,
    ) -> ChildState:
        """Record the hand-over's progress under our lease; raise LeaseLost if it is not ours.

        Progress renews the lease; finishing or waiting releases it. *file*, a record file
        the hand-over verified, is stored in the same transaction.

        Events may have arrived meanwhile: the record is refolded then, so what is left to
        do is judged against the newest facts.
        """
        derived = Derived.of(state.record, handoff)
        attempts = state.attempts + 1 if retry_at else 0
        progress = Progress(
            child_id=state.child_id, derived=derived, attempts=attempts, last_error=last_error,
            retry_at=retry_at, release=retry_at is not None or not derived.has_work,
            lease=lease, expected_arrival=derived.arrival, calls=tuple(calls), file=file,
        )  # fmt: skip
        if await self._saves.submit(progress):
            return ChildState(state.child_id, state.record, handoff, attempts)
        return await self._save_changed(
            state, handoff, lease, calls=calls, retry_at=retry_at, last_error=last_error, file=file
        )

    async def _write_saves(self, batch: Sequence[Progress]) -> list[bool]:
        async with self._pool.acquire() as conn:
            return await save_unchanged(conn, batch, self._lease_s)

    async def _write_save(self, progress: Progress) -> bool:
        return (await self._write_saves([progress]))[0]

    async def _save_changed(
        self,
        state: ChildState,
        handoff: Handoff,
        lease: str,
        *,
        calls: Sequence[RegistryCall],
        retry_at: dt.datetime | None,
        last_error: str | None,
        file: VerifiedFile | None,
    ) -> ChildState:
        """save() when something changed under us: re-read under the row lock.

        If an event arrived meanwhile and left work to do, the child stays leased to a
        driver that found nothing left (it goes on from the refolded record), and one that
        waits for a retry gives the lease back with the child due at once: the new event
        counts now, not when the retry or the lease runs out.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT lease_owner, events_folded, handoff -> 'arrival' AS arrival"
                " FROM children WHERE child_id = $1 FOR UPDATE",
                state.child_id,
            )
            if file is not None:  # verified bytes are worth keeping whoever holds the child
                s = file.sealed
                await conn.execute(
                    f"INSERT INTO record_files ({SEALED_COLUMNS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)" + REPLACE_UNSOUND,
                    file.sha256, file.size, file.media_type, s.ciphertext, s.key_id,
                    s.wrapped_key, s.nonce_prefix,
                )  # fmt: skip
            if row is None or row["lease_owner"] != lease:
                raise LeaseLost("another instance holds this child now")
            # A school may have reported the arrival while we worked: the driver never
            # changes the arrival, so the stored one is the newest and must survive.
            stored_arrival = load_arrival(orjson.loads(row["arrival"] or "null"))
            if stored_arrival is not None and stored_arrival != handoff.arrival:
                handoff = handoff.arrival_requested(stored_arrival)
            record = state.record
            # Any event recorded meanwhile counts, whatever its childseq: a late one with
            # a lower seq leaves the highest seq as it was, but may change the record.
            refolded = row["events_folded"] != record.events_folded
            if refolded:
                record = await _fold(conn, state.child_id)
            derived = Derived.of(record, handoff)
            attempts = state.attempts + 1 if retry_at else 0
            done = retry_at is None and not derived.has_work
            due_at = None if refolded and derived.has_work else retry_at
            await conn.execute(
                _UPDATE_DERIVED_PROGRESS, *derived.update_args(state.child_id), attempts,
                last_error, due_at, derived.has_work, done or retry_at is not None,
                self._lease_s,
            )  # fmt: skip
            if calls:
                await conn.executemany(
                    "INSERT INTO registry_calls (child_id, operation, status, outcome, duration_ms)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    [
                        (state.child_id, c.operation, c.status, c.outcome, c.duration_ms)
                        for c in calls
                    ],
                )
        return ChildState(state.child_id, record, handoff, attempts)

    async def note_drive_failure(
        self, child_id: int, lease: str, error: str, *, limit: int, retry: RetryPolicy
    ) -> DriveFailure | None:
        """A drive of the child failed unexpectedly (*error*: the exception's type).

        Under our lease: the lease is given back and the child retried after the durable
        backoff, or set aside as internal_error on its *limit*-th failure at its current
        childseq. None if the lease is no longer ours.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT drive_failures, drive_failures_at_childseq, last_childseq FROM children"
                " WHERE child_id = $1 AND lease_owner = $2 FOR UPDATE",
                child_id, lease,
            )  # fmt: skip
            if row is None:
                return None
            same_seq = row["drive_failures_at_childseq"] == row["last_childseq"]
            failures = (row["drive_failures"] if same_seq else 0) + 1
            aside = failures >= limit
            retry_at = None if aside else _after(retry.delay_s(failures - 1))
            await conn.execute(
                _DRIVE_FAILED, child_id, lease, failures, f"internal_error:{error}"[:200],
                aside, retry_at, error[:100],
            )  # fmt: skip
        return DriveFailure(failures, aside, retry_at)

    async def release_leases(self, leases: Sequence[tuple[int, str]]) -> int:
        """Give back these leases of ours (drives the database cut off): due at once."""
        result: str = await self._pool.execute(
            "UPDATE children c SET lease_owner = NULL, lease_until = NULL"
            " FROM unnest($1::bigint[], $2::text[]) AS l(child_id, lease)"
            " WHERE c.child_id = l.child_id AND c.lease_owner = l.lease",
            [c for c, _ in leases], [lease for _, lease in leases],
        )  # fmt: skip
        return int(result.split()[-1])

    async def release_instance_leases(self, owner: str) -> int:
        """Free leases an earlier run of this same instance held when it died."""
        result: str = await self._pool.execute(
            "UPDATE children SET lease_owner = NULL, lease_until = NULL "
            "WHERE left(lease_owner, length($1) + 1) = $1 || '/'",
            owner,
        )
        return int(result.split()[-1])

    async def release(self, child_id: int, lease: str) -> None:
        """Give the lease back without progress (e.g. on shutdown)."""
        await self._pool.execute(
            "UPDATE children SET lease_owner = NULL, lease_until = NULL "
            "WHERE child_id = $1 AND lease_owner = $2",
            child_id, lease,
        )  # fmt: skip

    # --- school reports -----------------------------------------------------------------
    async def request_arrival(self, child_id: int, arrival: Arrival) -> ChildState | None:
        """Put a school's arrival report on the hand-over and make B6 due now (one
        transaction; see request_arrival)."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await request_arrival(conn, child_id, arrival)

    async def amend(self, child_id: int, change: Change) -> Phase | None:
        """Apply an operator's or a repair's *change* under the row lock and make it due now.

        Returns the new phase; None if the child is gone, leased by a worker right now (its
        save would overwrite the change: try again later), or *change* declined.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT handoff, lease_until > now() AS leased FROM children"
                " WHERE child_id = $1 FOR UPDATE",
                child_id,
            )
            if row is None or row["leased"]:
                return None
            record = await _fold(conn, child_id)
            handoff = change(record, load_handoff(orjson.loads(row["handoff"])))
            if handoff is None:
                return None
            derived = Derived.of(record, handoff)
            await conn.execute(UPDATE_DERIVED, *derived.update_args(child_id))
            await conn.execute(
                "UPDATE children SET attempts = 0, last_error = NULL, drive_failures = 0,"
                " next_attempt_at = CASE WHEN $2 THEN now() ELSE NULL END WHERE child_id = $1",
                child_id, derived.has_work,
            )  # fmt: skip
            return derived.phase

    # --- lookups ------------------------------------------------------------------------
    async def child_id_for(self, student_number: str) -> int | None:
        """Find a child by any number it has held (former numbers included)."""
        value: int | None = await self._pool.fetchval(
            "SELECT child_id FROM child_numbers WHERE student_number = $1", student_number
        )
        return value

    async def phase_counts(self, entry_year: int | None = None) -> dict[str, int]:
        """How many hand-overs stand in each phase."""
        rows = await self._pool.fetch(
            "SELECT phase, count(*) AS n FROM children "
            "WHERE $1::int IS NULL OR entry_year = $1 GROUP BY phase",
            entry_year,
        )
        return {r["phase"]: r["n"] for r in rows}

    async def set_aside_counts(self) -> dict[str, int]:
        """How many hand-overs wait for an operator, by reason."""
        rows = await self._pool.fetch(
            "SELECT set_aside_reason AS r, count(*) AS n FROM children "
            "WHERE set_aside_reason IS NOT NULL GROUP BY 1"
        )
        return {r["r"]: r["n"] for r in rows}

    async def pending_work(self) -> int:
        """Children with a step still to take (due now or waiting for a retry)."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM children WHERE next_attempt_at IS NOT NULL"
        )
        return value

    async def expired_deferrals_count(self) -> int:
        """Deferred children whose deferral ran out with no newer event (may be out of school)."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM children WHERE status = 'deferred' AND deferred_until < now()"
        )
        return value

    async def event_counts(self) -> dict[str, int]:
        """Events recorded, by type."""
        rows = await self._pool.fetch(
            "SELECT event_type, count(*) AS n FROM child_events GROUP BY event_type"
        )
        return {r["event_type"]: r["n"] for r in rows}

    async def children_with_former_numbers(self) -> int:
        """Children the ledger followed from one number to another."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM (SELECT child_id FROM child_numbers GROUP BY child_id"
            " HAVING count(*) > 1) AS renumbered"
        )
        return value

    async def events_recorded(self) -> int:
        """Distinct events in the inbox."""
        value: int = await self._pool.fetchval("SELECT count(*) FROM inbox")
        return value


async def _fold(conn: Connection, child_id: int) -> ChildRecord:
    bodies = await conn.fetch("SELECT body FROM child_events WHERE child_id = $1", child_id)
    return fold(PARSED.parse(r["body"]) for r in bodies)


async def request_arrival(conn: Connection, child_id: int, arrival: Arrival) -> ChildState | None:
    """Put a school's arrival report on the hand-over and make B6 due now, on *conn* (in
    its transaction); None if the child is gone.

    Under the row lock: the worker then performs B6 with the same durable retries as
    every registry call, and a worker saving meanwhile keeps it.
    """
    row = await conn.fetchrow(
        "SELECT handoff, attempts FROM children WHERE child_id = $1 FOR UPDATE", child_id
    )
    if row is None:
        return None
    record = await _fold(conn, child_id)
    handoff = load_handoff(orjson.loads(row["handoff"])).arrival_requested(arrival)
    derived = Derived.of(record, handoff)
    await conn.execute(UPDATE_DERIVED, *derived.update_args(child_id))
    if derived.has_work:
        await conn.execute(
            "UPDATE children SET next_attempt_at = now() WHERE child_id = $1", child_id
        )
    return ChildState(child_id, record, handoff, row["attempts"])


def _after(delay_s: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
