"""Downloads and list pages waiting at one moment share a statement, each with its own answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import orjson
import pytest

from bridge.adapters.postgres.school_lookups import SchoolLookups
from bridge.api.app import create_app
from bridge.domain.access import Role, present
from bridge.services.ports.schools import ListLookup, ListQuery
from tests.support.school_api import (
    ENTRY_YEAR,
    SAME_COUNTY_SCHOOL,
    SCHOOL,
    SchoolApiEnv,
    serving_app,
)

pytestmark = pytest.mark.live


@contextlib.asynccontextmanager
async def own_app(api_env: SchoolApiEnv) -> AsyncIterator[tuple[str, SchoolLookups]]:
    """An app of its own on the bridge's shared lookups, whose statements are counted."""
    app = create_app(api_env.bridge.use_cases)
    async with serving_app(app) as url:
        yield url, api_env.bridge.stores.lookups


async def get_as(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, bytes]:
    """GET *url* with *token*: the status and the body."""
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.read()


NOT_PULLED = "state=not_pulled&since=2000-01-01T00:00:00%2B08:00"


def forged(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


async def test_downloads_at_once_share_lookups_and_each_gets_only_its_own_answer(
    api_env: SchoolApiEnv,
) -> None:
    children = [c for c in api_env.children_of(SCHOOL) if c.record_file is not None]
    assert len(children) >= 5
    own, other = api_env.tokens["school"], api_env.tokens["other_school"]
    province = api_env.tokens["province"]
    # Per child: its school (the file), a school it is not at (404), a forged secret of
    # its school's token (401), the province (the file): all in the same batches.
    asked = [
        (child, token, expected)
        for child in children
        for token, expected in ((own, 200), (other, 404), (forged(own), 401), (province, 200))
    ]
    async with own_app(api_env) as (url, lookups), aiohttp.ClientSession() as session:
        before = lookups.statements
        answers = await asyncio.gather(*(
            get_as(session, f"{url}/v1/handoffs/{child.final_student_number}/record-file", token)
            for child, token, _ in asked
        ))  # fmt: skip
        statements = lookups.statements - before
    for (child, _, expected), (status, body) in zip(asked, answers, strict=True):
        assert status == expected
        if expected == 200:
            assert body == child.record_file
        else:
            assert child.record_file not in body
    assert statements < len(asked) / 2


async def test_a_download_does_not_wait_for_a_transaction_holding_its_token(
    api_env: SchoolApiEnv,
) -> None:
    bridge = api_env.bridge
    issued = await bridge.tokens.issue(Role.SCHOOL, school_code=SCHOOL, label="held token")
    stale = await bridge.pool.fetchval(
        "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes'"
        " WHERE token_id = $1 RETURNING last_used_at", issued.token_id,
    )  # fmt: skip
    child = next(c for c in api_env.children_of(SCHOOL) if c.record_file is not None)
    path = f"/v1/handoffs/{child.final_student_number}/record-file"
    async with bridge.pool.acquire() as holder, holder.transaction():
        # Say an operator's revoke, or another instance's touch, has the row: the download
        # must neither wait for it nor write last use over it.
        await holder.execute(
            "SELECT 1 FROM api_tokens WHERE token_id = $1 FOR UPDATE", issued.token_id
        )
        answer = await asyncio.wait_for(api_env.call("GET", path, issued.token), 5)
        assert answer.status == 200 and answer.body == child.record_file
    info = await bridge.tokens.get(issued.token_id)
    assert info is not None and info.last_used_at == stale
    assert (await api_env.call("GET", path, issued.token)).status == 200
    info = await bridge.tokens.get(issued.token_id)
    assert info is not None and info.last_used_at is not None and info.last_used_at > stale


async def test_lists_at_once_share_statements_and_each_gets_only_what_its_token_may_see(
    api_env: SchoolApiEnv,
) -> None:
    tokens = api_env.tokens
    mine = {c.final_student_number for c in api_env.children_of(SCHOOL)}
    theirs = {c.final_student_number for c in api_env.children_of(SAME_COUNTY_SCHOOL)}
    assert mine and theirs
    # (token, school listed, query): the answer expected of each, all asked at once, in
    # four shapes of filter (each its own statement).
    year, later = f"entry_year={ENTRY_YEAR}", f"entry_year={ENTRY_YEAR + 1}"
    asked = [
        ("school", SCHOOL, "limit=1000", 200, mine),
        ("other_school", SAME_COUNTY_SCHOOL, year, 200, theirs),
        ("other_school", SCHOOL, "limit=1000", 404, None),  # not its school
        ("county", SCHOOL, year, 200, mine),
        ("other_county", SCHOOL, "limit=1000", 200, set()),  # outside its county: no one
        ("province", SAME_COUNTY_SCHOOL, "limit=1000", 200, theirs),
        ("school", SCHOOL, later, 200, set()),  # no child of that year
        ("bad", SCHOOL, year, 401, None),
        ("sealed", SCHOOL, "limit=1000", 401, None),
        ("school", SCHOOL, "limit=2", 200, None),  # the first page of two, and a cursor
        ("school", SCHOOL, f"{year}&limit=2", 200, None),
        ("county", SCHOOL, NOT_PULLED, 200, "as alone"),
    ] * 3
    async with own_app(api_env) as (url, lookups), aiohttp.ClientSession() as session:
        # Lists change nothing: asked alone first, the answer is what the crowd must get.
        alone = await get_as(session, f"{url}/v1/schools/{SCHOOL}/handoffs?{NOT_PULLED}",
                             tokens["county"])  # fmt: skip
        not_pulled = {i["student_number"] for i in orjson.loads(alone[1])["items"]}
        before = lookups.statements
        answers = await asyncio.gather(*(
            get_as(session, f"{url}/v1/schools/{s}/handoffs?{q}", tokens[w])
            for w, s, q, _, _ in asked
        ))  # fmt: skip
        statements = lookups.statements - before
    for (who, _, query, status, numbers), (got, raw) in zip(asked, answers, strict=True):
        body = orjson.loads(raw)
        assert got == status, (who, query, body)
        if status != 200:
            continue
        items = body["items"]
        assert isinstance(items, list)
        shown = {i["student_number"] for i in items}
        if numbers == "as alone":
            assert shown == not_pulled and shown <= mine
            assert all(i["state"] == "not_pulled" for i in items)
        elif numbers is not None:
            assert shown == numbers and body["next_cursor"] is None, (who, query)
        else:
            assert len(shown) == 2 and shown <= mine and body["next_cursor"]
    assert statements < len(asked) / 2


async def test_a_malformed_school_code_is_refused_before_it_reaches_the_shared_statement(
    api_env: SchoolApiEnv,
) -> None:
    # PostgreSQL refuses a NUL in text: sharing a statement with one must not fail the rest.
    mine = {c.final_student_number for c in api_env.children_of(SCHOOL)}
    headers = {"Authorization": f"Bearer {api_env.tokens['school']}"}
    async with own_app(api_env) as (url, _), aiohttp.ClientSession(headers=headers) as session:

        async def listed(school: str) -> tuple[int, dict[str, object]]:
            async with session.get(f"{url}/v1/schools/{school}/handoffs") as r:
                return r.status, await r.json()

        answers = await asyncio.gather(*(listed(s) for s in [SCHOOL, "21110%00502", SCHOOL] * 4))
    for status, body in answers[0::3] + answers[2::3]:
        items = body["items"]
        assert status == 200 and isinstance(items, list)
        assert {i["student_number"] for i in items} == mine
    assert {(s, b["code"]) for s, b in answers[1::3]} == {(404, "not_found")}


async def test_a_request_the_database_refuses_fails_alone(api_env: SchoolApiEnv) -> None:
    lookups = SchoolLookups(api_env.bridge.pool)
    presented = present(api_env.tokens["school"])
    mine = {c.final_student_number for c in api_env.children_of(SCHOOL)}
    good, bad = ListQuery(school_code=SCHOOL), ListQuery(school_code="2111\x000502")
    before = lookups.statements
    answers = await asyncio.gather(
        *(lookups.list_for(presented, q) for q in [good, bad, good] * 3), return_exceptions=True
    )
    for answer in answers[0::3] + answers[2::3]:
        assert isinstance(answer, ListLookup) and answer.token is not None
        assert {c.student_number for c in answer.children} == mine
    assert all(isinstance(a, asyncpg.DataError) for a in answers[1::3])
    assert lookups.statements - before < len(answers)  # they did share, then read alone
