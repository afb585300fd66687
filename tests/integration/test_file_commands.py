"""``xueji files`` end to end: keys, rotation and the purge from the command line, each
taking what bootstrap builds, refusing as the bridge's start does without the right key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.bootstrap import running_bridge
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.conftest import FILE_KEYS
from tests.integration.test_graduation_handoff import settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live


async def test_keys_rotation_and_purge_from_the_command_line(
    cli: Any, bridge_settings: Settings, simulator: SimulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cohort = generate_cohort(
        2026, 3, seed=1919, mix={"graduated": 2, "cancelled_after_graduation": 1}
    )
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:  # under this run's key, test-run
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 3), bool, what="settled")
        stored = await bridge.use_cases.file_keys.counts()
    assert stored["sealed"] >= 2 and stored["in_clear"] == 0

    # Without a key, the commands that open files refuse as `xueji run` does.
    code, _, err = await cli("files", "keys")
    assert code == 4 and "BRIDGE_FILE_KEYS" in err and "Traceback" not in err  # a setting
    monkeypatch.setenv("BRIDGE_FILE_KEYS", FILE_KEYS)
    code, out, _ = await cli("files", "keys", "--json")
    assert code == 0
    [key] = json.loads(out)["keys"]
    assert (key["key_id"], key["active"], key["files"]) == ("test-run", True, stored["sealed"])

    # A new key in front, then rotation: the old key wraps nothing and may retire.
    code, line, _ = await cli("files", "new-key", "--id", "k2")
    assert code == 0 and line.startswith("k2:")
    monkeypatch.setenv("BRIDGE_FILE_KEYS", f"{line.strip()},{FILE_KEYS}")
    code, out, _ = await cli("files", "rotate-key", "--json")
    rotated = json.loads(out)
    assert code == 0 and rotated["active"] == "k2" and rotated["rewrapped"] == stored["sealed"]
    assert rotated["still_using_other_keys"] == {}
    code, out, _ = await cli("files", "keys", "--json")
    keys = {k["key_id"]: k for k in json.loads(out)["keys"]}
    assert keys["test-run"]["retirable"] and keys["k2"]["files"] == stored["sealed"]

    # The purge needs no key; with no retention left, the cancelled child's data goes.
    monkeypatch.delenv("BRIDGE_FILE_KEYS")
    monkeypatch.setenv("BRIDGE_FILE_RETENTION_DAYS", "0")
    code, out, _ = await cli("files", "purge", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] and plan["run_id"] is None
    assert [c["reason"] for c in plan["children"]] == ["cancelled"]
    cancelled = next(c for c in cohort.children if c.scenario == "cancelled_after_graduation")
    number = cancelled.final_student_number
    assert plan["children"][0]["student_number"] == f"{number[0]}***{number[-2:]}"  # masked
    assert number not in out
    code, out, _ = await cli("files", "purge", "--json")
    done = json.loads(out)
    assert code == 0 and isinstance(done["run_id"], int)
    assert [c["reason"] for c in done["children"]] == ["cancelled"]
    assert all(f["reason"] == "cancelled" for f in done["files"])
    code, out, _ = await cli("files", "purge", "--dry-run", "--json")
    assert json.loads(out)["children"] == []
