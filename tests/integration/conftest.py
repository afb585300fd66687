"""Fixtures of the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bridge.adapters.postgres.ledger import Ledger
from bridge.bootstrap import open_pool
from bridge.entrypoints.cli import main
from bridge.settings import Settings
from tests.conftest import MakeDatabase


@pytest.fixture
async def make_ledger(make_database: MakeDatabase) -> AsyncIterator[Any]:
    """make() opens a ledger on a fresh database; make.batches lists its batched writes."""
    opened: list[tuple[asyncpg.Pool, Ledger]] = []
    batches: list[tuple[str, int]] = []

    async def make() -> tuple[asyncpg.Pool, Ledger]:
        pool = await open_pool(Settings(database_url=await make_database("xueji_batches")))
        ledger = Ledger(pool, observe_batch=lambda writer, rows: batches.append((writer, rows)))
        opened.append((pool, ledger))
        return pool, ledger

    make.batches = batches  # type: ignore[attr-defined]
    yield make
    for pool, ledger in opened:
        await ledger.aclose()
        await pool.close()


@pytest.fixture
def cli(
    bridge_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """`xueji …` in this process on the test's database and broker: (exit code, stdout,
    stderr). No file key is set: a test gives one (BRIDGE_FILE_KEYS) when it needs it."""
    for name in ("database_url", "amqp_url", "registry_url", "preschool_url", "events_exchange",
                 "queue_prefix"):  # fmt: skip
        monkeypatch.setenv(f"BRIDGE_{name.upper()}", str(getattr(bridge_settings, name)))

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
