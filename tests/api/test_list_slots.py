"""List pages are built a few at a time (BRIDGE_LIST_CONCURRENCY), the rest in turn."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.api.app import create_app
from bridge.api.schools import SCHOOL_API
from tests.support.school_api import SCHOOL, SchoolApiEnv

pytestmark = pytest.mark.live


async def test_a_storm_of_lists_is_built_a_few_at_a_time(api_env: SchoolApiEnv) -> None:
    app = create_app(api_env.bridge)  # an app of its own: its list query can be watched
    pulls = app[SCHOOL_API].pulls
    real = pulls.school_children
    building = peak = 0

    async def watched(*args: Any, **kwargs: Any) -> Any:
        nonlocal building, peak
        building += 1
        peak = max(peak, building)
        try:
            await asyncio.sleep(0.05)  # long enough for every request to be in by now
            return await real(*args, **kwargs)
        finally:
            building -= 1

    pulls.school_children = watched  # type: ignore[method-assign]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    expected = {c.final_student_number for c in api_env.children_of(SCHOOL)}
    headers = {"Authorization": f"Bearer {api_env.tokens['school']}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:

            async def listed() -> set[str]:
                url = f"http://{host}:{port}/v1/schools/{SCHOOL}/handoffs?limit=1000"
                async with session.get(url) as r:
                    assert r.status == 200
                    return {i["student_number"] for i in (await r.json())["items"]}

            pages = await asyncio.gather(*(listed() for _ in range(12)))
    finally:
        await runner.cleanup()
    assert all(page == expected for page in pages)  # every one answered, in full
    assert peak == api_env.bridge.settings.list_concurrency == 4
