"""Arrival end to end: a school reports, the registry enrols, exactly once, come what may.

Every log line of these runs is scanned: no child's name or identity number may appear.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import AMQP_URL, PG_ADMIN_URL
from tests.support.school_api import (
    SCHOOL,
    SchoolApiEnv,
    arrival_date,
    identities,
    scanning_logs,
    school_api_env,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.live
ARRIVALS = "POST /registry/v1/students/{student_number}/arrival"


async def registry_row(env: SchoolApiEnv, number: str) -> dict[str, Any]:
    return next(s for s in await env.simulator.dump() if s["student_number"] == number)


async def report(env: SchoolApiEnv, number: str) -> tuple[int, Any]:
    answer = await env.call(
        "POST", f"/v1/handoffs/{number}/arrival", "school",
        json={"arrived_on": arrival_date().isoformat()},
    )  # fmt: skip
    return answer.status, answer.json()


async def summary(env: SchoolApiEnv, number: str) -> Any:
    return (await env.call("GET", f"/v1/handoffs/{number}", "school")).json()


async def test_arrivals_reach_the_registry_once_even_through_an_outage() -> None:
    with scanning_logs() as logs:
        async with school_api_env(PG_ADMIN_URL, AMQP_URL, size=12, seed=41) as env:
            first, second, mismatched = (
                c.final_student_number for c in env.children_of(SCHOOL)[:3]
            )
            # A plain arrival: accepted at once, enrolled soon after.
            status, body = await report(env, first)
            assert status == 202
            assert body["arrival"]["status"] == "pending" and body["state"] == "arrived"
            row = await eventually(
                lambda: registry_row(env, first), lambda r: r["status"] == "enrolled",
                what="enrolled",
            )  # fmt: skip
            assert (row["school_code"], row["arrived_on"]) == (SCHOOL, arrival_date().isoformat())
            done = await eventually(
                lambda: summary(env, first), lambda s: s["phase"] == "enrolled", what="summary"
            )
            assert done["arrival"]["status"] == "enrolled" and done["state"] == "arrived"
            again = await report(env, first)
            assert again[0] == 200 and again[1]["arrival"]["status"] == "enrolled"

            # The registry is down for a while: the arrival waits, durably, then goes through.
            await env.simulator.set_faults(registry={"p_503": 1.0, "retry_after_s": 0})
            assert (await report(env, second))[0] == 202

            async def retrying() -> int:
                value: int = await env.bridge.pool.fetchval(
                    "SELECT attempts FROM children WHERE student_number = $1", second
                )
                return value

            await eventually(retrying, lambda n: n >= 2, what="durable retries")
            assert (await registry_row(env, second))["status"] == "registered"
            assert (await summary(env, second))["arrival"]["status"] == "pending"
            await env.simulator.set_faults()
            await eventually(
                lambda: registry_row(env, second), lambda r: r["status"] == "enrolled",
                what="enrolled after the outage",
            )  # fmt: skip
            stats = await env.simulator.stats()
            assert stats["requests"][ARRIVALS]["200"] == 2  # once per child, never twice

            # Another school was admitted meanwhile: refused, set aside, and said so.
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{env.simulator.url}/_sim/registry/students/{mismatched}/admit",
                    json={"school_code": "2111010599"},
                ) as resp,
            ):
                assert resp.status == 200
            assert (await report(env, mismatched))[0] == 202
            refused = await eventually(
                lambda: summary(env, mismatched),
                lambda s: s["arrival"] and s["arrival"]["status"] == "refused", what="refused",
            )  # fmt: skip
            assert refused["set_aside"]["reason"] == "school_mismatch"
            assert "another school" in refused["arrival"]["message"]
            assert refused["state"] != "arrived"
            status, problem = await report(env, mismatched)
            assert (status, problem["code"]) == (409, "school_mismatch")
            assert "operator" in problem["detail"]
            assert (await registry_row(env, mismatched))["status"] == "registered"
            reasons = await env.bridge.ledger.set_aside_counts()
            assert reasons == {"school_mismatch": 1}

            audit = await env.call("GET", f"/v1/audit?student_number={mismatched}", "county")
            outcomes = [
                e["outcome"] for e in audit.json()["items"] if e["action"] == "arrival.report"
            ]
            assert outcomes == ["school_mismatch", "accepted"]
            secrets = identities(env.cohort)
    assert logs.lines, "the scan saw no log lines at all"
    assert logs.leaks(secrets) == []


async def test_an_arrival_must_be_plausible_and_the_schools_own(api_env: SchoolApiEnv) -> None:
    number = api_env.children_of(SCHOOL)[6].final_student_number
    path = f"/v1/handoffs/{number}/arrival"
    cases: list[tuple[dict[str, Any], Any, int, str]] = [
        ({}, {"arrived_on": "2999-09-01"}, 422, "invalid_arrival"),
        ({}, {"arrived_on": "2001-09-01"}, 422, "invalid_arrival"),
        ({}, {"arrived_on": "2026-02-30"}, 422, "invalid"),
        ({}, {"arrived_on": 1788000000}, 422, "invalid"),
        ({}, {"arrived_on": "2026-09-01", "extra": 1}, 422, "invalid"),
        ({}, [], 422, "invalid"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, None, 400,
         "invalid_json"),
        ({"data": b"arrived_on=2026-09-01", "headers": {"Content-Type": "text/plain"}}, None,
         415, "unsupported_media_type"),
    ]  # fmt: skip
    for kwargs, body, status, code in cases:
        if body is not None:
            kwargs = {"json": body}
        answer = await api_env.call("POST", path, "school", **kwargs)
        assert (answer.status, answer.json()["code"]) == (status, code), (body, answer.body)
    assert (await summary(api_env, number))["arrival"] is None
