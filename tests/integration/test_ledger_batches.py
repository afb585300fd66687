"""The ledger's group-committed writes give what one-at-a-time writes give (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.adapters.postgres.ledger import Ledger
from bridge.domain.events import ChildEvent
from bridge.errors import LeaseLost
from bridge.services.ports.ledger import ChildState
from schemas.events import parse_event
from simulator.cohort import generate_cohort

pytestmark = pytest.mark.live


def cohort_events(size: int, seed: int) -> list[tuple[ChildEvent, bytes]]:
    """Every event of a mixed cohort (deferrals, number changes, ...), shuffled."""
    cohort = generate_cohort(2026, size, seed=seed)
    events = [e for child in cohort.children for e in child.events]
    random.Random(seed).shuffle(events)
    return [(parse_event(raw), raw) for raw in (orjson.dumps(e) for e in events)]


async def ledger_view(pool: asyncpg.Pool) -> dict[str, Any]:
    """What the ledger holds, without its ids and clocks."""
    children = await pool.fetch(
        "SELECT c.student_number, c.status, c.phase, c.entry_year, c.last_childseq, c.handoff,"
        " c.next_attempt_at IS NOT NULL AS due,"
        " ARRAY(SELECT n.student_number FROM child_numbers n WHERE n.child_id = c.child_id"
        "       ORDER BY 1) AS numbers,"
        " ARRAY(SELECT e.event_id::text FROM child_events e WHERE e.child_id = c.child_id"
        "       ORDER BY 1) AS events"
        " FROM children c ORDER BY c.student_number"
    )
    inbox = await pool.fetchval("SELECT count(*) FROM inbox")
    return {"children": [dict(r) for r in children], "inbox": inbox}


async def test_events_recorded_together_give_what_one_by_one_gives(make_ledger: Any) -> None:
    events = cohort_events(60, seed=11)
    duplicated = events + random.Random(3).sample(events, 30)  # redeliveries in one batch
    one_pool, one_by_one = await make_ledger()
    for event, raw in duplicated:
        await one_by_one.record_event(event, raw)
    batched_pool, batched = await make_ledger()
    results = await asyncio.gather(*(batched.record_event(e, raw) for e, raw in duplicated))

    assert await ledger_view(batched_pool) == await ledger_view(one_pool)
    assert sum(not r.duplicate for r in results) == len(events)
    assert max(rows for writer, rows in make_ledger.batches if writer == "events") > 10


async def test_an_event_that_breaks_its_batch_does_not_fail_the_others(make_ledger: Any) -> None:
    pool, ledger = await make_ledger()
    events = [e for e in cohort_events(20, seed=5) if e[0].type.value == "child.graduated"]
    poisoned, *others = events
    # A ledger row under the number with no entry in child_numbers: the poisoned event looks
    # new but cannot be inserted, whichever way it is tried.
    await pool.execute(
        "INSERT INTO children (student_number, status, phase) VALUES ($1, 'graduated', 'waiting')",
        poisoned[0].data.student_number,
    )
    results = await asyncio.gather(
        *(ledger.record_event(e, raw) for e, raw in events), return_exceptions=True
    )
    assert isinstance(results[0], asyncpg.UniqueViolationError)
    assert all(not isinstance(r, BaseException) and not r.duplicate for r in results[1:])
    recorded = await pool.fetchval("SELECT count(*) FROM inbox")
    assert recorded == len(others)


async def claimed(ledger: Ledger, count: int) -> list[tuple[ChildState, str]]:
    leased = await ledger.claim_due_loaded("test", count)
    assert len(leased) == count
    return leased


async def test_saves_together_keep_each_childs_guard(make_ledger: Any) -> None:
    pool, ledger = await make_ledger()
    graduations = [e for e in cohort_events(30, seed=8) if e[0].type.value == "child.graduated"]
    await asyncio.gather(*(ledger.record_event(e, raw) for e, raw in graduations[:6]))
    leased = await claimed(ledger, 6)
    (changed, _), (stolen, _) = leased[0], leased[1]
    # Meanwhile: an arrival report on one child, and another instance taking a second one.
    await pool.execute(
        "UPDATE children SET handoff = jsonb_set(handoff, '{arrival}',"
        ' \'{"school_code": "2111010502", "arrived_on": "2026-09-01"}\')'
        " WHERE child_id = $1",
        changed.child_id,
    )
    await pool.execute(
        "UPDATE children SET lease_owner = 'other/1' WHERE child_id = $1", stolen.child_id
    )
    saves = [
        ledger.save(state, state.handoff.file_verified("f" * 64), lease) for state, lease in leased
    ]
    results = await asyncio.gather(*saves, return_exceptions=True)

    assert isinstance(results[1], LeaseLost)
    kept = results[0]
    assert isinstance(kept, ChildState) and kept.handoff.arrival is not None  # not overwritten
    stored = {
        r["child_id"]: orjson.loads(r["handoff"])
        for r in await pool.fetch("SELECT child_id, handoff FROM children")
    }
    for state, _ in leased:
        expected = "f" * 64 if state.child_id != stolen.child_id else None
        assert stored[state.child_id].get("verified_file_sha256") == expected
