"""Schools pulling record files: the school API under 200 concurrent schools.

N handed-over children (spread over S schools, one record file each) are written straight
into a fresh ledger; a bridge runs as its own process (``python -m bridge run``). Then
every school at once lists its children (pages of 100) and downloads each file, checking
its sha256. Prints requests/s and p50/p99 latency per kind of request, and one JSON line.

``python -m bench.pull --children 4000 --schools 200 --file-kb 20``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
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


@dataclass
class Timings:
    """Latencies (s) by kind of request, bytes received, and failures."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"list": [], "file": []})
    bytes_in: int = 0
    errors: list[str] = field(default_factory=list)


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


async def one_school(url: str, school: str, token: str, t: Timings) -> None:
    """List every child of the school, then download and check each file."""
    headers = {"Authorization": f"Bearer {token}"}
    items: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        cursor: str | None = None
        while True:
            params = {"entry_year": str(ENTRY_YEAR), "limit": "100"}
            if cursor:
                params["cursor"] = cursor
            start = time.perf_counter()
            async with session.get(f"{url}/v1/schools/{school}/handoffs", params=params) as r:
                page = await r.json()
                if r.status != 200:
                    t.errors.append(f"list {r.status}")
                    return
            t.seconds["list"].append(time.perf_counter() - start)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        for item in items:
            start = time.perf_counter()
            path = f"{url}/v1/handoffs/{item['student_number']}/record-file"
            async with session.get(path) as r:
                body = await r.read()
            t.seconds["file"].append(time.perf_counter() - start)
            t.bytes_in += len(body)
            if r.status != 200 or hashlib.sha256(body).hexdigest() != item["record_file"]["sha256"]:
                t.errors.append(f"file {r.status}")


async def main(opts: argparse.Namespace) -> int:
    port = free_port()
    prefix = f"xueji.bench-pull-{TAG}"
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
        }  # fmt: skip
        bridge = Child("bridge-pull", ["-m", "bridge", "run"], bridge_env(settings))
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_http_ok(f"{url}/readyz", bridge)
            timings = Timings()
            cpu0 = bridge.cpu_s()
            start = time.perf_counter()
            await asyncio.gather(
                *(one_school(url, school, token, timings) for school, token in tokens.items())
            )
            elapsed = time.perf_counter() - start
            cpu = bridge.cpu_s() - cpu0
            rss = bridge.peak_rss_bytes()
        finally:
            await bridge.stop()
            await delete_broker_objects(
                [f"{prefix}.events", f"{prefix}.parked"], [f"{prefix}.events", f"{prefix}.parked"]
            )
    total = sum(len(v) for v in timings.seconds.values())
    rows = []
    for kind, values in timings.seconds.items():
        rows.append(
            (kind, len(values), len(values) / elapsed, percentile(values, 50) * 1000,
             percentile(values, 99) * 1000)
        )  # fmt: skip
    rows.append(("all", total, total / elapsed, float("nan"), float("nan")))
    print_table(
        f"{opts.schools} schools pulling {opts.children} files of {opts.file_kb} KB"
        f" ({elapsed:.1f} s, {timings.bytes_in / elapsed / 2**20:.1f} MiB/s,"
        f" bridge CPU {cpu:.1f} s, peak RSS {rss / 2**20:.0f} MiB)",
        ["request", "count", "req/s", "p50 ms", "p99 ms"], rows,
    )  # fmt: skip
    if timings.errors:
        print(f"\n{len(timings.errors)} errors, e.g. {timings.errors[:5]}")
    print_json_line({
        "bench": "pull", "children": opts.children, "schools": opts.schools,
        "file_kb": opts.file_kb, "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(total / elapsed, 1),
        "list_p50_ms": round(percentile(timings.seconds["list"], 50) * 1000, 1),
        "list_p99_ms": round(percentile(timings.seconds["list"], 99) * 1000, 1),
        "file_p50_ms": round(percentile(timings.seconds["file"], 50) * 1000, 1),
        "file_p99_ms": round(percentile(timings.seconds["file"], 99) * 1000, 1),
        "mib_per_s": round(timings.bytes_in / elapsed / 2**20, 1),
        "bridge_cpu_s": round(cpu, 1), "bridge_peak_rss_mib": round(rss / 2**20),
        "errors": len(timings.errors),
    })  # fmt: skip
    return 1 if timings.errors else 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=int(os.environ.get("N", 4000)))
    parser.add_argument("--schools", type=int, default=200)
    parser.add_argument("--file-kb", type=int, default=20)
    return asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(cli())
