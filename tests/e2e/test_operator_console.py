"""The operators' API and console against a running bridge, the console in real Chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bridge.api.app import create_app
from bridge.bootstrap import Bridge, running_bridge
from bridge.domain.access import Role
from bridge.domain.reconciliation import Category
from bridge.settings import Settings
from simulator.cohort import generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.integration.test_graduation_handoff import settled
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def console(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> AsyncIterator[tuple[Bridge, str, list[str]]]:
    """A bridge with a handed-over cohort (one child lost at the registry, one bad file),
    serving HTTP on loopback."""
    cohort = generate_cohort(2026, 12, seed=81, mix={"graduated": 11, "bad_source_file": 1})
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 12), bool, what="settled")
        runner = web.AppRunner(create_app(bridge.use_cases), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield (
                bridge,
                f"http://127.0.0.1:{port}",
                [c.final_student_number for c in cohort.children],
            )
        finally:
            await runner.cleanup()


async def test_the_api_runs_reports_and_exports_de_identified(
    console: tuple[Bridge, str, list[str]], simulator: SimulatorHandle
) -> None:
    bridge, url, numbers = console
    province = await bridge.tokens.issue(Role.PROVINCE, label="test")
    other_county = await bridge.tokens.issue(Role.COUNTY, county_code="999999")
    auth = {"Authorization": f"Bearer {province.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/operator/reconciliations", json={"entry_year": 2026}) as r:
            assert r.status == 401
        async with http.post(
            f"{url}/v1/operator/reconciliations", json={"entry_year": 2026}, headers=auth
        ) as r:
            assert r.status == 201
            report = await r.json()
        assert set(report["categories"]) == {c.value for c in Category}
        assert report["categories"]["matched"]["count"] == 11
        assert report["categories"]["bad_source_file"]["count"] == 1
        run_id = report["run_id"]
        async with http.get(
            f"{url}/v1/operator/reconciliations/{run_id}",
            headers={"Authorization": f"Bearer {other_county.token}"},
        ) as r:
            scoped = await r.json()
        assert scoped["categories"]["matched"] == {"count": 0, "student_numbers": []}
        async with http.get(
            f"{url}/v1/operator/reconciliations/{run_id}/items?format=csv", headers=auth
        ) as r:
            text = await r.text()
        # matched, bad_source_file, and (past the start of term) not_arrived for all 11.
        assert "child_key" in text and text.count("\n") in (1 + 12, 1 + 12 + 11)
        assert not any(n in text or n[1:] in text for n in numbers)
        async with http.get(
            f"{url}/v1/operator/set-aside?reason=bad_source_file", headers=auth
        ) as r:
            body = await r.json()
        assert [g["reason"] for g in body["groups"]] == ["bad_source_file"]
        assert body["cases"][0]["student_number"] in numbers
    actions = {e.action for e in await bridge.audit.query(actor=province.token_id)}
    assert {"reconcile.run", "reconcile.export"} <= actions


async def test_the_console_shows_the_figures_in_chromium(
    console: tuple[Bridge, str, list[str]], simulator: SimulatorHandle
) -> None:
    from playwright.async_api import async_playwright

    bridge, url, numbers = console
    await simulator.delete_student(numbers[0])
    token = (await bridge.tokens.issue(Role.PROVINCE, label="console test")).token
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            await page.goto(f"{url}/console/")
            assert page.url.endswith("/console/login")
            await page.fill("input[name=token]", token)
            await page.click("button[type=submit]")
            await page.click("text=立即对账 Reconcile now")
            assert "/console/report" in page.url
            run = await bridge.pool.fetchrow(
                "SELECT run_id, counts FROM recon_runs ORDER BY run_id DESC LIMIT 1"
            )
            counts = json.loads(run["counts"])
            assert counts["missing_at_registry"] == 1 and counts["matched"] == 10
            # A second run: the repaired child is back, and the chart has two bars.
            await eventually(lambda: settled(bridge, 12), bool, what="repaired")
            await page.goto(f"{url}/console/")
            await page.click("text=立即对账 Reconcile now")
            await page.goto(f"{url}/console/?entry_year=2026")
            for name, n in (("matched", 11), ("bad_source_file", 1), ("missing_at_registry", 0)):
                card = await page.inner_text(f"#card-{name} .n")
                assert card.strip() == str(n), name
            assert await page.locator("svg.chart rect").count() >= 3
            await page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

            await page.goto(f"{url}/console/report?entry_year=2026&category=bad_source_file")
            rows = page.locator("#items tr")
            assert await rows.count() == 2
            assert "bad_source_file" in await rows.nth(1).inner_text()
            await page.goto(f"{url}/console/report?entry_year=2026")
            await page.screenshot(path=str(ARTIFACTS / "console-report.png"), full_page=True)
            await page.goto(f"{url}/console/worklist?reason=bad_source_file&answer=")
            assert await page.locator("#cases tr").count() == 2
            await page.screenshot(path=str(ARTIFACTS / "console-worklist.png"), full_page=True)
            await page.goto(f"{url}/console/lost?entry_year=2026")
            assert "未报到名单 Lost-child list" in await page.inner_text("h1")
            await page.goto(f"{url}/console/parked")
            assert "搁置消息 Parked messages" in await page.inner_text("h1")
            # A form without the session's CSRF token is refused.
            status = await page.evaluate(
                """async () => (await fetch('/console/reconcile', {method: 'POST',
                    body: new URLSearchParams({entry_year: '2026'})})).status"""
            )
            assert status == 403
        finally:
            await browser.close()
