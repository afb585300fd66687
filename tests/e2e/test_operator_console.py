"""The operators' API and console against a running bridge, the console in real Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.api.app import create_app
from bridge.bootstrap import Bridge, running_bridge
from bridge.domain.access import Role
from bridge.domain.reconciliation import Category
from bridge.services.acting import Acting
from bridge.settings import Settings
from simulator.cohort import Cohort, generate_cohort
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
    entries = await bridge.audit.query(actor=province.token_id)
    actions = {e.action for e in entries}
    # The run's report came back whole (reconcile.report), and the set-aside cases with
    # their whole numbers are one line naming them (api.set_aside).
    assert {"reconcile.run", "reconcile.report", "reconcile.export", "api.set_aside"} <= actions
    named = [e for e in entries if e.action == "api.set_aside"]
    assert [list(e.student_numbers or []) for e in named] == [[body["cases"][0]["student_number"]]]


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
            # A category reads as words, not its code.
            assert "档案文件校验失败" in await rows.nth(1).inner_text()
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


DAY_COUNTY = "110105"
DAY_SCHOOLS = ("2111010591", "2111010592")
# The README's pictures are taken afresh only when asked (XUEJI_SCREENSHOTS=docs), so that
# a test run leaves the tracked tree as it found it; otherwise they go with the artifacts.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("XUEJI_SCREENSHOTS") == "docs"
    else ARTIFACTS / "screenshots"
)


@pytest.fixture
async def county_day(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> AsyncIterator[tuple[Bridge, str, Cohort]]:
    """A county's cohort handed over (two record files bad, so two set-aside cases), every
    child admitted to one of two schools and none reported arrived: term has started."""
    cohort = generate_cohort(2026, 12, seed=82, mix={"graduated": 10, "bad_source_file": 2})
    for n, child in enumerate(cohort.children):
        for event in child.events:
            if event["type"].endswith("child.graduated"):
                event["data"]["county_code"] = DAY_COUNTY
                event["data"]["destination_school_code"] = DAY_SCHOOLS[n % 2]
    await seed_cohort(simulator.url, cohort)
    async with running_bridge(bridge_settings) as bridge:
        await publish_cohort(
            bridge_settings.amqp_url, cohort, exchange=bridge_settings.events_exchange
        )
        await eventually(lambda: settled(bridge, 12), bool, what="settled")
        await bridge.use_cases.casework.load_school_names(
            [(DAY_SCHOOLS[0], "朝阳区实验小学"), (DAY_SCHOOLS[1], "朝阳区第二小学")],
            Acting("test"), source="test",
        )  # fmt: skip
        runner = web.AppRunner(create_app(bridge.use_cases), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield bridge, f"http://127.0.0.1:{port}", cohort
        finally:
            await runner.cleanup()


async def _sign_in(page: Any, url: str, token: str) -> None:
    await page.goto(f"{url}/console/")
    assert page.url.endswith("/console/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    assert page.url.endswith("/console/")


async def _downloaded(info: Any) -> str:
    download = await info.value
    return bytes(await _read(await download.path())).decode("utf-8")


async def _read(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


async def _no_sideways_scroll(page: Any, width: int) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: the page is {scroll} px wide at {width} px"


async def test_a_county_operators_day_in_chromium(
    county_day: tuple[Bridge, str, Cohort],
) -> None:
    """Sign in, open the lost-child list, call a school from its group, retry a set-aside
    case, resolve another with a note (Enter in the note field), export; desktop and phone."""
    from playwright.async_api import async_playwright

    bridge, url, cohort = county_day
    token = (await bridge.tokens.issue(Role.COUNTY, county_code=DAY_COUNTY)).token
    bad = [c.final_student_number for c in cohort.children if c.scenario == "bad_source_file"]
    assert len(bad) == 2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desk = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await desk.new_page()
            await _sign_in(page, url, token)
            await page.click("text=立即对账 Reconcile now")
            assert "对账已完成" in await page.inner_text("#flash")
            await page.goto(f"{url}/console/")
            assert "2026 级总览" in await page.inner_text("h1")
            await page.screenshot(path=str(SCREENSHOTS / "overview-desktop.png"), full_page=True)

            # The lost-child list, grouped by school, longest waiting first.
            await page.click("header >> text=未报到 Lost children")
            assert "未报到名单" in await page.inner_text("h1")
            groups = page.locator("#by-school tr")
            assert await groups.count() == 3  # a header and the two schools
            assert "朝阳区实验小学" in await page.inner_text("#by-school")
            assert "个工作日 working days" in await page.inner_text("#items")
            await page.screenshot(path=str(SCREENSHOTS / "lost-desktop.png"), full_page=True)

            # Call a school: open its group, then take its list to the phone.
            await page.click(f"#by-school >> text={DAY_SCHOOLS[0]}")
            assert f"school={DAY_SCHOOLS[0]}" in page.url
            # Handed over today, so not yet late to be pulled: each good child is not arrived.
            school_children = [
                c.final_student_number for n, c in enumerate(cohort.children)
                if n % 2 == 0 and c.final_student_number not in bad
            ]  # fmt: skip
            assert await page.locator("#items tr").count() - 1 == len(school_children)
            listed = await page.inner_text("#items")
            assert all(n in listed for n in school_children)
            async with page.expect_download() as info:
                await page.click("#by-school tr.on >> text=导出本校名单")
            text = await _downloaded(info)
            assert text.startswith("\ufeffcategory,")
            assert len(text.strip().splitlines()) == 1 + len(school_children)
            assert DAY_SCHOOLS[1] not in text and not any(n in text for n in bad)

            # A case page from the list: the child identified, its events and calls.
            await page.click("#items tr:nth-child(2) a")
            assert "/console/child/" in page.url
            assert "毕业 graduated" in await page.inner_text("#events")
            await page.screenshot(path=str(SCREENSHOTS / "case-desktop.png"), full_page=True)

            # The worklist: retry one set-aside case, resolve the other with a note.
            await page.click("header >> text=待办 Worklist")
            await page.click("#groups >> text=档案文件有误")
            assert "reason=bad_source_file" in page.url
            assert await page.locator("#cases tr").count() == 3
            await page.click(f"#cases tr:has-text('{bad[0]}') >> text=重试 Retry")
            assert "已重试：1 个移交重新排队处理" in await page.inner_text("#flash")
            assert "reason=bad_source_file" in page.url  # the group is kept
            note = page.locator(f"#cases tr:has-text('{bad[1]}') input[name=note]")
            await note.fill("已与幼儿园核实，档案重新出具中")
            async with page.expect_navigation():
                await note.press("Enter")  # Enter in the note field resolves
            assert "已办结" in await page.inner_text("#flash")
            resolved = await bridge.pool.fetchval(
                "SELECT note FROM set_aside_resolutions r JOIN children c USING (child_id)"
                " WHERE c.student_number = $1",
                bad[1],
            )
            assert resolved == "已与幼儿园核实，档案重新出具中"
            assert await page.locator(f"#cases tr:has-text('{bad[1]}')").count() == 0
            await page.screenshot(path=str(SCREENSHOTS / "worklist-desktop.png"), full_page=True)

            # Export the county's whole lost-child list, de-identified.
            await page.click("header >> text=未报到 Lost children")
            async with page.expect_download() as info:
                await page.click("#export-deidentified")
            text = await _downloaded(info)
            assert len(text.strip().splitlines()) == 1 + 10
            assert not any(c.final_student_number in text for c in cohort.children)
            await desk.close()

            # The same day on a phone: nothing scrolls sideways but the tables' own boxes.
            phone = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await phone.new_page()
            await _sign_in(page, url, token)
            await _no_sideways_scroll(page, 390)
            await page.click("header >> text=未报到 Lost children")
            await _no_sideways_scroll(page, 390)
            assert "未报到名单" in await page.inner_text("h1")
            await page.screenshot(path=str(SCREENSHOTS / "lost-phone.png"), full_page=True)
            await page.goto(f"{url}/console/worklist?reason=bad_source_file&answer=")
            await _no_sideways_scroll(page, 390)
            await page.screenshot(path=str(SCREENSHOTS / "worklist-phone.png"), full_page=True)
            await page.goto(f"{url}/console/report?county=999999")
            assert "无权访问" in await page.inner_text("h1")
            await _no_sideways_scroll(page, 390)
            await phone.close()
        finally:
            await browser.close()
