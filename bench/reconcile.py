"""Benchmark of three-way reconciliation against its baseline, for large synthetic cohorts.

    .venv/bin/python -m bench.reconcile --sizes 100000,1500000

Per size, one paging server and one ledger database serve two systems in turn:

- ``baseline``: the bare three-way stream, the I/O a reconciliation cannot avoid. It pages
  A2 and B8 (5000 a page, the next page requested while this one is used, an
  ``aiohttp.ClientSession``; each page decoded with orjson down to its student numbers),
  reads the ledger through a server-side cursor with the bridge's very query (5000 rows a
  fetch, the next fetched meanwhile), and merge-joins the three by student number,
  counting numbers that all three sides list (matched) and the rest (unmatched). No
  validation, classification, findings, identities or repairs.
- ``bridge``: ``Reconciler.run`` with repairs off (synthetic ledger rows have no event log
  to re-fold; repairs are per-child transactions after the scan anyway).

The baseline runs first, then the bridge, every time: the baseline writes nothing, so the
bridge finds the database as the baseline did, while the bridge's findings (a row per
child, their ANALYZE, autovacuum) would still be settling during a baseline run after it.
Both find the ledger equally warm: it is loaded with COPY and VACUUM ANALYZEd first (which
also sets hint bits, a cost otherwise paid by whoever reads first).

The paging server is a child process on loopback computing each page from the child's
index, so it can serve millions without holding them; it pages like the contract's A2 and
B8, sorted by student number, and encodes with orjson so that the registries, which in
real life run elsewhere, take as little of the machine's cores as they can. About 1 % of
the children fall into each discrepancy category. The ledger holds every number of each
child (``child_numbers``), former ones included.

Each system runs in a fresh interpreter of its own (with no BRIDGE_ settings from the
environment: both use the bench's page size), so its peak RSS and CPU seconds are its
own. Besides seconds the figures give CPU seconds of that process, of PostgreSQL (the
database's backends) and of the paging server: on a small shared machine they compete for
the same cores, and CPU seconds vary far less than seconds do. "Others" is what the rest of
the machine used meanwhile (PostgreSQL's WAL writer and checkpointer among it, but mostly
whatever else runs there): where it is high, that run's seconds are not to be trusted. A
machine-speed probe is printed before and after.

The issue's target: 1.5M children reconciled in at most 60 s with bounded memory, judged
as the bridge's peak RSS at 1.5M within RSS_GROWTH_MIB of its peak at the smallest size.

Prints two tables and one ``BENCH_JSON`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bench.common import (
    ROOT,
    cpu_probe_ms,
    create_database,
    drop_database,
    free_port,
    print_json_line,
    print_table,
    python_env,
    settle_database,
)

SYSTEMS = ("baseline", "bridge")  # the order they run in, per size (see the docstring)
ENTRY_YEAR = 2026
PAGE = 5000  # registry-api.md's largest page; the bridge's default, and the baseline's
TARGET_CHILDREN, TARGET_S = 1_500_000, 60.0
RSS_GROWTH_MIB = 10.0  # "bounded": a few pages' worth at most, nothing per child
ROSTER_PATH = f"/preschool/v1/cohorts/{ENTRY_YEAR}/roster"
STUDENTS_PATH = f"/registry/v1/cohorts/{ENTRY_YEAR}/students"
TOKEN = "t"  # the paging server checks no token; both systems send the same one

SHA, OTHER = "a" * 64, "b" * 64
KINDS = {  # i % 100 -> the discrepancy of child i; others are matched
    1: "lost_upstream", 2: "missing_at_registry", 3: "registered_not_graduated",
    4: "deferred_but_registered", 5: "cancelled_but_registered", 6: "identity_conflict",
    7: "bad_source_file", 8: "file_digest_mismatch", 9: "file_not_delivered",
    10: "in_flight", 11: "overdue", 12: "deferral_expired", 13: "not_in_roster",
    14: "file_not_pulled", 15: "not_arrived", 16: "former_number_registered",
}  # fmt: skip
STRAY = 16  # matched under its G number, and registered under its former L number too
ROSTER_STATE = {3: "in_kindergarten", 4: "deferred", 5: "cancelled", 12: "deferred"}


# --- the cohort: paging server and ledger -------------------------------------------------
def number(i: int) -> str:
    return f"G{i:018d}"


def former_number(i: int) -> str:
    return f"L{i:018d}"


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
        "student_number": number(i), "id_number": f"{i:018d}", "entry_year": ENTRY_YEAR,
        "status": "registered" if k in (10, 15) else "enrolled", "school_code": "2111010501",
        "record_file_sha256": {8: OTHER, 9: None, 10: None}.get(k, SHA),
        "updated_at": "2026-09-01T00:00:00+08:00",
    }  # fmt: skip


def serve(port: int, size: int) -> None:
    """The paging server (child process): A2 roster and B8 listing for *size* children."""

    def page(request: web.Request, item: Any, extra: list[dict[str, Any]]) -> web.Response:
        limit = min(int(request.query.get("limit", "1000")), PAGE)
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
        {"student_number": "J" + number(i)[1:], "id_number": f"{i:018d}",
         "entry_year": ENTRY_YEAR, "status": "registered", "school_code": None,
         "record_file_sha256": None, "updated_at": None}
        for i in range(size) if i % 100 == 6
    ]  # fmt: skip
    # Registrations left under a child's former (temporary) number sort after those.
    strays = [
        {"student_number": former_number(i), "id_number": None, "entry_year": ENTRY_YEAR,
         "status": "registered", "school_code": "2111010501", "record_file_sha256": None,
         "updated_at": None}
        for i in range(size) if i % 100 == STRAY
    ]  # fmt: skip

    async def roster(request: web.Request) -> web.Response:
        return page(request, roster_item, [])

    async def students(request: web.Request) -> web.Response:
        return page(request, registry_item, conflicts + strays)

    app = web.Application()
    app.router.add_get(ROSTER_PATH, roster)
    app.router.add_get(STUDENTS_PATH, students)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def ledger_rows(size: int) -> Iterator[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC)
    recent, old = now - dt.timedelta(days=1), now - dt.timedelta(days=60)
    for i in range(size):
        k = i % 100
        if k in (1, 13):
            continue
        status, phase, aside, deferred = "graduated", "file_delivered", None, None
        handed: dt.datetime | None = old if k == 14 else recent
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
            number(i), status, phase, ENTRY_YEAR, "110105", f"11{110100 + i % 50:06d}01",
            "2111010501", f"{i:018d}", deferred, aside, 5,
            json.dumps({"verified_file_sha256": SHA, "arrival": None}),
            old if k == 11 else recent, handed,
        )  # fmt: skip


async def load_ledger(url: str, size: int) -> float:
    """Migrate the fresh database at *url* and COPY the cohort's ledger in; seconds taken."""
    from bridge.bootstrap import open_pool
    from bridge.settings import Settings

    pool = await open_pool(Settings(database_url=url))
    try:
        start = time.monotonic()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "children", records=ledger_rows(size),
                columns=("student_number", "status", "phase", "entry_year", "county_code",
                         "kindergarten_code", "school_code", "id_number", "deferred_until",
                         "set_aside_reason", "last_childseq", "handoff", "first_graduated_at",
                         "handed_over_at"),
            )  # fmt: skip
            # Every number each child holds, as the ledger keeps them; STRAY children were
            # renumbered from an L number (the registry still lists it).
            await conn.execute(
                "INSERT INTO child_numbers (student_number, child_id)"
                " SELECT student_number, child_id FROM children"
                " UNION ALL SELECT 'L' || substr(student_number, 2), child_id FROM children"
                f" WHERE right(student_number, 2) = '{STRAY}'"
            )
            await conn.execute("VACUUM (ANALYZE) children, child_numbers")
        return time.monotonic() - start
    finally:
        await pool.close()


@contextlib.contextmanager
def cohort(size: int) -> Iterator[tuple[int, int, str, float]]:
    """A paging server and a loaded ledger database for *size* children, removed afterwards.

    Yields the server's port and pid, the database's URL and the ledger's load seconds.
    """
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, size), daemon=True)
    server.start()
    url = asyncio.run(create_database("xueji_bench_recon"))
    try:
        load_s = asyncio.run(load_ledger(url, size))
        asyncio.run(settle_database(url))
        for _ in range(100):  # wait for the paging server
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield port, server.pid or 0, url, load_s
    finally:
        server.terminate()
        server.join()
        asyncio.run(drop_database(url))


# --- measuring, inside a system's process ---------------------------------------------------
def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a local process has used so far; 0 if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd on: utime is the 14th
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu_s(db: Any) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench's database."""
    rows = await db.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return {r["pid"]: cpu_s(r["pid"]) for r in rows}


class Window:
    """Seconds and CPU seconds (this process, the database's backends, the paging server,
    the rest of the machine) between start() and stop(). Backends opened meanwhile count
    from their start."""

    def __init__(self, db: Any, server_pid: int) -> None:
        self._db, self._server = db, server_pid
        self._pg: dict[int, float] = {}
        self._own = self._sim = self._machine = self._t0 = 0.0

    @staticmethod
    def _own_cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _machine_cpu_s() -> float:
        """CPU seconds every process of the machine has used so far (busy, not idle)."""
        user, nice, system, _idle, _wait, irq, softirq, steal = (
            int(x) for x in Path("/proc/stat").read_text().split()[1:9]
        )
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    async def start(self) -> None:
        self._pg, self._sim = await backend_cpu_s(self._db), cpu_s(self._server)
        self._machine = self._machine_cpu_s()
        self._own, self._t0 = self._own_cpu_s(), time.monotonic()

    async def stop(self, size: int, **extra: Any) -> dict[str, Any]:
        """The figures of the window for a run over *size* children, with *extra*."""
        seconds, own = time.monotonic() - self._t0, self._own_cpu_s()
        machine = self._machine_cpu_s()
        pg, sim = await backend_cpu_s(self._db), cpu_s(self._server)
        cpu = {
            "process": own - self._own,
            "postgres": sum(v - self._pg.get(pid, 0.0) for pid, v in pg.items()),
            "paging_server": sim - self._sim,
        }
        # What the rest of the shared machine took meanwhile: high means noisy seconds.
        cpu["others"] = max(0.0, machine - self._machine - sum(cpu.values()))
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "children": size, "seconds": round(seconds, 2),
            "children_per_s": int(size / seconds), "peak_rss_mib": round(peak_kib / 1024, 1),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()}, **extra,
        }  # fmt: skip


# --- the baseline ---------------------------------------------------------------------------
END = "\uffff"  # sorts after every student number: the head of a side that has ended


class _Numbers:
    """One side's student numbers as the baseline's merge sees them: a page and a position."""

    def __init__(self, pages: AsyncIterator[list[str]]) -> None:
        self.pages, self.done, self.seen = pages, False, 0
        self.items: list[str] = []
        self.pos = 0

    async def refill(self) -> None:
        page: list[str] = []
        while not page:
            got = await anext(self.pages, None)
            if got is None:
                self.items, self.pos, self.done = [], 0, True
                return
            page = got
        self.items, self.pos = page, 0
        self.seen += len(page)


async def _listing(http: Any, url: str) -> AsyncGenerator[list[str]]:
    """The student numbers of a paged listing, a page at a time, the next one fetched meanwhile."""
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def fetch(cursor: str | None) -> tuple[list[str], str | None]:
        params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
        async with http.get(url, params=params, headers=auth) as resp:
            resp.raise_for_status()
            body = orjson.loads(await resp.read())
        return [item["student_number"] for item in body["items"]], body["next_cursor"]

    pending: asyncio.Future[tuple[list[str], str | None]] | None = asyncio.ensure_future(
        fetch(None)
    )
    try:
        while pending is not None:
            numbers, cursor = await pending
            pending = asyncio.ensure_future(fetch(cursor)) if cursor else None
            yield numbers
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def _ledger(cursor: Any) -> AsyncGenerator[list[str]]:
    """The ledger stream's student numbers, PAGE rows a fetch, the next fetched meanwhile."""
    pending: asyncio.Future[list[Any]] | None = asyncio.ensure_future(cursor.fetch(PAGE))
    try:
        while pending is not None:
            rows = await pending
            pending = asyncio.ensure_future(cursor.fetch(PAGE)) if len(rows) == PAGE else None
            yield [r["student_number"] for r in rows]
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _merge_pages(a: _Numbers, b: _Numbers, c: _Numbers) -> tuple[int, int]:
    """Merge-join the pages at hand until a side that has not ended runs dry; (matched,
    unmatched) student numbers met. Unrolled, as the bridge's merge is, to be as cheap."""
    ax, bx, cx = a.items, b.items, c.items
    ai, bi, ci = a.pos, b.pos, c.pos
    an, bn, cn = len(ax), len(bx), len(cx)
    matched = unmatched = 0
    while True:
        if ai < an:
            x = ax[ai]
        elif a.done:
            x = END
        else:
            break
        if bi < bn:
            y = bx[bi]
        elif b.done:
            y = END
        else:
            break
        if ci < cn:
            z = cx[ci]
        elif c.done:
            z = END
        else:
            break
        key = x if x < y else y
        if z < key:
            key = z
        if key == END:
            break
        hits = 0
        if x == key:
            ai += 1
            hits += 1
        if y == key:
            bi += 1
            hits += 1
        if z == key:
            ci += 1
            hits += 1
        if hits == 3:
            matched += 1
        else:
            unmatched += 1
    a.pos, b.pos, c.pos = ai, bi, ci
    return matched, unmatched


async def run_baseline(size: int, port: int, server_pid: int, url: str) -> dict[str, Any]:
    import aiohttp
    import asyncpg

    # The bridge's own ledger query: PostgreSQL does the same work for both systems.
    from bridge.adapters.postgres.reconciliation_store import _LEDGER_STREAM

    base = f"http://127.0.0.1:{port}"
    conn = await asyncpg.connect(url)
    try:
        async with aiohttp.ClientSession() as http:
            window = Window(conn, server_pid)
            # As the bridge does during a scan (and for the same reason): pages are freed by
            # reference counting, the collector would only walk them again and again.
            gc.set_threshold(200_000, *gc.get_threshold()[1:])
            await window.start()
            matched = unmatched = 0
            async with conn.transaction(readonly=True):
                cursor = await conn.cursor(_LEDGER_STREAM, ENTRY_YEAR)
                async with (
                    contextlib.aclosing(_listing(http, base + ROSTER_PATH)) as roster_pages,
                    contextlib.aclosing(_ledger(cursor)) as ledger_pages,
                    contextlib.aclosing(_listing(http, base + STUDENTS_PATH)) as registry_pages,
                ):
                    roster, ledger = _Numbers(roster_pages), _Numbers(ledger_pages)
                    registry = _Numbers(registry_pages)
                    while True:
                        for side in (roster, ledger, registry):
                            if side.pos >= len(side.items) and not side.done:
                                await side.refill()
                        if roster.done and ledger.done and registry.done:
                            break
                        m, u = _merge_pages(roster, ledger, registry)
                        matched, unmatched = matched + m, unmatched + u
            return await window.stop(
                size,
                sides={"roster": roster.seen, "ledger": ledger.seen, "registry": registry.seen},
                counts={"matched": matched, "unmatched": unmatched},
            )
    finally:
        await conn.close()


# --- the bridge -----------------------------------------------------------------------------
async def run_bridge(size: int, port: int, server_pid: int, url: str) -> dict[str, Any]:
    from bridge.bootstrap import operator_tools
    from bridge.settings import Settings

    settings = Settings(
        database_url=url, registry_url=f"http://127.0.0.1:{port}/registry",
        preschool_url=f"http://127.0.0.1:{port}/preschool", registry_token=TOKEN,
        preschool_token=TOKEN, reconcile_max_repairs=0, reconcile_page_size=PAGE,
    )  # fmt: skip
    async with operator_tools(settings) as tools:
        window = Window(tools.stores.pool, server_pid)
        await window.start()
        run = await tools.use_cases.reconciler.run(
            ENTRY_YEAR, trigger="bench", today=dt.date(ENTRY_YEAR, 11, 23)
        )
        return await window.stop(size, sides=run.sides, counts=run.counts)


RUNNERS = {"baseline": run_baseline, "bridge": run_bridge}


# --- the whole benchmark --------------------------------------------------------------------
def run_apart(system: str, size: int, port: int, server_pid: int, url: str) -> dict[str, Any]:
    """One system's run in a fresh interpreter: its peak RSS and CPU are that run's alone."""
    argv = ["--one", system, "--size", str(size), "--port", str(port)]
    argv += ["--server-pid", str(server_pid), "--database-url", url]
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", *argv],
        check=True, stdout=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def target_met(by_size: dict[int, dict[str, Any]]) -> bool | None:
    """The issue's target, or None if this run cannot tell (1.5M and a smaller size needed)."""
    if TARGET_CHILDREN not in by_size or min(by_size) >= TARGET_CHILDREN:
        return None
    big, small = by_size[TARGET_CHILDREN]["bridge"], by_size[min(by_size)]["bridge"]
    growth = big["peak_rss_mib"] - small["peak_rss_mib"]
    return bool(big["seconds"] <= TARGET_S and growth <= RSS_GROWTH_MIB)


def main(sizes: list[int]) -> None:
    probes = [cpu_probe_ms()]
    by_size: dict[int, dict[str, Any]] = {}
    for size in sizes:
        with cohort(size) as (port, server_pid, url, load_s):
            figures: dict[str, Any] = {"ledger_load_s": round(load_s, 1)}
            for system in SYSTEMS:
                figures[system] = run_apart(system, size, port, server_pid, url)
                print(f"{size:,} children, {system}: {figures[system]['seconds']} s", flush=True)
        # Both must have seen the same cohort, or the comparison means nothing.
        if figures["baseline"]["sides"] != figures["bridge"]["sides"]:
            raise SystemExit(f"the systems saw different sides at {size:,}: {figures}")
        figures["ratio_seconds"] = round(
            figures["bridge"]["seconds"] / figures["baseline"]["seconds"], 2
        )
        by_size[size] = figures
    probes.append(cpu_probe_ms())

    rows = []
    for size, figures in by_size.items():
        for system in SYSTEMS:
            r = figures[system]
            rows.append([
                system, f"{size:,}", r["seconds"], f"{r['children_per_s']:,}", r["peak_rss_mib"],
                r["cpu_s"]["process"], r["cpu_s"]["postgres"], r["cpu_s"]["paging_server"],
                r["cpu_s"]["others"],
            ])  # fmt: skip
    print_table(
        f"reconciliation, baseline then bridge per size (cpu probe {probes[0]:.0f} ms before,"
        f" {probes[1]:.0f} ms after; about 130 ms on an idle 2-core box)",
        ["system", "children", "seconds", "children/s", "peak RSS MiB", "CPU s process",
         "CPU s PostgreSQL", "CPU s paging server", "CPU s others"],
        rows,
    )  # fmt: skip
    print_table(
        "bridge / baseline",
        ["children", "seconds", "CPU s process", "CPU s PostgreSQL", "ledger load s"],
        [
            [
                f"{size:,}", f["ratio_seconds"],
                *(round(f["bridge"]["cpu_s"][k] / max(f["baseline"]["cpu_s"][k], 0.01), 2)
                  for k in ("process", "postgres")),
                f["ledger_load_s"],
            ]
            for size, f in by_size.items()
        ],
    )  # fmt: skip
    met = target_met(by_size)
    print(
        f"\ntarget: {TARGET_CHILDREN:,} children in <= {TARGET_S:.0f} s, bridge peak RSS within"
        f" {RSS_GROWTH_MIB:.0f} MiB of the smallest size's: "
        + {True: "met", False: "NOT met", None: "not measured"}[met]
    )
    print_json_line({
        "bench": "reconcile", "sizes": sizes, "order": list(SYSTEMS), "page_size": PAGE,
        "results": {str(size): figures for size, figures in by_size.items()},
        "ratio_seconds": {str(size): f["ratio_seconds"] for size, f in by_size.items()},
        "target": {"children": TARGET_CHILDREN, "max_seconds": TARGET_S,
                   "max_rss_growth_mib": RSS_GROWTH_MIB},
        "target_met": met, "cpu_probe_ms": probes,
    })  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1500000")
    # One system's run, in this process (run_apart); not for direct use.
    parser.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        runner = RUNNERS[args.one]
        result = asyncio.run(runner(args.size, args.port, args.server_pid, args.database_url))
        print(json.dumps(result))
    else:
        main([int(s) for s in args.sizes.split(",")])
