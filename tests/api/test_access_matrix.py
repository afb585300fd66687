"""Who may do what: every endpoint against every kind of caller, asserted.

Refusals must not tell a stranger anything: a child out of scope, an unknown number
and a malformed one are answered byte for byte alike.
"""

from __future__ import annotations

import pytest

from bridge.domain.access import Role
from tests.support.school_api import (
    SCHOOL,
    UNKNOWN_NUMBER,
    Answer,
    SchoolApiEnv,
    arrival_date,
    graduation,
)

pytestmark = pytest.mark.live

WHO = ("none", "bad", "sealed", "other_school", "other_county", "school", "county", "province")
UNAUTHENTICATED = {"none": "unauthenticated", "bad": "unauthenticated", "sealed": "token_sealed"}
EXPECTED: dict[str, dict[str, int]] = {
    #               list  summary file zip  arrival audit
    "other_school": dict(list=404, summary=404, file=404, zip=404, arrival=404, audit=403),
    "other_county": dict(list=200, summary=404, file=404, zip=403, arrival=403, audit=404),
    "school": dict(list=200, summary=200, file=200, zip=200, arrival=202, audit=403),
    # Operators in scope download one record file at a time (audited as an operator's
    # read); the ZIP batch is the school's.
    "county": dict(list=200, summary=200, file=200, zip=403, arrival=403, audit=200),
    "province": dict(list=200, summary=200, file=200, zip=403, arrival=403, audit=200),
}
ENDPOINTS = ("list", "summary", "file", "zip", "arrival", "audit")


def target(env: SchoolApiEnv) -> str:
    return env.children_of(SCHOOL)[0].final_student_number


def arriving(env: SchoolApiEnv) -> str:
    # Its own child: reporting the arrival changes it, and no other test looks at it.
    return env.children_of(SCHOOL)[7].final_student_number


async def call(env: SchoolApiEnv, endpoint: str, who: str, number: str, school: str) -> Answer:
    caller = None if who == "none" else who
    if endpoint == "list":
        return await env.call("GET", f"/v1/schools/{school}/handoffs", caller)
    if endpoint == "zip":
        return await env.call("GET", f"/v1/schools/{school}/record-files.zip", caller)
    if endpoint == "summary":
        return await env.call("GET", f"/v1/handoffs/{number}", caller)
    if endpoint == "file":
        return await env.call("GET", f"/v1/handoffs/{number}/record-file", caller)
    if endpoint == "arrival":
        body = {"arrived_on": arrival_date().isoformat()}
        return await env.call("POST", f"/v1/handoffs/{number}/arrival", caller, json=body)
    return await env.call("GET", f"/v1/audit?student_number={number}", caller)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("who", WHO)
async def test_access_matrix(api_env: SchoolApiEnv, who: str, endpoint: str) -> None:
    number = arriving(api_env) if endpoint == "arrival" else target(api_env)
    answer = await call(api_env, endpoint, who, number, SCHOOL)
    if who in UNAUTHENTICATED:
        assert answer.status == 401
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert answer.json()["code"] == UNAUTHENTICATED[who]
        return
    assert answer.status == EXPECTED[who][endpoint], answer.body[:300]
    if answer.status >= 400:
        problem = answer.json()
        assert problem["type"] == "urn:xueji:problem:" + problem["code"]
        assert problem["code"] == {403: "forbidden", 404: "not_found"}[answer.status]
    if who == "other_county" and endpoint == "list":
        assert answer.json()["items"] == []


@pytest.mark.parametrize("who", ("none", "bad", "sealed", "other_school", "other_county"))
async def test_refusals_say_nothing_about_whether_a_child_exists(
    api_env: SchoolApiEnv, who: str
) -> None:
    for endpoint in ("summary", "file", "arrival", "audit"):
        answers = [
            await call(api_env, endpoint, who, number, SCHOOL)
            for number in (target(api_env), UNKNOWN_NUMBER, "G123", "not-a-number")
        ]
        assert len({(a.status, a.body) for a in answers}) == 1, (endpoint, answers)
    for endpoint in ("list", "zip"):
        answers = [
            await call(api_env, endpoint, who, "", school)
            for school in (SCHOOL, "9999999999", "12")
        ]
        if who in ("other_county",):
            continue  # an operator's list is filtered to its county: empty either way
        assert len({(a.status, a.body) for a in answers}) == 1, (endpoint, answers)


async def test_only_the_childs_school_sees_its_name_and_identity_number(
    api_env: SchoolApiEnv,
) -> None:
    child = api_env.children_of(SCHOOL)[0]
    person = graduation(child)["child"]
    own = (await api_env.call("GET", f"/v1/handoffs/{target(api_env)}", "school")).json()
    assert (own["name"], own["id_number"]) == (person["name"], person["id_number"])
    for operator in ("county", "province"):
        seen = (await api_env.call("GET", f"/v1/handoffs/{target(api_env)}", operator)).json()
        assert seen["name"] != person["name"] and seen["name"].startswith(person["name"][0])
        assert set(seen["name"][1:]) == {"*"}
        assert person["id_number"] not in seen["id_number"] and "*" in seen["id_number"]
        listed = (await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs", operator)).json()
        assert all("*" in i["name"] for i in listed["items"])


async def test_a_school_lists_only_its_own_children(api_env: SchoolApiEnv) -> None:
    page = (await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?limit=1000", "school")).json()
    assert {i["student_number"] for i in page["items"]} == {
        c.final_student_number for c in api_env.children_of(SCHOOL)
    }
    assert {i["school_code"] for i in page["items"]} == {SCHOOL}


async def test_a_list_page_is_audited_in_one_line_naming_every_child_shown(
    api_env: SchoolApiEnv,
) -> None:
    await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?limit=1000", "school")
    page = await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?limit=3", "school")
    shown = [i["student_number"] for i in page.json()["items"]]
    assert len(shown) == 3
    token = api_env.token_ids["school"]

    def newest_list_line(items: list[dict[str, object]]) -> dict[str, object]:
        return next(e for e in items if e["action"] == "handoff.list" and e["actor"] == token)

    by_token = await api_env.call("GET", f"/v1/audit?token_id={token}", "province")
    line = newest_list_line(by_token.json()["items"])
    assert line["student_numbers"] == shown and line["student_number"] is None
    assert line["detail"] == {"school_code": SCHOOL}
    for number in shown:  # each child's own audit trail holds the page, naming that child
        by_child = await api_env.call("GET", f"/v1/audit?student_number={number}", "county")
        line = newest_list_line(by_child.json()["items"])
        assert line["student_number"] == number and line["student_numbers"] == shown
    unshown = next(
        c.final_student_number for c in api_env.children_of(SCHOOL)
        if c.final_student_number not in shown
    )  # fmt: skip
    trail = await api_env.call("GET", f"/v1/audit?student_number={unshown}&limit=1000", "county")
    lines = trail.json()["items"]
    assert any(e["action"] == "handoff.list" for e in lines)  # the whole list named it
    for e in lines:  # and the page of three, which did not, is not in its trail
        assert e["student_number"] == unshown
        assert not e["student_numbers"] or unshown in e["student_numbers"]


async def test_refused_and_granted_reads_are_audited(api_env: SchoolApiEnv) -> None:
    number = target(api_env)
    await api_env.call("GET", f"/v1/handoffs/{number}", "other_school")
    await api_env.call("GET", f"/v1/handoffs/{number}", "school")
    entries = (await api_env.call("GET", f"/v1/audit?student_number={number}", "county")).json()
    by_actor = {(e["actor"], e["action"], e["outcome"]) for e in entries["items"]}
    assert (api_env.token_ids["other_school"], "handoff.read", "not_found") in by_actor
    assert (api_env.token_ids["school"], "handoff.read", "ok") in by_actor
    by_token = await api_env.call(
        "GET", f"/v1/audit?token_id={api_env.token_ids['school']}", "province"
    )
    assert by_token.status == 200 and by_token.json()["items"]
    foreign = await api_env.call(
        "GET", f"/v1/audit?token_id={api_env.token_ids['school']}", "county"
    )
    assert foreign.status == 404  # a county sees its own county's tokens only
    sealing = await api_env.call(
        "GET", f"/v1/audit?token_id={api_env.token_ids['sealed']}", "province"
    )
    assert ("token.seal", "sealed") in {
        (e["action"], e["outcome"]) for e in sealing.json()["items"]
    }


async def test_the_api_description_is_public(api_env: SchoolApiEnv) -> None:
    spec = await api_env.call("GET", "/v1/openapi.json")
    assert spec.status == 200 and spec.json()["openapi"] == "3.1.0"
    assert "/v1/handoffs/{student_number}/arrival" in spec.json()["paths"]
    docs = await api_env.call("GET", "/v1/docs")
    assert docs.status == 200 and b"/v1/schools/{school_code}/handoffs" in docs.body


async def test_a_token_past_180_days_is_sealed_on_its_next_use_and_that_is_audited(
    api_env: SchoolApiEnv,
) -> None:
    bridge = api_env.bridge
    issued = await bridge.tokens.issue(Role.SCHOOL, school_code=SCHOOL, label="stale")
    await bridge.pool.execute(
        "UPDATE api_tokens SET created_at = now() - interval '200 days',"
        " last_used_at = now() - interval '181 days' WHERE token_id = $1",
        issued.token_id,
    )
    answer = await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs", issued.token)
    assert (answer.status, answer.json()["code"]) == (401, "token_sealed")
    entries = await bridge.audit.query(actor=issued.token_id)
    assert [(e.action, e.actor) for e in entries] == [
        ("access.refused", "anonymous"),  # the refused attempt itself
        ("token.seal", "system:auth"),
    ]


@pytest.mark.parametrize(
    ("who", "school", "query", "status", "code"),
    [
        ("bad", SCHOOL, "limit=0", 401, "unauthenticated"),
        ("sealed", SCHOOL, "cursor=nonsense", 401, "token_sealed"),
        ("other_school", SCHOOL, "limit=0", 404, "not_found"),
        ("school", SCHOOL, "limit=0", 400, "invalid_parameter"),
        ("school", SCHOOL, "state=lost", 400, "invalid_parameter"),
        ("school", SCHOOL, "cursor=nonsense", 400, "invalid_cursor"),
        ("school", SCHOOL, "since=2026-09-01T00:00:00", 400, "invalid_parameter"),
    ],
)
async def test_a_list_says_who_may_ask_before_what_is_wrong_with_the_question(
    api_env: SchoolApiEnv, who: str, school: str, query: str, status: int, code: str
) -> None:
    answer = await api_env.call("GET", f"/v1/schools/{school}/handoffs?{query}", who)
    assert (answer.status, answer.json()["code"]) == (status, code)
