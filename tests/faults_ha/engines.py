"""What the HA suite's engines share: ports, running as a service user, killing by pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self

import pytest

from tests.support.bridge_process import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")

__all__ = [
    "RABBIT_BIN", "Engine", "free_port", "kill_tree", "pg_bindir", "require_engines", "run_as",
]  # fmt: skip


class Engine:
    """Servers a test starts: ``async with`` starts them, and stops them whatever happens."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # half-started: what did start must not outlive the test
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def pg_bindir() -> Path | None:
    """The PostgreSQL server programs (initdb, pg_ctl, pg_basebackup), if installed."""
    if shutil.which("pg_config") is None:
        return None
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
    folder = Path(out.stdout.strip())
    return folder if (folder / "initdb").exists() else None


def require_engines() -> None:
    """Skip (with the reason) where this process cannot start its own servers."""
    if os.geteuid() != 0:
        pytest.skip("starting RabbitMQ and PostgreSQL servers as their users needs root")
    missing = [
        what
        for what, ok in (
            ("rabbitmq-server", (RABBIT_BIN / "rabbitmq-server").exists()),
            ("PostgreSQL server programs", pg_bindir() is not None),
            ("user rabbitmq", _user_exists("rabbitmq")),
            ("user postgres", _user_exists("postgres")),
            ("runuser", shutil.which("runuser") is not None),
        )
        if not ok
    ]
    if missing:
        pytest.skip(f"needs local RabbitMQ and PostgreSQL installs (missing: {missing})")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def give_to(path: Path, user: str) -> None:
    """Make *path* (a folder or file) and everything in it *user*'s."""
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


async def run_as(
    user: str,
    *argv: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    check: bool = True,
) -> str:
    """Run a command as *user* with exactly *env* (plus PATH); its output."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    environment.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        "runuser", "-u", user, "--", "env", "-i",
        *(f"{k}={v}" for k, v in environment.items()), *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise RuntimeError(f"{' '.join(argv[:3])} … took over {timeout_s} s") from None
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {text[-800:]}")
    return text


def children_of(pid: int) -> list[int]:
    """Processes whose parent is *pid* (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL *pid* and its children at once, as a machine dying would."""
    for target in [pid, *children_of(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of ours stays a zombie until reaped; it is dead all the same.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def gone(pid: int, within_s: float) -> bool:
    """Whether *pid* has ended within *within_s* seconds."""
    for _ in range(int(within_s / 0.1)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.1)
    return not alive(pid)
