"""Soak: graduation events at a steady rate through the bridge; its memory must stay flat.

Events go out at ``--rate`` per second until ``--n`` are published; the bridge's resident
set is sampled every ``--sample-s`` seconds. Each event is a new child with its own
unique, valid resident ID number; record files are shared by ``--templates`` seeded
children, so a million children need no million files in memory.

The verdict compares the second half of the run with its end: after warm-up (caches,
pools, allocator arenas) the resident set must not keep rising with the events handled.

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
from collections.abc import Iterator
from typing import Any

import aio_pika
import orjson

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
    Simulator,
    bridge_env,
    create_database,
    databases,
    delete_broker_objects,
    free_port,
    print_json_line,
    print_table,
    wait_http_ok,
)
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with databases() as dbs:
        sim_db = await create_database("xueji_soak_sim")
        dbs.append(sim_db)
        bridge_db = await create_database("xueji_soak_bridge")
        dbs.append(bridge_db)
        sim = await Simulator.start(sim_db)
        prefix = f"soak-{TAG}"
        exchange = f"{prefix}.exchange"
        bridge: Child | None = None
        try:
            templates = generate_cohort(2026, args.templates, seed=7, mix={"graduated": 1.0})
            await seed_cohort(sim.url, templates)
            port = free_port()
            settings = {
                "database_url": bridge_db, "amqp_url": AMQP_URL,
                "registry_url": f"{sim.url}/registry", "preschool_url": f"{sim.url}/preschool",
                "events_exchange": exchange, "queue_prefix": prefix,
                "instance_id": f"soak-{TAG}", "http_port": port, "log_level": "WARNING",
                **({"event_loop": "uvloop"} if args.uvloop else {}),
            }  # fmt: skip
            bridge = Child("bridge-soak", ["-m", "bridge", "run"], bridge_env(settings))
            await wait_http_ok(f"http://127.0.0.1:{port}/readyz", bridge)
            source = events([c.events[0] for c in templates.children])
            published = [0]
            publisher = asyncio.create_task(
                publish_steadily(exchange, source, args.n, args.rate, published)
            )
            samples: list[tuple[float, int, int, float]] = []
            started = time.monotonic()
            while not publisher.done() or (await sim.files_stored()) < args.n:
                if not bridge.alive():
                    raise RuntimeError(f"bridge exited:\n{bridge.log_tail()}")
                stored = await sim.files_stored()
                samples.append(
                    (time.monotonic() - started, published[0], stored, bridge.rss_bytes() / 2**20)
                )
                if publisher.done():
                    publisher.result()
                    if time.monotonic() - started > args.n / args.rate + args.drain_s:
                        break  # the bridge cannot keep up: report what it did
                await asyncio.sleep(args.sample_s)
            samples.append(
                (time.monotonic() - started, published[0], await sim.files_stored(),
                 bridge.rss_bytes() / 2**20)
            )  # fmt: skip
            peak = bridge.peak_rss_bytes() / 2**20
        finally:
            if bridge is not None:
                await bridge.stop()
            await sim.child.stop()
            await delete_broker_objects(
                [f"{prefix}.events", f"{prefix}.parked"], [exchange, f"{prefix}.parked"]
            )
    return report(args, samples, peak)


def report(
    args: argparse.Namespace, samples: list[tuple[float, int, int, float]], peak_mb: float
) -> dict[str, Any]:
    step = max(1, len(samples) // 20)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    print_table(
        f"soak: n={args.n} at {args.rate:.0f}/s, RSS every {args.sample_s:.0f} s",
        ["t s", "published", "handed over", "RSS MB"],
        [[t, p, s, rss] for t, p, s, rss in shown],
    )
    half = samples[len(samples) // 2 :]
    mid_mb = statistics.median(r for *_, r in half[: max(1, len(half) // 4)])
    end_mb = statistics.median(r for *_, r in half[-max(1, len(half) // 4) :])
    growth = end_mb - mid_mb
    handled = samples[-1][2]
    flat = growth <= FLAT_TOLERANCE_MB
    print(
        f"\nRSS mid-run {mid_mb:.1f} MB, end {end_mb:.1f} MB: growth {growth:+.1f} MB "
        f"over the second half ({'flat' if flat else 'GROWING'}; tolerance "
        f"{FLAT_TOLERANCE_MB:.0f} MB); peak {peak_mb:.1f} MB; {handled} handed over"
    )
    figures = {
        "bench": "soak",
        "n": args.n,
        "rate_per_s": args.rate,
        "handed_over": handled,
        "duration_s": samples[-1][0],
        "rss_mid_mb": mid_mb,
        "rss_end_mb": end_mb,
        "rss_growth_second_half_mb": growth,
        "rss_peak_mb": peak_mb,
        "flat": flat,
        "samples": [[round(t), p, s, round(r, 1)] for t, p, s, r in samples],
    }
    print_json_line(figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="events to publish")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--templates", type=int, default=500, help="distinct record files")
    parser.add_argument("--drain-s", type=float, default=120.0, help="wait after publishing")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
