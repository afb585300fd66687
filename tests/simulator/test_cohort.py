"""The cohort generator: valid numbers, realistic files, events per events.md, expectations."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections import Counter

import orjson
import pytest

from simulator.cohort import DEFAULT_MIX, STORIES, Cohort, fold_expected, generate_cohort
from simulator.numbers import resident_id_problem, student_number_problem

ENTRY_YEAR = 2026
TYPES = {
    "cn.edu.preschool.child.graduated",
    "cn.edu.preschool.child.deferred",
    "cn.edu.preschool.child.number_assigned",
    "cn.edu.preschool.child.key_info_changed",
    "cn.edu.preschool.child.cancelled",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(ENTRY_YEAR, 400, seed=11)


def test_the_same_seed_gives_the_same_cohort() -> None:
    first = generate_cohort(ENTRY_YEAR, 30, seed=5)
    assert first.events() == generate_cohort(ENTRY_YEAR, 30, seed=5).events()
    assert first.events() != generate_cohort(ENTRY_YEAR, 30, seed=6).events()


def test_the_scenario_mix_follows_the_proportions(cohort: Cohort) -> None:
    counts = Counter(child.scenario for child in cohort.children)
    assert set(counts) == set(STORIES)
    for scenario, weight in DEFAULT_MIX.items():
        assert abs(counts[scenario] - 400 * weight) <= 1
    only = generate_cohort(ENTRY_YEAR, 10, mix={"deferred": 1.0})
    assert {c.scenario for c in only.children} == {"deferred"}


def test_every_number_and_document_is_valid_and_unique(cohort: Cohort) -> None:
    numbers = [n for child in cohort.children for n in child.numbers]
    assert len(numbers) == len(set(numbers))
    assert all(student_number_problem(n) is None for n in numbers)
    documents: dict[str, str] = {}
    for child in cohort.children:
        for event in child.events:
            data = event["data"]
            person = data.get("child", data)
            if person.get("id_type") == "resident_id":
                id_number = person["id_number"]
                assert resident_id_problem(id_number) is None
                # One document, one child.
                assert documents.setdefault(id_number, child.numbers[0]) == child.numbers[0]
        final = child.final_student_number
        if final.startswith("G"):
            assert child.preschool["id_number"] == final[1:]
    kinds = Counter(child.numbers[0][0] for child in cohort.children)
    assert kinds["L"] >= 400 * 0.03 and kinds["J"] >= 1


def test_children_are_six_by_the_end_of_august(cohort: Cohort) -> None:
    for child in cohort.children:
        for event in child.events:
            if event["type"].endswith("graduated"):
                person = event["data"]["child"]
                birth = dt.date.fromisoformat(person["birth_date"])
                assert dt.date(ENTRY_YEAR - 7, 9, 1) <= birth <= dt.date(ENTRY_YEAR - 6, 8, 31)
                if person["id_type"] == "resident_id":
                    assert person["id_number"][6:14] == birth.strftime("%Y%m%d")
                    parity = int(person["id_number"][16]) % 2
                    assert parity == (1 if person["gender"] == "M" else 0)


def test_events_follow_the_cloudevents_envelope(cohort: Cohort) -> None:
    ids = [e["id"] for e in cohort.events()]
    assert len(ids) == len(set(ids))
    for child in cohort.children:
        seqs = [e["childseq"] for e in child.events]
        assert seqs == sorted(set(seqs)) and seqs[0] >= 1
        for event in child.events:
            assert set(event) == {
                "specversion", "id", "source", "type", "subject", "time",
                "datacontenttype", "childseq", "data",
            }  # fmt: skip
            assert event["specversion"] == "1.0" and event["type"] in TYPES
            assert UUID.match(event["id"])
            assert re.match(r"^/preschool/\d{6}/\d{10}$", event["source"])
            assert event["subject"] == event["data"]["student_number"]
            assert dt.datetime.fromisoformat(event["time"]).tzinfo is not None
            assert event["datacontenttype"] == "application/json"
        times = [dt.datetime.fromisoformat(e["time"]) for e in child.events]
        assert times == sorted(times)


def test_graduation_data_is_complete(cohort: Cohort) -> None:
    for child in cohort.children:
        for event in child.events:
            if not event["type"].endswith("graduated"):
                continue
            data = event["data"]
            assert set(data) == {
                "student_number", "child", "kindergarten_code", "county_code", "graduated_on",
                "entry_year", "destination_school_code", "record_file",
            }  # fmt: skip
            assert set(data["child"]) == {
                "name",
                "gender",
                "birth_date",
                "id_type",
                "id_number",
                "nationality",
            }
            assert (data["child"]["id_number"] is None) == (data["child"]["id_type"] == "none")
            assert re.match(r"^\d{10}$", data["kindergarten_code"])
            assert data["county_code"] == event["source"].split("/")[2]
            school = data["destination_school_code"]
            assert school is None or re.match(r"^\d{10}$", school)
            assert (school is None) == (child.scenario == "graduated_no_school")


def test_record_files_are_realistic_and_match_their_claims(cohort: Cohort) -> None:
    for child in cohort.children:
        graduations = [e for e in child.events if e["type"].endswith("graduated")]
        if not graduations:
            assert child.record_file is None
            continue
        content = child.record_file
        assert content is not None and 5 * 1024 <= len(content) <= 50 * 1024
        claim = graduations[0]["data"]["record_file"]
        assert claim["size"] == len(content)
        matches = claim["sha256"] == hashlib.sha256(content).hexdigest()
        assert matches == (child.scenario != "bad_source_file")
        doc = orjson.loads(content)
        assert {"student_number", "child", "kindergarten_code", "history", "health",
                "attachments"} <= set(doc)  # fmt: skip
        assert doc["history"][-1]["kind"] == "graduation"
        assert doc["health"]["checkups"] and doc["health"]["vaccinations"]
        for attachment in doc["attachments"]:
            raw = base64.b64decode(attachment["content_base64"])
            assert hashlib.sha256(raw).hexdigest() == attachment["sha256"]
            assert len(raw) == attachment["size"]
        seeded = base64.b64decode(child.preschool["file"]["content_base64"])
        assert seeded == content


def test_expected_outcomes_fit_each_scenario(cohort: Cohort) -> None:
    outcome_of = {
        "deferred": "deferred", "graduated_then_deferred": "deferred",
        "cancelled_before_graduation": "cancelled", "cancelled_after_graduation": "cancelled",
        "bad_source_file": "set_aside_bad_file",
    }  # fmt: skip
    for child in cohort.children:
        outcome = outcome_of.get(child.scenario, "handed_over")
        assert child.expected_outcome == outcome
        assert (child.expected is not None) == (outcome == "handed_over")
        assert child.preschool["student_number"] == child.final_student_number
        assert child.preschool["childseq"] == child.events[-1]["childseq"]
        if child.expected is None:
            continue
        expected = child.expected
        assert expected["student_number"] == child.final_student_number
        assert expected["former_numbers"] == (
            child.numbers[:-1] if child.scenario == "number_change_after_graduation" else []
        )
        year = ENTRY_YEAR + (child.scenario == "deferred_then_graduated")
        assert expected["entry_year"] == year == child.preschool["entry_year"]
    renamed = [c for c in cohort.children if c.scenario == "key_info_after_graduation"]
    for child in renamed:
        graduated_name = child.events[0]["data"]["child"]["name"]
        assert child.expected["name"] == child.events[1]["data"]["changes"]["name"]
        assert child.expected["name"] != graduated_name


def test_the_fold_ignores_arrival_order(cohort: Cohort) -> None:
    for child in cohort.children:
        reversed_events = list(reversed(child.events))
        assert fold_expected(reversed_events, file_ok=child.scenario != "bad_source_file") == (
            child.expected,
            child.expected_outcome,
        )


def test_children_without_documents_are_distinguishable(cohort: Cohort) -> None:
    keys = [
        (c.events[0]["data"].get("child", {}).get("name"), c.numbers[0][7:15])
        for c in cohort.children
        if c.numbers[0].startswith("L") and c.events[0]["type"].endswith("graduated")
    ]
    assert len(keys) == len(set(keys))
