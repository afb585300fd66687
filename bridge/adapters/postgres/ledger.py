"""The hand-over ledger in PostgreSQL: children, their numbers, events and progress."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from bridge.adapters.call_journal import RegistryCall
from bridge.adapters.postgres.connection import Connection
from bridge.adapters.postgres.handoff_codec import dump_handoff, load_arrival, load_handoff
from bridge.adapters.postgres.ledger_fast import (
    CLAIM_DUE_LOADED,
    PARSED,
    record_first_event,
    save_if_unchanged,
    save_statement,
)
from bridge.domain.child_record import ChildRecord, RecordStatus, fold
from bridge.domain.events import ChildEvent
from bridge.domain.handoff import Arrival, Handoff, Phase, Registration
from bridge.errors import LeaseLost

# Concurrent first events of one child race to create it; the loser simply tries again.
_RACES = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """What recording an event did."""

    child_id: int
    duplicate: bool
    phase: Phase | None = None


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as the ledger holds it: its record and its hand-over."""

    child_id: int
    record: ChildRecord
    handoff: Handoff
    attempts: int


def _derived(record: ChildRecord, handoff: Handoff) -> dict[str, Any]:
    """Columns that summarise the child for queries; always recomputed, never edited."""
    registration = handoff.registered(record)
    aside = handoff.active_set_aside(record)
    return {
        "student_number": record.student_number,
        "status": record.status.value,
        "phase": handoff.phase(record).value,
        "entry_year": record.entry_year,
        "county_code": record.graduation.county_code if record.graduation else None,
        "kindergarten_code": record.kindergarten_code,
        "school_code": registration.school_code if registration else None,
        "id_number": record.child.id_number if record.child else None,
        "deferred_until": record.deferral.deferred_until
        if record.status is RecordStatus.DEFERRED and record.deferral
        else None,
        "set_aside_reason": aside.reason.value if aside else None,
        "last_childseq": record.last_childseq,
        "handoff": json.dumps(dump_handoff(handoff)),
        "has_work": handoff.next_action(record) is not None,
        "graduated": record.status is RecordStatus.GRADUATED,
        "handed_over": handoff.phase(record) in (Phase.FILE_DELIVERED, Phase.ENROLLED),
    }


_UPDATE_DERIVED = """
UPDATE children SET
    student_number = $2, status = $3, phase = $4, entry_year = $5, county_code = $6,
    kindergarten_code = $7, school_code = $8, id_number = $9, deferred_until = $10,
    set_aside_reason = $11, last_childseq = $12, handoff = $13::jsonb,
    first_graduated_at = CASE WHEN $14 THEN coalesce(first_graduated_at, now())
                              ELSE first_graduated_at END,
    handed_over_at = CASE WHEN $15 THEN coalesce(handed_over_at, now()) ELSE NULL END,
    version = version + 1, updated_at = now()
WHERE child_id = $1
"""


def _derived_args(child_id: int, d: dict[str, Any]) -> list[Any]:
    return [
        child_id, d["student_number"], d["status"], d["phase"], d["entry_year"],
        d["county_code"], d["kindergarten_code"], d["school_code"], d["id_number"],
        d["deferred_until"], d["set_aside_reason"], d["last_childseq"], d["handoff"],
        d["graduated"], d["handed_over"],
    ]  # fmt: skip


_SAVE_IF_UNCHANGED = save_statement(_UPDATE_DERIVED)


class Ledger:
    """Per-child ledger; every method is one transaction."""

    def __init__(self, pool: asyncpg.Pool, *, lease_s: float = 60.0) -> None:
        self._pool = pool
        self._lease_s = lease_s

    # --- events -------------------------------------------------------------------------
    async def record_event(self, event: ChildEvent, raw: bytes) -> RecordedEvent:
        """Store *event* for its child (merging children the event shows to be one).

        Idempotent by event id: a redelivered event changes nothing.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_RACES), stop=stop_after_attempt(5), reraise=True
        ):
            with attempt:
                async with self._pool.acquire() as conn:
                    PARSED.remember(raw, event)
                    first = await self._record_first_event(conn, event, raw)
                    if first is not None:
                        return first
                    async with conn.transaction():
                        return await self._record_event(conn, event, raw)
        raise AssertionError("unreachable")

    @staticmethod
    async def _record_first_event(
        conn: Connection, event: ChildEvent, raw: bytes
    ) -> RecordedEvent | None:
        """One round trip for the common case: the first event of an unknown child."""
        record = fold([event])
        derived = _derived(record, Handoff())
        child_id = await record_first_event(
            conn, event, raw, _derived_args(0, derived), derived["has_work"]
        )
        if child_id is None:
            return None
        return RecordedEvent(child_id=child_id, duplicate=False, phase=Phase(derived["phase"]))

    async def _record_event(self, conn: Connection, event: ChildEvent, raw: bytes) -> RecordedEvent:
        known = await conn.fetchval(
            "SELECT child_id FROM inbox WHERE event_id = $1", event.event_id
        )
        if known is not None:
            return RecordedEvent(child_id=known, duplicate=True)
        numbers = sorted(event.numbers)
        ids = [
            r["child_id"]
            for r in await conn.fetch(
                "SELECT child_id FROM children WHERE child_id IN "
                "(SELECT child_id FROM child_numbers WHERE student_number = ANY($1::text[])) "
                "ORDER BY child_id FOR UPDATE",
                numbers,
            )
        ]
        if not ids:
            child_id = await conn.fetchval(
                "INSERT INTO children (student_number, status, phase) VALUES ($1, $2, $3) "
                "RETURNING child_id",
                event.data.student_number, RecordStatus.IN_KINDERGARTEN.value, Phase.WAITING.value,
            )  # fmt: skip
        else:
            child_id = ids[0]
            if len(ids) > 1:
                await self._merge(conn, child_id, ids[1:])
        await conn.execute(
            "INSERT INTO inbox (event_id, child_id) VALUES ($1, $2)", event.event_id, child_id
        )
        await conn.executemany(
            "INSERT INTO child_numbers (student_number, child_id) VALUES ($1, $2) "
            "ON CONFLICT (student_number) DO NOTHING",
            [(n, child_id) for n in numbers],
        )
        await conn.execute(
            "INSERT INTO child_events (child_id, event_id, childseq, event_type, body) "
            "VALUES ($1, $2, $3, $4, $5)",
            child_id, event.event_id, event.childseq, event.type.value, raw,
        )  # fmt: skip
        record = await self._fold(conn, child_id)
        handoff = load_handoff(
            json.loads(
                await conn.fetchval("SELECT handoff FROM children WHERE child_id=$1", child_id)
            )
        )
        derived = _derived(record, handoff)
        # The current number may have been another child row's until the merge above.
        await conn.execute(_UPDATE_DERIVED, *_derived_args(child_id, derived))
        await conn.execute(
            "UPDATE children SET next_attempt_at = CASE WHEN $2 THEN now() ELSE NULL END "
            "WHERE child_id = $1",
            child_id, derived["has_work"],
        )  # fmt: skip
        return RecordedEvent(child_id=child_id, duplicate=False, phase=Phase(derived["phase"]))

    async def _merge(self, conn: Connection, survivor: int, others: Sequence[int]) -> None:
        """Events under two numbers turned out to be one child: keep one row."""
        rows = await conn.fetch(
            "SELECT handoff FROM children WHERE child_id = ANY($1::bigint[]) ORDER BY child_id",
            [survivor, *others],
        )
        handoffs = [load_handoff(json.loads(r["handoff"])) for r in rows]
        registrations: dict[str, Registration] = {}
        for h in handoffs:
            for reg in h.registrations:
                registrations.setdefault(reg.student_number, reg)
        merged = Handoff(
            registrations=tuple(registrations.values()),
            verified_file_sha256=handoffs[0].verified_file_sha256,
        )
        for table in ("child_events", "child_numbers", "inbox"):
            await conn.execute(
                f"UPDATE {table} SET child_id = $1 WHERE child_id = ANY($2::bigint[])",
                survivor, list(others),
            )  # fmt: skip
        await conn.execute("DELETE FROM children WHERE child_id = ANY($1::bigint[])", list(others))
        await conn.execute(
            "UPDATE children SET handoff = $2::jsonb WHERE child_id = $1",
            survivor, json.dumps(dump_handoff(merged)),
        )  # fmt: skip

    @staticmethod
    async def _fold(conn: Connection, child_id: int) -> ChildRecord:
        bodies = await conn.fetch("SELECT body FROM child_events WHERE child_id = $1", child_id)
        return fold(PARSED.parse(r["body"]) for r in bodies)

    # --- hand-over work -----------------------------------------------------------------
    async def claim_due_loaded(self, owner: str, limit: int) -> list[tuple[ChildState, str]]:
        """Lease up to *limit* children with work due, loading each: one round trip."""
        rows = await self._pool.fetch(CLAIM_DUE_LOADED, owner, limit, self._lease_s)
        return [
            (
                ChildState(
                    r["child_id"],
                    fold(PARSED.parse(body) for body in r["bodies"]),
                    load_handoff(json.loads(r["handoff"])),
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
            child_id, record, load_handoff(json.loads(row["handoff"])), row["attempts"]
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
    ) -> ChildState:
        """Record the hand-over's progress under our lease; raise LeaseLost if it is not ours.

        Progress renews the lease; finishing or waiting releases it.

        Events may have arrived meanwhile: the record is refolded then, so what is left to
        do is judged against the newest facts.
        """
        fast = await self._save_if_unchanged(
            state, handoff, lease, calls=calls, retry_at=retry_at, last_error=last_error
        )
        if fast is not None:
            return fast
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT lease_owner, last_childseq, handoff -> 'arrival' AS arrival"
                " FROM children WHERE child_id = $1 FOR UPDATE",
                state.child_id,
            )
            if row is None or row["lease_owner"] != lease:
                raise LeaseLost("another instance holds this child now")
            # A school may have reported the arrival while we worked: the driver never
            # changes the arrival, so the stored one is the newest and must survive.
            stored_arrival = load_arrival(json.loads(row["arrival"] or "null"))
            if stored_arrival is not None and stored_arrival != handoff.arrival:
                handoff = handoff.arrival_requested(stored_arrival)
            record = state.record
            if row["last_childseq"] != record.last_childseq:
                record = await self._fold(conn, state.child_id)
            derived = _derived(record, handoff)
            await conn.execute(_UPDATE_DERIVED, *_derived_args(state.child_id, derived))
            attempts = state.attempts + 1 if retry_at else 0
            done = retry_at is None and not derived["has_work"]
            await conn.execute(
                """
                UPDATE children SET attempts = $2, last_error = $3,
                    next_attempt_at = CASE WHEN $4::timestamptz IS NOT NULL THEN $4
                                           WHEN $5 THEN now() ELSE NULL END,
                    lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
                    lease_until = CASE WHEN $6 THEN NULL
                                       ELSE now() + make_interval(secs => $7) END
                WHERE child_id = $1
                """,
                state.child_id, attempts, last_error, retry_at, derived["has_work"],
                done or retry_at is not None, self._lease_s,
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

    async def _save_if_unchanged(
        self,
        state: ChildState,
        handoff: Handoff,
        lease: str,
        *,
        calls: Sequence[RegistryCall],
        retry_at: dt.datetime | None,
        last_error: str | None,
    ) -> ChildState | None:
        """save() in one statement when nothing changed under us; None: take the long way."""
        derived = _derived(state.record, handoff)
        attempts = state.attempts + 1 if retry_at else 0
        done = retry_at is None and not derived["has_work"]
        arrival = dump_handoff(handoff)["arrival"]
        async with self._pool.acquire() as conn:
            saved = await save_if_unchanged(
                conn, _SAVE_IF_UNCHANGED, _derived_args(state.child_id, derived),
                attempts=attempts, last_error=last_error, retry_at=retry_at,
                has_work=derived["has_work"], release=done or retry_at is not None,
                lease_s=self._lease_s, lease=lease, last_childseq=state.record.last_childseq,
                arrival=arrival, calls=calls,
            )  # fmt: skip
        return ChildState(state.child_id, state.record, handoff, attempts) if saved else None

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
        """Put a school's arrival report on the hand-over and make B6 due now.

        Under the row lock, in one transaction: the worker then performs B6 with the same
        durable retries as every registry call, and a worker saving meanwhile keeps it.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT handoff, attempts FROM children WHERE child_id = $1 FOR UPDATE", child_id
            )
            if row is None:
                return None
            record = await self._fold(conn, child_id)
            handoff = load_handoff(json.loads(row["handoff"])).arrival_requested(arrival)
            derived = _derived(record, handoff)
            await conn.execute(_UPDATE_DERIVED, *_derived_args(child_id, derived))
            if derived["has_work"]:
                await conn.execute(
                    "UPDATE children SET next_attempt_at = now() WHERE child_id = $1", child_id
                )
        return ChildState(child_id, record, handoff, row["attempts"])

    async def amend(
        self, child_id: int, change: Callable[[ChildRecord, Handoff], Handoff | None]
    ) -> Phase | None:
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
            record = await self._fold(conn, child_id)
            handoff = change(record, load_handoff(json.loads(row["handoff"])))
            if handoff is None:
                return None
            derived = _derived(record, handoff)
            await conn.execute(_UPDATE_DERIVED, *_derived_args(child_id, derived))
            await conn.execute(
                "UPDATE children SET attempts = 0, last_error = NULL,"
                " next_attempt_at = CASE WHEN $2 THEN now() ELSE NULL END WHERE child_id = $1",
                child_id, derived["has_work"],
            )  # fmt: skip
            return Phase(derived["phase"])

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
