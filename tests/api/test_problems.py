"""The unforeseen is answered as problem+json too: the database away, or a failure."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.api.problems import PROBLEM_JSON, RETRY_AFTER_S, problems_middleware
from tests.support.school_api import serving_app

SECRET = "G110101201905060012"  # stands for a child's data quoted by a failing library


async def database_away(request: web.Request) -> web.Response:
    raise asyncpg.CannotConnectNowError("the database system is starting up")


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError(f"could not handle {SECRET}")


async def cut_short(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 2 * len(PART)
    await response.prepare(request)
    await response.write(PART)
    raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


PART = b"x" * 65536


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application(middlewares=[problems_middleware(DATABASE_UNAVAILABLE)])
    app.router.add_get("/v1/away/{student_number}", database_away)
    app.router.add_get("/v1/broken/{student_number}", broken)
    app.router.add_get("/v1/cut/{student_number}", cut_short)
    async with serving_app(app) as base:
        yield base


async def test_the_database_away_is_a_503_to_retry(url: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/away/{SECRET}") as r:
        body = await r.json(content_type=PROBLEM_JSON)
        assert r.status == 503 and r.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert body["code"] == "unavailable" and body["message"]


async def test_a_failure_is_a_500_problem_logged_without_the_childs_data(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/broken/{SECRET}") as r:
            body = await r.json(content_type=PROBLEM_JSON)
            assert r.status == 500
    assert body["code"] == "server_error" and SECRET not in str(body)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "RuntimeError" in logged and "/v1/broken/{student_number}" in logged
    assert "in broken" in logged  # where it failed, for whoever is on call
    assert SECRET not in logged and SECRET not in caplog.text


async def test_a_failure_after_the_answer_began_cuts_the_transfer_short(url: str) -> None:
    received = b""
    waits = aiohttp.ClientTimeout(total=5)  # left open, the connection would hang the client
    async with aiohttp.ClientSession(timeout=waits) as s, s.get(f"{url}/v1/cut/{SECRET}") as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                received += chunk
    # Cut short, never a problem document passed off as the rest of the file.
    assert received == PART[: len(received)] and b"unavailable" not in received
