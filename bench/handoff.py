"""Hand-over throughput and latency of the whole bridge, beside its two baselines.

N graduation events (record files of 5-50 KB) are published before a system starts;
the system then drains them against the simulator. Per run, in turn and on the same
broker, database server and simulator:

- ``bridge``: ``python -m bridge run`` (ledger, leases, retries, everything);
- ``pipeline`` (baseline a): consume, GET file, PUT intake, PUT file, ack; no durability;
- ``consume`` (baseline b): a bare aio-pika consume-and-ack loop.

Throughput is hand-overs per second from the first registry request to the N-th stored
file (median of the runs); latency (publish to the file stored at the registry) is
measured afterwards with events published at a steady rate of half the bridge's
throughput, so that queueing does not drown it. Peak RSS is the bridge's VmHWM.

``python -m bench.handoff --n 100000`` (``make bench`` runs this with BENCH_N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench.common import (
    AMQP_URL,
    TAG,
    Child,
    CpuMeter,
    Simulator,
    bridge_env,
    cpu_probe_ms,
    create_database,
    databases,
    delete_broker_objects,
    drop_database,
    files_stored,
    free_port,
    percentile,
    print_json_line,
    print_table,
    python_env,
    settle_database,
    wait_http_ok,
)
from bench.reconcile import load_ledger
from consumers.topology import TopologyNames, declare
from simulator.cohort import Cohort, generate_cohort
from simulator.publisher import CONTENT_TYPE, EventPublisher, event_message, seed_cohort

GRADUATIONS = {"graduated": 0.9, "graduated_no_school": 0.1}
SYSTEMS = ("bridge", "pipeline", "consume")


@dataclass
class Options:
    """Command-line knobs."""

    n: int
    runs: int
    latency_n: int
    prefetch: int
    concurrency: int
    uvloop: bool
    systems: tuple[str, ...] = SYSTEMS
    bridge_settings: dict[str, str] = field(default_factory=dict)
    ledger_holds: int = 0  # children in the bridge's ledger before it starts


@dataclass
class RunResult:
    """One system's figures in one run."""

    system: str
    rate: float
    elapsed_s: float
    peak_rss_mb: float = 0.0
    # CPU seconds over the drain by component: the system, simulator, postgres, rabbitmq.
    cpu: dict[str, float] = field(default_factory=dict)


class Bench:
    """Holds the simulator and the cohort across runs."""

    def __init__(self, opts: Options, sim: Simulator, cohort: Cohort, dbs: list[str]) -> None:
        self.opts, self.sim, self.cohort, self.dbs = opts, sim, cohort, dbs
        self.messages = [event_message(c.events[0]) for c in cohort.children]
        self.serial = 0
        self.bridge_port = 0

    def names(self, system: str) -> TopologyNames:
        self.serial += 1
        prefix = f"bench-{TAG}-{system}-{self.serial}"
        return TopologyNames(
            events_exchange=f"{prefix}.exchange",
            events_queue=f"{prefix}.events",
            parked_exchange=f"{prefix}.parked",
            parked_queue=f"{prefix}.parked",
            unrecorded_queue=f"{prefix}.unrecorded",
        )

    async def publish(
        self, names: TopologyNames, count: int, rate: float | None = None
    ) -> dict[str, float]:
        """Declare the system's topology, publish *count* events; returns publish times."""
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await declare(await connection.channel(), names)
        sent: dict[str, float] = {}
        async with EventPublisher(AMQP_URL, exchange=names.events_exchange) as publisher:
            batch = self.messages[:count]
            if rate is None:
                await publisher.publish(batch)
                return sent
            exchange = publisher._exchange  # paced single publishes
            assert exchange is not None
            start = time.monotonic()
            tasks = []
            for i, m in enumerate(batch):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[m.message_id] = time.time()
                tasks.append(
                    asyncio.create_task(
                        exchange.publish(
                            aio_pika.Message(
                                m.body, content_type=CONTENT_TYPE, message_id=m.message_id,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=m.routing_key,
                        )
                    )
                )  # fmt: skip
            await asyncio.gather(*tasks)
        return sent

    # --- systems --------------------------------------------------------------------
    async def start_bridge(self, names: TopologyNames) -> tuple[Child, str]:
        database_url = await create_database("xueji_bench_bridge")
        self.dbs.append(database_url)
        if self.opts.ledger_holds:
            # A province's ledger after earlier cohorts: do its size or indexes slow this one?
            await load_ledger(database_url, self.opts.ledger_holds)
        port = free_port()
        settings = {
            "database_url": database_url,
            "amqp_url": AMQP_URL,
            "registry_url": f"{self.sim.url}/registry",
            "preschool_url": f"{self.sim.url}/preschool",
            "events_exchange": names.events_exchange,
            "queue_prefix": names.events_queue.removesuffix(".events"),
            "instance_id": f"bench-{TAG}",
            "http_port": port,
            "prefetch": self.opts.prefetch,
            "handoff_concurrency": self.opts.concurrency,
            "log_level": "WARNING",
            **({"event_loop": "uvloop"} if self.opts.uvloop else {}),
            **self.opts.bridge_settings,
        }
        child = Child("bridge", ["-m", "bridge", "run"], bridge_env(settings))
        self.bridge_port = port
        return child, database_url

    def start_baseline(self, mode: str, names: TopologyNames, n: int) -> Child:
        argv = [
            "-m", "bench.baselines", mode, "--queue", names.events_queue, "--n", str(n),
            "--amqp-url", AMQP_URL, "--registry-url", f"{self.sim.url}/registry",
            "--prefetch", str(self.opts.prefetch), "--concurrency", str(self.opts.concurrency),
        ]  # fmt: skip
        if self.opts.uvloop:
            argv.append("--uvloop")
        return Child(f"baseline-{mode}", argv, python_env())

    async def wait_stored(
        self, child: Child, before: int, n: int, meter: CpuMeter | None = None
    ) -> tuple[float, float]:
        """(t first registry request, t n-th file stored), polling the simulator's counters.

        One poll per 0.1 s: polling costs the simulator CPU that both systems need.
        *meter*, if given, is started at the first registry request and stopped at the end.
        """
        first_total = (await self.sim.stats())["total_requests"]
        t_first: float | None = None
        while True:
            # Read the child's liveness before the counters: a baseline exits as soon as it
            # acked its last message, and its last file counts all the same.
            alive = child.alive()
            stats = await self.sim.stats()
            now = time.perf_counter()
            if t_first is None and stats["total_requests"] > first_total:
                t_first = now
                if meter:
                    meter.start()
            if files_stored(stats) - before >= n:
                assert t_first is not None
                return t_first, now
            if not alive:
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            await asyncio.sleep(0.1)

    async def throughput(self, system: str) -> RunResult:
        n = self.opts.n
        await self.sim.wipe_registry()
        names = self.names(system)
        await self.publish(names, n)
        before = await self.sim.files_stored()
        database_url = None
        try:
            if system == "consume":
                child = self.start_baseline("consume", names, n)
                while child.alive():  # noqa: ASYNC110 - a process, not a task
                    await asyncio.sleep(0.05)
                result = _last_json(child)
                return RunResult(system, n / result["elapsed_s"], result["elapsed_s"])
            if system == "bridge":
                child, database_url = await self.start_bridge(names)
            else:
                child = self.start_baseline("pipeline", names, n)
            dbs = {"simulator": self.sim.database_url}
            if database_url:
                dbs["ledger"] = database_url
            meter = CpuMeter({system: child.pid, "simulator": self.sim.child.pid}, dbs)
            try:
                t0, t1 = await self.wait_stored(child, before, n, meter)
                cpu = meter.stop()
                peak = child.peak_rss_bytes() / 2**20
                if system == "bridge":
                    await self.print_batching()
            finally:
                await child.stop()
            if system != "bridge":  # the baseline exits at its last ack: it reports its own
                cpu[system] = _last_json(child)["cpu_s"]
            return RunResult(system, n / (t1 - t0), t1 - t0, peak, cpu)
        finally:
            await delete_broker_objects(
                [names.events_queue, names.parked_queue, names.unrecorded_queue],
                [names.events_exchange, names.parked_exchange],
            )
            if database_url:
                await drop_database(database_url)
                self.dbs.remove(database_url)

    async def print_batching(self) -> None:
        """Rows per group-committed ledger statement, from the bridge's /metrics."""
        url = f"http://127.0.0.1:{self.bridge_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
        sums: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            for part in ("sum", "count"):
                prefix = f'xueji_ledger_batch_rows_{part}{{writer="'
                if line.startswith(prefix):
                    writer, value = line[len(prefix) :].split('"} ')
                    sums.setdefault(writer, {})[part] = float(value)
        means = {w: v["sum"] / v["count"] for w, v in sums.items() if v.get("count")}
        print("  rows per ledger statement: " + ", ".join(f"{w} {m:.1f}" for w, m in means.items()))

    async def latency(self, system: str, rate: float) -> list[float]:
        """Publish-to-stored latencies (ms) of latency_n events published at *rate*/s."""
        n = min(self.opts.latency_n, len(self.messages))
        await self.sim.wipe_registry()
        names = self.names(system)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await declare(await connection.channel(), names)
        before = await self.sim.files_stored()
        database_url = None
        if system == "bridge":
            child, database_url = await self.start_bridge(names)
        else:
            child = self.start_baseline("pipeline", names, n)
        try:
            if system == "bridge":
                await wait_http_ok(f"http://127.0.0.1:{self.bridge_port}/readyz", child)
            else:
                await asyncio.sleep(1.0)  # its start-up; it consumes as soon as it can
            sent = await self.publish(names, n, rate)
            await self.wait_stored(child, before, n)
        finally:
            await child.stop()
            await delete_broker_objects(
                [names.events_queue, names.parked_queue, names.unrecorded_queue],
                [names.events_exchange, names.parked_exchange],
            )
            if database_url:
                await drop_database(database_url)
                self.dbs.remove(database_url)
        numbers = {c.events[0]["id"]: c.events[0]["subject"] for c in self.cohort.children[:n]}
        stored = await _stored_at(self.sim.database_url)
        return [(stored[numbers[i]] - t) * 1000 for i, t in sent.items() if numbers[i] in stored]


def _last_json(child: Child) -> dict[str, Any]:
    for line in reversed(child.log_path.read_text().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"{child.name} printed no result:\n{child.log_tail()}")


async def _stored_at(database_url: str) -> dict[str, float]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT student_number, extract(epoch FROM updated_at) AS t FROM reg_students"
            " WHERE file_sha256 IS NOT NULL"
        )
    finally:
        await conn.close()
    return {r["student_number"]: float(r["t"]) for r in rows}


async def main_async(opts: Options) -> dict[str, Any]:
    async with databases() as dbs:
        sim_db = await create_database("xueji_bench_sim")
        dbs.append(sim_db)
        sim = await Simulator.start(sim_db)
        try:
            t = time.perf_counter()
            cohort = generate_cohort(2026, opts.n, seed=2026, mix=GRADUATIONS)
            await seed_cohort(sim.url, cohort)
            await settle_database(sim_db)
            for c in cohort.children:
                c.record_file = None  # seeded: the bytes live in the simulator now
            print(f"cohort of {opts.n} generated and seeded in {time.perf_counter() - t:.0f} s")
            bench = Bench(opts, sim, cohort, dbs)
            results: dict[str, list[RunResult]] = {s: [] for s in SYSTEMS}
            probes = [cpu_probe_ms()]
            for run in range(opts.runs):
                for system in opts.systems:
                    r = await bench.throughput(system)
                    results[system].append(r)
                    probes.append(cpu_probe_ms())
                    print(
                        f"run {run + 1} {system}: {r.rate:,.0f}/s in {r.elapsed_s:.1f} s"
                        f"  (cpu probe {probes[-1]:.0f} ms)"
                    )
            if set(opts.systems) != set(SYSTEMS):
                cpu = cpu_per_thousand(opts.n, {s: results[s] for s in opts.systems})
                print(f"CPU seconds per 1,000 hand-overs: {json.dumps(cpu)}")
                return {s: [r.rate for r in results[s]] for s in opts.systems}
            medians = {s: statistics.median(r.rate for r in results[s]) for s in SYSTEMS}
            rate = medians["bridge"] / 2
            latencies = {s: await bench.latency(s, rate) for s in ("bridge", "pipeline")}
        finally:
            await sim.child.stop()
    return report(opts, results, medians, latencies, rate, probes)


def report(
    opts: Options,
    results: dict[str, list[RunResult]],
    medians: dict[str, float],
    latencies: dict[str, list[float]],
    latency_rate: float,
    probes: list[float],
) -> dict[str, Any]:
    rows: list[Sequence[Any]] = []
    for s in SYSTEMS:
        lat = latencies.get(s, [])
        rows.append([
            s, medians[s], " / ".join(f"{r.rate:,.0f}" for r in results[s]),
            percentile(lat, 50) if lat else "-", percentile(lat, 99) if lat else "-",
            max((r.peak_rss_mb for r in results[s]), default=0.0) or "-",
        ])  # fmt: skip
    print_table(
        f"hand-over: n={opts.n}, runs={opts.runs}, latency at {latency_rate:,.0f}/s"
        f" over {opts.latency_n} events",
        ["system", "per s (median)", "runs", "p50 ms", "p99 ms", "peak RSS MB"],
        rows,
    )
    cpu = cpu_per_thousand(opts.n, results)
    components = sorted({c for per in cpu.values() for c in per} - set(SYSTEMS))
    print_table(
        "CPU seconds per 1,000 hand-overs (median of runs), by process",
        ["system", "itself", *components, "total"],
        [
            [s, per.get(s, 0.0), *(per.get(c, 0.0) for c in components), sum(per.values())]
            for s, per in cpu.items()
        ],
    )
    ratio_a = medians["bridge"] / medians["pipeline"]
    ratio_b = medians["bridge"] / medians["consume"]
    print(
        f"\ncpu probe between runs: {min(probes):.0f}-{max(probes):.0f} ms"
        " (70-100 ms on an idle 2-core box; higher means the machine was busy)"
    )
    print(f"bridge / pipeline (a) = {ratio_a:.2f}   (target >= 0.80)")
    print(f"bridge / consume  (b) = {ratio_b:.2f}")
    figures = {
        "bench": "handoff",
        "n": opts.n,
        "runs": opts.runs,
        "uvloop": opts.uvloop,
        "per_s": medians,
        "per_s_runs": {s: [round(r.rate, 1) for r in results[s]] for s in SYSTEMS},
        "latency_ms": {
            s: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
            for s, v in latencies.items()
        },
        "latency_rate_per_s": latency_rate,
        "bridge_peak_rss_mb": max(r.peak_rss_mb for r in results["bridge"]),
        "cpu_s_per_1000": cpu,
        "cpu_probe_ms": probes,
        "ratio_bridge_to_pipeline": ratio_a,
        "ratio_bridge_to_consume": ratio_b,
        "target_met": ratio_a >= 0.8,
    }
    print_json_line(figures)
    return figures


def cpu_per_thousand(n: int, results: dict[str, list[RunResult]]) -> dict[str, dict[str, float]]:
    """Median CPU seconds per 1,000 hand-overs, per system and component."""
    out: dict[str, dict[str, float]] = {}
    for system, runs in results.items():
        measured = [r.cpu for r in runs if r.cpu]
        if not measured:
            continue
        names = {c for cpu in measured for c in cpu}
        out[system] = {
            c: round(statistics.median(cpu.get(c, 0.0) for cpu in measured) * 1000 / n, 3)
            for c in sorted(names)
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.handoff", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="events per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-n", type=int, default=2000)
    parser.add_argument("--prefetch", type=int, default=256)
    # Children in flight, the same for the bridge and the pipeline: enough that neither waits
    # on latency (the bridge's durable writes add some) rather than on the machine.
    parser.add_argument("--concurrency", type=int, default=192)
    parser.add_argument("--uvloop", action="store_true", help="uvloop in every system")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="a subset, for profiling (no report)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="extra bridge setting (BRIDGE_KEY), e.g. --set db_pool_size=30",
    )  # fmt: skip
    parser.add_argument(
        "--ledger-holds", type=int, default=0, metavar="N",
        help="children already in the bridge's ledger when it starts (bench/reconcile.py's"
        " synthetic cohort, in every state), to see the hand-over at a province's scale",
    )  # fmt: skip
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.set)
    opts = Options(
        args.n, args.runs, args.latency_n, args.prefetch, args.concurrency, args.uvloop,
        tuple(args.systems.split(",")), extra, args.ledger_holds,
    )  # fmt: skip
    asyncio.run(main_async(opts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
