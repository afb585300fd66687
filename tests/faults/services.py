"""Restarting the real RabbitMQ and PostgreSQL on this machine, as an operator would."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import asyncpg
import pytest

from tests.support.waiting import eventually


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {out.decode()[-500:]}")


def require_service_control() -> None:
    """Skip (with the reason) where this process cannot restart the local services."""
    missing = [c for c in ("rabbitmqctl", "pg_ctlcluster") if shutil.which(c) is None]
    if missing or not Path("/etc/postgresql").is_dir():
        pytest.skip(f"needs local RabbitMQ and PostgreSQL it may restart (missing: {missing})")
    if os.geteuid() != 0:
        pytest.skip("restarting the local services needs root")


async def restart_rabbitmq(down_s: float = 2.0) -> None:
    """Stop the broker application (every connection drops), wait, start it again."""
    await _run("rabbitmqctl", "stop_app")
    await asyncio.sleep(down_s)
    await _run("rabbitmqctl", "start_app")
    await _run("rabbitmqctl", "await_startup")


def _cluster_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


async def restart_postgres(admin_url: str) -> None:
    """Restart the PostgreSQL cluster (every connection is cut) and wait until it answers."""
    version = _cluster_version()
    await _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")

    async def answers() -> bool:
        try:
            conn = await asyncpg.connect(admin_url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await conn.close()
        return True

    await eventually(answers, bool, timeout_s=60, what="PostgreSQL back")
