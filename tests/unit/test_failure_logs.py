"""Logs of unexpected failures say where (type and frames), never what (the message)."""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

import pytest

from bridge.failures import described, log_failure
from bridge.services.purge_schedule import purge_on_schedule
from bridge.services.reconcile_schedule import reconcile_on_schedule

NUMBER = "G110105201903070012"


def broken() -> None:
    try:
        raise KeyError(NUMBER)
    except KeyError as exc:
        raise ValueError(f"invalid input for query argument: {NUMBER}") from exc


def test_a_failure_is_described_by_its_types_and_frames_only() -> None:
    with pytest.raises(ValueError) as caught:
        broken()
    text = described(caught.value)
    assert text.startswith("ValueError (from KeyError)")
    assert "in broken" in text
    assert NUMBER not in text


def test_log_failure_writes_an_error_without_the_message(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError) as caught:
        broken()
    log_failure(logging.getLogger("t"), "child %s failed", 7, exc=caught.value)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage().startswith("child 7 failed: ValueError")
    assert NUMBER not in caplog.text


async def test_the_reconciliation_schedule_logs_a_failure_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run_if_due(year: int, interval_s: float) -> Any:
        broken()

    reconciler: Any = types.SimpleNamespace(run_if_due=run_if_due)
    task = asyncio.create_task(reconcile_on_schedule(reconciler, [2026], 0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "scheduled reconciliation of 2026 failed: ValueError" in caplog.text
    assert NUMBER not in caplog.text


async def test_the_purge_schedule_logs_a_failure_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def purge_if_due(interval_s: float) -> Any:
        broken()

    retention: Any = types.SimpleNamespace(purge_if_due=purge_if_due)
    task = asyncio.create_task(purge_on_schedule(retention, 0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "scheduled retention purge failed: ValueError" in caplog.text
    assert NUMBER not in caplog.text
