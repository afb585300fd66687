"""A whole cohort through two bridges while a broker node, the database and a bridge die.

On engines the suite starts itself on this machine: three RabbitMQ nodes clustered on
their own ports, a PostgreSQL primary with a synchronous standby on theirs, two bridge
instances given both lists (``BRIDGE_AMQP_URL`` of three nodes, a multi-host
``BRIDGE_DATABASE_URL``), the registries' simulator with its usual weather and a cohort
with every lifecycle case, duplicates, reordering, a third of the events in other
publishers' forms, and malformed messages (the nastier kinds and odd frames included), as
the fault suite sends them (tests/faults). During the run:

1. SIGKILL of the broker node that leads the events queue (the node the first bridge is
   connected to, which declared the queues);
2. SIGKILL of the database primary (postmaster and backends), then promotion of the
   standby at once, as an orchestrator would (its detection time is not counted);
3. SIGKILL of one bridge instance; the other takes over its children when their leases
   lapse, then the killed one is started again.

The cohort is published in four parts, one before the run and one right after each
kill, so that each outage is met with messages to consume. The suite passes when the
registry matches the cohort child by child (none lost, none registered twice), every
malformed message is parked with its reason, and the reconciliation finds nothing lost.
It prints, for each kill, the seconds until an event published after it was in the
ledger and until a hand-over completed after it, and one ``FAULTS_HA_JSON`` line.

Size: ``XUEJI_FAULTS_HA_N`` children (``make faults-ha N=2000``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from bridge.settings import Settings
from simulator.publisher import OutgoingMessage
from tests.conftest import FILE_KEYS
from tests.faults.test_cohort_under_faults import (
    Ledger,
    assert_came_through,
    expected_events,
    faulty_cohort,
    publish_through_outages,
    send_odd_frames,
    until_settled,
)
from tests.faults_ha.postgres_pair import PostgresPair
from tests.faults_ha.rabbit_cluster import RabbitCluster
from tests.support.bridge_process import BridgeProcess
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

N = int(os.environ.get("XUEJI_FAULTS_HA_N", "500"))
# On two shared cores the bridges hand over some tens of children a second while the
# registries fail a third of the time.
WAIT_S = 150 + N / 15
LEASE_S = 8.0
PARTS = (0.4, 0.2, 0.2, 0.2)  # of the plan: before the run, then after each kill

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.timeout(600 + 8 * WAIT_S)]


@dataclass
class Outage:
    """One kill and what the probes saw after it (seconds from the kill)."""

    what: str
    at: float
    done_before: int
    fresh: list[str]  # events first published after the kill
    figures: dict[str, float] = field(default_factory=dict)


class Watch:
    """Samples the ledger five times a second and times each outage's recovery.

    Recovered means: an event published after the kill is in the ledger (publisher,
    broker, consumer and database all work again), and a hand-over completed after it.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.last: dict[str, int] = {"events": 0, "done": 0, "pending": 0, "parked": 0}
        self.outages: list[Outage] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            progress = await self.ledger.progress()
            if progress["events"] >= 0:  # -1: the database is away
                self.last = progress
                for outage in self.outages:
                    since = round(time.monotonic() - outage.at, 1)
                    if progress["done"] > outage.done_before:
                        outage.figures.setdefault("handovers_completed_again_s", since)
                    if "new_event_recorded_s" not in outage.figures and await self._any(
                        outage.fresh
                    ):
                        outage.figures["new_event_recorded_s"] = since
            await asyncio.sleep(0.2)

    async def _any(self, event_ids: list[str]) -> bool:
        try:
            conn = await asyncpg.connect(self.ledger.url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = ANY($1::uuid[]))",
                    event_ids,
                )
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        finally:
            await conn.close()

    async def kill(
        self, what: str, kill: Callable[[], object], fresh: list[OutgoingMessage]
    ) -> Outage:
        """Note the ledger as it stands, then run *kill* at once."""
        before = await self.ledger.progress()
        outage = Outage(what, time.monotonic(), before["done"], sorted(expected_events(fresh)))
        result = kill()
        if asyncio.iscoroutine(result):
            await result
        self.outages.append(outage)
        return outage

    async def until(self, key: str, at_least: int) -> None:
        await eventually(
            self._last, lambda p: p[key] >= at_least, timeout_s=WAIT_S, interval_s=0.2,
            what=f"{key} >= {at_least}",
        )  # fmt: skip

    async def _last(self) -> dict[str, int]:
        return self.last


def parts(plan: list[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    cuts, at = [], 0.0
    for share in PARTS:
        at += share
        cuts.append(round(at * len(plan)))
    starts = [0, *cuts[:-1]]
    return [plan[a:b] for a, b in zip(starts, cuts, strict=True)]


def first_seen(
    piece: list[OutgoingMessage], earlier: list[list[OutgoingMessage]]
) -> list[OutgoingMessage]:
    """The messages of *piece* whose event no earlier piece carried (not a copy)."""
    seen = {m.message_id for part in earlier for m in part}
    return [m for m in piece if m.message_id not in seen]


def settings_for(simulator: SimulatorHandle, cluster: RabbitCluster, pg: PostgresPair) -> Settings:
    return Settings(
        file_keys=FILE_KEYS,
        amqp_url=cluster.urls, database_url=pg.dsn("xueji_ha"),
        registry_url=f"{simulator.url}/registry", preschool_url=f"{simulator.url}/preschool",
        events_exchange="preschool.events", queue_prefix="xueji.ha", instance_id="ha",
        poll_interval_s=0.2, retry_base_s=0.2, retry_max_s=2.0,
        registry_read_timeout_s=2.0, registry_total_timeout_s=5.0,
        registry_max_inline_wait_s=0.5, http_port=0, lease_s=LEASE_S, handoff_concurrency=16,
    )  # fmt: skip


def rotated(urls: str, by: int) -> str:
    nodes = urls.split(",")
    return ",".join(nodes[by:] + nodes[:by])


async def test_a_cohort_survives_a_broker_node_the_database_primary_and_a_bridge_dying(
    rabbit_cluster: RabbitCluster,
    postgres_pair: PostgresPair,
    simulator: SimulatorHandle,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    cluster, pg = rabbit_cluster, postgres_pair
    run = await faulty_cohort(simulator, N, seed=2020, plan_seed=20)
    plan, handed_over = run.plan, run.handed_over

    settings = settings_for(simulator, cluster, pg)
    # Each bridge lists every node, starting from a different one: "a" declares the
    # queues first, so their leaders are on the node "a" is connected to.
    bridges = [
        BridgeProcess(
            settings.model_copy(
                update={"instance_id": f"ha-{name}", "amqp_url": rotated(cluster.urls, i)}
            ),
            tmp_path / f"bridge-{name}.log",
        )
        for i, name in enumerate(("a", "b"))
    ]
    events_queue = f"{settings.queue_prefix}.events"
    parked_queue = f"{settings.queue_prefix}.parked"
    ledger = Ledger(settings.database_url)
    watch = Watch(ledger)
    publishing: list[asyncio.Task[None]] = []
    pieces = parts(plan)

    def publish(piece: list[OutgoingMessage]) -> None:
        publishing.append(asyncio.create_task(publish_through_outages(settings, piece)))

    for bridge in bridges:
        await bridge.start()
    watch.start()
    try:
        await send_odd_frames(settings, run)
        publish(pieces[0])

        # 1. The broker node leading the events queue dies.
        await watch.until("events", len(expected_events(pieces[0])) // 2)
        leader = await cluster.queue_leader(events_queue)
        parked_leader = await cluster.queue_leader(parked_queue)
        assert leader is not None and parked_leader is not None
        survivor = next(n for n in cluster.nodes if n is not leader)
        every_node = {n.name for n in cluster.nodes}
        for queue in (events_queue, parked_queue):  # replicated over the whole cluster
            assert await cluster.replicas(queue, asking=survivor) == (every_node, every_node)
        before = await cluster.consumers(events_queue, asking=survivor)
        assert sorted(before).count(leader.name) == 1, before  # "a" consumes through it
        broker = await watch.kill(
            f"broker node {leader.name} (queue leader)",
            lambda: cluster.kill(leader),
            first_seen(pieces[1], pieces[:1]),
        )
        publish(pieces[1])
        new_leader = await eventually(
            lambda: cluster.queue_leader(events_queue, asking=survivor),
            lambda node: node is not None and node is not leader, timeout_s=120, interval_s=0.2,
            what="a new leader of the events queue",
        )  # fmt: skip
        broker.figures["new_leader_seen_s"] = round(time.monotonic() - broker.at, 1)
        assert new_leader is not None
        # The queue keeps the dead node's consumer as "suspected down" until that node is
        # back (its unacked messages went back to the queue at once): count the others.
        await eventually(
            lambda: cluster.consumers(events_queue, asking=survivor),
            lambda on: len([n for n in on if n != leader.name]) == 2,
            timeout_s=120, interval_s=0.2, what="both bridges consuming through the others",
        )  # fmt: skip
        broker.figures["consumers_back_s"] = round(time.monotonic() - broker.at, 1)
        await cluster.restart(leader)  # as the node's supervisor would

        # 2. The database primary dies; the standby is promoted.
        await watch.until("done", handed_over * 3 // 10)
        database = await watch.kill(
            "database primary (standby promoted)",
            pg.kill_primary,
            first_seen(pieces[2], pieces[:2]),
        )
        assert not pg.primary.running()
        publish(pieces[2])
        await pg.promote()
        database.figures["promoted_s"] = round(time.monotonic() - database.at, 1)

        # 3. A bridge instance dies; its children go to the other when their leases lapse.
        await watch.until("done", handed_over * 55 // 100)
        victim = bridges[0]
        assert victim.proc is not None and victim.proc.poll() is None, victim.log_path
        instance = await watch.kill(
            f"bridge instance {victim.settings.instance_id}",
            victim.kill,
            first_seen(pieces[3], pieces[:3]),
        )
        publish(pieces[3])
        orphaned = await eventually(
            lambda: leases_of(ledger, victim.settings.instance_id), lambda n: n == 0,
            timeout_s=LEASE_S + 60, interval_s=0.2, what="the dead instance's leases taken over",
        )  # fmt: skip
        assert orphaned == 0
        instance.figures["leases_taken_over_s"] = round(time.monotonic() - instance.at, 1)
        await victim.start()

        await asyncio.gather(*publishing)
        # The restarted broker node is a replica again, caught up by its leader.
        await eventually(
            lambda: cluster.replicas(events_queue, asking=survivor),
            lambda replicas: replicas == (every_node, every_node), timeout_s=120,
            interval_s=1, what="the killed node back as a replica",
        )  # fmt: skip
        await simulator.set_faults()  # the registries recover; the backlog must drain
        await until_settled(ledger, run, timeout_s=WAIT_S + 90)
        for bridge in bridges:  # never crashed by themselves
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_path
    finally:
        await watch.stop()
        for task in publishing:
            task.cancel()
        await asyncio.gather(*publishing, return_exceptions=True)
        codes = [await bridge.stop() for bridge in bridges]
    report(
        watch.outages, n=N, messages=len(plan), seconds=time.monotonic() - started,
        leaders={"events": leader.name, "parked": parked_leader.name, "after": new_leader.name},
    )  # fmt: skip
    assert codes == [0, 0], "a bridge did not shut down cleanly"

    # The ledger the bridges ended on is the promoted standby's.
    assert (await ledger.fetch("SELECT inet_server_port() AS p"))[0]["p"] == pg.standby.port
    await assert_came_through(run, simulator, ledger, settings, [b.log_path for b in bridges])

    for outage in watch.outages:  # every outage ended: consumption and hand-overs resumed
        assert "new_event_recorded_s" in outage.figures, outage
        assert "handovers_completed_again_s" in outage.figures, outage


async def leases_of(ledger: Ledger, instance_id: str) -> int:
    """Children still leased to *instance_id* (-1 while the database is away)."""
    try:
        rows = await ledger.fetch(
            "SELECT count(*) AS n FROM children"
            f" WHERE left(lease_owner, {len(instance_id) + 1}) = '{instance_id}/'"
        )
    except Exception:
        return -1
    return int(rows[0]["n"])


def report(outages: list[Outage], **run: object) -> None:
    print(f"\nHA fault run: {run['n']} children, {run['messages']} messages, "
          f"{run['seconds']:.0f} s; queue leaders {run['leaders']}")  # fmt: skip
    for outage in outages:
        figures = ", ".join(f"{k} {v}" for k, v in outage.figures.items())
        print(f"  {outage.what}: {figures}")
    line = {
        **run,
        "outages": [{"what": o.what, **o.figures} for o in outages],
    }
    print("FAULTS_HA_JSON " + json.dumps(line, default=str))
