"""The `/_sim` controls: faults (with no effect), stats, dump, admit, vanish, reset."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest

from tests.simulator.conftest import SimClient, new_child


async def test_fault_settings_round_trip_and_are_validated(sim: SimClient) -> None:
    settings = {
        "registry": {"p_503": 0.2, "p_429": 0.05, "retry_after_s": 3},
        "preschool": {"p_corrupt": 0.5},
        "seed": 7,
    }
    reply = await sim.admin("PUT", "/faults", json=settings)
    assert reply.status == 200
    current = (await sim.admin("GET", "/faults")).body
    assert current["registry"]["p_503"] == 0.2
    assert current["registry"]["retry_after_s"] == 3
    assert current["preschool"]["p_corrupt"] == 0.5
    assert current["seed"] == 7
    for bad in ({"registry": {"p_503": 2}}, {"registry": {"p_teapot": 0.1}},
                {"registry": {"p_corrupt": 0.1}}, {"other": {}}, [1]):  # fmt: skip
        assert (await sim.admin("PUT", "/faults", json=bad)).status == 422


async def test_faulted_requests_answer_transiently_and_change_nothing(sim: SimClient) -> None:
    await sim.admin("PUT", "/faults", json={"registry": {"p_503": 1.0, "retry_after_s": 2}})
    child = new_child()
    reply = await sim.intake(child.number, child.body, key="fault-key")
    assert (reply.status, reply.headers["Retry-After"]) == (503, "2")
    assert set(reply.body) == {"code", "message"}
    # The admin API is never faulted, and the faulted intake left no trace.
    assert (await sim.admin("GET", "/registry/dump")).body["students"] == []
    await sim.admin("PUT", "/faults", json={"registry": {"p_429": 1.0}})
    reply = await sim.intake(child.number, child.body, key="fault-key")
    assert reply.status == 429 and "Retry-After" in reply.headers
    for kind in ("500", "502", "504"):
        await sim.admin("PUT", "/faults", json={"registry": {f"p_{kind}": 1.0}})
        assert (await sim.intake(child.number, child.body, key="fault-key")).status == int(kind)
    await sim.admin("PUT", "/faults", json={})
    # The key was never recorded: the first real answer is a creation.
    assert (await sim.intake(child.number, child.body, key="fault-key")).status == 201
    stats = (await sim.admin("GET", "/stats")).body
    assert stats["faults"]["registry"] == {"503": 1, "429": 1, "500": 1, "502": 1, "504": 1}
    intake_counts = stats["requests"]["PUT /registry/v1/students/{student_number}/intake"]
    assert intake_counts == {"201": 1, "429": 1, "500": 1, "502": 1, "503": 1, "504": 1}


async def test_dropped_requests_close_the_connection_without_effect(sim: SimClient) -> None:
    await sim.admin("PUT", "/faults", json={"registry": {"p_drop": 1.0}})
    child = new_child()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await sim.intake(child.number, child.body)
    assert (await sim.admin("GET", "/registry/dump")).body["students"] == []
    # aiohttp's client retries an idempotent PUT once on a reused connection.
    assert (await sim.admin("GET", "/stats")).body["faults"]["registry"]["drop"] >= 1


async def test_slow_requests_still_run(sim: SimClient) -> None:
    await sim.admin("PUT", "/faults", json={"registry": {"p_slow": 1.0, "slow_s": 0.3}})
    child = new_child()
    started = asyncio.get_running_loop().time()
    assert (await sim.intake(child.number, child.body)).status == 201
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_corrupt_record_files_differ_from_their_claim(sim: SimClient) -> None:
    content = b"x" * 1000
    item = {
        "student_number": "G110105201903070012", "id_number": None, "state": "graduated",
        "childseq": 1, "kindergarten_code": "1111010501", "county_code": "110105",
        "entry_year": 2026, "file_id": "f1",
        "file": {"content_base64": base64.b64encode(content).decode(),
                 "media_type": "application/json"},
    }  # fmt: skip
    await sim.admin("POST", "/preschool/children", json=[item])
    await sim.admin("PUT", "/faults", json={"preschool": {"p_corrupt": 1.0}})
    reply = await sim.preschool("GET", "/v1/record-files/f1/content", raw=True)
    assert reply.status == 200 and len(reply.body) == len(content) and reply.body != content
    # The roster is not a record file: never corrupted.
    assert (await sim.preschool("GET", "/v1/cohorts/2026/roster")).status == 200


async def test_seeded_faults_are_deterministic(sim: SimClient) -> None:
    async def pattern() -> list[int]:
        await sim.admin("PUT", "/faults", json={"registry": {"p_503": 0.5}, "seed": 42})
        return [
            (await sim.registry("GET", "/v1/students/G110105201903070012")).status
            for _ in range(20)
        ]

    first = await pattern()
    assert set(first) == {404, 503}
    assert await pattern() == first


async def test_admin_admits_vanishes_and_resets(sim: SimClient) -> None:
    child = new_child()
    child.body["requested_school_code"] = None
    await sim.intake(child.number, child.body)
    admitted = await sim.admin(
        "POST", f"/registry/students/{child.number}/admit", json={"school_code": "2111010599"}
    )
    assert (admitted.status, admitted.body["school_code"]) == (200, "2111010599")
    arrival = {"school_code": "2111010502", "arrived_on": "2026-09-01"}
    reply = await sim.registry("POST", f"/v1/students/{child.number}/arrival", json=arrival)
    assert reply.body["code"] == "school_mismatch"
    assert (await sim.admin("DELETE", f"/registry/students/{child.number}")).status == 204
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).status == 404
    assert (await sim.admin("DELETE", f"/registry/students/{child.number}")).status == 404
    # After vanishing, the same hand-over registers again.
    assert (await sim.intake(child.number, child.body)).status == 201
    assert (await sim.admin("POST", "/reset")).status == 204
    assert (await sim.admin("GET", "/registry/dump")).body["students"] == []
    assert (await sim.admin("GET", "/stats")).body["total_requests"] == 0


async def test_dump_filters_by_entry_year(sim: SimClient) -> None:
    a, b = new_child(), new_child(entry_year=2027)
    await sim.intake(a.number, a.body)
    await sim.intake(b.number, b.body)
    only = (await sim.admin("GET", "/registry/dump?entry_year=2027")).body["students"]
    assert [s["student_number"] for s in only] == [b.number]
    record = only[0]
    assert record["record_file_claim"] == b.body["record_file"]
    assert (record["former_numbers"], record["created_count"]) == ([], 1)
    assert (await sim.admin("GET", "/registry/dump?entry_year=x")).status == 422
