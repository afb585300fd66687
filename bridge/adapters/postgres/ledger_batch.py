"""The ledger's hot paths as multi-row statements, and a bounded cache of parsed events.

Profiling a cohort hand-over showed the bridge (and PostgreSQL) paying per statement
rather than per row: a round trip, a commit and a wake-up of a server process for each
child's each write. The common cases therefore go out many children at a time (see
``bridge.adapters.group_commit``):

- first events of children nobody knows yet: one statement inserts every such child,
  its numbers, inbox entry and event;
- progress saved under leases that are still ours, with no event and no arrival report
  arrived meanwhile: one guarded UPDATE of many children, with their attempt-log lines
  and the record files they verified. A child whose guard fails is not saved and takes
  the general path, which re-reads it under the row lock.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.adapters.postgres.connection import Connection
from bridge.adapters.postgres.derived import Derived
from bridge.adapters.postgres.minimised_events import parse_stored
from bridge.adapters.postgres.record_files import REPLACE_UNSOUND, SEALED_COLUMNS
from bridge.domain.events import ChildEvent
from bridge.services.call_journal import RegistryCall
from bridge.services.ports.files import VerifiedFile

# Parsed events kept for folding a child again (about 2 KB each): a child's record is
# folded when its event arrives and again when the worker loads it moments later.
PARSED_EVENTS_CACHED = 8192


class ParsedEvents:
    """A bounded LRU of stored event bodies to their parsed form (events are immutable)."""

    def __init__(self, size: int = PARSED_EVENTS_CACHED) -> None:
        self._size = size
        self._events: OrderedDict[bytes, ChildEvent] = OrderedDict()

    def parse(self, body: bytes) -> ChildEvent:
        """The event in *body*, parsed at most once while it stays in the cache."""
        event = self._events.get(body)
        if event is None:
            event = parse_stored(body)  # as received, or minimised after retention
            self.remember(body, event)
        else:
            self._events.move_to_end(body)
        return event

    def remember(self, body: bytes, event: ChildEvent) -> None:
        """Keep an event parsed elsewhere (the consumer parses every message once)."""
        self._events[body] = event
        if len(self._events) > self._size:
            self._events.popitem(last=False)


PARSED = ParsedEvents()


@dataclass(frozen=True, slots=True)
class NewChild:
    """The first event of a child whose numbers the ledger does not know."""

    event: ChildEvent
    raw: bytes
    derived: Derived  # the child folded from this event alone


_KNOWN = """
SELECT 'event' AS kind, event_id::text AS key, child_id FROM inbox
 WHERE event_id = ANY($1::uuid[])
UNION ALL
SELECT 'number', student_number, child_id FROM child_numbers
 WHERE student_number = ANY($2::text[])
"""


async def known(
    conn: Connection, event_ids: Sequence[str], numbers: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """(event id → child id) of recorded events, (number → child id) of known numbers."""
    events: dict[str, int] = {}
    found: dict[str, int] = {}
    for row in await conn.fetch(_KNOWN, list(event_ids), list(numbers)):
        (events if row["kind"] == "event" else found)[row["key"]] = row["child_id"]
    return events, found


# Keyed by the child's current number, unique among the rows of one statement.
_NEW_CHILDREN = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::date[], $10::text[],
                         $11::bigint[], $12::text[], $13::bool[], $14::bool[], $15::bool[])
        AS t(student_number, status, phase, entry_year, county_code, kindergarten_code,
             school_code, id_number, deferred_until, set_aside_reason, last_childseq,
             handoff, graduated, handed_over, has_work)
), child AS (
    INSERT INTO children (
        student_number, status, phase, entry_year, county_code, kindergarten_code,
        school_code, id_number, deferred_until, set_aside_reason, last_childseq, handoff,
        first_graduated_at, handed_over_at, version, next_attempt_at, events_folded)
    SELECT student_number, status, phase, entry_year, county_code, kindergarten_code,
           school_code, id_number, deferred_until, set_aside_reason, last_childseq,
           handoff::jsonb, CASE WHEN graduated THEN now() END,
           CASE WHEN handed_over THEN now() END, 1, CASE WHEN has_work THEN now() END, 1
    FROM input
    RETURNING child_id, student_number
), number_rows AS (
    -- No ON CONFLICT: a number another transaction just took must fail this one.
    INSERT INTO child_numbers (student_number, child_id)
    SELECT n.number, child.child_id
    FROM unnest($16::text[], $17::text[]) AS n(current_number, number)
    JOIN child ON child.student_number = n.current_number
), inbox_rows AS (
    INSERT INTO inbox (event_id, child_id)
    SELECT e.event_id, child.child_id
    FROM unnest($18::text[], $19::uuid[]) AS e(current_number, event_id)
    JOIN child ON child.student_number = e.current_number
), event_rows AS (
    INSERT INTO child_events (child_id, event_id, childseq, event_type, body)
    SELECT child.child_id, e.event_id, e.childseq, e.event_type, e.body
    FROM unnest($18::text[], $19::uuid[], $20::bigint[], $21::text[], $22::bytea[])
        AS e(current_number, event_id, childseq, event_type, body)
    JOIN child ON child.student_number = e.current_number
)
SELECT student_number, child_id FROM child
"""


async def record_new_children(conn: Connection, children: Sequence[NewChild]) -> dict[str, int]:
    """Create a child for each first event; returns current number → child id.

    The caller has made sure no number of these events is known, nor shared between
    two of them; a concurrent transaction taking one of the numbers fails this one.
    """
    d = [c.derived for c in children]
    number_pairs = [
        (c.derived.student_number, n) for c in children for n in sorted(c.event.numbers)
    ]
    rows = await conn.fetch(
        _NEW_CHILDREN,
        [x.student_number for x in d], [x.status for x in d], [x.phase.value for x in d],
        [x.entry_year for x in d], [x.county_code for x in d],
        [x.kindergarten_code for x in d], [x.school_code for x in d],
        [x.id_number for x in d], [x.deferred_until for x in d],
        [x.set_aside_reason for x in d], [x.last_childseq for x in d],
        [x.handoff for x in d], [x.graduated for x in d], [x.handed_over for x in d],
        [x.has_work for x in d],
        [p[0] for p in number_pairs], [p[1] for p in number_pairs],
        [x.student_number for x in d], [c.event.event_id for c in children],
        [c.event.childseq for c in children], [c.event.type.value for c in children],
        [c.raw for c in children],
    )  # fmt: skip
    return {r["student_number"]: r["child_id"] for r in rows}


@dataclass(frozen=True, slots=True)
class Progress:
    """One child's save under its lease, valid only if nothing changed under us."""

    child_id: int
    derived: Derived  # its events_folded is the guard's "no event arrived meanwhile"
    attempts: int
    last_error: str | None
    retry_at: dt.datetime | None
    release: bool  # give the lease back (done, or waiting for a retry)
    lease: str
    expected_arrival: str  # the arrival as we hold it (JSON text)
    calls: tuple[RegistryCall, ...] = ()
    file: VerifiedFile | None = None


_SAVE_UNCHANGED = f"""
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::date[],
                         $11::text[], $12::bigint[], $13::text[], $14::bool[], $15::bool[],
                         $16::int[], $17::text[], $18::timestamptz[], $19::bool[],
                         $20::bool[], $21::text[], $22::int[], $23::text[])
        WITH ORDINALITY
        AS v(child_id, student_number, status, phase, entry_year, county_code,
             kindergarten_code, school_code, id_number, deferred_until, set_aside_reason,
             last_childseq, handoff, graduated, handed_over, attempts, last_error,
             retry_at, has_work, release, lease, expected_events, expected_arrival, item)
), saved AS (
    UPDATE children c SET
        student_number = v.student_number, status = v.status, phase = v.phase,
        entry_year = v.entry_year, county_code = v.county_code,
        kindergarten_code = v.kindergarten_code, school_code = v.school_code,
        id_number = v.id_number, deferred_until = v.deferred_until,
        set_aside_reason = v.set_aside_reason, last_childseq = v.last_childseq,
        handoff = v.handoff::jsonb,
        first_graduated_at = CASE WHEN v.graduated THEN coalesce(c.first_graduated_at, now())
                                  ELSE c.first_graduated_at END,
        handed_over_at = CASE WHEN v.handed_over THEN coalesce(c.handed_over_at, now())
                              ELSE NULL END,
        version = c.version + 1, updated_at = now(),
        attempts = v.attempts, last_error = v.last_error,
        next_attempt_at = CASE WHEN v.retry_at IS NOT NULL THEN v.retry_at
                               WHEN v.has_work THEN now() ELSE NULL END,
        lease_owner = CASE WHEN v.release THEN NULL ELSE c.lease_owner END,
        lease_until = CASE WHEN v.release THEN NULL
                           ELSE now() + make_interval(secs => $24) END
    FROM v
    WHERE c.child_id = v.child_id AND c.lease_owner = v.lease
      AND c.events_folded = v.expected_events
      AND coalesce(c.handoff -> 'arrival', 'null'::jsonb) = v.expected_arrival::jsonb
    RETURNING v.item
), calls AS (
    INSERT INTO registry_calls (child_id, operation, status, outcome, duration_ms)
    SELECT k.child_id, k.operation, k.status, k.outcome, k.duration_ms
    FROM unnest($25::bigint[], $26::text[], $27::int[], $28::text[], $29::int[], $34::int[])
        AS k(child_id, operation, status, outcome, duration_ms, item)
    WHERE k.item IN (SELECT item FROM saved)
), files AS (
    -- Kept whether or not the save holds: the bytes were verified against their claim.
    -- They were sealed before this statement: no file is in it in the clear.
    INSERT INTO record_files ({SEALED_COLUMNS})
    SELECT * FROM unnest($30::text[], $31::int[], $32::text[], $33::bytea[], $35::text[],
                         $36::bytea[], $37::bytea[])
    {REPLACE_UNSOUND.strip()}
)
SELECT item FROM saved
"""


async def save_unchanged(conn: Connection, batch: Sequence[Progress], lease_s: float) -> list[bool]:
    """Save every item of *batch* whose guard holds, in one statement; which ones held.

    Answered per item, not per child: two saves of one child can share a batch (a drive
    whose lease lapsed, and the one that holds it now), and only one of them may hold.
    """
    d = [p.derived for p in batch]
    calls = [(i, p.child_id, c) for i, p in enumerate(batch, 1) for c in p.calls]
    files = {p.file.sha256: p.file for p in batch if p.file is not None}
    rows = await conn.fetch(
        _SAVE_UNCHANGED,
        [p.child_id for p in batch], [x.student_number for x in d], [x.status for x in d],
        [x.phase.value for x in d], [x.entry_year for x in d], [x.county_code for x in d],
        [x.kindergarten_code for x in d], [x.school_code for x in d],
        [x.id_number for x in d], [x.deferred_until for x in d],
        [x.set_aside_reason for x in d], [x.last_childseq for x in d],
        [x.handoff for x in d], [x.graduated for x in d], [x.handed_over for x in d],
        [p.attempts for p in batch], [p.last_error for p in batch],
        [p.retry_at for p in batch], [x.has_work for x in d], [p.release for p in batch],
        [p.lease for p in batch], [x.events_folded for x in d],
        [p.expected_arrival for p in batch], lease_s,
        [c[1] for c in calls], [c[2].operation for c in calls], [c[2].status for c in calls],
        [c[2].outcome for c in calls], [c[2].duration_ms for c in calls],
        list(files), [f.size for f in files.values()],
        [f.media_type for f in files.values()], [f.sealed.ciphertext for f in files.values()],
        [c[0] for c in calls], [f.sealed.key_id for f in files.values()],
        [f.sealed.wrapped_key for f in files.values()],
        [f.sealed.nonce_prefix for f in files.values()],
    )  # fmt: skip
    held = {r["item"] for r in rows}
    return [i in held for i in range(1, len(batch) + 1)]


# The worker's lease and the load of each leased child in one statement: the child's
# hand-over, attempts and event bodies come back with its lease.
CLAIM_DUE_LOADED = """
WITH due AS (
    SELECT child_id FROM children
    WHERE next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE children c
   SET lease_owner = $1 || '/' || gen_random_uuid()::text,
       lease_until = now() + make_interval(secs => $3)
  FROM due WHERE c.child_id = due.child_id
RETURNING c.child_id, c.lease_owner, c.handoff, c.attempts,
          ARRAY(SELECT body FROM child_events e WHERE e.child_id = c.child_id) AS bodies
"""
