"""Drives that meet the unexpected: an event arriving meanwhile, a failure of the bridge's
own, on the real PostgreSQL. Each ends in a decision the ledger keeps; none waits out a
lease or repeats without a bound."""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.adapters.file_crypto import FileKeys, new_key_line
from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.handoff_codec import load_handoff
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.adapters.postgres.recovery_store import RecoveryStore
from bridge.bootstrap import running_bridge
from bridge.domain.handoff import Handoff, SetAsideReason
from bridge.domain.retry_policy import RetryPolicy
from bridge.metrics import Metrics
from bridge.services.handoff import HandoffDriver, HandoffPorts
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually
from tests.support.wire_events import SHA, G, ev, graduated, key_info

pytestmark = pytest.mark.live
RETRY = RetryPolicy(0.01, 0.05)


async def child_row(pool: asyncpg.Pool, child_id: int) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT phase, set_aside_reason, handoff, lease_owner, drive_failures, last_error,"
        " next_attempt_at, next_attempt_at <= now() AS due FROM children WHERE child_id = $1",
        child_id,
    )


class Preschool:
    async def fetch_record_file(self, claim: Any) -> bytes:
        return b"{}"


class Registry:
    """The primary registry's calls, with a hook on the record file upload (B2)."""

    def __init__(self, on_upload: Any) -> None:
        self.on_upload = on_upload
        self.corrections: list[str] = []

    async def put_intake(self, intake: Any, key: str) -> Any:
        return types.SimpleNamespace(school_code="2111010898")

    async def put_record_file(self, number: str, content: bytes, media: str, sha: str) -> None:
        await self.on_upload()

    async def correct(self, number: str, changes: Any) -> None:
        self.corrections.append(number)


async def test_an_event_arriving_while_the_child_is_driven_is_handled_in_the_same_lease(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 1)))
    [(state, lease)] = await ledger.claim_due_loaded("i", 1)
    uploads = 0

    async def correction_arrives() -> None:  # during the last call of the hand-over
        nonlocal uploads
        uploads += 1
        if uploads == 1:
            await ledger.record_event(*ev(key_info(G, 2)))

    registry = Registry(correction_arrives)
    keys = FileKeys.parse(new_key_line("k1"), setting="BRIDGE_FILE_KEYS")
    ports = HandoffPorts(
        ledger,
        RecordFileStore(pool, keys, audit=AuditLog(pool)),
        Preschool(),
        registry,
        Metrics(),
        RETRY,  # type: ignore[arg-type]
    )
    await HandoffDriver(ports, lease_s=60).drive(state.child_id, lease, state)
    # The correction went to the registry at once, not after the lease (60 s) ran out.
    assert registry.corrections == [G]
    after = await child_row(pool, state.child_id)
    assert (after["lease_owner"], after["next_attempt_at"]) == (None, None)


async def test_a_retry_saved_after_an_event_arrived_makes_the_child_due_at_once(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 1)))
    [(state, lease)] = await ledger.claim_due_loaded("i", 1)
    await ledger.record_event(*ev(key_info(G, 2)))  # e.g. a deferral and the next graduation
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    await ledger.save(state, Handoff().file_verified(SHA), lease, retry_at=later)
    after = await child_row(pool, state.child_id)
    assert after["lease_owner"] is None
    assert after["due"]  # now, not in ten minutes


async def fail_once(pool: asyncpg.Pool, ledger: Ledger, limit: int) -> Any:
    await pool.execute(
        "UPDATE children SET next_attempt_at = now() WHERE next_attempt_at IS NOT NULL"
    )
    [(state, lease)] = await ledger.claim_due_loaded("i", 1)
    return state, await ledger.note_drive_failure(
        state.child_id, lease, "TypeError", limit=limit, retry=RETRY
    )


async def test_a_child_whose_drives_keep_failing_is_set_aside_as_internal_error(
    make_ledger: Any,
) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 1)))
    for failure in (1, 2):
        state, noted = await fail_once(pool, ledger, limit=3)
        assert (noted.failures, noted.set_aside) == (failure, False)
        row = await child_row(pool, state.child_id)
        assert row["lease_owner"] is None and row["next_attempt_at"] is not None
        assert row["last_error"] == "internal_error:TypeError"
    state, noted = await fail_once(pool, ledger, limit=3)
    assert (noted.failures, noted.set_aside) == (3, True)
    row = await child_row(pool, state.child_id)
    assert (row["phase"], row["set_aside_reason"], row["next_attempt_at"]) == (
        "set_aside", "internal_error", None
    )  # fmt: skip
    aside = load_handoff(orjson.loads(row["handoff"])).set_aside
    assert aside is not None and aside.reason is SetAsideReason.INTERNAL_ERROR
    assert aside.detail == {"error": "TypeError"}
    [case] = await RecoveryStore(pool).set_aside_cases(None, reason="internal_error")
    assert case.child_id == state.child_id

    # A newer event re-opens the child, and its failures are counted afresh.
    await ledger.record_event(*ev(key_info(G, 2)))
    assert (await child_row(pool, state.child_id))["due"]
    _, noted = await fail_once(pool, ledger, limit=3)
    assert (noted.failures, noted.set_aside) == (1, False)


async def test_an_operators_retry_counts_failures_afresh(make_ledger: Any) -> None:
    pool, ledger = await make_ledger()
    await ledger.record_event(*ev(graduated(G, 1)))
    for _ in range(2):
        state, _ = await fail_once(pool, ledger, limit=2)
    assert (await child_row(pool, state.child_id))["set_aside_reason"] == "internal_error"
    phase = await ledger.amend(state.child_id, lambda record, handoff: handoff.released())
    assert phase is not None
    assert (await child_row(pool, state.child_id))["drive_failures"] == 0


async def test_a_drive_that_keeps_failing_in_a_running_bridge_is_set_aside_not_retried_forever(
    bridge_settings: Settings, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    cohort = generate_cohort(2026, 1, seed=63, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    number = cohort.children[0].final_student_number

    async def broken(*_: Any, **__: Any) -> Any:
        raise TypeError(f"a defect quoting {number}")

    monkeypatch.setattr(HandoffDriver, "_perform", broken)
    settings = bridge_settings.model_copy(
        update={"drive_failure_limit": 3, "retry_base_s": 0.05, "retry_max_s": 0.2}
    )
    async with running_bridge(settings) as bridge:
        await publish_cohort(settings.amqp_url, cohort, exchange=settings.events_exchange)
        await eventually(
            bridge.ledger.set_aside_counts, lambda c: c.get("internal_error") == 1,
            timeout_s=30, what="set aside as internal_error",
        )  # fmt: skip
        assert bridge.metrics.set_aside.labels("internal_error")._value.get() == 1
        assert bridge.metrics.drive_failures.labels("retry")._value.get() == 2
        assert await bridge.ledger.pending_work() == 0  # not retried any more
    assert number not in caplog.text and number[1:] not in caplog.text
    assert "TypeError" in caplog.text
