"""Record files at rest, live: sealed in PostgreSQL, downloaded a segment at a time, erased
after retention with a trace, and refused (reported, repaired) when they fail
authentication. Real simulator, RabbitMQ, PostgreSQL and HTTP on loopback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.bootstrap import build_retention
from bridge.domain.file_segments import SEGMENT_BYTES
from bridge.services.retention import PurgeReport, Retention
from schemas.events import parse_event
from tests.conftest import AMQP_URL, PG_ADMIN_URL
from tests.support.school_api import (
    ENTRY_YEAR,
    SCHOOL,
    SchoolApiEnv,
    arrival_date,
    graduation,
    school_api_env,
)
from tests.support.waiting import eventually
from tests.support.wire_events import key_info

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[SchoolApiEnv]:
    """Seven children handed over to SCHOOL; each test takes children of its own."""
    async with school_api_env(PG_ADMIN_URL, AMQP_URL, size=7, seed=1919) as env:
        yield env


def number(env: SchoolApiEnv, i: int) -> str:
    return env.children_of(SCHOOL)[i].final_student_number


def file_of(env: SchoolApiEnv, i: int) -> bytes:
    content = env.children_of(SCHOOL)[i].record_file
    assert content is not None
    return content


async def enrol(env: SchoolApiEnv, n: str) -> None:
    answer = await env.call(
        "POST", f"/v1/handoffs/{n}/arrival", "school",
        json={"arrived_on": arrival_date().isoformat()},
    )  # fmt: skip
    assert answer.status == 202

    async def phase() -> str:
        return str((await env.call("GET", f"/v1/handoffs/{n}", "school")).json()["phase"])

    await eventually(phase, lambda p: p == "enrolled", what="enrolled")


def retention_of_none(env: SchoolApiEnv) -> Retention:
    """The purge as if the retention period had passed for every closed hand-over."""
    settings = env.bridge.settings.model_copy(update={"file_retention_days": 0})
    return build_retention(settings, env.bridge.stores, env.bridge.use_cases.clock)


async def purge_now(env: SchoolApiEnv) -> PurgeReport:
    return await retention_of_none(env).purge(trigger="test", actor="test")


async def categories(env: SchoolApiEnv, run_id: int, n: str) -> set[str]:
    rows = await env.bridge.pool.fetch(
        "SELECT category FROM recon_items WHERE run_id = $1 AND student_number = $2", run_id, n
    )
    return {r["category"] for r in rows}


async def listed(env: SchoolApiEnv, n: str) -> dict[str, Any]:
    page = (await env.call("GET", f"/v1/schools/{SCHOOL}/handoffs?limit=100", "school")).json()
    return next(item for item in page["items"] if item["student_number"] == n)


async def test_ranges_of_a_sealed_file_open_only_their_segments_and_match_its_bytes(
    env: SchoolApiEnv,
) -> None:
    """A file of several segments, larger than what comes with the lookup: every range
    the API answers is the plaintext's, across segment boundaries, and resumes work."""
    n = number(env, 0)
    content = orjson.dumps({"pad": os.urandom(150_000).hex()})  # ~300 KB: 5 segments
    sha = hashlib.sha256(content).hexdigest()
    await env.bridge.files.put(sha, "application/json", content)
    await env.bridge.pool.execute(
        "UPDATE children SET handoff = jsonb_set(handoff, '{verified_file_sha256}',"
        " to_jsonb($2::text)) WHERE student_number = $1",
        n, sha,
    )  # fmt: skip
    size = len(content)
    path = f"/v1/handoffs/{n}/record-file"
    whole = await env.call("GET", path, "school")
    assert whole.status == 200 and whole.body == content
    assert whole.headers["ETag"] == f'"{sha}"'
    edges = [
        (0, 99), (SEGMENT_BYTES - 10, SEGMENT_BYTES + 10), (SEGMENT_BYTES, 2 * SEGMENT_BYTES - 1),
        (3 * SEGMENT_BYTES - 1, 3 * SEGMENT_BYTES), (100_000, size - 1), (size - 1, size - 1),
    ]  # fmt: skip
    for first, last in edges:
        part = await env.call("GET", path, "school", headers={"Range": f"bytes={first}-{last}"})
        assert part.status == 206, (first, last)
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert part.body == content[first : last + 1], (first, last)
    suffix = await env.call("GET", path, "school", headers={"Range": "bytes=-70000"})
    assert suffix.body == content[-70000:]
    # A download cut at 123,456 bytes resumes from there (curl -C -) and adds up.
    rest = await env.call(
        "GET", path, "school", headers={"Range": "bytes=123456-", "If-Range": f'"{sha}"'}
    )
    assert content[:123456] + rest.body == content
    # The small files come sealed with their lookup: ranges of those too.
    small = await env.call("GET", f"/v1/handoffs/{number(env, 4)}/record-file", "school",
                           headers={"Range": "bytes=10-2000"})  # fmt: skip
    assert small.status == 206 and small.body == file_of(env, 4)[10:2001]


async def test_a_file_that_fails_authentication_is_refused_reported_and_fetched_again(
    env: SchoolApiEnv,
) -> None:
    n = number(env, 1)
    content = file_of(env, 1)
    sha = hashlib.sha256(content).hexdigest()
    await env.bridge.pool.execute(
        "UPDATE record_files SET ciphertext ="
        " set_byte(ciphertext, 100, (get_byte(ciphertext, 100) + 1) % 256) WHERE sha256 = $1",
        sha,
    )
    answer = await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")
    assert answer.status == 500
    problem = answer.json()
    assert problem["code"] == "record_file_damaged"
    assert content[:64] not in answer.body and len(answer.body) < 1000
    again = await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")
    assert again.status == 500  # marked: not served until repaired
    metrics = (await env.call("GET", "/metrics")).body.decode()
    assert re.search(
        r'xueji_record_file_integrity_failures_total\{where="download"\} [1-9]', metrics
    )
    trail = await env.bridge.audit.query(student_number=n)
    assert any(e.action == "record_file.integrity_failure" for e in trail)
    assert any(e.action == "record_file.read" and e.outcome == "damaged" for e in trail)
    # Reconciliation finds it and repairs it: the file is fetched again from the preschool
    # registry, checked against its claim, and stored sealed anew.
    run = await env.bridge.use_cases.reconciler.run(ENTRY_YEAR, trigger="test", actor="test")
    assert "stored_file_damaged" in await categories(env, run.run_id, n)

    async def download() -> int:
        return (await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")).status

    await eventually(download, lambda s: s == 200, what="repaired")
    assert (await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")).body == content


async def test_after_retention_a_school_is_told_the_file_is_gone_and_the_trail_says_why(
    env: SchoolApiEnv,
) -> None:
    n = number(env, 2)
    sha = hashlib.sha256(file_of(env, 2)).hexdigest()
    await enrol(env, n)
    plan = await retention_of_none(env).plan()
    assert n in {c.student_number for c in plan.children}
    assert sha in {f.sha256 for f in plan.files}
    assert await env.bridge.pool.fetchval(
        "SELECT ciphertext IS NOT NULL FROM record_files WHERE sha256 = $1", sha
    )  # a dry run erased nothing

    report = await purge_now(env)
    assert n in {c.student_number for c in report.children}
    assert sha in {f.sha256 for f in report.files}
    row = await env.bridge.pool.fetchrow("SELECT * FROM record_files WHERE sha256 = $1", sha)
    assert row is not None and row["erased_reason"] == "handover_complete"
    assert (row["ciphertext"], row["wrapped_key"], row["content"]) == (None, None, None)

    answer = await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")
    assert answer.status == 410
    problem = answer.json()
    assert problem["code"] == "gone" and problem["reason"] == "handover_complete"
    assert "after the hand-over completed" in problem["message"]
    assert dt.datetime.fromisoformat(problem["erased_at"]) <= dt.datetime.now(dt.UTC)
    conditional = await env.call("GET", f"/v1/handoffs/{n}/record-file", "school",
                                 headers={"If-None-Match": f'"{sha}"'})  # fmt: skip
    assert conditional.status == 410
    item = await listed(env, n)
    assert item["record_file"]["sha256"] == sha and item["record_file"]["erased_at"]
    assert item["name"] is None and item["birth_date"] is None and item["phase"] == "enrolled"

    trail = await env.bridge.audit.query(student_number=n)
    erase = next(e for e in trail if e.action == "retention.erase")
    assert erase.detail["reason"] == "handover_complete" and erase.detail["file_sha256"] == sha
    file_line = next(e for e in trail if e.action == "record_file.erase")
    assert file_line.detail["sha256"] == sha and file_line.actor == "system:retention"
    assert any(e.action == "record_file.read" and e.outcome == "gone" for e in trail)

    # Reconciliation afterwards: the child is matched, nothing is "not delivered".
    run = await env.bridge.use_cases.reconciler.run(ENTRY_YEAR, trigger="test", actor="test")
    assert await categories(env, run.run_id, n) == {"matched"}
    # A second purge finds nothing more for this child.
    again = await purge_now(env)
    assert n not in {c.student_number for c in again.children}


async def _columns(conn: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    rows = await conn.fetch(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
        "  FROM information_schema.columns c"
        "  JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE t.table_type = 'BASE TABLE'"
        "   AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def _found_in(conn: asyncpg.Connection, needles: dict[str, bytes]) -> list[str]:
    """Every (table.column, needle) where a column's value holds the needle: raw bytes in
    bytea columns, text, and its hex form, in every column's text form."""
    hits = []
    for schema, table, column, kind in await _columns(conn):
        ref = f'"{schema}"."{table}"."{column}"'
        source = f'"{schema}"."{table}"'
        for label, needle in needles.items():
            checks: list[tuple[str, object]] = [
                (f'position($1 in "{column}"::text) > 0', needle.decode("utf-8", "replace")),
                (f'position($1 in "{column}"::text) > 0', needle.hex()),
            ]
            if kind == "bytea":
                checks.append((f'position($1::bytea in "{column}") > 0', needle))
            for condition, value in checks:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {source} WHERE {condition})",
                                       value):  # fmt: skip
                    hits.append(f"{ref}: {label}")
                    break
    return hits


async def test_no_column_of_the_database_holds_a_record_file_in_the_clear(
    env: SchoolApiEnv,
) -> None:
    """After a hand-over, downloads and a purge, not one column of one table of the
    bridge's database holds any record file's bytes (whole or a distinctive part), and an
    erased child's name is gone too."""
    n = number(env, 3)
    full = await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")
    assert full.status == 200 and full.body == file_of(env, 3)
    zipped = await env.call("GET", f"/v1/schools/{SCHOOL}/record-files.zip", "school")
    archive = zipfile.ZipFile(io.BytesIO(zipped.body))
    manifest = orjson.loads(archive.read("manifest.json"))
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]
    await enrol(env, n)
    await purge_now(env)
    assert (await env.call("GET", f"/v1/handoffs/{n}/record-file", "school")).status == 410

    needles: dict[str, bytes] = {}
    for i, child in enumerate(env.cohort.children):
        content = child.record_file
        if content is None:
            continue
        # Parts only the file has (its opening names the child as the events do).
        middle = len(content) // 2
        needles[f"file {i}: middle"] = content[middle : middle + 48]
        needles[f"file {i}: end"] = content[-100:-52]
    name = graduation(env.children_of(SCHOOL)[3])["child"]["name"]
    others = {graduation(c)["child"]["name"] for c in env.cohort.children} - {name}
    if name not in others:
        needles["an erased child's name"] = name.encode()
    conn = await asyncpg.connect(env.bridge.settings.database_url)
    try:
        assert await _found_in(conn, needles) == []
        # The search can fail: it finds a file's part put in a column in the clear.
        await conn.execute("CREATE TABLE zz_probe (note jsonb, blob bytea)")
        probe = {"file 0: middle": needles["file 0: middle"]}
        await conn.execute(
            "INSERT INTO zz_probe (blob) VALUES ($1)", b"x" + probe["file 0: middle"] + b"y"
        )
        assert await _found_in(conn, probe) == ['"public"."zz_probe"."blob": file 0: middle']
        await conn.execute("DROP TABLE zz_probe")
        erased_child = await conn.fetchrow(
            "SELECT id_number, handoff FROM children WHERE student_number = $1", n
        )
        assert erased_child is not None and erased_child["id_number"] is None
        bodies = await conn.fetch(
            "SELECT e.body FROM child_events e JOIN children c USING (child_id)"
            " WHERE c.student_number = $1",
            n,
        )
        assert bodies and all(b["body"].startswith(b"\x00xueji-minimised-v1") for b in bodies)
    finally:
        await conn.close()


async def test_data_that_reaches_an_erased_child_later_goes_at_the_next_purge(
    env: SchoolApiEnv,
) -> None:
    """A correction arriving after the erasure is recorded (and not sent: there is nothing
    to correct any more), and the next purge erases what it brought; resolved parked
    messages keep a digest of their bodies and the reasons they were parked only."""
    n = number(env, 5)
    await enrol(env, n)
    await purge_now(env)
    last = await env.bridge.pool.fetchval(
        "SELECT last_childseq FROM children WHERE student_number = $1", n
    )
    late = key_info(n, last + 1, name="迟到的名字")
    raw = orjson.dumps(late)
    await env.bridge.ledger.record_event(parse_event(raw), raw)
    # A binary-mode event keeps its attributes, extensions included, in the headers.
    headers = {
        "cloudEvents_id": "e-1", "cloudEvents_guardian": "110105198001010011",
        "x-first-death-reason": "delivery_limit", "x-death": [{"count": 20}],
        "x-park-code": "invalid_data",
    }  # fmt: skip
    await env.bridge.pool.execute(
        "INSERT INTO parked_messages (reason_code, reason, body, headers, resolved_at)"
        " VALUES ('invalid_data', 'data.child.name: missing', $1, $2::jsonb,"
        " now() - interval '1 day')",
        b'{"data": {"child": {"id_number": "110105201903070012"}}}',
        orjson.dumps(headers).decode(),
    )
    again = await purge_now(env)
    assert [c.again for c in again.children if c.student_number == n] == [True]
    assert again.parked == 1
    stored = await env.bridge.pool.fetch(
        "SELECT e.body FROM child_events e JOIN children c USING (child_id)"
        " WHERE c.student_number = $1",
        n,
    )
    assert all(r["body"].startswith(b"\x00xueji-minimised-v1") for r in stored)
    assert all("迟到的名字".encode() not in r["body"] for r in stored)
    parked = await env.bridge.pool.fetchrow(
        "SELECT body, headers, erased_at FROM parked_messages WHERE reason_code = 'invalid_data'"
    )
    assert parked is not None and parked["erased_at"] is not None
    assert b"110105201903070012" not in parked["body"] and b"sha256" in parked["body"]
    # The publisher's headers went with the body; why it was parked stays.
    assert orjson.loads(parked["headers"]) == {
        k: v for k, v in headers.items() if not k.startswith("cloudEvents_")
    }
    phase = await env.bridge.pool.fetchval(
        "SELECT phase FROM children WHERE student_number = $1", n
    )
    assert phase == "enrolled"
