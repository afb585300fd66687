"""One contract, two ledgers: the in-memory fake and the PostgreSQL adapter pass the same
tests, so that the services' unit tests on the fake say something about the real thing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bridge.adapters.postgres.ledger import Ledger
from bridge.bootstrap import open_pool
from bridge.domain.arrival import Arrival
from bridge.domain.handoff import Handoff, SetAsideReason
from bridge.domain.retry_policy import RetryPolicy
from bridge.errors import LeaseLost
from bridge.settings import Settings
from tests.conftest import PG_ADMIN_URL
from tests.fakes.ledger import MemoryLedger
from tests.support import wire_events as wire


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.live)])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    name = f"xueji_contract_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await open_pool(Settings(database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name))
        real = Ledger(pool)
        try:
            yield real
        finally:
            await real.aclose()
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def record(ledger: Any, event: dict[str, Any]) -> Any:
    return await ledger.record_event(*wire.ev(event))


async def test_an_event_is_recorded_once(ledger: Any) -> None:
    event = wire.graduated(wire.G, 1)
    first = await record(ledger, event)
    again = await record(ledger, event)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.child_id == first.child_id and first.phase == "received"


async def test_a_child_is_found_by_any_number_it_held(ledger: Any) -> None:
    first = await record(ledger, wire.graduated(wire.L, 1))
    renumbered = await record(ledger, wire.number_assigned(wire.L, wire.G, 2))
    later = await record(ledger, wire.key_info(wire.L, 3))
    assert first.child_id == renumbered.child_id == later.child_id
    state = await ledger.load(first.child_id)
    assert state.record.student_number == wire.G and state.record.events_folded == 3


async def test_two_rows_shown_to_be_one_child_are_merged(ledger: Any) -> None:
    under_l = await record(ledger, wire.graduated(wire.L, 1))
    under_g = await record(ledger, wire.key_info(wire.G, 3))
    assert under_l.child_id != under_g.child_id
    merged = await record(ledger, wire.number_assigned(wire.L, wire.G, 2))
    survivor = min(under_l.child_id, under_g.child_id)
    assert merged.child_id == survivor
    assert await ledger.load(max(under_l.child_id, under_g.child_id)) is None
    assert (await ledger.load(survivor)).record.events_folded == 3


async def test_due_children_are_leased_once_and_at_most_limit_at_a_time(ledger: Any) -> None:
    await record(ledger, wire.graduated(wire.L, 1))
    await record(ledger, wire.graduated(wire.G, 1))
    first = await ledger.claim_due_loaded("one", 1)
    second = await ledger.claim_due_loaded("two", 5)
    assert len(first) == len(second) == 1
    assert first[0][0].child_id != second[0][0].child_id
    assert first[0][1].startswith("one/") and second[0][1].startswith("two/")
    assert await ledger.claim_due_loaded("three", 5) == []


async def test_a_save_under_a_lease_not_held_is_refused(ledger: Any) -> None:
    await record(ledger, wire.graduated(wire.G, 1))
    [(state, lease)] = await ledger.claim_due_loaded("one", 1)
    with pytest.raises(LeaseLost):
        await ledger.save(state, state.handoff, lease + "-not-mine")
    done = await ledger.save(state, state.handoff, lease)
    assert done.child_id == state.child_id


async def test_a_save_refolds_the_events_that_arrived_meanwhile(ledger: Any) -> None:
    await record(ledger, wire.graduated(wire.G, 1))
    [(state, lease)] = await ledger.claim_due_loaded("one", 1)
    await record(ledger, wire.key_info(wire.G, 2, name="刘晨"))
    saved = await ledger.save(state, state.handoff, lease)
    assert saved.record.events_folded == 2
    assert saved.record.child is not None and saved.record.child.name == "刘晨"


async def test_an_arrival_reported_meanwhile_survives_a_save(ledger: Any) -> None:
    recorded = await record(ledger, wire.graduated(wire.G, 1))
    [(state, lease)] = await ledger.claim_due_loaded("one", 1)
    arrival = Arrival("2111010898", dt.date(2026, 9, 1))
    await ledger.request_arrival(recorded.child_id, arrival)
    saved = await ledger.save(state, state.handoff, lease)
    assert saved.handoff.arrival == arrival
    assert (await ledger.load(recorded.child_id)).handoff.arrival == arrival


async def test_an_amendment_waits_while_a_worker_holds_the_child(ledger: Any) -> None:
    recorded = await record(ledger, wire.graduated(wire.G, 1))

    def same(record: Any, handoff: Handoff) -> Handoff:
        return handoff

    [(state, lease)] = await ledger.claim_due_loaded("one", 1)
    assert await ledger.amend(recorded.child_id, same) is None
    await ledger.save(state, state.handoff, lease, retry_at=dt.datetime.now(dt.UTC))
    assert await ledger.amend(recorded.child_id, same) == "received"
    assert await ledger.amend(recorded.child_id, lambda record, handoff: None) is None


async def test_a_retry_waits_for_its_time_and_an_instance_takes_back_its_leases(
    ledger: Any,
) -> None:
    await record(ledger, wire.graduated(wire.G, 1))
    [(state, lease)] = await ledger.claim_due_loaded("inst-1", 1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    waiting = await ledger.save(state, state.handoff, lease, retry_at=later, last_error="x")
    assert waiting.attempts == 1
    assert await ledger.claim_due_loaded("inst-1", 5) == []
    await record(ledger, wire.key_info(wire.G, 2))  # a new event: due now, retry or not
    [(_, again)] = await ledger.claim_due_loaded("inst-1", 5)
    assert await ledger.release_instance_leases("inst-1") == 1
    [(_, taken)] = await ledger.claim_due_loaded("inst-2", 5)
    assert taken != again and taken.startswith("inst-2/")


async def test_leases_cut_off_mid_drive_are_given_back_due_at_once(ledger: Any) -> None:
    await record(ledger, wire.graduated(wire.G, 1))
    [(state, lease)] = await ledger.claim_due_loaded("inst-1", 1)
    assert await ledger.release_leases([(state.child_id, lease + "-not-ours")]) == 0
    assert await ledger.claim_due_loaded("inst-2", 5) == []
    assert await ledger.release_leases([(state.child_id, lease)]) == 1
    [(again, _)] = await ledger.claim_due_loaded("inst-2", 5)
    assert again.child_id == state.child_id


async def test_a_failed_drive_waits_for_its_retry_and_is_set_aside_at_the_limit(
    ledger: Any,
) -> None:
    recorded = await record(ledger, wire.graduated(wire.G, 1))
    later = RetryPolicy(3600.0, 3600.0)
    [(state, lease)] = await ledger.claim_due_loaded("one", 1)
    assert (
        await ledger.note_drive_failure(
            state.child_id, lease + "-not-ours", "KeyError", limit=2, retry=later
        )
        is None
    )
    first = await ledger.note_drive_failure(state.child_id, lease, "KeyError", limit=2, retry=later)
    assert (first.failures, first.set_aside) == (1, False) and first.retry_at is not None
    assert await ledger.claim_due_loaded("one", 5) == []  # waiting for its retry
    assert (await ledger.load(state.child_id)).handoff.set_aside is None
    await ledger.amend(recorded.child_id, lambda record, handoff: handoff)  # due now
    [(_, lease)] = await ledger.claim_due_loaded("one", 1)
    second = await ledger.note_drive_failure(
        state.child_id, lease, "KeyError", limit=2, retry=later
    )
    # The amendment started the count again: an operator's retry is a fresh start.
    assert (second.failures, second.set_aside) == (1, False)
    await record(ledger, wire.key_info(wire.G, 2))  # a newer event: due, counted afresh
    [(_, lease)] = await ledger.claim_due_loaded("one", 1)
    third = await ledger.note_drive_failure(state.child_id, lease, "KeyError", limit=2, retry=later)
    assert (third.failures, third.set_aside) == (1, False)


async def test_the_limitth_failure_at_one_childseq_sets_the_child_aside(ledger: Any) -> None:
    await record(ledger, wire.graduated(wire.G, 1))
    now = RetryPolicy(0.0, 0.0)
    outcomes = []
    for _ in range(3):
        [(state, lease)] = await ledger.claim_due_loaded("one", 1)
        noted = await ledger.note_drive_failure(
            state.child_id, lease, "KeyError", limit=3, retry=now
        )
        outcomes.append((noted.failures, noted.set_aside))
    assert outcomes == [(1, False), (2, False), (3, True)]
    assert await ledger.claim_due_loaded("one", 5) == []
    aside = (await ledger.load(state.child_id)).handoff.set_aside
    assert aside.reason is SetAsideReason.INTERNAL_ERROR and aside.detail == {"error": "KeyError"}
    await record(ledger, wire.key_info(wire.G, 2))  # a newer event reopens it
    [(reopened, _)] = await ledger.claim_due_loaded("one", 5)
    assert reopened.handoff.active_set_aside(reopened.record) is None
