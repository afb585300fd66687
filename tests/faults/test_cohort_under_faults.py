"""A whole cohort through two bridge instances while everything around them fails.

One scenario, all faults at once, on the real RabbitMQ, PostgreSQL and the simulator:
every lifecycle case of the cohort generator; duplicates, reordering and malformed
messages from the publisher, the nastier ones included (control characters, deep nesting,
numbers out of range, duplicate keys, other charsets, broken binary-mode headers, frames
the AMQP library could not read); a third of the events sent by other publishers (the
official CloudEvents SDK, binary and structured, and the other forms events.md allows); the
registries answering 5xx, 429 with Retry-After, slower than the client time-out, and
dropping connections; two bridge instances of which one or the other is SIGKILLed three
times; RabbitMQ restarted once and PostgreSQL restarted once mid-run. Afterwards the
registry is compared with the cohort's expected states child by child.

Size: ``XUEJI_FAULTS_N`` children (CI runs the default; ``make faults N=100000`` the full
run). Malformed messages scale with it: 10 000 per 100 000 children.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from bridge.settings import Settings
from simulator.cohort import Cohort, generate_cohort
from simulator.publisher import (
    FORMS,
    MALFORMED_KINDS,
    NASTY_KINDS,
    EventPublisher,
    OutgoingMessage,
    plan_messages,
    seed_cohort,
)
from tests.conftest import PG_ADMIN_URL
from tests.faults.services import require_service_control, restart_postgres, restart_rabbitmq
from tests.integration.test_graduation_handoff import expected_view, registry_view
from tests.support import raw_amqp
from tests.support.bridge_process import BridgeProcess, settings_env
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = [pytest.mark.live, pytest.mark.slow]

N = int(os.environ.get("XUEJI_FAULTS_N", "2000"))
ALL_MALFORMED = MALFORMED_KINDS + NASTY_KINDS
# A third of the events come from other publishers, in every form events.md accepts.
OTHER_FORMS = {form: 1 / 3 / len(FORMS) for form in FORMS}
# Beyond the bridge's read time-out (bridge_settings: 2 s), so a slow answer is a failure.
SLOW_S = 2.5
FAULTS = {
    "p_500": 0.10, "p_503": 0.10, "p_429": 0.05, "retry_after_s": 1,
    "p_slow": 0.05, "slow_s": SLOW_S, "p_drop": 0.03,
}  # fmt: skip
PUBLISH_CHUNKS = 16
# Waits grow with the cohort: on 2 cores the bridge hands over some tens of children a
# second while the registries fail a third of the time.
WAIT_S = 150 + N / 20


class Ledger:
    """Read-only probes of the bridges' shared ledger that ride out a database restart."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _fetchrow(self, sql: str) -> asyncpg.Record | None:
        try:
            conn = await asyncpg.connect(self.url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        try:
            return await conn.fetchrow(sql)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        finally:
            await conn.close()

    async def progress(self) -> dict[str, int]:
        """Events recorded, hand-overs complete, children with work left (-1: unknown)."""
        row = await self._fetchrow(
            "SELECT (SELECT count(*) FROM inbox) AS events,"
            " (SELECT count(*) FROM children WHERE handed_over_at IS NOT NULL) AS done,"
            " (SELECT count(*) FROM children WHERE next_attempt_at IS NOT NULL) AS pending,"
            " (SELECT count(DISTINCT message_id) FROM parked_messages) AS parked"
        )
        if row is None:
            return {"events": -1, "done": -1, "pending": -1, "parked": -1}
        return dict(row)

    async def fetch(self, sql: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()


async def publish_through_outages(settings: Settings, plan: list[OutgoingMessage]) -> None:
    """Publish in chunks with pauses; a chunk cut off by a broker restart is sent again.

    Sending again is what a real at-least-once publisher does: the copies carry the same
    event ids, which the bridge must absorb.
    """
    size = -(-len(plan) // PUBLISH_CHUNKS)
    for start in range(0, len(plan), size):
        chunk = plan[start : start + size]
        for attempt in range(120):
            try:
                async with EventPublisher(
                    settings.amqp_url, exchange=settings.events_exchange
                ) as publisher:
                    await asyncio.wait_for(publisher.publish(chunk), 30)
                break
            except Exception:  # the broker is restarting: wait and send the chunk again
                if attempt == 119:
                    raise
                await asyncio.sleep(0.5)
        await asyncio.sleep(0.4)


async def until(probe: Callable[[], Awaitable[dict[str, int]]], key: str, at_least: int) -> None:
    await eventually(
        probe, lambda p: p[key] >= at_least, timeout_s=WAIT_S, interval_s=0.2,
        what=f"{key} >= {at_least}",
    )  # fmt: skip


async def crash_and_restart(bridge: BridgeProcess, kills: list[str]) -> None:
    """SIGKILL a bridge that is still running on its own, then start it again."""
    assert bridge.proc is not None
    assert bridge.proc.poll() is None, f"bridge died by itself; see {bridge.log_path}"
    bridge.kill()
    kills.append(bridge.settings.instance_id)
    await bridge.start()


def expected_events(plan: list[OutgoingMessage]) -> set[str]:
    return {m.message_id for m in plan if m.kind in ("event", "duplicate") and m.message_id}


def odd_frames() -> list[aio_pika.Message]:
    """Messages the AMQP library could not read before (tests/support/raw_amqp.py)."""
    body = b'{"specversion": "1.0"}'
    headers = [
        raw_amqp.table(raw_amqp.entry(b"\xff\xfename", b"t", b"\x01")),
        raw_amqp.table(raw_amqp.entry(b"when", b"T", raw_amqp.timestamp(2**63 - 1))),
        raw_amqp.nested(2000),
        raw_amqp.table(raw_amqp.entry(b"text", b"S", raw_amqp.long_string(b"\x00\xff"))),
    ]
    frames = [aio_pika.Message(body, message_id=str(uuid.uuid4()), headers=h) for h in headers]
    frames.append(aio_pika.Message(body, message_id=str(uuid.uuid4()),
                                   content_type=raw_amqp.RawText(b"text/\xff")))  # fmt: skip
    return frames


def registry_mismatches(cohort: Cohort, dump: list[dict[str, Any]]) -> list[str]:
    """Child by child: what the registry holds against what the cohort's events call for."""
    held = registry_view(dump)
    problems: list[str] = []
    expected = expected_view(cohort)
    for child in cohort.children:
        number = child.final_student_number
        want = expected.get(number)
        got = held.get(number)
        if want != got:
            problems.append(f"{child.scenario} {number[:1]}…{number[-4:]}: {got} != {want}")
        # Deferred and cancelled children, and bad files, must hold no live registration
        # under any number they ever had.
        if child.expected_outcome != "handed_over":
            for n in child.numbers:
                if n in held:
                    problems.append(f"{child.scenario} {n[:1]}…{n[-4:]} is registered")
    return problems


# Categories that mean a child was lost, duplicated or wrongly registered. Others are
# expected here: bad source files are set aside by design, and nobody reports arrivals
# or pulls files in this test (not_arrived, file_not_pulled).
LOSS_CATEGORIES = (
    "lost_upstream", "missing_at_registry", "registered_not_graduated",
    "deferred_but_registered", "cancelled_but_registered", "identity_conflict",
    "two_numbers_one_identity", "file_digest_mismatch", "file_not_delivered", "in_flight",
)  # fmt: skip


async def reconciliation_findings(settings: Settings, entry_year: int) -> dict[str, list[str]]:
    """`xueji reconcile --json` against the bridges' database: the loss categories found."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "reconcile", "--entry-year", str(entry_year), "--json",
        env=settings_env(settings), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    report = json.loads(out)
    return {
        name: report["categories"][name]["student_numbers"]
        for name in LOSS_CATEGORIES
        if report["categories"][name]["count"]
    }


@dataclass(frozen=True)
class FaultyCohort:
    """A cohort seeded at the preschool registry and what the publishers will make of it."""

    cohort: Cohort
    plan: list[OutgoingMessage]
    frames: list[aio_pika.Message]  # sent as they are (send_odd_frames)
    malformed: dict[str, str]  # message id -> kind
    valid_events: set[str]
    handed_over: int  # children the registry should end up holding


async def faulty_cohort(
    simulator: SimulatorHandle, n: int, *, seed: int, plan_seed: int
) -> FaultyCohort:
    """Every lifecycle case, 20 % sent twice, shuffled and interleaved, a third of the
    events in other publishers' forms, malformed messages mixed in (10 000 per 100 000
    children, the nastier kinds included) and frames the AMQP library could not read; the
    registries' weather set to FAULTS."""
    cohort = generate_cohort(2026, n, seed=seed)
    await seed_cohort(simulator.url, cohort)
    count = max(len(ALL_MALFORMED), round(10_000 * n / 100_000))
    kinds = [ALL_MALFORMED[i % len(ALL_MALFORMED)] for i in range(count)]
    plan = plan_messages(
        cohort, duplicate_fraction=0.2, shuffle_children=True, interleave=True,
        malformed=collections.Counter(kinds), forms=OTHER_FORMS, seed=plan_seed,
    )  # fmt: skip
    frames = odd_frames()
    malformed = {m.message_id: m.kind for m in plan if m.kind in ALL_MALFORMED}
    malformed |= {str(f.message_id): "odd_frame" for f in frames}
    await simulator.set_faults(registry=FAULTS, preschool=FAULTS)
    return FaultyCohort(
        cohort, plan, frames, malformed, expected_events(plan),
        sum(c.expected_outcome == "handed_over" for c in cohort.children),
    )  # fmt: skip


async def send_odd_frames(settings: Settings, run: FaultyCohort) -> None:
    """Publish *run*'s odd frames to the events exchange (through the first node listed)."""
    first_node = settings.amqp_url.split(",")[0]
    await raw_amqp.publish_raw(first_node, settings.events_exchange, "child.graduated", run.frames)


async def until_settled(ledger: Ledger, run: FaultyCohort, *, timeout_s: float) -> None:
    """Until every event is recorded, every malformed message parked and no work is left."""
    await eventually(
        ledger.progress,
        lambda p: p["events"] == len(run.valid_events) and p["pending"] == 0
        and p["parked"] >= len(run.malformed),
        timeout_s=timeout_s, interval_s=0.5, what="cohort settled",
    )  # fmt: skip


async def assert_came_through(
    run: FaultyCohort,
    simulator: SimulatorHandle,
    ledger: Ledger,
    settings: Settings,
    logs: list[Path],
) -> None:
    """The fault suites' verdict, once the bridges are stopped: nothing lost or doubled."""
    cohort = run.cohort
    dump = await simulator.dump()
    assert registry_mismatches(cohort, dump) == []
    # 0 duplicated numbers: one creation per registration, one number per identity.
    assert [s["student_number"] for s in dump if s["created_count"] != 1] == []
    holders = collections.Counter(s["id_number"] for s in dump if s["id_number"])
    assert [n for n, count in holders.items() if count > 1] == []
    # Every malformed message parked with its reason, and nothing else parked.
    parked = await ledger.fetch("SELECT message_id, reason_code, reason FROM parked_messages")
    assert {r["message_id"] for r in parked} == set(run.malformed)
    assert all(r["reason"] and r["reason_code"] != "delivery_limit" for r in parked)
    # Bad source files wait for an operator; they are never handed over.
    aside = await ledger.fetch(
        "SELECT count(*) AS n FROM children WHERE set_aside_reason = 'bad_source_file'"
    )
    assert aside[0]["n"] == sum(c.scenario == "bad_source_file" for c in cohort.children)
    assert await reconciliation_findings(settings, cohort.entry_year) == {}
    # Personal data never reaches the logs, whatever went wrong.
    text = "".join(log.read_text(encoding="utf-8", errors="replace") for log in logs)
    for child in cohort.children:
        for event in child.events:
            person = event["data"].get("child")
            if person:
                assert person["name"] not in text
                assert not person["id_number"] or person["id_number"] not in text


async def test_a_cohort_survives_crashes_restarts_and_a_failing_registry(
    bridge_settings: Settings, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    require_service_control()
    started = time.monotonic()
    run = await faulty_cohort(simulator, N, seed=4242, plan_seed=11)
    plan, valid_events, handed_over = run.plan, run.valid_events, run.handed_over

    # Short leases: a killed instance's children go to the other one quickly.
    settings = bridge_settings.model_copy(update={"lease_s": 8.0, "handoff_concurrency": 16})
    bridges = [
        BridgeProcess(
            settings.model_copy(update={"instance_id": f"{settings.instance_id}-{name}"}),
            tmp_path / f"bridge-{name}.log",
        )
        for name in ("a", "b")
    ]
    ledger = Ledger(settings.database_url)
    kills: list[str] = []
    for bridge in bridges:
        await bridge.start()
    try:
        await send_odd_frames(settings, run)
        publishing = asyncio.create_task(publish_through_outages(settings, plan))
        await until(ledger.progress, "events", len(valid_events) // 10)
        await crash_and_restart(bridges[0], kills)
        await restart_rabbitmq()
        await until(ledger.progress, "done", handed_over // 5)
        await crash_and_restart(bridges[1], kills)
        await restart_postgres(PG_ADMIN_URL)
        await until(ledger.progress, "done", handed_over // 2)
        await crash_and_restart(bridges[0], kills)
        await publishing
        await simulator.set_faults()  # the registries recover; the backlog must drain
        await until_settled(ledger, run, timeout_s=WAIT_S + 90)
        for bridge in bridges:  # never crashed on input: both still run by themselves
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_path
    finally:
        codes = [await bridge.stop() for bridge in bridges]
    assert codes == [0, 0], "a bridge did not shut down cleanly"
    assert len(kills) == 3

    await assert_came_through(run, simulator, ledger, settings, [b.log_path for b in bridges])
    print(f"\nfault run: {N} children, {len(plan)} messages, {time.monotonic() - started:.0f} s")
