"""What the benchmark scripts share: services, throw-away databases, child processes, output.

Every script runs its systems as separate processes (the bridge as ``python -m bridge
run``), so each one's CPU and memory are its own and can be measured from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

PG_SERVER = os.environ.get("XUEJI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("XUEJI_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "bench"
TAG = uuid.uuid4().hex[:8]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- databases ------------------------------------------------------------------------
async def create_database(prefix: str) -> str:
    """A fresh, uniquely named database; returns its URL."""
    name = f"{prefix}_{TAG}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{PG_SERVER}/{name}"


async def drop_database(url: str) -> None:
    """Drop a database made by create_database (connections are cut)."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def settle_database(url: str) -> None:
    """Bring a freshly bulk-loaded database to the state of one that has run a while.

    Rows read for the first time after a load get their hint bits set, dirtying every page
    they sit on, and a fresh table has no statistics; autovacuum would see to both in time
    (and is off on the CI machines). Left as loaded, that cost lands on whichever system
    happens to run first and reads the data, and the comparison with its baseline is off.
    """
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (FREEZE, ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def databases() -> AsyncIterator[list[str]]:
    """Collects URLs of databases to drop when the benchmark ends, whatever happens."""
    urls: list[str] = []
    try:
        yield urls
    finally:
        for url in reversed(urls):
            with contextlib.suppress(Exception):
                await drop_database(url)


# --- broker ---------------------------------------------------------------------------
async def delete_broker_objects(queues: Sequence[str], exchanges: Sequence[str]) -> None:
    """Remove what a run declared, so nothing piles up on the broker."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)


# --- processes ------------------------------------------------------------------------
def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any BRIDGE_/SIM_ settings, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "SIM_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


class Child:
    """A child process whose output goes to a log file under artifacts/bench."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}-{TAG}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *argv], env=dict(env), stdout=log, stderr=log, cwd=ROOT
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident set size now (0 once gone)."""
        return _status_kb(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """The kernel's high-water mark of the resident set (VmHWM)."""
        return _status_kb(self.pid, "VmHWM") * 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    async def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + timeout_s
            while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the child's log, for error messages."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# The shared servers every system leans on, by process name (PostgreSQL forks a process
# per connection; RabbitMQ is one Erlang VM).
SERVER_PROCESSES = {"postgres": "postgres", "beam.smp": "rabbitmq"}


class CpuMeter:
    """CPU seconds used between start() and stop() by named pids and the shared servers.

    Processes that end within the window are missed; PostgreSQL's per-connection backends
    live as long as the pools that opened them, so a system's run is covered.
    """

    def __init__(self, pids: Mapping[str, int], databases: Mapping[str, str] | None = None) -> None:
        """*databases* names PostgreSQL backends by the database they serve (name → URL)."""
        self._pids = dict(pids)
        self._databases = {name: url.rsplit("/", 1)[1] for name, url in (databases or {}).items()}
        self._start: dict[int, tuple[str, int]] = {}

    def _group(self, pid: int) -> str | None:
        group = SERVER_PROCESSES.get(_command(pid))
        if group == "postgres" and self._databases:
            # A backend's title is "postgres: <cluster>: <user> <database> <client> ..."
            words = _cmdline(pid).split()
            for name, database in self._databases.items():
                if database in words:
                    return f"postgres:{name}"
        return group

    def _snapshot(self) -> dict[int, tuple[str, int]]:
        taken: dict[int, tuple[str, int]] = {}
        for name, pid in self._pids.items():
            taken[pid] = (name, _cpu_ticks(pid))
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in taken:
                group = self._group(int(entry.name))
                if group:
                    taken[int(entry.name)] = (group, _cpu_ticks(int(entry.name)))
        return taken

    def start(self) -> None:
        """Take the first reading."""
        self._start = self._snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per component since start()."""
        end = self._snapshot()
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[str, float] = {}
        for pid, (name, t1) in end.items():
            t0 = self._start.get(pid, (name, 0))[1]
            used[name] = used.get(name, 0.0) + max(0, t1 - t0) / ticks
        return used


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def wait_http_ok(url: str, child: Child, *, timeout_s: float = 60.0) -> None:
    """Poll *url* until it answers 200; fail early if *child* died."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not ready in {timeout_s} s")
            await asyncio.sleep(0.1)


@dataclass
class Simulator:
    """The simulator of both registries as its own process."""

    child: Child
    url: str
    database_url: str

    @classmethod
    async def start(cls, database_url: str, *, pool_max: int = 20) -> Simulator:
        """Start ``python -m simulator`` on a free port and wait until it answers."""
        port = free_port()
        env = python_env({"SIM_DB_POOL_MAX": str(pool_max)})
        child = Child(
            "simulator",
            ["-m", "simulator", "--port", str(port), "--database-url", database_url],
            env,
        )
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(f"{url}/_sim/health", child)
        return cls(child, url, database_url)

    async def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/_sim/stats") as r:
            result: dict[str, Any] = await r.json()
            return result

    async def files_stored(self) -> int:
        """How many B2 record-file PUTs answered 204 so far (one per completed hand-over)."""
        return files_stored(await self.stats())

    async def set_faults(self, body: Mapping[str, Any]) -> None:
        """``PUT /_sim/faults``."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.url}/_sim/faults", json=dict(body)) as r,
        ):
            r.raise_for_status()

    async def wipe_registry(self) -> None:
        """Empty the primary registry's side, keeping the seeded preschool side."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                "TRUNCATE reg_idempotency, reg_record_files, reg_former_numbers, reg_students"
                " RESTART IDENTITY"
            )
        finally:
            await conn.close()


def files_stored(stats: Mapping[str, Any]) -> int:
    """B2 answers 204 counted in a ``/_sim/stats`` body."""
    endpoint = "PUT /registry/v1/students/{student_number}/record-file"
    return int(stats["requests"].get(endpoint, {}).get("204", 0))


_FILE_KEYS: list[str] = []


def bench_file_keys() -> str:
    """BRIDGE_FILE_KEYS of this run's bridges (record files are sealed at rest); made once
    per run, so a seeded ledger and the bridge reading it share it."""
    if not _FILE_KEYS:
        from bridge.adapters.file_crypto import new_key_line

        _FILE_KEYS.append(new_key_line("bench"))
    return _FILE_KEYS[0]


def bridge_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The environment of a bridge process from BRIDGE_* settings given in lower case
    (with this run's file key unless one is given)."""
    given = (
        {"file_keys": bench_file_keys()}
        if not {"file_keys", "file_keys_file"} & set(settings)
        else {}
    )
    return python_env({f"BRIDGE_{k.upper()}": str(v) for k, v in {**given, **settings}.items()})


# --- figures --------------------------------------------------------------------------
def cpu_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes now: how fast this machine is right now.

    Figures taken on a shared or throttled machine are only comparable next to this; on an
    idle 2-core CI-size box it reads 70-100 ms.
    """
    start = time.perf_counter()
    total = 0
    for i in range(2_500_000):
        total += i
    return round((time.perf_counter() - start) * 1000, 1)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of *values*; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(h) for h in header], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if j else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def print_json_line(figures: Mapping[str, Any]) -> None:
    """The machine-readable result: one JSON line, prefixed so it is easy to grep."""
    print("BENCH_JSON " + json.dumps(figures, sort_keys=True), flush=True)
