"""The operators' commands end to end: each takes what bootstrap builds and audits itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.bootstrap import running_bridge
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live


async def test_reconcile_report_parked_and_calendar_from_the_command_line(
    cli: Any, bridge_settings: Settings, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    cohort = generate_cohort(2026, 4, seed=91, mix={"graduated": 1.0})
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange,
            malformed={"not_json": 1},
        )  # fmt: skip
        await eventually(lambda: settled(bridge, 4), bool, what="settled")
        await eventually(bridge.parked.groups, bool, what="parked")
    code, out, _ = await cli("reconcile", "--entry-year", "2026", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["categories"]["matched"]["count"] == 4
    code, out, _ = await cli("report", "show", "--entry-year", "2026", "--csv", "-")
    assert code == 0 and out.startswith("category,")
    assert not any(c.final_student_number in out for c in cohort.children)  # de-identified
    assert (await cli("report", "show", "--entry-year", "2031"))[0] == 1  # nothing to show
    code, out, _ = await cli("parked", "groups")
    assert code == 0 and "not_json" in out
    code, out, _ = await cli("parked", "show", "1")
    assert code == 0 and "not_json" in out
    code, out, _ = await cli("parked", "resolve", "1", "--note", "test message, not an event")
    assert code == 0
    assert (await cli("parked", "resolve", "99", "--note", "x"))[0] == 1
    schedule = tmp_path / "2031.json"
    schedule.write_text(json.dumps({"year": 2031, "holidays": {"2031-10-01": "国庆节"}}))
    assert (await cli("calendar", "load", str(schedule)))[0] == 0
    code, out, _ = await cli("calendar", "show", "2031")
    assert code == 0 and "2031: official" in out
    async with running_bridge(bridge_settings, consume=False) as bridge:
        entries = await bridge.audit.query(limit=50)
    actions = [e.action for e in entries]
    for action in ("reconcile.run", "reconcile.export", "parked.read", "parked.resolve",
                   "calendar.load"):  # fmt: skip
        assert action in actions
    assert all(e.actor.startswith("cli:") for e in entries)
