"""The ledger under races a single test run rarely meets: lapsed leases, late events,
two instances on one child, merges (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.adapters.postgres.derived import Derived
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.ledger_batch import NewChild, record_new_children
from bridge.domain.arrival import Arrival
from bridge.domain.child_record import fold
from bridge.domain.handoff import Handoff
from bridge.domain.intake import IntakeRequest
from bridge.errors import LeaseLost
from bridge.services.call_journal import RegistryCall
from bridge.services.ports.ledger import ChildState
from simulator.cohort import generate_cohort
from tests.support.wire_events import SHA, G, L, cancelled, ev, graduated, key_info, number_assigned

pytestmark = pytest.mark.live
OTHER = "G110108202001091272"


async def row(pool: asyncpg.Pool, child_id: int) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT student_number, status, phase, handoff, lease_owner,"
        " next_attempt_at IS NOT NULL AS due FROM children WHERE child_id = $1",
        child_id,
    )


async def test_a_save_under_a_lapsed_lease_is_refused_when_batched_with_the_new_holder(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 7)))
    await ledger.record_event(*ev(graduated(OTHER, 3)))
    by_number = {
        s.record.student_number: (s, lease) for s, lease in await ledger.claim_due_loaded("i", 2)
    }
    (a_state, a_lease), (d_state, d_lease) = by_number[G], by_number[OTHER]
    # Drive A's registry call outlasts the lease, and the child is leased again (drive B).
    await pool.execute(
        "UPDATE children SET lease_until = now() - interval '1 s' WHERE child_id = $1",
        a_state.child_id,
    )
    [(b_state, b_lease)] = await ledger.claim_due_loaded("i", 1)
    assert b_state.child_id == a_state.child_id and b_lease != a_lease

    results = await asyncio.gather(
        ledger.save(d_state, d_state.handoff.file_verified("d" * 64), d_lease),  # batch 1
        ledger.save(  # batch 2, with B's save of the same child
            a_state,
            a_state.handoff.file_verified("a" * 64),
            a_lease,
            calls=(RegistryCall("B1", 201, "created", 5),),
        ),
        ledger.save(b_state, b_state.handoff.file_verified("b" * 64), b_lease),
        return_exceptions=True,
    )
    assert ("saves", 2) in make_ledger.batches  # A and B did share a statement
    assert isinstance(results[1], LeaseLost)
    assert isinstance(results[2], ChildState)
    stored = orjson.loads((await row(pool, a_state.child_id))["handoff"])
    assert stored["verified_file_sha256"] == "b" * 64
    # A's attempt-log line belongs to a drive that no longer held the child.
    assert await pool.fetchval("SELECT count(*) FROM registry_calls") == 0


async def test_a_late_event_with_a_lower_childseq_is_not_overwritten_by_a_workers_save(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 7)))
    await ledger.record_event(*ev(key_info(G, 10)))
    [(state, lease)] = await ledger.claim_due_loaded("i", 1)
    intake = IntakeRequest.for_record(state.record)
    registered = Handoff().file_verified(SHA).intake_registered(intake, "2111010898")
    state = await ledger.save(state, registered, lease)
    # The cancellation (approved before the key-info change: childseq 9) arrives late.
    await ledger.record_event(*ev(cancelled(G, 9)))
    # The worker, unaware of it, saves its next step under its lease.
    saved = await ledger.save(state, registered.file_delivered(G, SHA), lease)
    assert saved.record.status.value == "cancelled"  # it carries on from the newest facts
    after = await row(pool, state.child_id)
    assert (after["status"], after["phase"], after["due"]) == ("cancelled", "withdrawing", True)
    assert after["lease_owner"] == lease  # still the worker's: it withdraws next


async def _race(pool: asyncpg.Pool, ledger: Ledger, *, first_fast: bool) -> None:
    """Instance A records graduated(L) while instance B records number_assigned(L -> G)."""
    grad, assigned = ev(graduated(L, 5)), ev(number_assigned(L, G, 8))
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        if first_fast:  # A's batch path for a first event
            derived = Derived.of(fold([grad[0]]), Handoff())
            await record_new_children(conn, [NewChild(grad[0], grad[1], derived)])
        else:  # A's general path
            await ledger._record_event(conn, *grad)
        # B on its general path (as when its batch also held another event of G).
        other = asyncio.create_task(ledger._record_alone(assigned))
        await asyncio.sleep(0.5)
        assert not other.done()  # B waits on A's uncommitted number L
        await transaction.commit()
    await other


@pytest.mark.parametrize("first_fast", [False, True])
async def test_two_instances_recording_one_child_under_two_numbers_make_one_row(
    make_ledger: Any, first_fast: bool
) -> None:
    pool, ledger = await make_ledger()
    await _race(pool, ledger, first_fast=first_fast)
    children = await pool.fetch(
        "SELECT c.student_number, c.status, c.phase,"
        " ARRAY(SELECT n.student_number FROM child_numbers n WHERE n.child_id = c.child_id"
        " ORDER BY 1) AS numbers FROM children c"
    )
    view = [(r["student_number"], r["status"], r["phase"], list(r["numbers"])) for r in children]
    assert view == [(G, "graduated", "received", [G, L])]


async def test_a_merge_keeps_what_either_row_knew_and_moves_its_history(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    first = await ledger.record_event(*ev(graduated(L, 5)))
    arrival = Arrival("2111010898", dt.date(2026, 9, 1))
    await ledger.request_arrival(first.child_id, arrival)
    await ledger.amend(first.child_id, lambda r, h: dataclasses.replace(h, generation=2))
    second = await ledger.record_event(*ev(key_info(G, 10)))  # G's event first: a 2nd row
    assert second.child_id != first.child_id
    gone = second.child_id
    await pool.execute(
        "INSERT INTO registry_calls (child_id, operation, status, outcome, duration_ms)"
        " VALUES ($1, 'B5', 200, 'corrected', 4)",
        gone,
    )
    for child_id in (first.child_id, gone):  # one school pull each, of the same file
        await pool.execute(
            "INSERT INTO school_pulls (child_id, school_code, sha256)"
            " VALUES ($1, '2111010898', $2)",
            child_id, SHA,
        )  # fmt: skip
    await pool.execute(
        "INSERT INTO arrival_reports (child_id, student_number, school_code, arrived_on,"
        " token_id, outcome) VALUES ($1, $2, '2111010898', '2026-09-01', 't', 'accepted')",
        gone, G,
    )  # fmt: skip
    merged = await ledger.record_event(*ev(number_assigned(L, G, 8)))  # names both: merge
    assert merged.child_id == first.child_id
    assert await pool.fetchval("SELECT count(*) FROM children") == 1
    after = orjson.loads((await row(pool, first.child_id))["handoff"])
    assert after["arrival"] is not None and after["generation"] == 2
    for table in ("registry_calls", "school_pulls", "arrival_reports", "child_numbers"):
        ids = await pool.fetch(f"SELECT DISTINCT child_id FROM {table}")
        assert [r["child_id"] for r in ids] == [first.child_id], table
    assert await pool.fetchval("SELECT count(*) FROM school_pulls") == 1


async def test_two_instances_recording_a_new_childs_first_events_alone_both_succeed(
    make_ledger: Any,
) -> None:
    # Each instance's batch holds one event: the one that loses the race to create the
    # child must try again (and find the row), not fail the message.
    pool, ledger = await make_ledger()
    other = Ledger(pool)
    cohort = generate_cohort(2026, 8, seed=93, mix={"graduated": 1.0})
    try:
        for child in cohort.children:
            number = child.final_student_number
            results = await asyncio.gather(
                ledger.record_event(*ev(child.events[0])),
                other.record_event(*ev(key_info(number, 2))),
                return_exceptions=True,
            )
            assert [type(r).__name__ for r in results] == ["RecordedEvent"] * 2
    finally:
        await other.aclose()
    rows = await pool.fetch("SELECT count(*) AS events FROM child_events GROUP BY child_id")
    assert [r["events"] for r in rows] == [2] * len(cohort.children)
