"""Inputs that once made the bridge answer 500 (or do the wrong thing) are refused clearly.

Each query string and body is read into a model: a number is decimal digits within its
column's range, a JSON entry year is a JSON integer, a time is an instant, and a value
with a trailing newline is not a well-formed one. The operators' API and the school API
answer problem+json; the console answers with a page that says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.domain.refusal_budget import RefusalBudget
from tests.support.school_api import (
    BAD_TOKEN,
    ENTRY_YEAR,
    SAME_COUNTY_SCHOOL,
    SCHOOL,
    SchoolApiEnv,
)

pytestmark = pytest.mark.live

TWENTY_DIGITS = "9" * 20
PROBLEM = "application/problem+json"


@pytest.fixture
async def run_id(api_env: SchoolApiEnv) -> int:
    """A finished reconciliation run to ask about."""
    value: int = await api_env.bridge.pool.fetchval(
        "INSERT INTO recon_runs (entry_year, trigger, status, finished_at, as_of)"
        " VALUES ($1, 'test', 'finished', now(), current_date) RETURNING run_id",
        ENTRY_YEAR,
    )
    return value


async def ask(env: SchoolApiEnv, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
    answer = await env.call(method, path, "province", **kwargs)
    kind = answer.headers.get("Content-Type", "").split(";")[0]
    return answer.status, kind, answer.json() if kind == PROBLEM else answer.body


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/operator/reconciliations/{run}/items?limit=-1", 400),
        ("/v1/operator/reconciliations/{run}/items?offset=-5", 400),
        ("/v1/operator/reconciliations/{run}/items?offset=" + TWENTY_DIGITS, 400),
        ("/v1/operator/reconciliations/" + TWENTY_DIGITS, 400),
        ("/v1/operator/reconciliations/" + TWENTY_DIGITS + "/items", 400),
        ("/v1/operator/reconciliations?entry_year=" + TWENTY_DIGITS, 400),
        ("/v1/operator/reconciliations/latest?entry_year=2026%0A", 400),
        ("/v1/operator/parked/" + TWENTY_DIGITS, 400),
        ("/v1/operator/parked/-1", 400),
        ("/v1/operator/reconciliations/{run}?county=110105%0A", 400),
    ],
)
async def test_operator_queries_out_of_range_are_refused(
    api_env: SchoolApiEnv, run_id: int, path: str, status: int
) -> None:
    got, kind, body = await ask(api_env, "GET", path.format(run=run_id))
    assert (got, kind) == (status, PROBLEM), body
    assert body["code"] == "invalid_parameter" and body["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/operator/reconciliations", {"entry_year": True}),
        ("/v1/operator/reconciliations", {"entry_year": "2026"}),
        ("/v1/operator/reconciliations", {"entry_year": 1}),
        ("/v1/operator/parked/retry", {"id": int(TWENTY_DIGITS)}),
        ("/v1/operator/parked/retry", {"id": True}),
        ("/v1/operator/set-aside/retry", {"reason": 5}),
        ("/v1/operator/set-aside/resolve", {"student_number": ["G1"], "note": "x"}),
        ("/v1/operator/parked/1/resolve", {"note": "   "}),
    ],
)
async def test_operator_bodies_that_break_their_model_are_refused(
    api_env: SchoolApiEnv, path: str, body: dict[str, Any]
) -> None:
    got, kind, problem = await ask(api_env, "POST", path, json=body)
    assert (got, kind) == (422, PROBLEM), problem
    assert problem["code"] == "invalid" and problem["errors"]
    # A year that is not a JSON integer never starts a reconciliation (true once did: year 1).
    started = await api_env.bridge.pool.fetchval(
        "SELECT count(*) FROM recon_runs WHERE entry_year < 2000"
    )
    assert started == 0


@pytest.mark.parametrize(
    ("path", "who", "status", "code"),
    [
        (f"/v1/schools/{SCHOOL}/handoffs?since=0001-01-01T00:00:00%2B01:00", "school", 400,
         "invalid_parameter"),
        (f"/v1/schools/{SCHOOL}/handoffs?limit=5%0A", "school", 400, "invalid_parameter"),
        (f"/v1/schools/{SCHOOL}/handoffs?entry_year=" + TWENTY_DIGITS, "school", 400,
         "invalid_parameter"),
        (f"/v1/schools/{SCHOOL}%0A/handoffs", "province", 404, "not_found"),
        (f"/v1/schools/{SCHOOL}%0A/record-files.zip", "school", 404, "not_found"),
        ("/v1/audit?student_number=G110105201903070012%0A", "province", 404, "not_found"),
        ("/v1/audit?token_id=tok_000000000000%0A", "province", 404, "not_found"),
        ("/v1/audit?token_id=tok_000000000000&limit=-3", "province", 400, "invalid_parameter"),
    ],
)  # fmt: skip
async def test_school_api_values_out_of_range_or_with_a_newline_are_refused(
    api_env: SchoolApiEnv, path: str, who: str, status: int, code: str
) -> None:
    answer = await api_env.call("GET", path, who)
    assert answer.status == status, answer.body[:300]
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    assert answer.json()["code"] == code


@pytest.fixture
async def console(api_env: SchoolApiEnv) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A browser session signed in to the console as the provincial operator."""
    jar = aiohttp.CookieJar(unsafe=True)  # the console is on 127.0.0.1 here
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.post(
            f"{api_env.url}/console/login", data={"token": api_env.tokens["province"]},
            allow_redirects=False,
        ) as r:  # fmt: skip
            assert r.status == 303
        async with browser.get(f"{api_env.url}/console/") as r:
            page = await r.text()
            assert r.status == 200
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        yield browser, csrf


@pytest.mark.parametrize(
    "path",
    [
        "/console/report?page=abc",
        "/console/report?page=-1",
        "/console/report?run_id=" + TWENTY_DIGITS,
        "/console/?entry_year=" + TWENTY_DIGITS,
        "/console/lost?entry_year=99999999999",
        "/console/export.csv?run_id=" + TWENTY_DIGITS,
        "/console/parked?id=" + TWENTY_DIGITS,
        "/console/report?category=no_such_category",
    ],
)
async def test_console_pages_refuse_bad_parameters_with_a_page(
    api_env: SchoolApiEnv, run_id: int, console: tuple[aiohttp.ClientSession, str], path: str
) -> None:
    browser, _ = console
    async with browser.get(api_env.url + path) as r:
        text = await r.text()
        assert r.status == 400, text[:300]
        assert r.headers["Content-Type"].startswith("text/html")
    assert "参数有误" in text and "<html" in text


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/console/reconcile", {"entry_year": "abc"}),
        ("/console/reconcile", {"entry_year": "1"}),
        ("/console/parked", {"action": "retry", "id": TWENTY_DIGITS}),
        ("/console/set-aside", {"action": "explode"}),
    ],
)
async def test_console_forms_refuse_bad_values_with_a_page(
    api_env: SchoolApiEnv, console: tuple[aiohttp.ClientSession, str], path: str,
    form: dict[str, str],
) -> None:  # fmt: skip
    browser, csrf = console
    async with browser.post(
        api_env.url + path, data={**form, "csrf": csrf}, allow_redirects=False
    ) as r:
        text = await r.text()
        assert r.status == 400, text[:300]
        assert r.headers["Content-Type"].startswith("text/html")
    started = await api_env.bridge.pool.fetchval(
        "SELECT count(*) FROM recon_runs WHERE entry_year < 2000"
    )
    assert started == 0


async def refusals_since(env: SchoolApiEnv, last_id: int) -> list[dict[str, Any]]:
    rows = await env.bridge.pool.fetch(
        "SELECT id, actor, target_token, outcome, remote, detail FROM audit_log"
        " WHERE action = 'access.refused' AND id > $1 ORDER BY id",
        last_id,
    )
    return [{**dict(r), "detail": orjson.loads(r["detail"])} for r in rows]


async def last_audit_id(env: SchoolApiEnv) -> int:
    return int(await env.bridge.pool.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))


async def test_refused_attempts_are_audited(
    api_env: SchoolApiEnv, console: tuple[aiohttp.ClientSession, str]
) -> None:
    env, browser = api_env, console[0]
    number = env.children_of(SCHOOL)[3].final_student_number
    school_id = env.token_ids["school"]
    start = await last_audit_id(env)
    wrong_secret = f"xj_{school_id}_not-its-secret"
    assert (await env.call("GET", f"/v1/handoffs/{number}", wrong_secret)).status == 401
    assert (await env.call("POST", f"/v1/handoffs/{number}/arrival", "county",
                           json={"arrived_on": "2026-09-01"})).status == 403  # fmt: skip
    assert (await env.call("GET", f"/v1/schools/{SAME_COUNTY_SCHOOL}/handoffs", "school")
            ).status == 404  # fmt: skip
    assert (await env.call("GET", f"/v1/schools/{SAME_COUNTY_SCHOOL}/record-files.zip",
                           "school")).status == 404  # fmt: skip
    async with browser.post(f"{env.url}/console/login", data={"token": BAD_TOKEN}) as r:
        assert r.status == 401
    async with browser.post(
        f"{env.url}/console/reconcile", data={"entry_year": "2026", "csrf": "forged"}
    ) as r:
        assert r.status == 403
    seen = [
        (e["actor"], e["target_token"], e["outcome"], e["detail"]["status"], e["detail"]["route"])
        for e in await refusals_since(env, start)
    ]
    assert seen == [
        ("anonymous", school_id, "unauthenticated", 401, "/v1/handoffs/{student_number}"),
        (env.token_ids["county"], env.token_ids["county"], "forbidden", 403,
         "/v1/handoffs/{student_number}/arrival"),
        (school_id, school_id, "out_of_scope", 404, "/v1/schools/{school_code}/handoffs"),
        (school_id, school_id, "out_of_scope", 404,
         "/v1/schools/{school_code}/record-files.zip"),
        ("anonymous", None, "refused", 401, "/console/login"),
        ("anonymous", None, "forbidden", 403, "/console/reconcile"),
    ]  # fmt: skip
    # The token's own trail shows the attempt with a wrong secret.
    trail = await env.call("GET", f"/v1/audit?token_id={school_id}", "province")
    assert "access.refused" in {e["action"] for e in trail.json()["items"]}


async def test_refusals_past_the_bound_are_counted_not_written(api_env: SchoolApiEnv) -> None:
    refusals = api_env.bridge.use_cases.refusals
    roomy = refusals.budget
    refusals.budget = RefusalBudget(per_source=3, in_all=1000)
    try:
        start = await last_audit_id(api_env)
        for _ in range(12):
            assert (await api_env.call("GET", "/v1/audit?token_id=x", "bad")).status == 401
        written = await refusals_since(api_env, start)
    finally:
        refusals.budget = roomy
    assert len(written) == 3
    metrics = (await api_env.call("GET", "/metrics")).body.decode()
    dropped = [
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
        if line.startswith('xueji_refusals_total{audited="no",status="401"}')
    ]  # fmt: skip
    assert dropped and dropped[0] >= 9
