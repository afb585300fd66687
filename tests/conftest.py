"""Shared fixtures: real PostgreSQL, RabbitMQ and the simulator, isolated per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import asyncpg
import pytest

from bridge.adapters.file_crypto import new_key_line
from bridge.failures import redact_logs
from bridge.settings import Settings
from tests.support.sim import SimulatorHandle

PG_ADMIN_URL = os.environ.get("XUEJI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("XUEJI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
# Record files are sealed at rest: every test bridge gets a key of this run (never a fixed
# one, so nothing can come to rely on a particular key).
FILE_KEYS = new_key_line("test-run")

# As in `xueji run`: no log record of any test carries an identity or student number.
redact_logs()

MakeDatabase = Callable[[str], Awaitable[str]]


def _url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def make_database() -> AsyncIterator[MakeDatabase]:
    """Factory of fresh, uniquely named databases, dropped after the test."""
    created: list[str] = []

    async def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return _url(name)

    yield make
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        for name in reversed(created):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def amqp_names() -> AsyncIterator[dict[str, str]]:
    """A private events exchange and queue prefix; deleted from the broker afterwards."""
    tag = uuid.uuid4().hex[:10]
    names = {"exchange": f"preschool.events.test-{tag}", "prefix": f"xueji.test-{tag}"}
    yield names
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for queue in (f"{names['prefix']}.{q}" for q in ("events", "parked", "unrecorded")):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (names["exchange"], f"{names['prefix']}.parked"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)


@pytest.fixture
async def simulator(make_database: MakeDatabase) -> AsyncIterator[SimulatorHandle]:
    """Both registries' simulator on a loopback port, with its own database."""
    from simulator.app import start_simulator
    from simulator.config import SimConfig

    database_url = await make_database("xueji_sim_test")
    runner, url = await start_simulator(SimConfig(port=0, database_url=database_url))
    try:
        yield SimulatorHandle(url)
    finally:
        await runner.cleanup()


@pytest.fixture
async def bridge_settings(
    make_database: MakeDatabase, amqp_names: dict[str, str], simulator: SimulatorHandle
) -> Settings:
    """Settings of a bridge wired to this test's database, exchange and simulator."""
    return Settings(
        database_url=await make_database("xueji_test"),
        amqp_url=AMQP_URL,
        registry_url=f"{simulator.url}/registry",
        preschool_url=f"{simulator.url}/preschool",
        events_exchange=amqp_names["exchange"],
        queue_prefix=amqp_names["prefix"],
        instance_id=f"test-{uuid.uuid4().hex[:6]}",
        poll_interval_s=0.2,
        retry_base_s=0.2,
        retry_max_s=2.0,
        registry_read_timeout_s=2.0,
        registry_total_timeout_s=5.0,
        registry_max_inline_wait_s=0.5,
        http_port=0,
        file_keys=FILE_KEYS,
    )
