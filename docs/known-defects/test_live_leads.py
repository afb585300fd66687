"""Live (real PostgreSQL) demonstrations for leads 1-4. Only after the benchmark ends.

Run: cd /work/main && .venv/bin/python -m pytest -q -c pyproject.toml -p no:cacheprovider docs/known-defects/test_live_leads.py
Each test asserts the BUGGY behaviour (it passes while the bug is there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sys
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))

import asyncpg
import orjson
import pytest
from events_helper import SHA, G, L, cancelled, ev, graduated, key_info, number_assigned

from bridge.adapters.call_journal import RegistryCall
from bridge.adapters.postgres.derived import Derived
from bridge.adapters.postgres.ledger import ChildState, Ledger
from bridge.adapters.postgres.ledger_batch import NewChild, record_new_children
from bridge.domain.child_record import fold
from bridge.domain.handoff import Arrival, Handoff
from bridge.domain.intake import IntakeRequest
from bridge.errors import LeaseLost
from tests.conftest import make_database  # noqa: F401  (fixture)
from tests.integration.test_ledger_batches import make_ledger  # noqa: F401  (fixture)

pytestmark = pytest.mark.live
OTHER = "G110108202001091272"


async def row(pool: asyncpg.Pool, child_id: int) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT student_number, status, phase, handoff, lease_owner,"
        " next_attempt_at IS NOT NULL AS due FROM children WHERE child_id = $1",
        child_id,
    )


# --- lead 1 ------------------------------------------------------------------------------
async def test_lead1_lost_lease_save_reported_saved_when_batched_with_new_holder(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 7)))
    await ledger.record_event(*ev(graduated(OTHER, 3)))
    leased = await ledger.claim_due_loaded("inst", 2)
    by_number = {s.record.student_number: (s, lease) for s, lease in leased}
    (a_state, a_lease), (d_state, d_lease) = by_number[G], by_number[OTHER]
    # Drive A's registry call outlasts lease_s (3 x 30 s budget > 60 s): the lease lapses and
    # the worker (still due: next_attempt_at is untouched by a claim) leases the child again.
    await pool.execute(
        "UPDATE children SET lease_until = now() - interval '1 s' WHERE child_id = $1",
        a_state.child_id,
    )
    [(b_state, b_lease)] = await ledger.claim_due_loaded("inst", 1)
    assert b_state.child_id == a_state.child_id and b_lease != a_lease

    call = RegistryCall("B1", 201, "created", 5)
    results = await asyncio.gather(
        ledger.save(d_state, d_state.handoff.file_verified("d" * 64), d_lease),  # batch 1
        ledger.save(
            a_state,
            a_state.handoff.file_verified("a" * 64),
            a_lease,  # batch 2
            calls=(call,),
        ),
        ledger.save(b_state, b_state.handoff.file_verified("b" * 64), b_lease),  # batch 2
        return_exceptions=True,
    )
    assert ("saves", 2) in make_ledger.batches
    # BUG: the drive whose lease is gone is told its save held ...
    assert isinstance(results[1], ChildState), results[1]
    # ... though what is stored is the other drive's, and A's attempt-log line went in anyway.
    stored = orjson.loads((await row(pool, a_state.child_id))["handoff"])
    assert stored["verified_file_sha256"] == "b" * 64
    logged = await pool.fetchval(
        "SELECT count(*) FROM registry_calls WHERE child_id = $1", a_state.child_id
    )
    assert logged == 1
    # Control: the same save on its own gets the answer it should have had.
    with pytest.raises(LeaseLost):
        await ledger.save(a_state, a_state.handoff.file_verified("a" * 64), a_lease)


# --- lead 2 ------------------------------------------------------------------------------
async def test_lead2_late_lower_childseq_event_is_overwritten_by_stale_save(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 7)))
    await ledger.record_event(*ev(key_info(G, 10)))
    [(state, lease)] = await ledger.claim_due_loaded("inst", 1)
    intake = IntakeRequest.for_record(state.record)
    registered = Handoff().file_verified(SHA).intake_registered(intake, "2111010898")
    state = await ledger.save(state, registered, lease)  # intent/progress, fast path
    # The cancellation (approved before the key-info change: childseq 9) arrives late.
    await ledger.record_event(*ev(cancelled(G, 9)))
    mid = await row(pool, state.child_id)
    assert (mid["status"], mid["phase"], mid["due"]) == ("cancelled", "withdrawing", True)
    # The worker, unaware, saves its next step (file delivered) under its lease.
    await ledger.save(state, registered.file_delivered(G, SHA), lease)
    after = await row(pool, state.child_id)
    # BUG: the stale fold wins; the row says handed over, nothing is due, lease released.
    assert (after["status"], after["phase"], after["due"]) == ("graduated", "file_delivered", False)
    assert after["lease_owner"] is None
    assert await ledger.claim_due_loaded("inst", 10) == []  # nobody will withdraw it
    async with pool.acquire() as conn:
        refolded = await Ledger._fold(conn, state.child_id)
    truth = Derived.of(refolded, registered.file_delivered(G, SHA))
    assert (truth.status, truth.phase.value, truth.has_work) == ("cancelled", "withdrawing", True)


# --- lead 3 ------------------------------------------------------------------------------
async def _split(pool: asyncpg.Pool, ledger: Ledger, first_fast: bool) -> None:
    grad, na = ev(graduated(L, 5)), ev(number_assigned(L, G, 8))
    c1, c2 = await pool.acquire(), await pool.acquire()
    t1, t2 = c1.transaction(), c2.transaction()
    await t1.start()
    if first_fast:  # instance A: the batch path for a first event (plain INSERT of numbers)
        d = Derived.of(fold([grad[0]]), Handoff())
        await record_new_children(c1, [NewChild(grad[0], grad[1], d)])
    else:  # instance A: the general path (ON CONFLICT DO NOTHING)
        await ledger._record_event(c1, *grad)
    await t2.start()  # instance B: the general path for L->G (e.g. its batch also held a G event)
    task = asyncio.create_task(ledger._record_event(c2, *na))
    await asyncio.sleep(0.5)
    assert not task.done()  # waiting on A's uncommitted child_numbers row for L
    await t1.commit()
    await task
    await t2.commit()
    await pool.release(c1)
    await pool.release(c2)


@pytest.mark.parametrize("first_fast", [False, True])
async def test_lead3_race_splits_one_child_into_two_rows(
    make_ledger: Any, first_fast: bool
) -> None:
    pool, ledger = await make_ledger()
    await _split(pool, ledger, first_fast)
    children = await pool.fetch(
        "SELECT c.child_id, c.student_number, c.status, c.phase, c.next_attempt_at IS NOT NULL AS due,"
        " ARRAY(SELECT n.student_number FROM child_numbers n WHERE n.child_id = c.child_id"
        " ORDER BY 1) AS numbers FROM children c ORDER BY child_id"
    )
    view = [
        (r["student_number"], r["status"], r["phase"], r["due"], list(r["numbers"]))
        for r in children
    ]
    # BUG: one real child, two ledger rows; the graduated one is handed over under the
    # temporary L number, the G row never graduates.
    assert view == [
        (L, "graduated", "received", True, [L]),
        (G, "in_kindergarten", "waiting", False, [G]),
    ]


# --- lead 4 ------------------------------------------------------------------------------
async def test_lead4_merge_drops_arrival_and_generation(make_ledger: Any) -> None:
    pool, ledger = await make_ledger()
    first = await ledger.record_event(*ev(graduated(L, 5)))
    arrival = Arrival("2111010898", dt.date(2026, 9, 1))
    await ledger.request_arrival(first.child_id, arrival)
    await ledger.amend(first.child_id, lambda r, h: dataclasses.replace(h, generation=2))
    before = orjson.loads((await row(pool, first.child_id))["handoff"])
    assert before["arrival"] is not None and before["generation"] == 2
    await ledger.record_event(*ev(key_info(G, 10)))  # G's event arrives first: 2nd row
    merged = await ledger.record_event(*ev(number_assigned(L, G, 8)))  # names L and G: merge
    assert merged.child_id == first.child_id
    assert await pool.fetchval("SELECT count(*) FROM children") == 1
    after = orjson.loads((await row(pool, first.child_id))["handoff"])
    # BUG: the school's arrival report and the generation are gone.
    assert after["arrival"] is None
    assert after["generation"] == 0
