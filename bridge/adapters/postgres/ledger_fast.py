"""The ledger's common cases in one round trip each, and a bounded cache of parsed events.

Profiling a cohort hand-over showed the bridge spending most of its time sending
statements to PostgreSQL (one write per statement) and re-parsing stored events. The
common cases need no read-then-write dance:

- the first event of a child nobody knows yet: one statement inserts the child, its
  inbox entry, numbers and event, or does nothing if any of its numbers is known (the
  caller then takes the general, locking path);
- saving progress under a lease that is still ours, with no event and no arrival report
  arrived meanwhile: one guarded UPDATE (plus the attempt log in the same statement); if
  the guard fails the caller takes the general path, which re-reads under the row lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from bridge.adapters.call_journal import RegistryCall
from bridge.adapters.postgres.connection import Connection
from bridge.domain.events import ChildEvent
from schemas.events import parse_event

# Parsed events kept for folding a child again (about 2 KB each): a child's record is
# folded when its event arrives and again when the worker loads it moments later.
PARSED_EVENTS_CACHED = 4096


class ParsedEvents:
    """A bounded LRU of stored event bodies to their parsed form (events are immutable)."""

    def __init__(self, size: int = PARSED_EVENTS_CACHED) -> None:
        self._size = size
        self._events: OrderedDict[bytes, ChildEvent] = OrderedDict()

    def parse(self, body: bytes) -> ChildEvent:
        """The event in *body*, parsed at most once while it stays in the cache."""
        event = self._events.get(body)
        if event is None:
            event = parse_event(body)
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

# $1..$15 are ledger._derived_args; the child is created as the fold of this one event.
_FIRST_EVENT = """
WITH child AS (
    INSERT INTO children (
        student_number, status, phase, entry_year, county_code, kindergarten_code,
        school_code, id_number, deferred_until, set_aside_reason, last_childseq, handoff,
        first_graduated_at, handed_over_at, version, next_attempt_at)
    SELECT $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb,
           CASE WHEN $14 THEN now() END, CASE WHEN $15 THEN now() END, 1,
           CASE WHEN $16 THEN now() END
    -- $1 (the child id of the derived columns) is not known yet; typed so it can be bound.
    WHERE $1::bigint = 0
      AND NOT EXISTS (SELECT 1 FROM child_numbers WHERE student_number = ANY($17::text[]))
    RETURNING child_id
), inbox_row AS (
    INSERT INTO inbox (event_id, child_id) SELECT $18, child_id FROM child
), number_rows AS (
    -- No ON CONFLICT: a concurrent first event of the same child must fail and retry.
    INSERT INTO child_numbers (student_number, child_id)
    SELECT n, child_id FROM child, unnest($17::text[]) AS n
), event_row AS (
    INSERT INTO child_events (child_id, event_id, childseq, event_type, body)
    SELECT child_id, $18, $19, $20, $21 FROM child
)
SELECT child_id FROM child
"""


async def record_first_event(
    conn: Connection,
    event: ChildEvent,
    raw: bytes,
    derived_args: Sequence[Any],
    has_work: bool,
) -> int | None:
    """Create the child of *event* if none of its numbers is known; its id, else None.

    *derived_args* are the ledger's derived columns of the child folded from this event
    alone (their child id, $1, is unused here).
    """
    value: int | None = await conn.fetchval(
        _FIRST_EVENT,
        *derived_args,
        has_work,
        sorted(event.numbers),
        event.event_id,
        event.childseq,
        event.type.value,
        raw,
    )
    return value


_SAVE_TAIL = """,
    attempts = $16, last_error = $17,
    next_attempt_at = CASE WHEN $18::timestamptz IS NOT NULL THEN $18
                           WHEN $19 THEN now() ELSE NULL END,
    lease_owner = CASE WHEN $20 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN $20 THEN NULL ELSE now() + make_interval(secs => $21) END
WHERE child_id = $1 AND lease_owner = $22 AND last_childseq = $23
  AND coalesce(handoff -> 'arrival', 'null'::jsonb) = $24::jsonb
RETURNING child_id
"""


def save_statement(update_derived: str) -> str:
    """The guarded one-statement save built from the ledger's derived-columns UPDATE."""
    anchor = "WHERE child_id = $1"
    body = update_derived.strip()
    if not body.endswith(anchor):
        raise AssertionError("the derived-columns UPDATE changed shape; adapt save_statement")
    update = body.removesuffix(anchor).rstrip() + _SAVE_TAIL
    return f"""
WITH saved AS ({update}), calls AS (
    INSERT INTO registry_calls (child_id, operation, status, outcome, duration_ms)
    SELECT saved.child_id, c.operation, c.status, c.outcome, c.duration_ms
    FROM saved, unnest($25::text[], $26::int[], $27::text[], $28::int[])
         AS c(operation, status, outcome, duration_ms)
)
SELECT count(*) FROM saved
"""


async def save_if_unchanged(
    conn: Connection,
    statement: str,
    derived_args: Sequence[Any],
    *,
    attempts: int,
    last_error: str | None,
    retry_at: Any,
    has_work: bool,
    release: bool,
    lease_s: float,
    lease: str,
    last_childseq: int,
    arrival: Any,
    calls: Sequence[RegistryCall],
) -> bool:
    """Save in one statement if the lease, the events and the arrival are as we left them."""
    saved: int = await conn.fetchval(
        statement,
        *derived_args,
        attempts,
        last_error,
        retry_at,
        has_work,
        release,
        lease_s,
        lease,
        last_childseq,
        orjson.dumps(arrival).decode(),
        [c.operation for c in calls],
        [c.status for c in calls],
        [c.outcome for c in calls],
        [c.duration_ms for c in calls],
    )
    return saved == 1


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
