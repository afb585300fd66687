"""Running the bridge as a real process (``python -m bridge run``), for crash tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from bridge.settings import Settings
from tests.support.waiting import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``xueji run`` use *settings*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    for name, value in settings.model_dump().items():
        if value is not None:  # unset stays unset (not the text "None")
            env[f"BRIDGE_{name.upper()}"] = str(value)
    return env


class BridgeProcess:
    """One ``python -m bridge run`` child process, logging to a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"http_port": self.port})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start and wait until /readyz says ready."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - a quick fork; the child runs alone
            [sys.executable, "-m", "bridge", "run"],
            env=settings_env(self.settings), stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await eventually(self._ready, bool, timeout_s=30, what="bridge ready")

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"bridge exited with {self.proc.returncode}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.port}/readyz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        for _ in range(100):
            if self.proc.poll() is not None:
                return self.proc.returncode
            await asyncio.sleep(0.1)
        self.proc.kill()
        return self.proc.wait()
