"""Three-way reconciliation: each category produced on purpose, and exactly those children."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from bridge.bootstrap import operator_tools, running_bridge
from bridge.domain.reconciliation import Category
from bridge.errors import RegistryRejected
from bridge.services.reconciliation import ReconciliationBusy
from bridge.settings import Settings
from simulator.cohort import TYPE_PREFIX, CohortChild, generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.conftest import MakeDatabase
from tests.integration.test_graduation_handoff import settled
from tests.support import registry_hands as hands
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

pytestmark = pytest.mark.live

# National Day 2026: Oct 1-7 off, Saturday Oct 10 worked (调休). From Mon Sep 28 the 10th
# working day is Fri Oct 16 only because that Saturday counts.
GRADUATED_BEFORE_HOLIDAY = "2026-09-28 10:00+08"
DAY_OF_DEADLINE = dt.date(2026, 10, 16)
DAY_AFTER = dt.date(2026, 10, 17)


def graduated_data(child: CohortChild) -> dict[str, Any]:
    return next(e["data"] for e in child.events if e["type"] == TYPE_PREFIX + "child.graduated")


def report(categories: dict[str, list[str]]) -> dict[str, set[str]]:
    return {k: set(v) for k, v in categories.items() if v}


async def categories_of(tools: Any, run: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for category in Category:
        numbers: list[str] = []
        async for batch in tools.stores.runs.numbers(run, category.value):
            numbers.extend(batch)
        out[category.value] = numbers
    return out


async def test_every_category_lists_exactly_the_children_made_for_it(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(
        2026, 23, seed=61, mix={"graduated": 20, "bad_source_file": 1, "deferred": 2},
        p_no_id=0.0, p_foreign=0.0,
    )  # fmt: skip
    g = [c for c in cohort.children if c.scenario == "graduated"]
    deferred = [c for c in cohort.children if c.scenario == "deferred"]
    bad = next(c for c in cohort.children if c.scenario == "bad_source_file")
    n = [c.final_student_number for c in g]
    for event in deferred[0].events:  # this deferral runs out before the check
        event["data"]["deferred_until"] = "2026-09-30"
    # g[6]'s identity is registered elsewhere under a J number before the bridge comes.
    j_number = "J" + n[6][1:]
    await hands.register_elsewhere(simulator.url, j_number, graduated_data(g[6]))
    await seed_cohort(simulator.url, cohort)
    lost, stuck = g[9], [g[10], g[11]]
    first = [c for c in cohort.children if c not in (lost, *stuck)]
    async with running_bridge(bridge_settings) as bridge:
        exchange = bridge_settings.events_exchange
        await publish_cohort(bridge_settings.amqp_url, [c.events for c in first], exchange=exchange)
        await eventually(lambda: settled(bridge, len(first)), bool, timeout_s=90, what="settled")
        # Two more children get stuck: the registry answers 503 to everything.
        await simulator.set_faults(registry={"p_503": 1.0, "retry_after_s": 30})
        await publish_cohort(bridge_settings.amqp_url, [c.events for c in stuck], exchange=exchange)

        async def stuck_rows() -> int:
            value: int = await bridge.pool.fetchval(
                "SELECT count(*) FROM children WHERE attempts >= 1 AND phase = 'file_fetched'"
            )
            return value

        await eventually(stuck_rows, lambda k: k == 2, what="stuck hand-overs")
        pool = bridge.pool
        await pool.execute(
            "UPDATE children SET first_graduated_at = '2026-10-12 10:00+08',"
            " handed_over_at = CASE WHEN handed_over_at IS NULL THEN NULL"
            " ELSE '2026-10-14 10:00+08'::timestamptz END"
        )
        await pool.execute(
            "UPDATE children SET first_graduated_at = $2::text::timestamptz"
            " WHERE student_number = $1",
            n[11], GRADUATED_BEFORE_HOLIDAY,
        )  # fmt: skip
        await pool.execute(
            "UPDATE children SET handed_over_at = '2026-10-01 10:00+08' WHERE student_number = $1",
            n[1],
        )
    await simulator.set_faults()
    await simulator.delete_student(n[2])
    await hands.patch_roster(simulator.url, n[3], state="in_kindergarten")
    await hands.patch_roster(simulator.url, n[4], state="deferred")
    await hands.patch_roster(simulator.url, n[5], state="cancelled")
    await hands.replace_file_claim(simulator.url, graduated_data(g[7]), b'{"x": 1}', upload=True)
    await hands.replace_file_claim(simulator.url, graduated_data(g[8]), b'{"x": 2}', upload=False)
    for i in (0, 1, 3, 4, 5, 7, 8, *range(14, 20)):
        school = graduated_data(g[i])["destination_school_code"]
        await hands.report_arrival(simulator.url, n[i], school, "2026-09-01")

    settings = bridge_settings.model_copy(update={"reconcile_max_repairs": 0})
    async with operator_tools(settings) as tools:
        before = await tools.use_cases.reconciler.run(2026, trigger="test", today=DAY_OF_DEADLINE)
        after = await tools.use_cases.reconciler.run(2026, trigger="test", today=DAY_AFTER)
        found_before = report(await categories_of(tools, before))
        found = report(await categories_of(tools, after))
        changes = await tools.stores.runs.changes(after)
        items = {
            (i.category, i.student_number): i
            for i in await tools.stores.runs.items(
                after, categories=["lost_upstream", "overdue", "matched"]
            )
        }
        async with tools.stores.runs.exclusive(2026) as held:
            assert held
            with pytest.raises(ReconciliationBusy):
                await tools.use_cases.reconciler.run(2026, trigger="test")

    expected = {
        "matched": {n[0], n[1], *n[12:]},
        "in_flight": {n[10]},
        "lost_upstream": {n[9]},
        "missing_at_registry": {n[2]},
        "registered_not_graduated": {n[3]},
        "deferred_but_registered": {n[4]},
        "cancelled_but_registered": {n[5]},
        "identity_conflict": {n[6]},
        "two_numbers_one_identity": {n[6], j_number},
        "bad_source_file": {bad.final_student_number},
        "file_digest_mismatch": {n[7]},
        "file_not_delivered": {n[8]},
        "file_not_pulled": {n[1]},
        "not_arrived": {n[2], n[12], n[13]},
        "overdue": {n[11]},
        "deferral_expired": {deferred[0].final_student_number},
        "not_in_roster": {j_number},
    }
    assert found == expected
    # The day before, the same child was still within its 10 working days.
    assert found_before == {k: v for k, v in expected.items() if k != "overdue"} | {
        "in_flight": {n[10], n[11]}
    }
    assert changes["overdue"] == {"new": [n[11]], "resolved": []}
    assert changes["in_flight"] == {"new": [], "resolved": [n[11]]}
    # Since when: a child found by both runs has been in its category since the first one.
    assert (items["lost_upstream", n[9]].since, items["lost_upstream", n[9]].new) == (
        before.started_at,
        False,
    )
    assert (items["overdue", n[11]].since, items["overdue", n[11]].new) == (after.started_at, True)
    assert items["matched", n[0]].since == after.started_at
    assert after.sides == {"roster": 23, "ledger": 22, "registry": 16}
    assert after.counts == {c.value: len(expected.get(c.value, ())) for c in Category}


class Listings:
    """Both registries' cohort listings (A2, B8) served as given, page by page."""

    def __init__(self) -> None:
        self.pages: dict[str, list[bytes]] = {"roster": [b'{"items": []}'], "registry": []}
        self.pages["registry"] = list(self.pages["roster"])

    def serve(self, side: str, items: list[dict[str, Any]], *, per_page: int = 2) -> None:
        chunks = [items[i : i + per_page] for i in range(0, len(items), per_page)] or [[]]
        self.pages[side] = [
            orjson.dumps({"items": c, "next_cursor": str(k + 1) if k + 1 < len(chunks) else None})
            for k, c in enumerate(chunks)
        ]

    def app(self) -> web.Application:
        def page(side: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                body = self.pages[side][int(request.query.get("cursor") or 0)]
                return web.Response(body=body, content_type="application/json")

            return handler

        app = web.Application()
        app.router.add_get("/preschool/v1/cohorts/2026/roster", page("roster"))
        app.router.add_get("/registry/v1/cohorts/2026/students", page("registry"))
        return app


@pytest.fixture
async def listings(make_database: MakeDatabase) -> AsyncIterator[tuple[Listings, Settings]]:
    """Listings on a loopback port, and settings of a bridge reading them (empty ledger)."""
    served = Listings()
    runner = web.AppRunner(served.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=await make_database("xueji_recon"), registry_url=f"{url}/registry",
        preschool_url=f"{url}/preschool", reconcile_max_repairs=0,
    )  # fmt: skip
    try:
        yield served, settings
    finally:
        await runner.cleanup()


def roster_item(i: int, state: str = "graduated") -> dict[str, Any]:
    return {"student_number": f"G{i:018d}", "id_number": f"{i:018d}", "state": state,
            "childseq": 3, "kindergarten_code": "1111010501"}  # fmt: skip


def registry_item(i: int) -> dict[str, Any]:
    return {"student_number": f"G{i:018d}", "id_number": f"{i:018d}", "entry_year": 2026,
            "status": "registered", "school_code": None, "record_file_sha256": None,
            "updated_at": None}  # fmt: skip


async def test_a_page_that_breaks_the_contract_fails_the_run_saying_where(
    listings: tuple[Listings, Settings],
) -> None:
    served, settings = listings
    served.serve("roster", [roster_item(1), roster_item(2), roster_item(3, state="left")])
    served.serve("registry", [registry_item(1)])
    async with operator_tools(settings) as tools:
        with pytest.raises(RegistryRejected) as refused:
            await tools.use_cases.reconciler.run(2026, trigger="test")
        [run] = await tools.stores.runs.runs(2026)
        kept = await tools.stores.pool.fetchval("SELECT count(*) FROM recon_items")
    where = "roster: the page breaks the contract: items.0.state: Input should be 'graduated'"
    assert str(refused.value).startswith(where)
    assert run.status == "failed" and run.error is not None and where in run.error
    assert f"{3:018d}" not in run.error  # the refused item's identity number stays out
    assert kept == 0


async def test_a_side_out_of_order_is_staged_and_reconciled_all_the_same(
    listings: tuple[Listings, Settings],
) -> None:
    served, settings = listings
    served.serve("roster", [roster_item(i) for i in (1, 2, 3, 4)])
    # The registry lists 4 before 2 and 3 on a later page: it is read once, then staged.
    served.serve("registry", [registry_item(i) for i in (1, 4, 2, 3, 5)])
    async with operator_tools(settings) as tools:
        run = await tools.use_cases.reconciler.run(2026, trigger="test")
        restarted = (await tools.stores.runs.runs(2026))[1]
        found = report(await categories_of(tools, run))
    assert restarted.status == "failed" and restarted.error is not None
    assert "restarted: registry is not in student-number order" in restarted.error
    assert run.status == "finished"
    assert run.sides == {"roster": 4, "ledger": 0, "registry": 5}
    assert found == {
        "lost_upstream": {f"G{i:018d}" for i in (1, 2, 3, 4)},
        "not_in_roster": {f"G{5:018d}"},
    }


async def test_a_registration_left_under_a_former_number_is_found_and_taken_back(
    bridge_settings: Settings, simulator: SimulatorHandle
) -> None:
    cohort = generate_cohort(
        2026, 3, seed=7, mix={"number_change_after_graduation": 1, "graduated": 2}
    )  # fmt: skip
    renumbered = next(c for c in cohort.children if c.scenario.startswith("number_change"))
    current = renumbered.final_student_number
    former = graduated_data(renumbered)["student_number"]
    assert former != current
    await seed_cohort(simulator.url, cohort)
    exchange = bridge_settings.events_exchange
    async with running_bridge(bridge_settings) as bridge:
        # The renumbered child's number change comes before its graduation, so the bridge
        # registers the current number straight away. Were the graduation driven first, the
        # registry would hold the temporary number as a former one and refuse it below.
        events = [
            list(reversed(c.events)) if c is renumbered else c.events for c in cohort.children
        ]
        await publish_cohort(bridge_settings.amqp_url, events, exchange=exchange)
        await eventually(lambda: settled(bridge, 3), bool, timeout_s=60, what="settled")
    # Someone registers the child again under its temporary number (the registry accepts
    # it: a temporary number carries no identity number to conflict on).
    await hands.register_elsewhere(simulator.url, former, graduated_data(renumbered))

    async def statuses() -> dict[str, str]:
        return {s["student_number"]: s["status"] for s in await simulator.dump()}

    assert (await statuses())[former] == "registered"
    async with operator_tools(bridge_settings) as tools:
        found = await tools.use_cases.reconciler.run(2026, trigger="test")
        items = await tools.stores.runs.items(found, categories=["former_number_registered"])
    assert found.counts["former_number_registered"] == 1
    assert found.counts["not_in_roster"] == 0
    assert [(i.student_number, i.detail) for i in items] == [(former, {"current_number": current})]
    assert found.repairs == 1
    # The repair put the stray on the child's hand-over; the bridge withdraws it.
    async with running_bridge(bridge_settings) as bridge:
        await eventually(
            statuses, lambda s: s.get(former, "withdrawn") == "withdrawn", timeout_s=60,
            what="the stray registration withdrawn",
        )  # fmt: skip
        await eventually(lambda: settled(bridge, 3), bool, timeout_s=60, what="settled")
    assert (await statuses())[current] == "registered"
    async with operator_tools(bridge_settings) as tools:
        after = await tools.use_cases.reconciler.run(2026, trigger="test")
    assert after.counts["former_number_registered"] == 0
    # Three children handed over and matched; nobody reported their arrival in this test.
    assert {k: v for k, v in after.counts.items() if v} == {"matched": 3, "not_arrived": 3}
