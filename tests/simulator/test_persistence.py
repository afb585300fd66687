"""A restarted simulator keeps every registration and file (state lives in PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from simulator.app import start_simulator
from simulator.config import SimConfig
from tests.simulator.conftest import SimClient, new_child
from tests.simulator.test_registry_api import upload


async def test_state_survives_a_restart(
    database_factory: Callable[[], str], http: aiohttp.ClientSession
) -> None:
    config = SimConfig(port=0, database_url=database_factory())
    child = new_child()
    runner, base_url = await start_simulator(config)
    try:
        sim = SimClient(http, base_url, config)
        assert (await sim.intake(child.number, child.body, key="restart")).status == 201
        assert (await upload(sim, child.number, child.content)).status == 204
    finally:
        await runner.cleanup()
    runner, base_url = await start_simulator(config)
    try:
        sim = SimClient(http, base_url, config)
        read = await sim.registry("GET", f"/v1/students/{child.number}")
        assert read.status == 200
        assert read.body["record_file_sha256"] == child.body["record_file"]["sha256"]
        # The idempotency record survived too: the stored answer comes back.
        assert (await sim.intake(child.number, child.body, key="restart")).status == 201
        dump = (await sim.admin("GET", "/registry/dump")).body["students"]
        assert [s["created_count"] for s in dump] == [1]
    finally:
        await runner.cleanup()
