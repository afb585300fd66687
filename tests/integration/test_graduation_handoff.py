"""Graduation hand-over end to end: real RabbitMQ, PostgreSQL and simulator on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.bootstrap import Bridge, running_bridge
from bridge.settings import Settings
from simulator.cohort import Cohort, generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live

PLAIN = {"graduated": 0.8, "graduated_no_school": 0.2}


async def settled(bridge: Bridge, children: int) -> bool:
    """Every child is in the ledger and nothing is left to do."""
    counts = await bridge.ledger.phase_counts()
    return sum(counts.values()) >= children and await bridge.ledger.pending_work() == 0


def registry_view(dump: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        s["student_number"]: {
            "entry_year": s["entry_year"],
            "name": s["name"],
            "gender": s["gender"],
            "birth_date": s["birth_date"],
            "id_number": s["id_number"],
            "record_file_sha256": s["record_file_sha256"],
        }
        for s in dump
        if s["status"] != "withdrawn"
    }


def expected_view(cohort: Cohort) -> dict[str, dict[str, Any]]:
    keys = ("entry_year", "name", "gender", "birth_date", "id_number", "record_file_sha256")
    return {n: {k: e[k] for k in keys} for n, e in cohort.expected_registry().items()}


async def hand_over(
    settings: Settings, simulator: SimulatorHandle, cohort: Cohort, **plan: Any
) -> list[dict[str, Any]]:
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(settings) as bridge:
        await publish_cohort(settings.amqp_url, cohort, exchange=settings.events_exchange, **plan)
        await eventually(
            lambda: settled(bridge, len(cohort.children)), bool, timeout_s=90, what="settled"
        )
    return await simulator.dump()


async def test_a_cohort_is_handed_over_with_numbers_and_files(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 40, seed=1, mix=PLAIN)
    dump = await hand_over(bridge_settings, simulator, cohort)
    assert len(expected_view(cohort)) == 40
    assert registry_view(dump) == expected_view(cohort)
    assert all(s["created_count"] == 1 for s in dump)


async def test_duplicated_and_reordered_events_change_nothing(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(2026, 40, seed=2)
    dump = await hand_over(
        bridge_settings, simulator, cohort,
        duplicate_fraction=0.5, shuffle_children=True, interleave=True, seed=7,
    )  # fmt: skip
    assert len(expected_view(cohort)) >= 25
    assert registry_view(dump) == expected_view(cohort)
    assert all(s["created_count"] == 1 for s in dump)
