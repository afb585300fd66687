"""A PostgreSQL primary and a streaming standby of their own on this machine.

Built as an operator would: ``initdb`` the primary, ``pg_basebackup -R`` the standby from
it, and (when *synchronous*) name the standby in the primary's
``synchronous_standby_names``, so a commit returns only once the standby has flushed it.
The standby's own configuration names no synchronous standby: once promoted it commits
alone, as Patroni's (non-strict) synchronous mode does until a new standby joins.
Servers run as ``postgres`` on their own ports and socket folder; the primary dies by
SIGKILL of its whole process tree; the standby is promoted with ``pg_ctl promote``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg

from tests.faults_ha.engines import (
    Engine,
    alive,
    free_port,
    give_to,
    gone,
    kill_tree,
    pg_bindir,
    run_as,
)

USER = "postgres"
STANDBY_NAME = "xueji_standby"


class PgServer:
    """One server: its data folder and port."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / name
        self.port = free_port()
        self.socket_dir = root / "sockets"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and alive(pid)


class PostgresPair(Engine):
    """Primary + standby; ``async with`` builds and starts them, and removes them after."""

    def __init__(self, root: Path, *, synchronous: bool = True) -> None:
        self.root = root
        self.synchronous = synchronous
        self.primary = PgServer(root, "primary")
        self.standby = PgServer(root, "standby")
        bindir = pg_bindir()
        assert bindir is not None
        self.bindir = bindir

    def dsn(self, database: str) -> str:
        """A libpq multi-host URL naming both servers; libpq/asyncpg pick the writable one."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in (self.primary, self.standby))
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    async def _pg(self, program: str, *args: str, timeout_s: float = 120.0) -> str:
        return await run_as(USER, str(self.bindir / program), *args, timeout_s=timeout_s)

    async def _ctl_start(self, server: PgServer) -> None:
        await self._pg(
            "pg_ctl", "start", "-w", "-t", "120", "-D", str(server.data),
            "-l", str(self.root / f"{server.name}.log"),
            "-o", f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1",
        )  # fmt: skip

    async def start(self) -> None:
        """initdb, start the primary, clone the standby, start it, make it synchronous."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.primary.socket_dir.mkdir(exist_ok=True)
        give_to(self.root, USER)
        await self._pg(
            "initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
            "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# xueji HA suite\nshared_buffers = 32MB\nmax_connections = 120\n"
                "wal_keep_size = 256MB\nfsync = on\n"
            )
        await self._ctl_start(self.primary)
        await self._pg(
            "pg_basebackup", "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast",
            "-d", f"host=127.0.0.1 port={self.primary.port} user=postgres "
            f"application_name={STANDBY_NAME}",
        )  # fmt: skip
        await self._ctl_start(self.standby)
        if self.synchronous:
            await self.execute(
                self.primary, f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"
            )
            await self.execute(self.primary, "SELECT pg_reload_conf()")
        await self.wait_streaming()

    async def execute(self, server: PgServer, sql: str) -> None:
        conn = await asyncpg.connect(server.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def wait_streaming(self, timeout_s: float = 60.0) -> None:
        """Until the primary sees the standby streaming (as its synchronous standby)."""
        want = "sync" if self.synchronous else "async"
        conn = await asyncpg.connect(self.primary.admin_url)
        try:
            for _ in range(int(timeout_s / 0.2)):
                state = await conn.fetchval(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1"
                    " AND state = 'streaming'",
                    STANDBY_NAME,
                )
                if state == want:
                    return
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        raise RuntimeError(f"standby not streaming ({want}) after {timeout_s} s")

    async def stop_replication(self) -> None:
        """The standby stops receiving WAL (its primary_conninfo emptied, reloaded)."""
        await self.execute(self.standby, "ALTER SYSTEM SET primary_conninfo = ''")
        await self.execute(self.standby, "SELECT pg_reload_conf()")
        conn = await asyncpg.connect(self.primary.admin_url)
        try:
            for _ in range(150):
                if not await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1",
                    STANDBY_NAME,
                ):
                    return
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        raise RuntimeError("the standby still streams")

    async def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend at once; wait until gone."""
        pid = self.primary.pid()
        assert pid is not None
        kill_tree(pid)
        assert await gone(pid, 10), "the primary outlived SIGKILL"

    async def promote(self) -> None:
        """Promote the standby (waits until it accepts writes)."""
        await self._pg("pg_ctl", "promote", "-w", "-t", "120", "-D", str(self.standby.data))

    async def stop(self) -> None:
        """Stop whatever runs (immediate shutdown), kill leftovers, remove the folders."""
        for server in (self.standby, self.primary):
            if server.running():
                with contextlib.suppress(RuntimeError):
                    await self._pg(
                        "pg_ctl", "stop", "-m", "immediate", "-w", "-t", "30",
                        "-D", str(server.data), timeout_s=40,
                    )  # fmt: skip
            pid = server.pid()
            if pid is not None and alive(pid):
                kill_tree(pid)
        await asyncio.to_thread(_remove, self.root)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
