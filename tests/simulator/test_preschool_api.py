"""Section A of registry-api.md (record files, roster) and the preschool seeding API."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tests.simulator.conftest import SimClient

CONTENT = b'{"student_number": "G110105201903070012", "history": []}'


def seed_item(number: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "student_number": number,
        "id_number": number[1:] if number.startswith("G") else None,
        "state": "graduated",
        "childseq": 3,
        "kindergarten_code": "1111010501",
        "county_code": "110105",
        "entry_year": 2026,
        "file": {
            "content_base64": base64.b64encode(CONTENT).decode(),
            "media_type": "application/json",
        },
    }
    item.update(overrides)
    return item


async def test_seeded_record_file_is_served_with_its_headers(sim: SimClient) -> None:
    reply = await sim.admin("POST", "/preschool/children", json=[seed_item("G110105201903070012")])
    assert reply.status == 200
    claim = reply.body["children"][0]["record_file"]
    assert claim["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert (claim["size"], claim["media_type"]) == (len(CONTENT), "application/json")
    assert claim["uri"].startswith(sim.base_url + "/preschool/v1/record-files/")
    path = claim["uri"].removeprefix(sim.base_url + "/preschool")
    file = await sim.preschool("GET", path, raw=True)
    assert (file.status, file.body) == (200, CONTENT)
    assert file.headers["Content-Type"] == "application/json"
    assert file.headers["ETag"] == f'"{claim["sha256"]}"'
    assert file.headers["Content-Length"] == str(len(CONTENT))


async def test_record_file_needs_the_preschool_token_and_unknown_is_404(sim: SimClient) -> None:
    reply = await sim.preschool("GET", "/v1/record-files/nope/content")
    assert (reply.status, reply.body["code"]) == (404, "not_found")
    wrong = await sim.preschool(
        "GET", "/v1/record-files/nope/content", token=sim.config.registry_token
    )
    assert wrong.status == 401


async def test_a_bad_source_file_keeps_its_wrong_claim(sim: SimClient) -> None:
    claimed = "ab" * 32
    item = seed_item("G110105201903070012", claimed_sha256=claimed, file_id="bad-file")
    reply = await sim.admin("POST", "/preschool/children", json={"children": [item]})
    claim = reply.body["children"][0]["record_file"]
    assert claim["sha256"] == claimed
    assert claim["uri"].endswith("/preschool/v1/record-files/bad-file/content")
    file = await sim.preschool("GET", "/v1/record-files/bad-file/content", raw=True)
    assert file.headers["ETag"] == f'"{claimed}"'
    assert file.body == CONTENT
    assert hashlib.sha256(file.body).hexdigest() != claimed


async def test_roster_pages_through_a_cohort_and_follows_patches(sim: SimClient) -> None:
    numbers = [f"L11010520190307{i:04d}" for i in range(7)]
    items = [seed_item(n, state="in_kindergarten", file=None) for n in numbers]
    items.append(seed_item("G110105201903070012", entry_year=2027))
    assert (await sim.admin("POST", "/preschool/children", json=items)).status == 200
    patched = await sim.admin(
        "PATCH", f"/preschool/children/{numbers[0]}", json={"state": "deferred", "childseq": 9}
    )
    assert (patched.status, patched.body["state"], patched.body["childseq"]) == (200, "deferred", 9)
    renumbered = await sim.admin(
        "PATCH", f"/preschool/children/{numbers[1]}",
        json={"student_number": "G110105201903070039", "id_number": "110105201903070039"},
    )  # fmt: skip
    assert renumbered.status == 200
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        reply = await sim.preschool("GET", "/v1/cohorts/2026/roster" + query)
        assert reply.status == 200
        seen += reply.body["items"]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert [i["student_number"] for i in seen] == sorted(
        ["G110105201903070039", *numbers[:1], *numbers[2:]]
    )
    first = next(i for i in seen if i["student_number"] == numbers[0])
    assert first == {
        "student_number": numbers[0], "id_number": None, "state": "deferred",
        "childseq": 9, "kindergarten_code": "1111010501",
    }  # fmt: skip
    assert (await sim.preschool("GET", "/v1/cohorts/2026/roster?limit=5001")).status == 422
    missing = await sim.admin(
        "PATCH", "/preschool/children/L110105201903079999", json={"state": "deferred"}
    )
    assert missing.status == 404


async def test_seeding_refuses_bad_children(sim: SimClient) -> None:
    bad = [
        seed_item("G110105201903070013"),  # wrong check character
        seed_item("G110105201903070012", state="gone"),
        seed_item("G110105201903070012", file={"content_base64": "!!", "media_type": "x/y"}),
    ]
    reply = await sim.admin("POST", "/preschool/children", json=bad)
    assert reply.status == 422
    fields = {e["field"] for e in reply.body["errors"]}
    assert {
        "children[0].student_number",
        "children[1].state",
        "children[2].file.content_base64",
    } <= fields
