"""The unforeseen is answered as problem+json too: the database away, or a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.api.problems import PROBLEM_JSON, RETRY_AFTER_S, problems_middleware
from bridge.api.server import harden
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


async def started_then_failed(request: web.Request) -> web.StreamResponse:
    # Headers prepared (held back by aiohttp until the first bytes), then a failure: a
    # problem now would be a second answer inside the first.
    response = web.StreamResponse()
    await response.prepare(request)
    raise RuntimeError(f"could not finish {SECRET}")


async def test_a_failure_after_the_headers_were_prepared_is_no_second_answer() -> None:
    app = web.Application(middlewares=[problems_middleware(DATABASE_UNAVAILABLE)])
    harden(app)
    app.router.add_get("/v1/started", started_then_failed)
    async with serving_app(app) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/started HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
        wire = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
    # At most the started answer's head, never a problem after it: the connection is cut.
    assert wire.count(b"HTTP/1.1 ") <= 1, wire
    assert b"server_error" not in wire and b"problem" not in wire


async def test_a_failure_no_middleware_caught_names_no_versions_either() -> None:
    app = web.Application()  # nothing between the view and aiohttp
    app.router.add_get("/v1/broken/{student_number}", broken)
    async with (
        serving_app(app) as base,
        aiohttp.ClientSession() as s,
        s.get(f"{base}/v1/broken/{SECRET}") as r,
    ):
        assert r.status == 500
        assert r.headers["Server"] == "xueji-bridge"
        assert SECRET not in await r.text()
