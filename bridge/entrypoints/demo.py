"""``xueji demo``: the simulator, the bridge and a cohort of children, end to end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bridge.bootstrap import Bridge, new_file_key, operator_tools, running_bridge
from bridge.settings import Settings
from simulator.app import start_simulator
from simulator.cohort import Cohort, generate_cohort
from simulator.config import SimConfig
from simulator.publisher import publish_cohort, seed_cohort

ENTRY_YEAR = 2026
# A little weather, so the demo shows retries doing their job.
DEMO_FAULTS = {"registry": {"p_503": 0.03, "p_429": 0.02, "retry_after_s": 1, "p_drop": 0.01}}
MALFORMED = 12


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo runs: its own databases and exchange unless --external."""

    settings: Settings
    simulator_url: str | None
    external: bool


async def _fresh_database(admin_dsn: str, name: str) -> str:
    base = admin_dsn.rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def _simulator(plan: DemoPlan) -> AsyncIterator[str]:
    if plan.simulator_url:
        yield plan.simulator_url.rstrip("/")
        return
    database_url = await _fresh_database(plan.settings.database_url, "xueji_demo_sim")
    runner, url = await start_simulator(SimConfig(port=0, database_url=database_url))
    try:
        yield url
    finally:
        await runner.cleanup()


async def _set_faults(url: str, faults: dict[str, dict[str, float]]) -> None:
    body: dict[str, dict[str, float]] = {"registry": {}, "preschool": {}} | faults
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{url}/_sim/faults", json=body) as resp,
    ):
        resp.raise_for_status()


async def _registry_dump(url: str) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        # Every year: a child deferred from 2026 is handed over for 2027.
        session.get(f"{url}/_sim/registry/dump") as resp,
    ):
        resp.raise_for_status()
        body: dict[str, list[dict[str, object]]] = await resp.json()
    students: list[dict[str, object]] = body["students"]
    return students


async def run_demo(
    settings: Settings,
    *,
    children: int,
    seed: int,
    external: bool = False,
    simulator_url: str | None = None,
) -> int:
    """Run the demo; returns the process exit code (0 when the registry matches)."""
    console = Console()
    # The summary reports every set-aside; per-child warnings would only break the bars.
    for name in ("bridge", "consumers", "simulator"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not external:
        settings = settings.model_copy(
            update={
                "database_url": await _fresh_database(settings.database_url, "xueji_demo"),
                "events_exchange": "preschool.events.demo",
                "queue_prefix": "xueji.demo",
                "instance_id": "demo",
            }
        )
        if not (settings.file_keys or settings.file_keys_file):
            # A fresh database each run: a key of this run seals its record files.
            settings = settings.model_copy(update={"file_keys": new_file_key("demo")})
    plan = DemoPlan(settings, simulator_url, external)
    console.rule("[bold]xueji-bridge demo: 学籍号 and 学籍档案 from kindergarten to primary school")
    async with _simulator(plan) as url:
        if not external:
            settings = settings.model_copy(
                update={"registry_url": f"{url}/registry", "preschool_url": f"{url}/preschool"}
            )
        cohort = generate_cohort(ENTRY_YEAR, children, seed=seed)
        console.print(f"simulator: {url}   cohort: {children} children for entry year {ENTRY_YEAR}")
        with console.status("seeding the preschool registry with record files ..."):
            await seed_cohort(url, cohort)
        await _set_faults(url, DEMO_FAULTS)
        if external:
            return await _watch_external(console, settings, url, cohort)
        async with running_bridge(settings) as bridge:
            started = time.perf_counter()
            messages = await publish_cohort(
                settings.amqp_url, cohort, exchange=settings.events_exchange,
                duplicate_fraction=0.05, shuffle_children=True, interleave=True,
                malformed=MALFORMED, seed=seed,
            )  # fmt: skip
            events = len({m.message_id for m in messages if m.kind in ("event", "duplicate")})
            console.print(
                f"published {len(messages)} messages: {events} events in shuffled order, "
                f"{sum(m.kind == 'duplicate' for m in messages)} duplicates, {MALFORMED} malformed"
            )
            await _progress(console, bridge, cohort_size=children, events=events)
            elapsed = time.perf_counter() - started
            return await _summary(console, bridge, url, cohort, elapsed)


async def _progress(console: Console, bridge: Bridge, *, cohort_size: int, events: int) -> None:
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as progress:
        consumed = progress.add_task("events recorded   ", total=events)
        settled = progress.add_task("children settled  ", total=cohort_size)
        while True:
            recorded = await bridge.ledger.events_recorded()
            phases = await bridge.ledger.phase_counts()
            pending = await bridge.ledger.pending_work()
            progress.update(consumed, completed=recorded)
            progress.update(settled, completed=max(0, sum(phases.values()) - pending))
            if recorded >= events and pending == 0:
                progress.update(settled, completed=cohort_size)
                return
            await asyncio.sleep(0.25)


async def _summary(
    console: Console, bridge: Bridge, url: str, cohort: Cohort, elapsed_s: float
) -> int:
    phases = await bridge.ledger.phase_counts()
    aside = await bridge.ledger.set_aside_counts()
    events = await bridge.ledger.event_counts()
    parked = await bridge.parked.groups()
    renumbered = await bridge.ledger.children_with_former_numbers()
    dump = await _registry_dump(url)
    registered = {str(s["student_number"]): s for s in dump if s.get("status") != "withdrawn"}
    expected = cohort.expected_registry()
    matches = sum(
        1
        for n, e in expected.items()
        if n in registered
        and registered[n]["record_file_sha256"] == e["record_file_sha256"]
        and registered[n]["name"] == e["name"]
    )
    unexpected = sorted(set(registered) - set(expected))
    duplicated = sum(1 for s in dump if int(str(s.get("created_count", 1))) > 1)

    table = Table(title="What the bridge did", show_lines=False)
    table.add_column("outcome")
    table.add_column("children", justify="right")
    handed = phases.get("file_delivered", 0) + phases.get("enrolled", 0)
    table.add_row("handed over (number + record file at the registry)", str(handed))
    table.add_row("deferred (缓学留园), not registered", str(phases.get("deferred", 0)))
    table.add_row("cancelled (注销), not registered", str(phases.get("cancelled", 0)))
    for reason, n in sorted(aside.items()):
        table.add_row(f"set aside for an operator: {reason}", str(n))
    table.add_row("followed to a new number (L→G)", str(renumbered))
    table.add_row(
        "key-information corrections applied", str(events.get("child.key_info_changed", 0))
    )
    for group in parked:
        table.add_row(f"messages parked: {group.reason_code}", str(group.count))
    console.print(table)
    keys = bridge.use_cases.file_keys
    files = await keys.counts()
    console.print(
        f"record files at the bridge: {files['sealed']} sealed (AES-256-GCM, data keys wrapped"
        f" by key {keys.active_id!r}), {files['in_clear']} in the clear; erased"
        f" {bridge.settings.file_retention_days:g} days after each hand-over completes"
    )

    check = Table(title="Primary registry vs. what the rules call for")
    check.add_column("check")
    check.add_column("result", justify="right")
    check.add_row("children expected at the registry", str(len(expected)))
    check.add_row("registered with the right number, data and file", str(matches))
    check.add_row("registered but should not be", str(len(unexpected)))
    check.add_row("registered more than once", str(duplicated))
    console.print(check)
    rate = handed / elapsed_s if elapsed_s else 0.0
    console.print(
        f"{handed} children handed over in {elapsed_s:.1f} s "
        f"({rate:.0f} children/s, with injected registry faults)"
    )
    ok = matches == len(expected) and not unexpected and duplicated == 0
    console.print("[bold green]registry matches the cohort[/]" if ok else "[bold red]MISMATCH[/]")
    return 0 if ok else 1


async def _watch_external(console: Console, settings: Settings, url: str, cohort: Cohort) -> int:
    """Compose mode: the bridge runs elsewhere; publish and watch its ledger."""
    async with operator_tools(settings) as tools:
        messages = await publish_cohort(
            settings.amqp_url, cohort, exchange=settings.events_exchange,
            duplicate_fraction=0.05, shuffle_children=True, interleave=True,
        )  # fmt: skip
        console.print(f"published {len(messages)} messages to {settings.events_exchange}")
        started = time.perf_counter()
        ledger = tools.stores.ledger
        events = len({m.message_id for m in messages})
        # Polling another process's ledger: there is no event to wait on.
        while await ledger.events_recorded() < events or await ledger.pending_work() > 0:  # noqa: ASYNC110
            await asyncio.sleep(1)
        phases = await ledger.phase_counts()
        console.print(f"settled in {time.perf_counter() - started:.1f} s: {phases}")
        return 0
