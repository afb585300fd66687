"""Fixtures: a simulator on a loopback port over its own throw-away PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from simulator.app import start_simulator
from simulator.config import SimConfig
from simulator.db import drop_database
from simulator.names import birth_date_for, l_number, resident_id

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
RUN_ID = uuid.uuid4().hex[:10]


@dataclass
class Reply:
    """An HTTP answer: status, decoded body (JSON, or bytes) and headers."""

    status: int
    body: Any
    headers: Any


class SimClient:
    """Calls the simulator: the two registries (with their tokens) and the admin API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, config: SimConfig) -> None:
        self.session, self.base_url, self.config = session, base_url, config

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Reply:
        """One request to `path` (absolute on the simulator); `raw` keeps the body as bytes."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = orjson.dumps(json)
            all_headers.setdefault("Content-Type", "application/json")
        # Large raw bytes would trip aiohttp's ResourceWarning (warnings are errors).
        payload: Any = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
        async with self.session.request(
            method, self.base_url + path, data=payload, headers=all_headers
        ) as response:
            content = await response.read()
            body: Any = content
            if response.content_type == "application/json" and content and not raw:
                body = orjson.loads(content)
            return Reply(response.status, body, response.headers)

    async def registry(self, method: str, path: str, **kw: Any) -> Reply:
        """A call to the primary registry, `path` below `/registry`."""
        kw.setdefault("token", self.config.registry_token)
        return await self.call(method, "/registry" + path, **kw)

    async def preschool(self, method: str, path: str, **kw: Any) -> Reply:
        """A call to the preschool registry, `path` below `/preschool`."""
        kw.setdefault("token", self.config.preschool_token)
        return await self.call(method, "/preschool" + path, **kw)

    async def admin(self, method: str, path: str, **kw: Any) -> Reply:
        """A call to the admin API, `path` below `/_sim`."""
        return await self.call(method, "/_sim" + path, **kw)

    async def intake(self, number: str, body: dict[str, Any], key: str | None = None) -> Reply:
        """B1 with a fresh (or given) idempotency key."""
        return await self.registry(
            "PUT",
            f"/v1/students/{number}/intake",
            json=body,
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )


_rng = random.Random(20260901)
_counter = itertools.count()


@dataclass
class NewChild:
    """A fresh child as the bridge would hand it over: number, B1 body, record file bytes."""

    number: str
    body: dict[str, Any]
    content: bytes


def new_child(*, entry_year: int = 2026, temporary: bool = False) -> NewChild:
    """A fresh valid child with a unique identity."""
    gender = _rng.choice("MF")
    birth = birth_date_for(_rng, entry_year)
    county = "110105"
    content = f"record file {next(_counter)}".encode()
    if temporary:
        number, id_type, id_number = l_number(_rng, county, birth), "none", None
        name = f"临时{next(_counter)}"
    else:
        id_number = resident_id(_rng, county, birth, gender)
        number, id_type, name = "G" + id_number, "resident_id", "王小明"
    body = {
        "entry_year": entry_year,
        "child": {
            "name": name,
            "gender": gender,
            "birth_date": birth.isoformat(),
            "id_type": id_type,
            "id_number": id_number,
            "nationality": "CN",
        },
        "kindergarten_code": "1111010501",
        "graduated_on": dt.date(entry_year, 7, 3).isoformat(),
        "requested_school_code": "2111010502",
        "record_file": {
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "media_type": "application/json",
        },
    }
    return NewChild(number, body, content)


StartSim = Callable[[str], Awaitable[tuple[web.AppRunner, str]]]


@pytest.fixture(scope="session")
async def database_factory() -> AsyncIterator[Callable[[], str]]:
    """Unique database URLs for this run; all dropped at the end."""
    made: list[str] = []

    def make() -> str:
        url = f"{PG_SERVER}/xueji_sim_test_{RUN_ID}_{len(made)}"
        made.append(url)
        return url

    yield make
    for url in made:
        await drop_database(url)


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session for the whole run."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
async def sim_server(
    database_factory: Callable[[], str],
) -> AsyncIterator[tuple[str, SimConfig]]:
    """The shared simulator: (base URL, config)."""
    config = SimConfig(port=0, database_url=database_factory())
    runner, base_url = await start_simulator(config)
    yield base_url, config
    await runner.cleanup()


@pytest.fixture
async def sim(sim_server: tuple[str, SimConfig], http: aiohttp.ClientSession) -> SimClient:
    """A client of the shared simulator, wiped clean for this test."""
    base_url, config = sim_server
    client = SimClient(http, base_url, config)
    reply = await client.admin("POST", "/reset")
    assert reply.status == 204
    return client
