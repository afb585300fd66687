"""Soak: graduation events at a steady rate through the bridge; its memory must stay flat.

Events go out at ``--rate`` per second until ``--n`` are published; the bridge's resident
set is sampled every ``--sample-s`` seconds. Each event is a new child with its own
unique, valid resident ID number; record files are shared by ``--templates`` seeded
children, so a million children need no million files in memory.

The verdict compares the second half of the run with its end: after warm-up (caches,
pools, allocator arenas) the resident set must not keep rising with the events handled.
"Most behind" is the largest count of events published and not yet handed over at any
sample: whether the system kept up with the rate. Once publishing ends, a backlog is
waited for as long as it shrinks (``--drain-s`` without progress ends the run).
Afterwards the bare pipeline of bench/baselines.py (no durability) takes ``--baseline-n``
more new children at the same rate, sampled the same way: what a process doing the same
contract I/O with nothing kept holds, beside what the bridge holds.

``python -m bench.soak --n 1000000 --rate 200``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aio_pika
import orjson

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
    Simulator,
    bridge_env,
    cpu_probe_ms,
    create_database,
    databases,
    delete_broker_objects,
    free_port,
    print_json_line,
    print_table,
    python_env,
    settle_database,
    wait_http_ok,
)
from consumers.topology import TopologyNames, declare
from simulator.cohort import generate_cohort
from simulator.names import COUNTIES
from simulator.numbers import check_char
from simulator.publisher import CONTENT_TYPE, seed_cohort

# Growth over the second half of the run that still counts as flat: allocator noise.
FLAT_TOLERANCE_MB = 15.0


def unique_children() -> Iterator[tuple[str, str, dt.date]]:
    """(resident id, gender, birth date) in a fixed order, each valid and never repeated."""
    first = dt.date(2019, 9, 1)
    for seq in range(1000):
        for county in COUNTIES:
            for day in range(366):
                birth = first + dt.timedelta(days=day)
                body = f"{county}{birth:%Y%m%d}{seq:03d}"
                yield body + check_char(body), ("M" if seq % 2 else "F"), birth


def events(templates: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Graduation events of new children, each borrowing a template's record file."""
    for i, (id_number, gender, birth) in enumerate(unique_children()):
        event = copy.deepcopy(templates[i % len(templates)])
        number = "G" + id_number
        event["id"] = str(uuid.uuid4())
        event["subject"] = number
        data = event["data"]
        data["student_number"] = number
        data["child"].update(
            id_type="resident_id", id_number=id_number, gender=gender,
            birth_date=birth.isoformat(), nationality="CN",
        )  # fmt: skip
        yield event


async def publish_steadily(
    exchange_name: str, source: Iterator[dict[str, Any]], n: int, rate: float, counter: list[int]
) -> None:
    """Publish *n* events at *rate* per second in 10 ticks a second, with confirms."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        start = time.monotonic()
        while counter[0] < n:
            due = min(n, int((time.monotonic() - start) * rate) + 1)
            batch = [next(source) for _ in range(due - counter[0])]
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            orjson.dumps(e), content_type=CONTENT_TYPE, message_id=e["id"],
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key="child.graduated",
                    )
                    for e in batch
                )
            )  # fmt: skip
            counter[0] += len(batch)
            await asyncio.sleep(0.1)


Sample = tuple[float, int, int, float]  # seconds, published, handed over, RSS MB


async def soak(
    name: str,
    start: Callable[[TopologyNames], Awaitable[Child]],
    sim: Simulator,
    source: Iterator[dict[str, Any]],
    n: int,
    args: argparse.Namespace,
) -> tuple[list[Sample], float, int]:
    """Publish *n* events steadily to a system started by *start*: RSS samples, peak, done."""
    prefix = f"soak-{TAG}-{name}"
    names = TopologyNames(
        events_exchange=f"{prefix}.exchange", events_queue=f"{prefix}.events",
        parked_exchange=f"{prefix}.parked", parked_queue=f"{prefix}.parked",
        unrecorded_queue=f"{prefix}.unrecorded",
    )  # fmt: skip
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        await declare(await connection.channel(), names)
    before = await sim.files_stored()
    system: Child | None = None
    stored = 0
    try:
        system = await start(names)
        published = [0]
        publisher = asyncio.create_task(
            publish_steadily(names.events_exchange, source, n, args.rate, published)
        )
        samples: list[Sample] = []
        peak = 0.0
        started = time.monotonic()
        progressed_at, last_stored = started, -1
        while True:
            # Memory first: the baseline exits the moment it acked its last message.
            rss, high = system.rss_bytes() / 2**20, system.peak_rss_bytes() / 2**20
            stored = await sim.files_stored() - before
            now = time.monotonic()
            if rss:
                samples.append((now - started, published[0], stored, rss))
                peak = max(peak, high)
            if stored >= n:
                break
            if not system.alive():
                raise RuntimeError(f"{name} exited:\n{system.log_tail()}")
            if stored > last_stored:
                progressed_at, last_stored = now, stored
            if publisher.done():
                publisher.result()
                # A backlog left when publishing stops is drained as long as it shrinks.
                if now - progressed_at > args.drain_s:
                    break  # it is stuck: report what it did
            await asyncio.sleep(args.sample_s)
    finally:
        if system is not None:
            await system.stop()
        await delete_broker_objects(
            [names.events_queue, names.parked_queue, names.unrecorded_queue],
            [names.events_exchange, names.parked_exchange],
        )
    return samples, peak, stored


async def run(args: argparse.Namespace) -> dict[str, Any]:
    probes = [cpu_probe_ms()]
    async with databases() as dbs:
        sim_db = await create_database("xueji_soak_sim")
        dbs.append(sim_db)
        bridge_db = await create_database("xueji_soak_bridge")
        dbs.append(bridge_db)
        sim = await Simulator.start(sim_db)
        try:
            templates = generate_cohort(2026, args.templates, seed=7, mix={"graduated": 1.0})
            await seed_cohort(sim.url, templates)
            await settle_database(sim_db)
            # One stream of new children for both systems: no child is handed over twice.
            source = events([c.events[0] for c in templates.children])
            baseline_n = min(args.n, args.baseline_n)

            async def bridge(names: TopologyNames) -> Child:
                port = free_port()
                settings = {
                    "database_url": bridge_db, "amqp_url": AMQP_URL,
                    "registry_url": f"{sim.url}/registry",
                    "preschool_url": f"{sim.url}/preschool",
                    "events_exchange": names.events_exchange,
                    "queue_prefix": names.events_queue.removesuffix(".events"),
                    "instance_id": f"soak-{TAG}", "http_port": port, "log_level": "WARNING",
                    **({"event_loop": "uvloop"} if args.uvloop else {}),
                }  # fmt: skip
                child = Child("bridge-soak", ["-m", "bridge", "run"], bridge_env(settings))
                await wait_http_ok(f"http://127.0.0.1:{port}/readyz", child)
                return child

            async def pipeline(names: TopologyNames) -> Child:
                argv = [
                    "-m", "bench.baselines", "pipeline", "--queue", names.events_queue,
                    "--n", str(baseline_n), "--amqp-url", AMQP_URL,
                    "--registry-url", f"{sim.url}/registry",
                    "--prefetch", "256", "--concurrency", "128",
                    *(["--uvloop"] if args.uvloop else []),
                ]  # fmt: skip
                return Child("baseline-soak", argv, python_env())

            results = {"bridge": await soak("bridge", bridge, sim, source, args.n, args)}
            probes.append(cpu_probe_ms())
            if baseline_n:
                results["pipeline"] = await soak(
                    "pipeline", pipeline, sim, source, baseline_n, args
                )
                probes.append(cpu_probe_ms())
        finally:
            await sim.child.stop()
    return report(args, results, probes)


def verdict(samples: list[Sample]) -> tuple[float, float, float]:
    """RSS a quarter into the second half, RSS at the end (medians), and the growth."""
    half = samples[len(samples) // 2 :]
    mid_mb = statistics.median(r for *_, r in half[: max(1, len(half) // 4)])
    end_mb = statistics.median(r for *_, r in half[-max(1, len(half) // 4) :])
    return mid_mb, end_mb, end_mb - mid_mb


def report(
    args: argparse.Namespace,
    results: dict[str, tuple[list[Sample], float, int]],
    probes: list[float],
) -> dict[str, Any]:
    samples, _, _ = results["bridge"]
    step = max(1, len(samples) // 20)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    print_table(
        f"bridge soak: n={args.n} at {args.rate:.0f}/s, RSS every {args.sample_s:.0f} s",
        ["t s", "published", "handed over", "RSS MB"],
        [[t, p, s, rss] for t, p, s, rss in shown],
    )
    rows = []
    systems: dict[str, Any] = {}
    for name, (runs, peak, done) in results.items():
        mid_mb, end_mb, growth = verdict(runs)
        flat = growth <= FLAT_TOLERANCE_MB
        # Whether it kept up: the most events published and not yet handed over.
        behind = max(p - s for _, p, s, _ in runs)
        rows.append([
            name, runs[-1][1], done, runs[-1][0], behind, mid_mb, end_mb, growth, peak,
            "flat" if flat else "GROWING",
        ])  # fmt: skip
        systems[name] = {
            "published": runs[-1][1], "handed_over": done, "duration_s": runs[-1][0],
            "most_behind": behind,
            "rss_mid_mb": mid_mb, "rss_end_mb": end_mb, "rss_growth_second_half_mb": growth,
            "rss_peak_mb": peak, "flat": flat,
            "samples": [[round(t), p, s, round(r, 1)] for t, p, s, r in runs],
        }  # fmt: skip
    print_table(
        f"soak at {args.rate:.0f}/s: RSS a quarter into the second half and at the end"
        f" (tolerance {FLAT_TOLERANCE_MB:.0f} MB); cpu probe {min(probes):.0f}-"
        f"{max(probes):.0f} ms",
        ["system", "published", "handed over", "s", "most behind", "RSS mid MB",
         "RSS end MB", "growth MB", "peak MB", "verdict"],
        rows,
    )  # fmt: skip
    bridge = systems["bridge"]
    figures = {
        "bench": "soak", "n": args.n, "rate_per_s": args.rate, "systems": systems,
        "cpu_probe_ms": probes,
        "target_met": bridge["flat"] and bridge["handed_over"] >= args.n,
    }  # fmt: skip
    print_json_line(figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="events to publish")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--templates", type=int, default=500, help="distinct record files")
    parser.add_argument(
        "--drain-s", type=float, default=60.0,
        help="after publishing, give up once nothing was handed over for this long",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-n", type=int, default=100_000,
        help="events for the bare pipeline afterwards, at the same rate (0: none)",
    )  # fmt: skip
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
