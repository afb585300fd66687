"""Section B of registry-api.md: the primary/secondary registry's endpoints."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import hashlib
import random

from simulator.names import j_number
from tests.simulator.conftest import NewChild, SimClient, new_child


def digest_header(content: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(content).digest()).decode() + ":"


async def upload(sim: SimClient, number: str, content: bytes, digest: str | None = None):
    return await sim.registry(
        "PUT",
        f"/v1/students/{number}/record-file",
        data=content,
        headers={
            "Content-Type": "application/json",
            "Content-Digest": digest or digest_header(content),
        },
    )


async def dump_one(sim: SimClient, number: str) -> dict:
    students = (await sim.admin("GET", "/registry/dump")).body["students"]
    matching = [s for s in students if s["student_number"] == number]
    assert len(matching) == 1
    return matching[0]


async def registered(sim: SimClient, **kw) -> NewChild:
    child = new_child(**kw)
    assert (await sim.intake(child.number, child.body)).status == 201
    return child


async def test_requests_without_the_right_token_are_refused(sim: SimClient) -> None:
    for token in (None, "wrong", sim.config.preschool_token):
        reply = await sim.registry("GET", "/v1/students/G110105201903070012", token=token)
        assert reply.status == 401
        assert set(reply.body) == {"code", "message"}


async def test_first_intake_registers_and_a_plain_repeat_answers_200(sim: SimClient) -> None:
    child = new_child()
    first = await sim.intake(child.number, child.body)
    assert first.status == 201
    assert first.body == {
        "status": "registered",
        "student_number": child.number,
        "school_code": "2111010502",
    }
    again = await sim.intake(child.number, child.body)
    assert (again.status, again.body) == (200, first.body)
    assert (await dump_one(sim, child.number))["created_count"] == 1


async def test_same_idempotency_key_and_body_gives_the_stored_answer(sim: SimClient) -> None:
    child = new_child()
    answers = [await sim.intake(child.number, child.body, key="k-1") for _ in range(3)]
    assert [a.status for a in answers] == [201, 201, 201]
    assert all(a.body == answers[0].body for a in answers)
    record = await dump_one(sim, child.number)
    assert (record["created_count"], record["replaced_count"]) == (1, 0)


async def test_same_idempotency_key_with_another_body_is_invalid(sim: SimClient) -> None:
    child = new_child()
    assert (await sim.intake(child.number, child.body, key="k-2")).status == 201
    changed = copy.deepcopy(child.body)
    changed["graduated_on"] = "2026-07-04"
    reply = await sim.intake(child.number, changed, key="k-2")
    assert reply.status == 422
    assert reply.body["code"] == "invalid"
    assert (await dump_one(sim, child.number))["graduated_on"] == "2026-07-03"


async def test_concurrent_repeats_register_exactly_once(sim: SimClient) -> None:
    child = new_child()
    same_key = await asyncio.gather(*(sim.intake(child.number, child.body, "k") for _ in range(10)))
    assert {r.status for r in same_key} == {201}
    other = new_child()
    fresh_keys = await asyncio.gather(*(sim.intake(other.number, other.body) for _ in range(10)))
    assert sorted(r.status for r in fresh_keys) == [200] * 9 + [201]
    for number in (child.number, other.number):
        assert (await dump_one(sim, number))["created_count"] == 1


async def test_a_different_body_for_the_same_number_replaces_with_201(sim: SimClient) -> None:
    child = await registered(sim)
    changed = copy.deepcopy(child.body)
    changed["requested_school_code"] = None
    changed["graduated_on"] = "2026-07-05"
    reply = await sim.intake(child.number, changed)
    assert reply.status == 201
    record = await dump_one(sim, child.number)
    assert (record["created_count"], record["replaced_count"]) == (1, 1)
    assert record["graduated_on"] == "2026-07-05"
    assert record["school_code"] == "2111010502"  # a known admission is kept


async def test_school_code_is_null_without_a_requested_school(sim: SimClient) -> None:
    child = new_child()
    del child.body["requested_school_code"]
    reply = await sim.intake(child.number, child.body)
    assert (reply.status, reply.body["school_code"]) == (201, None)


async def test_bodies_breaking_the_contract_are_invalid(sim: SimClient) -> None:
    child = new_child()
    wrong_check = child.number[:-1] + ("0" if child.number[-1] != "0" else "1")
    reply = await sim.intake(wrong_check, child.body)
    assert reply.status == 422 and reply.body["code"] == "invalid"
    assert any("check character" in e["message"] for e in reply.body["errors"])

    for mutate in (
        lambda b: b.pop("kindergarten_code"),
        lambda b: b["child"].pop("gender"),
        lambda b: b["child"].update(birth_date="2019-02-30"),
        lambda b: b["child"].update(id_type="none"),
        lambda b: b["record_file"].update(sha256="xyz"),
        lambda b: b.update(entry_year="2026"),
    ):
        body = copy.deepcopy(child.body)
        mutate(body)
        reply = await sim.intake(child.number, body)
        assert reply.status == 422, body
        assert reply.body["errors"]
    for bad_number in ("X110105201903070012", "G11010520190307001", "L1101052019023012345"):
        assert (await sim.intake(bad_number, child.body)).status == 422
    no_key = await sim.registry("PUT", f"/v1/students/{child.number}/intake", json=child.body)
    assert no_key.status == 422
    not_json = await sim.registry(
        "PUT", f"/v1/students/{child.number}/intake", data=b"{", headers={"Idempotency-Key": "x"}
    )
    assert not_json.status == 422
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).status == 404


async def test_a_second_number_for_the_same_document_is_an_identity_conflict(
    sim: SimClient,
) -> None:
    child = await registered(sim)
    birth = dt.date.fromisoformat(child.body["child"]["birth_date"])
    other_number = j_number(random.Random(1), "110105", birth)
    reply = await sim.intake(other_number, child.body)
    assert reply.status == 409
    assert reply.body["code"] == "identity_conflict"
    assert reply.body["existing_student_number"] == child.number


async def test_children_without_documents_conflict_by_name_gender_and_birth(sim: SimClient) -> None:
    child = await registered(sim, temporary=True)
    twin = new_child(temporary=True)
    twin.body["child"].update({k: child.body["child"][k] for k in ("name", "gender", "birth_date")})
    reply = await sim.intake(twin.number, twin.body)
    assert (reply.status, reply.body["existing_student_number"]) == (409, child.number)


async def test_intake_for_another_year_of_an_enrolled_child_is_refused(sim: SimClient) -> None:
    child = await registered(sim)
    arrival = {"school_code": "2111010502", "arrived_on": "2026-09-01"}
    assert (
        await sim.registry("POST", f"/v1/students/{child.number}/arrival", json=arrival)
    ).status == 200
    later = copy.deepcopy(child.body)
    later["entry_year"] = 2027
    reply = await sim.intake(child.number, later)
    assert (reply.status, reply.body["code"]) == (409, "already_enrolled")


async def test_record_file_is_stored_when_it_matches_digest_and_claim(sim: SimClient) -> None:
    child = await registered(sim)
    assert (await upload(sim, child.number, child.content)).status == 204
    read = await sim.registry("GET", f"/v1/students/{child.number}")
    assert read.body["record_file_sha256"] == child.body["record_file"]["sha256"]
    assert (await upload(sim, child.number, child.content)).status == 204  # repeatable


async def test_record_file_mismatches_are_refused(sim: SimClient) -> None:
    child = await registered(sim)
    wrong_digest = await upload(sim, child.number, child.content, digest_header(b"other"))
    assert (wrong_digest.status, wrong_digest.body["code"]) == (409, "digest_mismatch")
    other_bytes = await upload(sim, child.number, b"other bytes")  # digest fine, claim not
    assert (other_bytes.status, other_bytes.body["code"]) == (409, "digest_mismatch")
    no_digest = await sim.registry(
        "PUT", f"/v1/students/{child.number}/record-file", data=child.content
    )
    assert no_digest.status == 422
    read = await sim.registry("GET", f"/v1/students/{child.number}")
    assert read.body["record_file_sha256"] is None


async def test_record_file_for_an_unknown_number_or_too_large(sim: SimClient) -> None:
    child = new_child()
    reply = await upload(sim, child.number, child.content)
    assert (reply.status, reply.body["code"]) == (404, "not_registered")
    child = await registered(sim)
    big = b"x" * (20 * 1024 * 1024 + 1)
    assert (await upload(sim, child.number, big)).status == 413


async def test_withdrawal_and_its_edge_cases(sim: SimClient) -> None:
    child = await registered(sim)
    path = f"/v1/students/{child.number}/intake"
    assert (await sim.registry("DELETE", path + "?entry_year=2027")).status == 204
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).body[
        "status"
    ] == "registered"
    assert (await sim.registry("DELETE", path + "?entry_year=2026")).status == 204
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).body["status"] == "withdrawn"
    assert (await sim.registry("DELETE", path + "?entry_year=2026")).status == 204
    assert (
        await sim.registry("DELETE", f"/v1/students/{new_child().number}/intake?entry_year=2026")
    ).status == 204
    assert (await sim.registry("DELETE", path)).status == 422
    # A later graduation hands the same number over again.
    later = copy.deepcopy(child.body)
    later["entry_year"] = 2027
    assert (await sim.intake(child.number, later)).status == 201
    record = await dump_one(sim, child.number)
    assert (record["status"], record["entry_year"], record["created_count"]) == (
        "registered",
        2027,
        2,
    )


async def test_withdrawing_an_enrolled_child_is_refused(sim: SimClient) -> None:
    child = await registered(sim)
    arrival = {"school_code": "2111010502", "arrived_on": "2026-09-01"}
    await sim.registry("POST", f"/v1/students/{child.number}/arrival", json=arrival)
    reply = await sim.registry("DELETE", f"/v1/students/{child.number}/intake?entry_year=2026")
    assert (reply.status, reply.body["code"]) == (409, "already_enrolled")


async def test_number_change_moves_the_registration_and_keeps_the_old_number(
    sim: SimClient,
) -> None:
    child = await registered(sim, temporary=True)
    formal = new_child()
    change = {
        "new_student_number": formal.number,
        "id_type": "resident_id",
        "id_number": formal.number[1:],
    }
    path = f"/v1/students/{child.number}/number-change"
    reply = await sim.registry("POST", path, json=change)
    assert (reply.status, reply.body) == (200, {"student_number": formal.number})
    assert (await sim.registry("POST", path, json=change)).status == 200  # a repeat
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).status == 404
    moved = await dump_one(sim, formal.number)
    assert moved["former_numbers"] == [child.number]
    assert (moved["id_number"], moved["status"]) == (formal.number[1:], "registered")
    # The old number is never given out again, not even to its own child.
    again = await sim.intake(child.number, child.body)
    assert (again.status, again.body["existing_student_number"]) == (409, formal.number)
    stranger = new_child(temporary=True)
    reused = await sim.intake(child.number, stranger.body)
    assert (reused.status, reused.body["code"]) == (409, "identity_conflict")


async def test_number_change_conflicts_and_unknown_numbers(sim: SimClient) -> None:
    first, second = await registered(sim), await registered(sim)
    temp = await registered(sim, temporary=True)
    to_taken = {"new_student_number": second.number, "id_type": "resident_id",
                "id_number": second.number[1:]}  # fmt: skip
    reply = await sim.registry("POST", f"/v1/students/{temp.number}/number-change", json=to_taken)
    assert (reply.status, reply.body["code"]) == (409, "identity_conflict")
    assert reply.body["existing_student_number"] == second.number
    unknown = new_child(temporary=True)
    fresh = new_child()
    change = {"new_student_number": fresh.number, "id_type": "resident_id",
              "id_number": fresh.number[1:]}  # fmt: skip
    reply = await sim.registry("POST", f"/v1/students/{unknown.number}/number-change", json=change)
    assert (reply.status, reply.body["code"]) == (404, "not_registered")
    bad = {**change, "id_number": first.number[1:]}
    reply = await sim.registry("POST", f"/v1/students/{temp.number}/number-change", json=bad)
    assert reply.status == 422  # a G number is G + the resident ID number


async def test_key_information_is_corrected(sim: SimClient) -> None:
    child = await registered(sim)
    path = f"/v1/students/{child.number}"
    reply = await sim.registry("PATCH", path, json={"name": "王晓明"})
    assert reply.status == 200
    assert (reply.body["name"], reply.body["student_number"]) == ("王晓明", child.number)
    assert (await dump_one(sim, child.number))["name"] == "王晓明"
    # The corrected data is now the registered data: the new body repeats idempotently.
    corrected = copy.deepcopy(child.body)
    corrected["child"]["name"] = "王晓明"
    assert (await sim.intake(child.number, corrected)).status == 200
    for bad in ({}, {"id_number": "1"}, {"gender": "X"}, {"birth_date": "2019-13-01"}):
        assert (await sim.registry("PATCH", path, json=bad)).status == 422
    unknown = await sim.registry("PATCH", f"/v1/students/{new_child().number}", json={"name": "李"})
    assert unknown.status == 404


async def test_arrival_enrols_and_checks_the_school(sim: SimClient) -> None:
    child = await registered(sim)
    path = f"/v1/students/{child.number}/arrival"
    wrong = await sim.registry(
        "POST", path, json={"school_code": "2199999999", "arrived_on": "2026-09-01"}
    )
    assert (wrong.status, wrong.body["code"]) == (409, "school_mismatch")
    right = {"school_code": "2111010502", "arrived_on": "2026-09-01"}
    reply = await sim.registry("POST", path, json=right)
    assert (reply.status, reply.body) == (200, {"status": "enrolled"})
    assert (await sim.registry("POST", path, json=right)).status == 200
    assert (await sim.registry("GET", f"/v1/students/{child.number}")).body["status"] == "enrolled"
    # No admitting school known: the arriving school becomes it.
    open_child = new_child()
    open_child.body["requested_school_code"] = None
    await sim.intake(open_child.number, open_child.body)
    other = {"school_code": "2199999999", "arrived_on": "2026-09-01"}
    reply = await sim.registry("POST", f"/v1/students/{open_child.number}/arrival", json=other)
    assert reply.status == 200
    read = await sim.registry("GET", f"/v1/students/{open_child.number}")
    assert read.body["school_code"] == "2199999999"
    unknown = await sim.registry("POST", f"/v1/students/{new_child().number}/arrival", json=right)
    assert (unknown.status, unknown.body["code"]) == (404, "not_registered")
    assert (await sim.registry("POST", path, json={"school_code": "1"})).status == 422


async def test_read_one_has_the_contract_fields(sim: SimClient) -> None:
    child = await registered(sim)
    reply = await sim.registry("GET", f"/v1/students/{child.number}")
    assert set(reply.body) == {
        "student_number", "id_number", "entry_year", "status", "school_code",
        "record_file_sha256", "updated_at",
    }  # fmt: skip
    assert (reply.body["id_number"], reply.body["entry_year"]) == (child.number[1:], 2026)
    missing = await sim.registry("GET", f"/v1/students/{new_child().number}")
    assert (missing.status, missing.body["code"]) == (404, "not_registered")


async def test_cohort_listing_pages_with_a_stable_cursor(sim: SimClient) -> None:
    children = [await registered(sim) for _ in range(12)]
    await registered(sim, entry_year=2027)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=5" + (f"&cursor={cursor}" if cursor else "")
        reply = await sim.registry("GET", "/v1/cohorts/2026/students" + query)
        assert reply.status == 200
        seen += [item["student_number"] for item in reply.body["items"]]
        pages += 1
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(c.number for c in children)
    for query in ("?limit=5001", "?limit=0", "?limit=x", "?cursor=%%%"):
        assert (await sim.registry("GET", "/v1/cohorts/2026/students" + query)).status == 422
    full = await sim.registry("GET", "/v1/cohorts/2026/students?limit=5000")
    assert (len(full.body["items"]), full.body["next_cursor"]) == (12, None)
