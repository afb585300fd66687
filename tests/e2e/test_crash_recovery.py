"""The bridge SIGKILLed mid-cohort and restarted: every child handed over exactly once."""

from __future__ import annotations

import collections
from pathlib import Path

import asyncpg
import pytest

from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import expected_view, registry_view
from tests.support.bridge_process import BridgeProcess
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = [pytest.mark.live, pytest.mark.slow]


async def ledger_progress(database_url: str) -> tuple[int, int, int]:
    """(events recorded, hand-overs complete, children with work left)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM inbox) AS events,"
            " (SELECT count(*) FROM children WHERE handed_over_at IS NOT NULL) AS done,"
            " (SELECT count(*) FROM children WHERE next_attempt_at IS NOT NULL) AS pending"
        )
    finally:
        await conn.close()
    assert row is not None
    return row["events"], row["done"], row["pending"]


async def test_sigkill_mid_cohort_loses_and_duplicates_nothing(
    bridge_settings: Settings, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    cohort = generate_cohort(2026, 300, seed=8)
    events = len(cohort.events())
    await seed_cohort(simulator.url, cohort)
    # Slow the registry a little so the kills land mid-flight.
    await simulator.set_faults(registry={"p_slow": 0.2, "slow_s": 0.2})
    log_path = tmp_path / "bridge.log"
    bridge = BridgeProcess(bridge_settings.model_copy(update={"handoff_concurrency": 8}), log_path)
    await bridge.start()
    try:
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange,
            duplicate_fraction=0.2, shuffle_children=True, interleave=True, seed=3,
        )  # fmt: skip
        db = bridge_settings.database_url
        for share in (0.2, 0.5):
            await eventually(
                lambda: ledger_progress(db), lambda p, s=share: p[1] >= s * 200,
                timeout_s=120, what=f"{share:.0%} handed over",
            )  # fmt: skip
            bridge.kill()
            await bridge.start()
        await simulator.set_faults()
        await eventually(
            lambda: ledger_progress(db), lambda p: p[0] == events and p[2] == 0,
            timeout_s=180, what="cohort settled",
        )  # fmt: skip
    finally:
        await bridge.stop()

    dump = await simulator.dump()
    assert registry_view(dump) == expected_view(cohort)
    assert [s["student_number"] for s in dump if s["created_count"] != 1] == []
    holders = collections.Counter(s["id_number"] for s in dump if s["id_number"])
    assert [n for n, count in holders.items() if count > 1] == []
    # Personal data never reaches the logs.
    logs = log_path.read_text(encoding="utf-8", errors="replace")
    for child in cohort.children:
        graduated = next((e for e in child.events if e["type"].endswith("graduated")), None)
        if graduated:
            person = graduated["data"]["child"]
            assert person["name"] not in logs
            assert not person["id_number"] or person["id_number"] not in logs
