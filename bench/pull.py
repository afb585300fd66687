"""Schools pulling record files: the school API under 200 concurrent schools (issue #7).

N handed-over children (spread over S schools, one record file each) are written straight
into a fresh ledger; a bridge runs as its own process (``python -m bridge run``). Every
school is a client of its own (one keep-alive connection) that lists its children (pages
of 100) and downloads each file, checking its sha256. Two runs follow.

**Saturation (closed loop).** All schools at once, each sending its next request the
moment the last one is answered. This says how many requests per second the bridge
serves flat out — and nothing about what a school waits: with S requests always in
flight, mean latency is S / throughput (Little's law), so 200 schools at p99 <= 50 ms
would take some 6,000+ req/s from a Python server and a Python load generator sharing
two cores. Its latencies are printed, but they measure the queue, not the bridge.

**Latency under offered load (open loop).** For each total rate L of the sweep, each
school is a clerk's client issuing its requests one at a time (list pages, then each
file, then round again) at moments drawn from a Poisson process of rate L / S. A request
whose moment comes while the one before is still out waits for it, and its latency is
counted from the moment it was *scheduled* (no coordinated omission): a slow answer
makes the requests behind it late, as it would for a clerk. After ``--step-s`` seconds of
schedule, what could not be sent within ``--drain-s`` more is counted as missed (with the
file pulls), its wait so far standing as its latency. Prints p50/p99 per load (and per
kind of request), the CPU the bridge and its PostgreSQL backends spent per request, and the highest
offered load whose file p99 met the target.

Options (defaults in brackets):

  --children N          handed-over children, one file each [4000, or $N]
  --schools S           schools they are spread over [200]
  --file-kb K           size of each record file [20]
  --loads L1,L2,...     total offered loads of the sweep, req/s [250,500,750,1000,2000]
  --step-s S            seconds of schedule per load [8]
  --drain-s S           grace after a step's schedule before the rest counts missed [2]
  --target-p99-ms MS    the file-pull p99 the sweep is judged against [50]
  --seed N              seed of the arrival schedule [7]
  --bridge-setting K=V  a bridge setting (BRIDGE_K=V), e.g. event_loop=uvloop or
                        db_pool_size=8; repeatable [the bridge's defaults]
  --no-saturation       skip the closed-loop run
  --no-sweep            skip the open-loop sweep

Prints tables and one line ``BENCH_JSON {...}``. The defaults run in about a minute.
The load generator shares the machine: its own CPU is printed too, and the ``gen lag``
column (how late a request left although its clerk was idle) shows when the generator,
not the bridge, is what falls behind. ``others cpu/s`` is the CPU the rest of the machine
(the kernel, other programs, other databases) used meanwhile: well above zero, the
figures of that step were taken on a busy machine.

``python -m bench.pull --loads 250,500,1000 --step-s 10``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
    CpuMeter,
    bridge_env,
    create_database,
    databases,
    delete_broker_objects,
    free_port,
    percentile,
    print_json_line,
    print_table,
    wait_http_ok,
)
from bridge.adapters.postgres.tokens import TokenStore
from bridge.bootstrap import open_pool
from bridge.domain.access import Role
from bridge.settings import Settings

ENTRY_YEAR = 2026
PAGE = 100


def _school(i: int) -> str:
    return f"2111{i:06d}"


async def seed(database_url: str, children: int, schools: int, file_kb: int) -> dict[str, str]:
    """Children, numbers and files straight into the ledger; returns school → token."""
    pool = await open_pool(Settings(database_url=database_url))
    try:
        files, rows, numbers = [], [], []
        for i in range(children):
            number = f"L{i:018d}"
            # Distinct content per child: files are stored by content address.
            content = json.dumps({"student_number": number, "pad": os.urandom(file_kb * 380).hex()})
            body = content.encode()[: file_kb * 1024]
            sha = hashlib.sha256(body).hexdigest()
            files.append((sha, len(body), "application/json", body))
            school = _school(i % schools)
            key = {"name": f"child {i}", "gender": "MF"[i % 2], "birth_date": "2020-03-01"}
            handoff = {
                "registrations": [{
                    "student_number": number, "entry_year": ENTRY_YEAR, "terms": "bench",
                    "key_info": key, "school_code": school, "file_sha256": sha,
                    "enrolled": False,
                }],
                "verified_file_sha256": sha, "set_aside": None, "arrival": None,
                "generation": 0,
            }  # fmt: skip
            rows.append(
                (number, "graduated", "file_delivered", ENTRY_YEAR, "110105", school,
                 json.dumps(handoff))
            )  # fmt: skip
            numbers.append(number)
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "record_files", records=files, columns=["sha256", "size", "media_type", "content"]
            )
            await conn.executemany(
                "INSERT INTO children (student_number, status, phase, entry_year, county_code,"
                " school_code, handoff) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                rows,
            )
            await conn.execute(
                "INSERT INTO child_numbers (student_number, child_id)"
                " SELECT student_number, child_id FROM children"
            )
        store = TokenStore(pool)
        tokens = {}
        for s in range(schools):
            issued = await store.issue(Role.SCHOOL, school_code=_school(s), label="bench")
            tokens[_school(s)] = issued.token
        return tokens
    finally:
        await pool.close()


# --- one school's client --------------------------------------------------------------
@dataclass
class Tally:
    """Latencies (s) by kind of request, and what went wrong."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"list": [], "file": []})
    gen_lag: list[float] = field(default_factory=list)
    bytes_in: int = 0
    missed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests that got an answer."""
        return sum(len(v) for v in self.seconds.values()) - self.missed


class School:
    """A school's registry clerk's client: one session, one request at a time.

    Its rounds go: every page of the list, then every file listed, then again.
    """

    def __init__(self, url: str, code: str, token: str) -> None:
        self.url, self.code = url, code
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        self.rounds = 0
        self._files: dict[str, str] = {}  # student number → sha256, as listed
        self._cursor: str | None = None
        self._listing = True
        self._listed: list[str] = []
        self._queue: deque[str] = deque()

    def next_request(self) -> tuple[str, Callable[[Tally], Awaitable[None]]]:
        """The kind and sender of the clerk's next request."""
        if self._listing:
            return "list", self._list_page
        number = self._queue.popleft()
        return "file", lambda tally: self._download(number, tally)

    async def _list_page(self, tally: Tally) -> None:
        params = {"entry_year": str(ENTRY_YEAR), "limit": str(PAGE)}
        if self._cursor:
            params["cursor"] = self._cursor
        path = f"{self.url}/v1/schools/{self.code}/handoffs"
        async with self.session.get(path, params=params) as r:
            body = await r.read()
        if r.status != 200:
            tally.errors.append(f"list {r.status}")
            self._cursor, self._listed = None, []  # start the list again
            return
        page = json.loads(body)
        for item in page["items"]:
            self._files[item["student_number"]] = item["record_file"]["sha256"]
            self._listed.append(item["student_number"])
        self._cursor = page["next_cursor"]
        if self._cursor is None:  # the list is done: the files now
            self._queue, self._listed = deque(self._listed), []
            self._listing = not self._queue
            self.rounds += not self._queue

    async def _download(self, number: str, tally: Tally) -> None:
        async with self.session.get(f"{self.url}/v1/handoffs/{number}/record-file") as r:
            body = await r.read()
        tally.bytes_in += len(body)
        if r.status != 200 or hashlib.sha256(body).hexdigest() != self._files[number]:
            tally.errors.append(f"file {r.status}")
        if not self._queue:  # the round is done: list again
            self._listing = True
            self.rounds += 1

    async def warm_up(self) -> None:
        """A short list and one download, not counted: connections open, pools fill."""
        path = f"{self.url}/v1/schools/{self.code}/handoffs"
        async with self.session.get(path, params={"limit": "1"}) as r:
            items = json.loads(await r.read())["items"]
        for item in items:
            path = f"{self.url}/v1/handoffs/{item['student_number']}/record-file"
            async with self.session.get(path) as r:
                await r.read()

    async def close(self) -> None:
        """Close the session."""
        await self.session.close()


async def closed_loop(schools: list[School], tally: Tally) -> None:
    """Every school lists and downloads all its files once, back to back."""

    async def one(school: School) -> None:
        done = school.rounds + 1
        while school.rounds < done:
            kind, send = school.next_request()
            start = time.perf_counter()
            await send(tally)
            tally.seconds[kind].append(time.perf_counter() - start)

    await asyncio.gather(*(one(s) for s in schools))


async def open_loop(
    schools: list[School], rate_per_school: float, step_s: float, drain_s: float,
    rng: random.Random, tally: Tally,
) -> None:  # fmt: skip
    """Each school sends at Poisson moments; latency counts from the scheduled moment."""
    t0 = time.perf_counter() + 0.2  # let every clerk get ready first
    end, stop = t0 + step_s, t0 + step_s + drain_s

    async def clerk(school: School, seed: int) -> None:
        arrivals = random.Random(seed)
        due = t0 + arrivals.expovariate(rate_per_school)
        while due < end and time.perf_counter() < stop:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                tally.gen_lag.append(time.perf_counter() - due)  # idle clerk: the loop's delay
            kind, send = school.next_request()
            await send(tally)
            tally.seconds[kind].append(time.perf_counter() - due)
            due += arrivals.expovariate(rate_per_school)
        while due < end:  # never sent: missed, having waited at least until the stop
            tally.seconds["file"].append(stop - due)
            tally.missed += 1
            due += arrivals.expovariate(rate_per_school)

    await asyncio.gather(*(clerk(s, rng.randrange(2**32)) for s in schools))


# --- the run --------------------------------------------------------------------------
def _ms(values: list[float], p: float) -> float:
    return round(percentile(values, p) * 1000, 1)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_ms(used: dict[str, float], name: str, requests: int) -> float:
    return round(used.get(name, 0.0) * 1000 / max(1, requests), 3)


def metered(bridge: Child, database_url: str) -> CpuMeter:
    """A CpuMeter of the bridge, this load generator and the bridge's PostgreSQL backends.

    The backends serving the bridge's database come out as ``postgres:bridge``, apart from
    the rest of the server (``postgres``), which another benchmark may be using.
    """
    return CpuMeter(
        {"bridge": bridge.pid, "loadgen": os.getpid()}, databases={"bridge": database_url}
    )


def summed(used: dict[str, float]) -> dict[str, float]:
    """CpuMeter's figures, the bridge's backends as ``bridge_pg``."""
    out = dict(used)
    out["bridge_pg"] = out.pop("postgres:bridge", 0.0)
    return out


async def main(opts: argparse.Namespace) -> int:
    port = free_port()
    prefix = f"xueji.bench-pull-{TAG}"
    figures: dict[str, Any] = {
        "bench": "pull", "children": opts.children, "schools": opts.schools,
        "file_kb": opts.file_kb, "bridge_settings": opts.bridge_settings,
        "target_p99_ms": opts.target_p99_ms,
    }  # fmt: skip
    errors = 0
    async with databases() as dbs:
        database_url = await create_database("xueji_bench_pull")
        dbs.append(database_url)
        t0 = time.perf_counter()
        tokens = await seed(database_url, opts.children, opts.schools, opts.file_kb)
        print(f"seeded {opts.children} children in {opts.schools} schools"
              f" in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        settings = {
            "database_url": database_url, "amqp_url": AMQP_URL, "http_port": port,
            "queue_prefix": prefix, "events_exchange": f"{prefix}.events",
            "instance_id": f"bench-pull-{uuid.uuid4().hex[:6]}",
            "registry_url": "http://127.0.0.1:9/registry",
            "preschool_url": "http://127.0.0.1:9/preschool", "log_level": "WARNING",
            **opts.bridge_settings,
        }  # fmt: skip
        bridge = Child("bridge-pull", ["-m", "bridge", "run"], bridge_env(settings))
        url = f"http://127.0.0.1:{port}"
        schools = [School(url, code, token) for code, token in tokens.items()]
        try:
            await wait_http_ok(f"{url}/readyz", bridge)
            await asyncio.gather(*(s.warm_up() for s in schools))
            if opts.saturation:
                meter = metered(bridge, database_url)
                errors += await _saturation(schools, meter, figures)
                figures["bridge_peak_rss_mib"] = round(bridge.peak_rss_bytes() / 2**20)
            if opts.sweep:
                meter = metered(bridge, database_url)
                errors += await _sweep(schools, meter, opts, figures)
        finally:
            for school in schools:
                await school.close()
            await bridge.stop()
            await delete_broker_objects(
                [f"{prefix}.events", f"{prefix}.parked"], [f"{prefix}.events", f"{prefix}.parked"]
            )
    figures["errors"] = errors
    print_json_line(figures)
    return 1 if errors else 0


async def _saturation(schools: list[School], meter: CpuMeter, figures: dict[str, Any]) -> int:
    tally = Tally()
    meter.start()
    busy0, start = machine_busy_s(), time.perf_counter()
    await closed_loop(schools, tally)
    elapsed = time.perf_counter() - start
    used = summed(meter.stop())
    cores_busy = (machine_busy_s() - busy0) / elapsed
    ours = sum(used.get(k, 0.0) for k in ("bridge", "bridge_pg", "loadgen")) / elapsed
    total = tally.answered
    rows: list[tuple[Any, ...]] = [
        (kind, len(v), len(v) / elapsed, _ms(v, 50), _ms(v, 99))
        for kind, v in tally.seconds.items()
    ]
    rows.append(("all", total, total / elapsed, float("nan"), float("nan")))
    print_table(
        f"Saturation: {len(schools)} schools back to back, closed loop ({elapsed:.1f} s,"
        f" {tally.bytes_in / elapsed / 2**20:.1f} MiB/s). CPU per request: bridge"
        f" {_cpu_ms(used, 'bridge', total)} ms, its PostgreSQL backends"
        f" {_cpu_ms(used, 'bridge_pg', total)} ms (all other postgres processes"
        f" {_cpu_ms(used, 'postgres', total)} ms), load generator"
        f" {_cpu_ms(used, 'loadgen', total)} ms; {cores_busy:.2f} of {os.cpu_count()} cores"
        f" busy, {max(0.0, cores_busy - ours):.2f} of them by everything else",
        ["request", "count", "req/s", "p50 ms", "p99 ms"], rows,
    )  # fmt: skip
    print("  (closed loop: latency here is schools in flight / throughput, not service time)")
    if tally.errors:
        print(f"\n{len(tally.errors)} errors, e.g. {tally.errors[:5]}")
    figures.update({
        "elapsed_s": round(elapsed, 2), "requests_per_s": round(total / elapsed, 1),
        "list_p50_ms": _ms(tally.seconds["list"], 50),
        "list_p99_ms": _ms(tally.seconds["list"], 99),
        "file_p50_ms": _ms(tally.seconds["file"], 50),
        "file_p99_ms": _ms(tally.seconds["file"], 99),
        "mib_per_s": round(tally.bytes_in / elapsed / 2**20, 1),
        "bridge_cpu_s": round(used.get("bridge", 0.0), 2),
        "bridge_cpu_ms_per_request": _cpu_ms(used, "bridge", total),
        "postgres_cpu_ms_per_request": _cpu_ms(used, "bridge_pg", total),
        "other_postgres_cpu_ms_per_request": _cpu_ms(used, "postgres", total),
        "loadgen_cpu_ms_per_request": _cpu_ms(used, "loadgen", total),
        "machine_cores_busy": round(cores_busy, 2),
        "other_cores_busy": round(max(0.0, cores_busy - ours), 2),
    })  # fmt: skip
    return len(tally.errors)


_SWEEP_COLUMNS = (
    "offered_per_s", "achieved_per_s", "file_p50_ms", "file_p99_ms", "list_p99_ms",
    "gen_lag_p99_ms", "missed", "bridge_cpu_ms_per_request", "postgres_cpu_ms_per_request",
    "loadgen_cpu_s_per_s", "other_cores_busy",
)  # fmt: skip


async def _sweep(
    schools: list[School], meter: CpuMeter, opts: argparse.Namespace, figures: dict[str, Any]
) -> int:
    rng = random.Random(opts.seed)
    steps: list[dict[str, Any]] = []
    rows: list[tuple[Any, ...]] = []
    errors = 0
    for load in opts.loads:
        tally = Tally()
        meter.start()
        busy0, start = machine_busy_s(), time.perf_counter()
        await open_loop(schools, load / len(schools), opts.step_s, opts.drain_s, rng, tally)
        elapsed = time.perf_counter() - start
        used = summed(meter.stop())
        cores_busy = (machine_busy_s() - busy0) / elapsed
        ours = sum(used.get(k, 0.0) for k in ("bridge", "bridge_pg", "loadgen")) / elapsed
        files, lists = tally.seconds["file"], tally.seconds["list"]
        answered = tally.answered
        step = {
            "offered_per_s": load, "achieved_per_s": round(answered / opts.step_s, 1),
            "file_p50_ms": _ms(files, 50), "file_p99_ms": _ms(files, 99),
            "list_p50_ms": _ms(lists, 50), "list_p99_ms": _ms(lists, 99),
            "all_p99_ms": _ms(files + lists, 99), "gen_lag_p99_ms": _ms(tally.gen_lag, 99),
            "requests": answered, "missed": tally.missed, "errors": len(tally.errors),
            "bridge_cpu_ms_per_request": _cpu_ms(used, "bridge", answered),
            "postgres_cpu_ms_per_request": _cpu_ms(used, "bridge_pg", answered),
            "other_postgres_cpu_ms_per_request": _cpu_ms(used, "postgres", answered),
            "loadgen_cpu_s_per_s": round(used.get("loadgen", 0.0) / elapsed, 2),
            "machine_cores_busy": round(cores_busy, 2),
            "other_cores_busy": round(max(0.0, cores_busy - ours), 2),
        }  # fmt: skip
        step["meets_target"] = (
            step["file_p99_ms"] <= opts.target_p99_ms and not tally.missed and not tally.errors
        )
        steps.append(step)
        rows.append((*(step[k] for k in _SWEEP_COLUMNS), "yes" if step["meets_target"] else "no"))
        errors += len(tally.errors)
        if tally.errors:
            print(f"offered {load}/s: {len(tally.errors)} errors, e.g. {tally.errors[:5]}")
    passing = [s["offered_per_s"] for s in steps if s["meets_target"]]
    best = max(passing) if passing else None
    print_table(
        f"Open loop: {len(schools)} clerks, Poisson arrivals, {opts.step_s:g} s per load;"
        f" latency from the scheduled moment. Target: file p99 <= {opts.target_p99_ms:g} ms",
        ["offered/s", "achieved/s", "file p50", "file p99", "list p99", "gen lag p99",
         "missed", "bridge ms/req", "pg ms/req", "loadgen cpu/s", "others cpu/s", "meets"],
        rows,
    )  # fmt: skip
    print(f"\nhighest offered load meeting file p99 <= {opts.target_p99_ms:g} ms:"
          f" {f'{best} req/s' if best else 'none of the sweep'}")  # fmt: skip
    figures["open_loop"] = steps
    figures["max_load_meeting_target_per_s"] = best
    return errors


def cli() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=int(os.environ.get("N", 4000)))
    parser.add_argument("--schools", type=int, default=200)
    parser.add_argument("--file-kb", type=int, default=20)
    parser.add_argument(
        "--loads", type=lambda s: [float(x) for x in s.split(",") if x],
        default=[250.0, 500.0, 750.0, 1000.0, 2000.0],
    )  # fmt: skip
    parser.add_argument("--step-s", type=float, default=8.0)
    parser.add_argument("--drain-s", type=float, default=2.0)
    parser.add_argument("--target-p99-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--bridge-setting", dest="bridge_settings", metavar="KEY=VALUE", action="append",
        type=_setting, default=[],
    )  # fmt: skip
    parser.add_argument("--no-saturation", dest="saturation", action="store_false")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false")
    opts = parser.parse_args()
    opts.bridge_settings = dict(opts.bridge_settings)
    return asyncio.run(main(opts))


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. event_loop=uvloop")
    return key.strip().lower(), value.strip()


if __name__ == "__main__":
    raise SystemExit(cli())
