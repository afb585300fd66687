"""Schools pulling record files: the school API under 200 concurrent schools, beside a bare
aiohttp baseline (issue #7).

N handed-over children (spread over S schools, one record file each) are written straight
into a fresh ledger; a bridge runs as its own process (``python -m bridge run``). The same
children and files (the very bytes) go to the baseline, bench/pull_baseline.py, a process
of its own too: a bare aiohttp server answering the same two URL shapes, the list pages
(same JSON shape, same page size) from an in-memory index and the files from memory, with
no token check, scope, database, audit or receipts. It says what the hardware and aiohttp
give with nothing the bridge must do; the bridge's figures are to be read against it.

Every school is a client of its own (one keep-alive connection per system) that lists its
children (pages of 100) and downloads each file, checking its sha256. The same load
generator drives both systems with the same schools, files and schedule. Two runs follow.

**Saturation (closed loop).** All schools at once, each sending its next request the
moment the last one is answered, until each has listed and downloaded all its files once.
This says how many requests per second a system serves flat out — and nothing about what a
school waits: with S requests always in flight, mean latency is S / throughput (Little's
law), so 200 schools at p99 <= 50 ms would take some 6,000+ req/s from a Python server and
a Python load generator sharing two cores. Its latencies are printed, but they measure the
queue, not the server.

**Latency under offered load (open loop).** For each total rate L of the sweep, each
school is a clerk's client issuing its requests one at a time (list pages, then each
file, then round again) at moments drawn from a Poisson process of rate L / S. A request
whose moment comes while the one before is still out waits for it, and its latency is
counted from the moment it was *scheduled* (no coordinated omission): a slow answer
makes the requests behind it late, as it would for a clerk. After ``--step-s`` seconds of
schedule, what could not be sent within ``--drain-s`` more is counted as missed (with the
file pulls), its wait so far standing as its latency. Every clerk starts its round afresh
at each step, so the step's first ``--opening-s`` hold a storm of 200 list requests at
once (several times the rate of lists in the steady state after it): what is scheduled then
is tallied apart, as ``opening file p99`` (the files that waited behind the storm), and
p50/p99 and the verdict are of the steady state that follows. Prints p50/p99 per load (and per
kind of request), the CPU each server process (and the bridge's PostgreSQL backends)
spent per request, and the highest offered load whose file p99 met the target.

**Order.** Both servers run throughout; the baseline runs first, then the bridge: the
closed loop once each, and at each load of the sweep a step each, with the same arrival
moments (one seed per clerk, drawn once per load) and every clerk starting its round
afresh. Alternating step by step keeps each pair within seconds of each other, so the
slow drift of a shared machine touches both alike; the baseline goes first because it
leaves nothing behind, while the bridge's receipts and audit lines leave WAL, vacuum and
checkpoint work that would land in a baseline step after it. The idle server's own CPU
(the bridge's background work) counts among the others.

Options (defaults in brackets):

  --children N          handed-over children, one file each [4000, or $N]
  --schools S           schools they are spread over [200]
  --file-kb K           size of each record file [20]
  --loads L1,L2,...     total offered loads of the sweep, req/s [250,500,750,1000,1500,2000]
  --step-s S            seconds of schedule per load and system [10]
  --opening-s S         first seconds of each step, when every clerk lists at once, tallied
                        apart from the steady state the target is judged on [1]
  --drain-s S           grace after a step's schedule before the rest counts missed [2]
  --target-p99-ms MS    the file-pull p99 the sweep is judged against [50]
  --seed N              seed of the arrival schedule [7]
  --bridge-setting K=V  a bridge setting (BRIDGE_K=V), e.g. event_loop=uvloop or
                        db_pool_size=8; repeatable [the bridge's defaults]; the baseline
                        follows event_loop=uvloop too
  --no-baseline         measure the bridge alone
  --no-saturation       skip the closed-loop run
  --no-sweep            skip the open-loop sweep

Prints tables (a row per system) and one line ``BENCH_JSON {...}``: the bridge's figures
under the keys they always had, the baseline's under ``baseline``, and bridge / baseline
ratios under ``bridge_over_baseline``. The defaults run in two to three minutes. The load
generator shares the machine: its own CPU is printed too, and the ``gen lag`` column (how
late a request left although its clerk was idle) shows when the generator, not the
server, is what falls behind. ``others cpu/s`` is the CPU the rest of the machine (the
kernel, other programs, other databases, the idle server) used meanwhile: well above
zero, the figures of that step were taken on a busy machine.

``python -m bench.pull --loads 250,500,1000 --step-s 10``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import json
import os
import random
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
    CpuMeter,
    bench_file_keys,
    bridge_env,
    create_database,
    databases,
    delete_broker_objects,
    free_port,
    percentile,
    print_json_line,
    print_table,
    python_env,
    settle_database,
    wait_http_ok,
)
from bench.pull_baseline import Listed, write_index
from bridge.adapters.file_crypto import FileKeys, seal
from bridge.adapters.postgres.tokens import TokenStore
from bridge.bootstrap import open_pool
from bridge.domain.access import Role
from bridge.settings import Settings
from schemas.api import HandoffItem, RecordFileOut

ENTRY_YEAR = 2026
PAGE = 100
SYSTEMS = ("baseline", "bridge")  # the order they run in, at each load (see the docstring)


def _school(i: int) -> str:
    return f"2111{i:06d}"


async def seed(
    database_url: str, children: int, schools: int, file_kb: int
) -> tuple[dict[str, str], list[Listed]]:
    """Children, numbers and files straight into the ledger; returns school → token, and
    the same children and files as the baseline serves them."""
    pool = await open_pool(Settings(database_url=database_url))
    keys = FileKeys.parse(bench_file_keys(), setting="bench")
    try:
        files, rows, numbers = [], [], []
        listed: list[Listed] = []
        seeded_at = dt.datetime.now(dt.UTC)
        for i in range(children):
            number = f"L{i:018d}"
            # Distinct content per child: files are stored by content address.
            content = json.dumps({"student_number": number, "pad": os.urandom(file_kb * 380).hex()})
            body = content.encode()[: file_kb * 1024]
            sha = hashlib.sha256(body).hexdigest()
            # Sealed as the bridge stores them, under the key its process is given.
            s = seal(keys, sha, body)
            files.append((sha, len(body), "application/json", s.ciphertext, s.key_id,
                          s.wrapped_key, s.nonce_prefix))  # fmt: skip
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
            # The bridge's own wire model, as its school sees the child before a pull.
            item = HandoffItem(
                student_number=number, entry_year=ENTRY_YEAR, school_code=school,
                name=key["name"], gender="MF"[i % 2], birth_date=dt.date(2020, 3, 1),
                record_file=RecordFileOut(sha256=sha, size=len(body),
                                          media_type="application/json"),
                state="not_pulled", phase="file_delivered", changed_at=seeded_at,
            )  # fmt: skip
            listed.append(Listed(school, item.model_dump(mode="json"), "application/json", body))
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "record_files", records=files,
                columns=["sha256", "size", "media_type", "ciphertext", "key_id", "wrapped_key",
                         "nonce_prefix"],
            )  # fmt: skip
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
        return tokens, listed
    finally:
        await pool.close()


# --- one school's client --------------------------------------------------------------
@dataclass
class Tally:
    """Latencies (s) by kind of request, and what went wrong."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"list": [], "file": []})
    # Open loop: requests scheduled in the step's opening (every clerk's list at once).
    opening: dict[str, list[float]] = field(default_factory=lambda: {"list": [], "file": []})
    gen_lag: list[float] = field(default_factory=list)
    bytes_in: int = 0
    missed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests that got an answer."""
        counted = sum(len(v) for v in (*self.seconds.values(), *self.opening.values()))
        return counted - self.missed


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

    @property
    def listed_files(self) -> Mapping[str, str]:
        """Student number → sha256 of every child listed so far."""
        return self._files

    def restart(self) -> None:
        """Back to the start of a round: the next request asks for the list's first page."""
        self._cursor, self._listing, self._listed, self._queue = None, True, [], deque()

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
    seeds: Sequence[int], tally: Tally, opening_s: float = 0.0,
) -> None:  # fmt: skip
    """Each school sends at Poisson moments (school i's drawn from seeds[i]); latency
    counts from the scheduled moment. What is scheduled in the first *opening_s* is
    tallied apart (Tally.opening)."""
    t0 = time.perf_counter() + 0.2  # let every clerk get ready first
    end, stop = t0 + step_s, t0 + step_s + drain_s
    steady = t0 + opening_s

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
            (tally.opening if due < steady else tally.seconds)[kind].append(
                time.perf_counter() - due
            )
            due += arrivals.expovariate(rate_per_school)
        while due < end:  # never sent: missed, having waited at least until the stop
            tally.seconds["file"].append(stop - due)
            tally.missed += 1
            due += arrivals.expovariate(rate_per_school)

    await asyncio.gather(*(clerk(s, seed) for s, seed in zip(schools, seeds, strict=True)))


# --- the systems and what they cost ------------------------------------------------------
@dataclass
class System:
    """A server under test and the schools (clients of their own) pulling from it."""

    name: str
    child: Child
    schools: list[School]

    def restart(self) -> None:
        """Every school back to the start of its round."""
        for school in self.schools:
            school.restart()


def _ms(values: list[float], p: float) -> float:
    return round(percentile(values, p) * 1000, 1)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_ms(used: Mapping[str, float], name: str, requests: int) -> float:
    return round(used.get(name, 0.0) * 1000 / max(1, requests), 3)


def metered(systems: Sequence[System], database_url: str) -> CpuMeter:
    """A CpuMeter of each server process, this load generator and PostgreSQL.

    The backends serving the bridge's database come out as ``postgres:bridge``, apart from
    the rest of the server (``postgres``), which another benchmark may be using.
    """
    pids = {s.name: s.child.pid for s in systems} | {"loadgen": os.getpid()}
    return CpuMeter(pids, databases={"bridge": database_url})


async def measured(
    meter: CpuMeter, run: Coroutine[Any, Any, None]
) -> tuple[float, dict[str, float], float]:
    """Run *run*; its seconds, CPU seconds by component and machine cores busy meanwhile."""
    meter.start()
    busy0, start = machine_busy_s(), time.perf_counter()
    await run
    elapsed = time.perf_counter() - start
    used = meter.stop()
    return elapsed, used, (machine_busy_s() - busy0) / elapsed


def cpu_figures(
    system: str, used: Mapping[str, float], requests: int, elapsed: float, cores_busy: float
) -> dict[str, Any]:
    """CPU of *system*'s window: its server process, the PostgreSQL backends serving it
    (the baseline has none: None), the load generator, and everything else."""
    own_pg = used.get("postgres:bridge", 0.0) if system == "bridge" else 0.0
    other_pg = used.get("postgres", 0.0) + (0.0 if system == "bridge" else
                                            used.get("postgres:bridge", 0.0))  # fmt: skip
    ours = (used.get(system, 0.0) + own_pg + used.get("loadgen", 0.0)) / elapsed
    return {
        "server_cpu_s": round(used.get(system, 0.0), 2),
        "server_cpu_ms_per_request": _cpu_ms(used, system, requests),
        "postgres_cpu_ms_per_request": round(own_pg * 1000 / max(1, requests), 3)
        if system == "bridge" else None,
        "other_postgres_cpu_ms_per_request": round(other_pg * 1000 / max(1, requests), 3),
        "loadgen_cpu_ms_per_request": _cpu_ms(used, "loadgen", requests),
        "loadgen_cpu_s_per_s": round(used.get("loadgen", 0.0) / elapsed, 2),
        "machine_cores_busy": round(cores_busy, 2),
        "other_cores_busy": round(max(0.0, cores_busy - ours), 2),
    }  # fmt: skip


def _bridge_names(figures: dict[str, Any]) -> dict[str, Any]:
    """The bridge's figures under the names they had before the baseline came, too."""
    figures["bridge_cpu_ms_per_request"] = figures["server_cpu_ms_per_request"]
    return figures


def _ratio(bridge: float | None, baseline: float | None) -> float | None:
    return round(bridge / baseline, 2) if bridge and baseline else None


def _dash(value: Any) -> Any:
    return "-" if value is None else value


# --- the run --------------------------------------------------------------------------
async def main(opts: argparse.Namespace) -> int:
    port = free_port()
    prefix = f"xueji.bench-pull-{TAG}"
    names = [s for s in SYSTEMS if opts.baseline or s == "bridge"]
    figures: dict[str, Any] = {
        "bench": "pull", "children": opts.children, "schools": opts.schools,
        "file_kb": opts.file_kb, "bridge_settings": opts.bridge_settings,
        "target_p99_ms": opts.target_p99_ms, "systems": names,
    }  # fmt: skip
    errors = 0
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        async with databases() as dbs:
            database_url = await create_database("xueji_bench_pull")
            dbs.append(database_url)
            t0 = time.perf_counter()
            tokens, listed = await seed(database_url, opts.children, opts.schools, opts.file_kb)
            await settle_database(database_url)
            index = Path(tmp) / "index.pickle"
            if opts.baseline:
                write_index(index, listed)
            listed.clear()  # the load generator needs none of it
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
            systems: list[System] = []
            try:
                for name in names:
                    if name == "bridge":
                        child = Child("bridge-pull", ["-m", "bridge", "run"], bridge_env(settings))
                        url = f"http://127.0.0.1:{port}"
                    else:
                        child, url = start_baseline(index, opts.bridge_settings)
                    schools = [School(url, code, token) for code, token in tokens.items()]
                    systems.append(System(name, child, schools))
                    await wait_http_ok(f"{url}/readyz", child)
                    await asyncio.gather(*(s.warm_up() for s in schools))
                # What is built by now lives to the end (the bridge freezes its start-up too):
                # a full collection of it would stall the load generator in some system's run.
                gc.collect()
                gc.freeze()
                meter = metered(systems, database_url)
                if opts.saturation:
                    errors += await _saturation(systems, meter, figures)
                    for system in systems:
                        rss = round(system.child.peak_rss_bytes() / 2**20)
                        if system.name == "bridge":
                            figures["bridge_peak_rss_mib"] = rss
                        else:
                            figures[system.name]["peak_rss_mib"] = rss
                if opts.sweep:
                    errors += await _sweep(systems, meter, opts, figures)
                errors += compare_listings(systems, complete=opts.saturation)
            finally:
                for system in systems:
                    for school in system.schools:
                        await school.close()
                    await system.child.stop()
                await delete_broker_objects(
                    [f"{prefix}.{queue}" for queue in ("events", "parked", "unrecorded")],
                    [f"{prefix}.events", f"{prefix}.parked"],
                )
    if opts.baseline and "baseline" in figures:
        base = figures["baseline"]
        figures["bridge_over_baseline"] = {
            "saturation_requests_per_s": _ratio(
                figures.get("requests_per_s"), base.get("requests_per_s")
            ),
            "saturation_server_cpu_ms_per_request": _ratio(
                figures.get("bridge_cpu_ms_per_request"), base.get("server_cpu_ms_per_request")
            ),
            "max_load_meeting_target": _ratio(
                figures.get("max_load_meeting_target_per_s"),
                base.get("max_load_meeting_target_per_s"),
            ),
        }
    figures["errors"] = errors
    print_json_line(figures)
    return 1 if errors else 0


def start_baseline(index: Path, bridge_settings: Mapping[str, str]) -> tuple[Child, str]:
    """``python -m bench.pull_baseline`` on a free port, on the bridge's kind of event loop."""
    port = free_port()
    argv = ["-m", "bench.pull_baseline", "--port", str(port), "--files", str(index)]
    if bridge_settings.get("event_loop") == "uvloop":
        argv.append("--uvloop")
    return Child("baseline-pull", argv, python_env()), f"http://127.0.0.1:{port}"


def compare_listings(systems: Sequence[System], *, complete: bool) -> int:
    """Both systems must have listed the same files: 1 if not (and say so), else 0.

    With *complete* (a closed loop ran: every school listed everything) the sets of
    children must agree too; otherwise only the children both listed are compared.
    """
    if len(systems) < 2:
        return 0
    differ = 0
    for a, b in zip(systems[0].schools, systems[1].schools, strict=True):
        fa, fb = a.listed_files, b.listed_files
        if complete and fa.keys() != fb.keys():
            differ += len(fa.keys() ^ fb.keys())
        differ += sum(fa[n] != fb[n] for n in fa.keys() & fb.keys())
    if differ:
        print(f"\n{differ} children listed differently by {systems[0].name} and {systems[1].name}")
    return 1 if differ else 0


async def _saturation(systems: list[System], meter: CpuMeter, figures: dict[str, Any]) -> int:
    rows: list[tuple[Any, ...]] = []
    errors = 0
    for system in systems:
        system.restart()
        tally = Tally()
        elapsed, used, cores_busy = await measured(meter, closed_loop(system.schools, tally))
        total = tally.answered
        cpu = cpu_figures(system.name, used, total, elapsed, cores_busy)
        mine: dict[str, Any] = {
            "elapsed_s": round(elapsed, 2), "requests_per_s": round(total / elapsed, 1),
            "list_p50_ms": _ms(tally.seconds["list"], 50),
            "list_p99_ms": _ms(tally.seconds["list"], 99),
            "file_p50_ms": _ms(tally.seconds["file"], 50),
            "file_p99_ms": _ms(tally.seconds["file"], 99),
            "mib_per_s": round(tally.bytes_in / elapsed / 2**20, 1), **cpu,
        }  # fmt: skip
        if system.name == "bridge":
            mine["bridge_cpu_s"] = mine["server_cpu_s"]
            figures.update(_bridge_names(mine))
        else:
            figures[system.name] = mine
        rows.append((
            system.name, round(elapsed, 2), total, mine["requests_per_s"],
            mine["list_p50_ms"], mine["list_p99_ms"], mine["file_p50_ms"], mine["file_p99_ms"],
            mine["mib_per_s"], mine["server_cpu_ms_per_request"],
            _dash(mine["postgres_cpu_ms_per_request"]), mine["loadgen_cpu_ms_per_request"],
            mine["other_cores_busy"],
        ))  # fmt: skip
        errors += len(tally.errors)
        if tally.errors:
            print(f"\n{system.name}: {len(tally.errors)} errors, e.g. {tally.errors[:5]}")
    print_table(
        f"Saturation: {len(systems[0].schools)} schools back to back, closed loop, "
        f"{' then '.join(s.name for s in systems)}; CPU per request of the server process,"
        f" its PostgreSQL backends and the load generator ({os.cpu_count()} cores)",
        ["system", "seconds", "requests", "req/s", "list p50", "list p99", "file p50",
         "file p99", "MiB/s", "server ms/req", "pg ms/req", "loadgen ms/req", "others cores"],
        rows,
    )  # fmt: skip
    print("  (closed loop: latency here is schools in flight / throughput, not service time)")
    if "baseline" in figures and "requests_per_s" in figures:
        base = figures["baseline"]
        speed = _ratio(figures["requests_per_s"], base["requests_per_s"])
        cost = _ratio(figures["bridge_cpu_ms_per_request"], base["server_cpu_ms_per_request"])
        print(f"  bridge / baseline: {speed} x the req/s, {cost} x the server CPU per request")
    return errors


_SWEEP_COLUMNS = (
    "offered_per_s", "achieved_per_s", "file_p50_ms", "file_p99_ms", "list_p99_ms",
    "opening_file_p99_ms", "gen_lag_p99_ms", "missed", "server_cpu_ms_per_request",
    "postgres_cpu_ms_per_request", "loadgen_cpu_s_per_s", "other_cores_busy",
)  # fmt: skip


async def _step(
    system: System, meter: CpuMeter, load: float, seeds: Sequence[int],
    opts: argparse.Namespace,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """One system at one offered load: its figures and its errors."""
    system.restart()
    tally = Tally()
    rate = load / len(system.schools)
    elapsed, used, cores_busy = await measured(
        meter,
        open_loop(system.schools, rate, opts.step_s, opts.drain_s, seeds, tally, opts.opening_s),
    )
    files, lists = tally.seconds["file"], tally.seconds["list"]
    answered = tally.answered
    step: dict[str, Any] = {
        "offered_per_s": load, "achieved_per_s": round(answered / opts.step_s, 1),
        "file_p50_ms": _ms(files, 50), "file_p99_ms": _ms(files, 99),
        "list_p50_ms": _ms(lists, 50), "list_p99_ms": _ms(lists, 99),
        "all_p99_ms": _ms(files + lists, 99), "gen_lag_p99_ms": _ms(tally.gen_lag, 99),
        "opening_file_p99_ms": _ms(tally.opening["file"], 99) if tally.opening["file"] else None,
        "opening_list_p99_ms": _ms(tally.opening["list"], 99) if tally.opening["list"] else None,
        "opening_s": opts.opening_s,
        "requests": answered, "missed": tally.missed, "errors": len(tally.errors),
        **cpu_figures(system.name, used, answered, elapsed, cores_busy),
    }  # fmt: skip
    step["meets_target"] = (
        step["file_p99_ms"] <= opts.target_p99_ms and not tally.missed and not tally.errors
    )
    return (_bridge_names(step) if system.name == "bridge" else step), tally.errors


async def _sweep(
    systems: list[System], meter: CpuMeter, opts: argparse.Namespace, figures: dict[str, Any]
) -> int:
    rng = random.Random(opts.seed)
    steps: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    rows: list[tuple[Any, ...]] = []
    errors = 0
    for load in opts.loads:
        seeds = [rng.randrange(2**32) for _ in systems[0].schools]  # the same for each system
        for system in systems:
            step, failed = await _step(system, meter, load, seeds, opts)
            steps[system.name].append(step)
            rows.append((
                system.name, *(_dash(step[k]) for k in _SWEEP_COLUMNS),
                "yes" if step["meets_target"] else "no",
            ))  # fmt: skip
            errors += len(failed)
            if failed:
                print(f"{system.name} at {load}/s: {len(failed)} errors, e.g. {failed[:5]}")
    print_table(
        f"Open loop: {len(systems[0].schools)} clerks, Poisson arrivals, {opts.step_s:g} s per"
        f" load and system, {' then '.join(s.name for s in systems)} at each load; latency"
        f" from the scheduled moment. Target: file p99 <= {opts.target_p99_ms:g} ms",
        ["system", "offered/s", "achieved/s", "file p50", "file p99", "list p99",
         "opening file p99",
         "gen lag p99", "missed", "server ms/req", "pg ms/req", "loadgen cpu/s",
         "others cpu/s", "meets"],
        rows,
    )  # fmt: skip
    print(f"\nhighest offered load meeting file p99 <= {opts.target_p99_ms:g} ms:")
    for system in systems:
        passing = [s["offered_per_s"] for s in steps[system.name] if s["meets_target"]]
        best = max(passing) if passing else None
        top = " (the sweep's highest: it may go further)" if best == max(opts.loads) else ""
        print(f"  {system.name}: {f'{best:g} req/s{top}' if best else 'none of the sweep'}")
        if system.name == "bridge":
            figures["open_loop"] = steps[system.name]
            figures["max_load_meeting_target_per_s"] = best
        else:
            figures.setdefault(system.name, {}).update(
                {"open_loop": steps[system.name], "max_load_meeting_target_per_s": best}
            )
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
        default=[250.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0],
    )  # fmt: skip
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--opening-s", type=float, default=1.0)
    parser.add_argument("--drain-s", type=float, default=2.0)
    parser.add_argument("--target-p99-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--bridge-setting", dest="bridge_settings", metavar="KEY=VALUE", action="append",
        type=_setting, default=[],
    )  # fmt: skip
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
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
