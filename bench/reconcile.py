"""Benchmark of three-way reconciliation: seconds and peak memory for large synthetic cohorts.

    .venv/bin/python -m bench.reconcile [--sizes 100000,1000000]

Both registries are served by a small paging server in a child process on loopback,
computing each page from the child's index (so it can serve a million children without
holding them); it pages over HTTP exactly like the contract's A2 and B8, sorted by
student number, at most 5000 items a page. The ledger is loaded into a fresh database
with COPY. About 1 % of the children fall into each discrepancy category. Repairs are
off (synthetic ledger rows have no event log to re-fold); they are per-child
transactions after the scan, capped by BRIDGE_RECONCILE_MAX_REPAIRS.

Each size runs in a process of its own, so that its peak RSS is its own. Besides the
seconds it reports the CPU seconds of the bridge (the process running the reconciliation),
of PostgreSQL (the run's backends) and of the simulated registries: on a small shared
machine they compete for the same cores, and CPU seconds vary far less than seconds do.
The paging server encodes its pages with orjson so that the registries, which in real
life run elsewhere, take as little of those cores as they can.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bench.common import create_database, drop_database

SHA, OTHER = "a" * 64, "b" * 64
KINDS = {  # i % 100 -> the discrepancy of child i; others are matched
    1: "lost_upstream", 2: "missing_at_registry", 3: "registered_not_graduated",
    4: "deferred_but_registered", 5: "cancelled_but_registered", 6: "identity_conflict",
    7: "bad_source_file", 8: "file_digest_mismatch", 9: "file_not_delivered",
    10: "in_flight", 11: "overdue", 12: "deferral_expired", 13: "not_in_roster",
    14: "file_not_pulled", 15: "not_arrived",
}  # fmt: skip
ROSTER_STATE = {3: "in_kindergarten", 4: "deferred", 5: "cancelled", 12: "deferred"}


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a local process has used so far; 0 if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd on: utime is the 14th
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu_s(pool: Any) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench's database."""
    rows = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return {r["pid"]: cpu_s(r["pid"]) for r in rows}


def number(i: int) -> str:
    return f"G{i:018d}"


def roster_item(i: int) -> dict[str, Any] | None:
    if i % 100 == 13:
        return None
    return {
        "student_number": number(i), "id_number": f"{i:018d}",
        "state": ROSTER_STATE.get(i % 100, "graduated"), "childseq": 5,
        "kindergarten_code": f"11{110100 + i % 50:06d}01",
    }  # fmt: skip


def registry_item(i: int) -> dict[str, Any] | None:
    k = i % 100
    if k in (1, 2, 6, 7, 11, 12):
        return None
    return {
        "student_number": number(i), "id_number": f"{i:018d}", "entry_year": 2026,
        "status": "registered" if k in (10, 15) else "enrolled", "school_code": "2111010501",
        "record_file_sha256": {8: OTHER, 9: None, 10: None}.get(k, SHA),
        "updated_at": "2026-09-01T00:00:00+08:00",
    }  # fmt: skip


def serve(port: int, size: int) -> None:
    """The paging server (child process): A2 roster and B8 listing for *size* children."""

    def page(request: web.Request, item: Any, extra: list[dict[str, Any]]) -> web.Response:
        limit = min(int(request.query.get("limit", "1000")), 5000)
        start = int(request.query.get("cursor") or 0)
        items: list[dict[str, Any]] = []
        i = start
        total = size + len(extra)
        while i < total and len(items) < limit:
            value = item(i) if i < size else extra[i - size]
            if value is not None:
                items.append(value)
            i += 1
        body = {"items": items, "next_cursor": str(i) if i < total else None}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    # The J numbers holding conflicted identities sort after every G number.
    conflicts = [
        {"student_number": "J" + number(i)[1:], "id_number": f"{i:018d}", "entry_year": 2026,
         "status": "registered", "school_code": None, "record_file_sha256": None,
         "updated_at": None}
        for i in range(size) if i % 100 == 6
    ]  # fmt: skip

    async def roster(request: web.Request) -> web.Response:
        return page(request, roster_item, [])

    async def students(request: web.Request) -> web.Response:
        return page(request, registry_item, conflicts)

    app = web.Application()
    app.router.add_get("/preschool/v1/cohorts/2026/roster", roster)
    app.router.add_get("/registry/v1/cohorts/2026/students", students)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def ledger_rows(size: int) -> Any:
    now = dt.datetime.now(dt.UTC)
    recent, old = now - dt.timedelta(days=1), now - dt.timedelta(days=60)
    for i in range(size):
        k = i % 100
        if k in (1, 13):
            continue
        status, phase, aside, deferred = "graduated", "file_delivered", None, None
        handed = old if k == 14 else recent
        if k == 3:
            status, phase = "in_kindergarten", "waiting"
        elif k in (4, 12):
            status, phase = "deferred", "deferred"
            deferred = dt.date(2027, 8, 31) if k == 4 else dt.date(2026, 8, 31)
        elif k == 5:
            status, phase = "cancelled", "withdrawing"
        elif k in (6, 7):
            phase, aside = "set_aside", ("identity_conflict" if k == 6 else "bad_source_file")
        elif k == 10:
            phase = "registered"
        elif k == 11:
            phase = "file_fetched"
        if phase not in ("file_delivered",):
            handed = None
        yield (
            number(i), status, phase, 2026, "110105", f"11{110100 + i % 50:06d}01",
            "2111010501", f"{i:018d}", deferred, aside, 5,
            json.dumps({"verified_file_sha256": SHA, "arrival": None}),
            old if k == 11 else recent, handed,
        )  # fmt: skip


async def run_one(size: int) -> dict[str, Any]:
    import aiohttp

    from bridge.adapters.postgres.calendar import CalendarStore
    from bridge.adapters.preschool_registry import PreschoolRegistry
    from bridge.adapters.primary_registry import PrimaryRegistry
    from bridge.bootstrap import _transport, open_pool
    from bridge.metrics import Metrics
    from bridge.operations import build_operations
    from bridge.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.Process(target=serve, args=(port, size), daemon=True)
    server.start()
    url = await create_database("xueji_bench_recon")
    try:
        settings = Settings(
            database_url=url, registry_url=f"http://127.0.0.1:{port}/registry",
            preschool_url=f"http://127.0.0.1:{port}/preschool", reconcile_max_repairs=0,
        )  # fmt: skip
        pool = await open_pool(settings)
        load_start = time.monotonic()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "children", records=ledger_rows(size),
                columns=("student_number", "status", "phase", "entry_year", "county_code",
                         "kindergarten_code", "school_code", "id_number", "deferred_until",
                         "set_aside_reason", "last_childseq", "handoff", "first_graduated_at",
                         "handed_over_at"),
            )  # fmt: skip
            await conn.execute("ANALYZE children")
        load_s = time.monotonic() - load_start
        for _ in range(100):  # wait for the paging server
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http:
            metrics = Metrics()
            pre = PreschoolRegistry(
                _transport(http, settings.preschool_url, "t", settings, metrics)
            )
            reg = PrimaryRegistry(_transport(http, settings.registry_url, "t", settings, metrics))

            async def publish(*_: Any) -> None:
                return None

            ops = build_operations(settings, pool, pre, reg, publish, lambda: None)
            assert isinstance(ops.calendars, CalendarStore)
            pg_before, sim_before = await backend_cpu_s(pool), cpu_s(server.pid or 0)
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.monotonic()
            run = await ops.reconciler.run(2026, trigger="bench", today=dt.date(2026, 11, 23))
            seconds = time.monotonic() - start
            own = resource.getrusage(resource.RUSAGE_SELF)
            pg_after, sim_after = await backend_cpu_s(pool), cpu_s(server.pid or 0)
        await pool.close()
        cpu = {
            "bridge": own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime,
            "postgres": sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items()),
            "registries": sim_after - sim_before,
        }
        return {
            "children": size, "seconds": round(seconds, 1), "ledger_load_s": round(load_s, 1),
            "children_per_s": int(size / seconds),
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
            "peak_rss_mib": round(own.ru_maxrss / 1024, 1),
            "sides": run.sides, "counts": run.counts,
        }  # fmt: skip
    finally:
        server.terminate()
        server.join()
        await drop_database(url)


def run_apart(size: int) -> dict[str, Any]:
    """run_one(size) in a fresh interpreter: its peak RSS is that run's alone."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", "--one", str(size)],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(sizes: list[int]) -> None:
    results = []
    for size in sizes:
        result = run_apart(size)
        results.append(result)
        cpu = result["cpu_s"]
        print(
            f"{result['children']:>10,} children  {result['seconds']:>7.1f} s  "
            f"{result['children_per_s']:>8,}/s  peak RSS {result['peak_rss_mib']:>7.1f} MiB  "
            f"CPU s: bridge {cpu['bridge']}, postgres {cpu['postgres']}, "
            f"registries {cpu['registries']}  (ledger load {result['ledger_load_s']} s)",
            flush=True,
        )
    print(json.dumps({"benchmark": "reconcile", "results": results}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(run_one(args.one))))
    else:
        main([int(s) for s in args.sizes.split(",")])
