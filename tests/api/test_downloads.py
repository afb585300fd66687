"""Record files leave the bridge intact: whole, in ranges, conditionally and as a ZIP."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

import orjson
import pytest

from bridge.domain.access import Role
from bridge.services.downloads import CHUNK_BYTES
from simulator.cohort import CohortChild
from tests.support.school_api import (
    ENTRY_YEAR,
    SAME_COUNTY_SCHOOL,
    SCHOOL,
    SchoolApiEnv,
    graduation,
)

pytestmark = pytest.mark.live


def stored_file(child: CohortChild) -> bytes:
    assert child.record_file is not None
    return child.record_file


def number(child: CohortChild) -> str:
    return child.final_student_number


async def test_the_whole_file_is_the_stored_file(api_env: SchoolApiEnv) -> None:
    child = api_env.children_of(SCHOOL)[0]
    expected = stored_file(child)
    sha = hashlib.sha256(expected).hexdigest()
    answer = await api_env.call("GET", f"/v1/handoffs/{number(child)}/record-file", "school")
    assert answer.status == 200
    assert answer.body == expected
    assert (
        hashlib.sha256(answer.body).hexdigest() == sha == graduation(child)["record_file"]["sha256"]
    )
    assert answer.headers["ETag"] == f'"{sha}"'
    digest = base64.b64encode(bytes.fromhex(sha)).decode()
    assert answer.headers["Content-Digest"] == f"sha-256=:{digest}:"
    assert answer.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(expected)


async def test_ranges_reassemble_to_the_whole(api_env: SchoolApiEnv) -> None:
    child = api_env.children_of(SCHOOL)[1]
    expected = stored_file(child)
    path = f"/v1/handoffs/{number(child)}/record-file"
    parts, start, step = [], 0, 4000
    while start < len(expected):
        end = min(start + step, len(expected)) - 1
        answer = await api_env.call(
            "GET", path, "school", headers={"Range": f"bytes={start}-{end}"}
        )
        assert answer.status == 206
        assert answer.headers["Content-Range"] == f"bytes {start}-{end}/{len(expected)}"
        assert "Content-Digest" not in answer.headers  # the content is a part, not the file
        parts.append(answer.body)
        start = end + 1
    assert b"".join(parts) == expected
    tail = await api_env.call("GET", path, "school", headers={"Range": "bytes=-100"})
    assert (tail.status, tail.body) == (206, expected[-100:])
    beyond = await api_env.call("GET", path, "school", headers={"Range": f"bytes={len(expected)}-"})
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(expected)}"
    assert beyond.json()["code"] == "range_not_satisfiable"
    stale = await api_env.call(
        "GET", path, "school", headers={"Range": "bytes=0-9", "If-Range": '"' + "0" * 64 + '"'}
    )
    assert (stale.status, stale.body) == (200, expected)


async def test_a_matching_etag_gives_304(api_env: SchoolApiEnv) -> None:
    child = api_env.children_of(SCHOOL)[2]
    path = f"/v1/handoffs/{number(child)}/record-file"
    first = await api_env.call("GET", path, "school")
    again = await api_env.call(
        "GET", path, "school", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert (again.status, again.body) == (304, b"")
    assert again.headers["ETag"] == first.headers["ETag"]
    other = await api_env.call("GET", path, "school", headers={"If-None-Match": '"abc"'})
    assert other.status == 200


async def test_the_zip_holds_every_file_and_a_manifest_that_matches(api_env: SchoolApiEnv) -> None:
    children = api_env.children_of(SCHOOL)
    answer = await api_env.call(
        "GET", f"/v1/schools/{SCHOOL}/record-files.zip?entry_year={ENTRY_YEAR}", "school"
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in answer.headers  # streamed
    archive = zipfile.ZipFile(io.BytesIO(answer.body))
    assert archive.testzip() is None
    manifest = orjson.loads(archive.read("manifest.json"))
    assert manifest["school_code"] == SCHOOL
    by_number = {f["student_number"]: f for f in manifest["files"]}
    assert set(by_number) == {number(c) for c in children}
    for child in children:
        entry = by_number[number(child)]
        content = archive.read(entry["name"])
        assert content == stored_file(child)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["size"] == len(content)
    empty = await api_env.call(
        "GET", f"/v1/schools/{SCHOOL}/record-files.zip?entry_year={ENTRY_YEAR + 1}", "school"
    )
    assert (
        orjson.loads(zipfile.ZipFile(io.BytesIO(empty.body)).read("manifest.json"))["files"] == []
    )


async def test_downloads_leave_receipts_and_mark_the_child_pulled(api_env: SchoolApiEnv) -> None:
    # SCHOOL's files all went out in the ZIP test: its neighbour has not pulled yet.
    child = api_env.children_of(SAME_COUNTY_SCHOOL)[0]
    n = number(child)
    before = await api_env.call("GET", f"/v1/handoffs/{n}", "other_school")
    assert before.json()["state"] == "not_pulled"
    await api_env.call("GET", f"/v1/handoffs/{n}/record-file", "county")  # not the school's pull
    assert (await api_env.call("GET", f"/v1/handoffs/{n}", "other_school")).json()[
        "state"
    ] == "not_pulled"
    size = len(stored_file(child))
    await api_env.call(
        "GET", f"/v1/handoffs/{n}/record-file", "other_school", headers={"Range": "bytes=0-99"}
    )
    assert (await api_env.call("GET", f"/v1/handoffs/{n}", "other_school")).json()[
        "state"
    ] == "not_pulled"
    await api_env.call(
        "GET",
        f"/v1/handoffs/{n}/record-file",
        "other_school",
        headers={"Range": f"bytes=100-{size - 1}"},
    )
    after = (await api_env.call("GET", f"/v1/handoffs/{n}", "other_school")).json()
    assert after["state"] == "pulled" and after["pulled_at"]
    receipts = await api_env.bridge.pool.fetch(
        "SELECT role, via, range_start, range_end, bytes_sent, complete FROM record_file_receipts"
        " WHERE student_number = $1 ORDER BY id", n,
    )  # fmt: skip
    assert [tuple(r) for r in receipts] == [
        ("county", "file", None, None, size, True),
        ("school", "file", 0, 99, 100, False),
        ("school", "file", 100, size - 1, size - 100, True),
    ]
    audit = await api_env.call("GET", f"/v1/audit?student_number={n}", "province")
    reads = [e for e in audit.json()["items"] if e["action"] == "record_file.read"]
    assert [(e["role"], e["outcome"]) for e in reversed(reads)] == [
        ("county", "ok"), ("school", "partial"), ("school", "partial"),
    ]  # fmt: skip
    assert all(e["actor"].startswith("tok_") and e["remote"] for e in reads)


async def test_the_list_pages_filters_by_state_and_since(api_env: SchoolApiEnv) -> None:
    expected = {number(c) for c in api_env.children_of(SCHOOL)}
    seen, cursor = [], None
    while True:
        query = f"entry_year={ENTRY_YEAR}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (
            await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?{query}", "school")
        ).json()
        assert len(page["items"]) <= 3
        seen += [i["student_number"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected)
    item = page["items"][0]
    assert item["record_file"]["sha256"] and item["name"] and item["birth_date"]
    as_of = page["as_of"]
    child = api_env.children_of(SCHOOL)[4]
    await api_env.call("GET", f"/v1/handoffs/{number(child)}/record-file", "school")
    pulled = (
        await api_env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?state=pulled", "school")
    ).json()
    assert number(child) in {i["student_number"] for i in pulled["items"]}
    assert all(i["state"] == "pulled" for i in pulled["items"])
    # Nothing a school sees changed since the last poll: the next poll is empty.
    later = page["as_of"]
    await api_env.bridge.pool.execute("SELECT 1")
    fresh = (
        await api_env.call(
            "GET", f"/v1/schools/{SCHOOL}/handoffs", "school", params={"since": later}
        )
    ).json()
    assert {i["student_number"] for i in fresh["items"]} <= expected
    assert as_of


async def test_a_file_larger_than_a_chunk_streams_whole_and_in_ranges(
    api_env: SchoolApiEnv,
) -> None:
    # A child of its own school and county, so that no other test sees it.
    bridge, school, number = api_env.bridge, "2112010199", "L120101201903070001"
    content = b"".join(i.to_bytes(4, "big") for i in range(2 * CHUNK_BYTES // 4 + 1000))
    sha = hashlib.sha256(content).hexdigest()
    await bridge.files.put(sha, "application/pdf", content)
    child_id = await bridge.pool.fetchval(
        "INSERT INTO children (student_number, status, phase, entry_year, county_code,"
        " school_code, handoff) VALUES ($1, 'graduated', 'file_delivered', $2, '120101', $3,"
        " jsonb_build_object('verified_file_sha256', $4::text)) RETURNING child_id",
        number, ENTRY_YEAR, school, sha,
    )  # fmt: skip
    await bridge.pool.execute(
        "INSERT INTO child_numbers (student_number, child_id) VALUES ($1, $2)", number, child_id
    )
    token = (await bridge.tokens.issue(Role.SCHOOL, school_code=school)).token
    path = f"/v1/handoffs/{number}/record-file"
    whole = await api_env.call("GET", path, token)
    assert (whole.status, whole.body) == (200, content)
    # Only JSON goes out as itself (the contract's media type); anything else as bytes.
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"] == f'attachment; filename="{number}.bin"'
    head = await api_env.call("HEAD", path, token)
    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Length"] == str(len(content))
    assert whole.headers["ETag"] == f'"{sha}"'
    start, end = CHUNK_BYTES - 10, 2 * CHUNK_BYTES + 10
    part = await api_env.call("GET", path, token, headers={"Range": f"bytes={start}-{end}"})
    assert (part.status, part.body) == (206, content[start : end + 1])
    unchanged = await api_env.call("GET", path, token, headers={"If-None-Match": f'"{sha}"'})
    assert unchanged.status == 304
    changed = await api_env.call("GET", path, token, headers={"If-None-Match": '"abc"'})
    assert (changed.status, changed.body) == (200, content)
    receipts = await bridge.pool.fetch(
        "SELECT via, range_start, bytes_sent, complete FROM record_file_receipts"
        " WHERE child_id = $1 ORDER BY id", child_id,
    )  # fmt: skip
    assert [tuple(r) for r in receipts] == [
        ("file", None, len(content), True),
        ("file", start, end - start + 1, False),
        ("not_modified", None, 0, True),
        ("file", None, len(content), True),
    ]
    listed = await api_env.call("GET", f"/v1/schools/{school}/handoffs", token)
    assert [i["state"] for i in listed.json()["items"]] == ["pulled"]


async def test_a_small_file_asked_for_with_a_stale_etag_comes_whole(api_env: SchoolApiEnv) -> None:
    child = api_env.children_of(SCHOOL)[3]
    answer = await api_env.call(
        "GET", f"/v1/handoffs/{number(child)}/record-file", "school",
        headers={"If-None-Match": '"' + "0" * 64 + '"'},
    )  # fmt: skip
    assert (answer.status, answer.body) == (200, stored_file(child))
    assert int(answer.headers["Content-Length"]) == len(stored_file(child))


async def test_a_download_counts_as_a_use_and_an_overdue_token_is_sealed_on_the_spot(
    api_env: SchoolApiEnv,
) -> None:
    bridge = api_env.bridge
    child = api_env.children_of(SCHOOL)[5]
    path = f"/v1/handoffs/{number(child)}/record-file"
    issued = await bridge.tokens.issue(Role.SCHOOL, school_code=SCHOOL, label="downloads")
    used = await bridge.pool.fetchval(
        "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes'"
        " WHERE token_id = $1 RETURNING last_used_at", issued.token_id,
    )  # fmt: skip
    assert (await api_env.call("GET", path, issued.token)).status == 200
    info = await bridge.tokens.get(issued.token_id)
    assert info is not None and info.last_used_at is not None and info.last_used_at > used
    await bridge.pool.execute(
        "UPDATE api_tokens SET last_used_at = now() - interval '181 days' WHERE token_id = $1",
        issued.token_id,
    )
    refused = await api_env.call("GET", path, issued.token)
    assert (refused.status, refused.json()["code"]) == (401, "token_sealed")
    entries = await bridge.audit.query(actor=issued.token_id)
    assert [(e.action, e.actor, e.outcome) for e in entries] == [
        ("access.refused", "anonymous", "token_sealed"),  # the refused attempt itself
        ("token.seal", "system:auth", "sealed"),
        ("record_file.read", issued.token_id, "ok"),
    ]
