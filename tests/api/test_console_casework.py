"""The console as a county operator's working tool: identified lists (audited), the
lost-child list by school, exports that keep their filters, words for what was done."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.services.acting import Acting
from bridge.services.reports import csv_safe
from tests.support.school_api import (
    COUNTY,
    ENTRY_YEAR,
    OTHER_COUNTY,
    SCHOOL,
    SchoolApiEnv,
    graduation,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
async def run(api_env: SchoolApiEnv) -> int:
    """A real reconciliation of the cohort (past term start: its children are not arrived)."""
    done = await api_env.bridge.use_cases.reporting.reconcile(
        ENTRY_YEAR, trigger="test", who=Acting("test")
    )
    await api_env.bridge.use_cases.casework.load_school_names(
        [(SCHOOL, "朝阳实验小学")], Acting("test"), source="test"
    )
    return done.run_id


async def signed_in(env: SchoolApiEnv, who: str) -> tuple[aiohttp.ClientSession, str]:
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with browser.post(
        f"{env.url}/console/login", data={"token": env.tokens[who]}, allow_redirects=False
    ) as r:
        assert r.status == 303
    async with browser.get(f"{env.url}/console/worklist") as r:
        page = await r.text()
    return browser, page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
async def county(
    api_env: SchoolApiEnv, run: int
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    browser, csrf = await signed_in(api_env, "county")
    async with browser:
        yield browser, csrf


@pytest.fixture
async def province(
    api_env: SchoolApiEnv, run: int
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    browser, csrf = await signed_in(api_env, "province")
    async with browser:
        yield browser, csrf


async def test_the_lost_list_identifies_its_county_children_by_school_and_audits_once(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str], run: int
) -> None:
    browser, _ = county
    mine = [c for c in api_env.cohort.children if graduation(c)["county_code"] == COUNTY]
    async with browser.get(f"{api_env.url}/console/lost?entry_year={ENTRY_YEAR}") as r:
        page = await r.text()
        assert r.status == 200
    assert 'name="viewport"' in page and "未报到名单" in page
    assert "朝阳实验小学" in page and f"<code>{SCHOOL}</code>" in page
    shown = set(re.findall(r'href="/console/child/([GJL][0-9A-Z]{18})"', page))
    assert shown and shown <= {c.final_student_number for c in mine}
    far = api_env.cohort.children[11].final_student_number
    assert far not in page  # another county's child is not on a county operator's page
    # ... though it is on the list: the province's page shows it.
    province, _ = await signed_in(api_env, "province")
    async with province, province.get(f"{api_env.url}/console/lost?entry_year={ENTRY_YEAR}") as r:
        assert r.status == 200 and far in await r.text()
    name = api_env.cohort.children[0].events[0]["data"]["child"]["name"]
    assert name in page  # the child's name, as the registry was given it
    assert "个工作日 working days" in page
    rows = await api_env.bridge.pool.fetch(
        "SELECT student_numbers FROM audit_log WHERE action = 'console.lost' AND actor = $1",
        api_env.token_ids["county"],
    )
    assert len(rows) == 1 and set(rows[0]["student_numbers"]) == shown


async def test_a_school_group_exports_only_its_children_with_a_bom_and_no_numbers(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = county
    async with browser.get(
        f"{api_env.url}/console/lost.csv?entry_year={ENTRY_YEAR}&school={SCHOOL}"
    ) as r:
        raw = await r.read()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    text = raw.decode("utf-8")
    assert text.startswith("\ufeffcategory,")
    lines = text.strip().splitlines()[1:]
    assert lines and all(f",{SCHOOL}," in line for line in lines)
    assert not any(c.final_student_number in text for c in api_env.cohort.children)
    # Identified only with a purpose, and that choice is audited with it.
    async with browser.get(
        f"{api_env.url}/console/lost.csv?entry_year={ENTRY_YEAR}&school={SCHOOL}"
        "&purpose=电话核实报到"
    ) as r:
        identified = (await r.read()).decode("utf-8")
    assert any(c.final_student_number in identified for c in api_env.cohort.children[:8])
    purpose = await api_env.bridge.pool.fetchval(
        "SELECT detail->>'purpose' FROM audit_log WHERE action = 'console.export_identified'"
        " AND actor = $1",
        api_env.token_ids["county"],
    )
    assert purpose == "电话核实报到"


async def test_a_county_filtered_export_exports_only_that_county(
    api_env: SchoolApiEnv, province: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = province
    async with browser.get(
        f"{api_env.url}/console/report?entry_year={ENTRY_YEAR}&county={COUNTY}"
    ) as r:
        page = await r.text()
    link = re.search(r'href="(/console/export\.csv\?[^"]+)"', page)
    assert link and f"county={COUNTY}" in link.group(1)
    async with browser.get(api_env.url + link.group(1).replace("&amp;", "&")) as r:
        text = (await r.read()).decode("utf-8")
    assert text.startswith("\ufeffcategory,")  # Excel on Chinese Windows reads 类别
    rows = text.strip().splitlines()[1:]
    assert rows and all(f",{COUNTY}," in row for row in rows)


async def test_a_county_operator_asking_for_another_county_gets_a_chinese_page(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = county
    for path in ("/console/report", "/console/lost", "/console/export.csv"):
        async with browser.get(f"{api_env.url}{path}?county={OTHER_COUNTY}") as r:
            text = await r.text()
            assert r.status == 403, path
            assert r.headers["Content-Type"].startswith("text/html")
        assert "无权访问" in text and "<html" in text and "{" not in text.split("<main>")[1][:50]


async def test_resolve_without_a_note_says_so_and_keeps_the_group(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, csrf = county
    number = api_env.cohort.children[0].final_student_number
    async with browser.post(
        f"{api_env.url}/console/set-aside",
        data={"csrf": csrf, "action": "resolve", "student_number": number, "note": "  ",
              "reason": "bad_source_file", "answer": ""},
    ) as r:  # fmt: skip
        page = await r.text()
        assert "reason=bad_source_file" in str(r.url)
    assert "请填写处理说明" in page
    async with browser.post(
        f"{api_env.url}/console/set-aside",
        data={"csrf": csrf, "action": "resolve", "student_number": number, "note": "已核实"},
    ) as r:
        page = await r.text()
    assert "没有待处理的搁置" in page  # not set aside: nothing changed, and it says so


async def test_the_case_page_shows_the_child_its_events_and_calls(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = county
    child = api_env.cohort.children[0]
    async with browser.get(f"{api_env.url}/console/child/{child.final_student_number}") as r:
        page = await r.text()
        assert r.status == 200
    assert child.events[0]["data"]["child"]["name"] in page
    assert "毕业 graduated" in page and "北京时间 (UTC+8)" in page
    assert 'id="calls"' in page and "intake" in page.lower()
    far = api_env.cohort.children[11].final_student_number
    before = await api_env.bridge.pool.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
    async with browser.get(f"{api_env.url}/console/child/{far}") as r:
        assert r.status == 404 and "不在您的辖区" in await r.text()
    # Another county's child: no page, and the try is in the audit log.
    tried = await api_env.bridge.pool.fetch(
        "SELECT actor, outcome, detail FROM audit_log WHERE action = 'access.refused' AND id > $1",
        before,
    )
    assert [r["actor"] for r in tried] == [api_env.token_ids["county"]]
    assert tried[0]["outcome"] == "out_of_scope" and "/console/child/{n}" in tried[0]["detail"]
    async with browser.get(f"{api_env.url}/console/child/not-a-number") as r:
        assert r.status == 400 and "参数有误" in await r.text()


async def test_a_form_without_its_csrf_token_is_refused_with_a_page(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = county
    async with browser.post(
        f"{api_env.url}/console/reconcile", data={"entry_year": str(ENTRY_YEAR)}
    ) as r:
        assert r.status == 403 and r.headers["Content-Type"].startswith("text/html")
        assert "CSRF" in await r.text()


@pytest.mark.parametrize(
    ("cell", "shown"),
    [("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"),
     ("\tx", "'\tx"), ("\rx", "'\rx"), ("王小明", "王小明"), ("", "")],
)  # fmt: skip
def test_csv_cells_that_a_spreadsheet_would_run_are_shown_as_text(cell: str, shown: str) -> None:
    assert csv_safe(cell) == shown


async def test_sign_in_lands_on_the_newest_cohort_with_a_run_not_a_deferral_cohort(
    api_env: SchoolApiEnv, province: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = province
    pool = api_env.bridge.pool
    # A child deferred to next year: its cohort has children and no run yet.
    await pool.execute(
        "INSERT INTO children (student_number, status, phase, entry_year)"
        " VALUES ('G99999920200101000X', 'deferred', 'deferred', $1)",
        ENTRY_YEAR + 1,
    )
    try:
        async with browser.get(f"{api_env.url}/console/") as r:
            page = await r.text()
        assert f"{ENTRY_YEAR} 级总览" in page and "尚无对账记录" not in page
        async with browser.get(f"{api_env.url}/console/?entry_year={ENTRY_YEAR + 1}") as r:
            assert "尚无对账记录" in await r.text()  # asked for, it is still there
    finally:
        await pool.execute("DELETE FROM children WHERE student_number = 'G99999920200101000X'")


async def test_an_unknown_console_page_is_a_page(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = county
    async with browser.get(f"{api_env.url}/console/no-such-page") as r:
        assert r.status == 404 and r.headers["Content-Type"].startswith("text/html")
        assert "找不到该页面" in await r.text()


async def test_paging_and_filters_survive_every_link(
    api_env: SchoolApiEnv, province: tuple[aiohttp.ClientSession, str]
) -> None:
    browser, _ = province
    async with browser.get(
        f"{api_env.url}/console/report?entry_year={ENTRY_YEAR}&county={COUNTY}"
        f"&kindergarten=&new=1&category=not_arrived"
    ) as r:
        page = (await r.text()).replace("&amp;", "&")
    for link in re.findall(r'href="(/console/(?:export\.csv|report)\?[^"]+)"', page):
        assert f"county={COUNTY}" in link and "new=1" in link, link
    async with browser.get(
        f"{api_env.url}/console/lost?entry_year={ENTRY_YEAR}&county={COUNTY}&category=not_arrived"
    ) as r:
        page = (await r.text()).replace("&amp;", "&")
    links = re.findall(r'href="(/console/lost(?:\.csv)?\?[^"]+)"', page)
    assert links
    for link in links:
        assert f"county={COUNTY}" in link and "category=not_arrived" in link, link


@pytest.mark.parametrize(
    "path",
    [
        "/console/lost?page=abc",
        "/console/lost?page=-1",
        "/console/lost?school=123",
        "/console/lost?category=matched",
        "/console/lost?run_id=99999999999999999999",
        "/console/lost.csv?school=2111010502%0A",
        "/console/lost.csv?purpose=%07bell",
        "/console/child/G1",
        "/console/child/G110105201903070012%0A",
    ],
)
async def test_the_new_pages_refuse_bad_parameters_with_a_page(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str], path: str
) -> None:
    browser, _ = county
    async with browser.get(api_env.url + path) as r:
        text = await r.text()
        assert r.status == 400, text[:300]
        assert r.headers["Content-Type"].startswith("text/html")
    assert "参数有误" in text and "<html" in text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/operator/reconciliations?entry_year=2026&limit=-1",
        "/v1/operator/set-aside?nonsense=1",
        "/v1/operator/parked?page=abc",
    ],
)
async def test_the_operator_api_refuses_parameters_it_does_not_take(
    api_env: SchoolApiEnv, path: str
) -> None:
    answer = await api_env.call("GET", path, "province")
    assert answer.status == 400, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["code"] == "invalid_parameter"


async def test_a_console_failure_is_a_page_not_json(
    api_env: SchoolApiEnv,
    county: tuple[aiohttp.ClientSession, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    browser, _ = county

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("G110105201903070012 must not be logged")

    monkeypatch.setattr(api_env.bridge.use_cases.casework, "lost", broken)
    async with browser.get(f"{api_env.url}/console/lost?entry_year={ENTRY_YEAR}") as r:
        text = await r.text()
        assert r.status == 500 and r.headers["Content-Type"].startswith("text/html")
    assert "运维台出错" in text and "G110105201903070012" not in text


async def test_an_api_page_of_findings_is_one_audit_line_naming_its_children(
    api_env: SchoolApiEnv, run: int
) -> None:
    answer = await api_env.call(
        "GET", f"/v1/operator/reconciliations/{run}/items?category=not_arrived&limit=3", "county"
    )
    assert answer.status == 200
    numbers = {i["student_number"] for i in answer.json()["items"]}
    assert numbers
    rows = await api_env.bridge.pool.fetch(
        "SELECT student_numbers FROM audit_log WHERE action = 'api.items' AND actor = $1",
        api_env.token_ids["county"],
    )
    assert [set(r["student_numbers"]) for r in rows] == [numbers]


async def test_a_parameter_given_twice_is_refused(
    api_env: SchoolApiEnv, county: tuple[aiohttp.ClientSession, str]
) -> None:
    answer = await api_env.call(
        "GET", f"/v1/operator/reconciliations?entry_year={ENTRY_YEAR}&entry_year=2000", "county"
    )
    assert answer.status == 400 and answer.json()["code"] == "invalid_parameter"
    browser, _ = county
    async with browser.get(f"{api_env.url}/console/lost?page=1&page=2") as r:
        assert r.status == 400 and "参数有误" in await r.text()
