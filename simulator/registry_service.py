"""The primary/secondary registry's rules (section B of registry-api.md) over PostgreSQL.

One row of `reg_students` is one person: their current number, identity, and their
single registration. Former numbers live in `reg_former_numbers` and are never reusable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import asyncpg
import orjson

from simulator.locks import Conn, lock_keys
from simulator.responses import Answer

MAX_PAGE = 5000
ACTIVE = ("registered", "enrolled")
_COMPARED = (
    "entry_year", "name", "gender", "birth_date", "id_type", "id_number", "nationality",
    "kindergarten_code", "graduated_on", "requested_school_code",
    "claim_sha256", "claim_size", "claim_media_type",
)  # fmt: skip


def _identity_key(child: dict[str, Any]) -> str:
    # rules.md: duplicates by document number, else by name + gender + birth date.
    if child["id_number"] is not None:
        return f"i:{child['id_number']}"
    return f"p:{child['name']}|{child['gender']}|{child['birth_date']}"


def _intake_columns(body: dict[str, Any]) -> dict[str, Any]:
    child, claim = body["child"], body["record_file"]
    return {
        "entry_year": body["entry_year"],
        "name": child["name"],
        "gender": child["gender"],
        "birth_date": dt.date.fromisoformat(child["birth_date"]),
        "id_type": child["id_type"],
        "id_number": child["id_number"],
        "nationality": child["nationality"],
        "kindergarten_code": body["kindergarten_code"],
        "graduated_on": dt.date.fromisoformat(body["graduated_on"]),
        "requested_school_code": body.get("requested_school_code"),
        "claim_sha256": claim["sha256"],
        "claim_size": claim["size"],
        "claim_media_type": claim["media_type"],
    }


def student_body(row: asyncpg.Record) -> dict[str, Any]:
    """The B7 body for one registration row."""
    return {
        "student_number": row["student_number"],
        "id_number": row["id_number"],
        "entry_year": row["entry_year"],
        "status": row["status"],
        "school_code": row["school_code"],
        "record_file_sha256": row["file_sha256"],
        "updated_at": row["updated_at"].isoformat(),
    }


def _conflict(existing: str) -> Answer:
    return Answer.error(
        409,
        "identity_conflict",
        "this identity already holds another student number",
        existing_student_number=existing,
    )


def _registered(row: asyncpg.Record, status: int) -> Answer:
    return Answer(
        status,
        {
            "status": row["status"],
            "student_number": row["student_number"],
            "school_code": row["school_code"],
        },
    )


async def _by_number(conn: Conn, number: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reg_students WHERE student_number = $1", number)


async def _by_former_number(conn: Conn, number: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT s.* FROM reg_former_numbers f JOIN reg_students s USING (person_id)"
        " WHERE f.student_number = $1",
        number,
    )


def request_hash(number: str, body: Any) -> str:
    """Fingerprint of an intake request, to tell a repeat from a reused key."""
    canonical = orjson.dumps({"n": number, "b": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def intake(
    pool: asyncpg.Pool, number: str, body: dict[str, Any], idempotency_key: str
) -> Answer:
    """B1: register `number` for `body["entry_year"]`, at most once per idempotency key."""
    fingerprint = request_hash(number, body)
    keys = ["k:" + idempotency_key, "n:" + number, _identity_key(body["child"])]
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, keys)
        stored = await conn.fetchrow(
            "SELECT request_hash, status, body FROM reg_idempotency WHERE key = $1",
            idempotency_key,
        )
        if stored is not None:
            if stored["request_hash"] != fingerprint:
                return Answer.error(
                    422,
                    "invalid",
                    "this Idempotency-Key was used with a different request",
                    errors=[{"field": "Idempotency-Key", "message": "reused with another body"}],
                )
            return Answer(stored["status"], stored["body"])
        answer = await _intake(conn, number, _intake_columns(body))
        await conn.execute(
            "INSERT INTO reg_idempotency (key, request_hash, status, body) VALUES ($1, $2, $3, $4)",
            idempotency_key,
            fingerprint,
            answer.status,
            answer.body,
        )
        return answer


_PARTIES_BY_DOCUMENT = """
SELECT 'holder' AS role, * FROM reg_students WHERE id_number = $1
UNION ALL SELECT 'owner', * FROM reg_students WHERE student_number = $2
UNION ALL SELECT 'former', s.* FROM reg_former_numbers f JOIN reg_students s USING (person_id)
    WHERE f.student_number = $2
"""
_PARTIES_BY_NAME = """
SELECT 'holder' AS role, * FROM (SELECT * FROM reg_students WHERE id_number IS NULL
    AND name = $1 AND gender = $3 AND birth_date = $4 ORDER BY person_id LIMIT 1) h
UNION ALL SELECT 'owner', * FROM reg_students WHERE student_number = $2
UNION ALL SELECT 'former', s.* FROM reg_former_numbers f JOIN reg_students s USING (person_id)
    WHERE f.student_number = $2
"""


async def _parties(conn: Conn, number: str, cols: dict[str, Any]) -> dict[str, asyncpg.Record]:
    """In one round trip: who holds this identity, this number, or had it formerly."""
    if cols["id_number"] is not None:
        rows = await conn.fetch(_PARTIES_BY_DOCUMENT, cols["id_number"], number)
    else:
        rows = await conn.fetch(
            _PARTIES_BY_NAME, cols["name"], number, cols["gender"], cols["birth_date"]
        )
    return {row["role"]: row for row in rows}


async def _intake(conn: Conn, number: str, cols: dict[str, Any]) -> Answer:
    parties = await _parties(conn, number, cols)
    holder, owner, former_owner = (parties.get(r) for r in ("holder", "owner", "former"))
    if holder is not None and holder["student_number"] != number:
        return _conflict(holder["student_number"])
    if former_owner is not None:
        # Former numbers are never given out again, not even to their own holder.
        return _conflict(former_owner["student_number"])
    if owner is None:
        names = ", ".join(cols)
        marks = ", ".join(f"${i}" for i in range(2, len(cols) + 2))
        row = await conn.fetchrow(
            f"INSERT INTO reg_students (student_number, status, school_code, {names})"
            f" VALUES ($1, 'registered', ${len(cols) + 2}, {marks}) RETURNING *",
            number,
            *cols.values(),
            cols["requested_school_code"],
        )
        assert row is not None
        return _registered(row, 201)
    if owner["status"] == "enrolled":
        if owner["entry_year"] != cols["entry_year"]:
            return Answer.error(
                409, "already_enrolled", "the child is enrolled for another entry year"
            )
        return _registered(owner, 200)  # hand-over already complete: nothing to change
    if owner["status"] == "registered" and all(owner[c] == cols[c] for c in _COMPARED):
        return _registered(owner, 200)
    return _registered(await _replace(conn, owner, cols), 201)


async def _replace(conn: Conn, owner: asyncpg.Record, cols: dict[str, Any]) -> asyncpg.Record:
    """Overwrite a withdrawn or differing registration under the same number."""
    revived = owner["status"] == "withdrawn"
    school = cols["requested_school_code"]
    if school is None and not revived and owner["entry_year"] == cols["entry_year"]:
        school = owner["school_code"]  # keep an admission the registry already knows
    file_kept = owner["claim_sha256"] == cols["claim_sha256"]
    if not file_kept:
        await conn.execute("DELETE FROM reg_record_files WHERE person_id = $1", owner["person_id"])
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=6))
    row = await conn.fetchrow(
        f"UPDATE reg_students SET status = 'registered', school_code = $2,"
        f" created_count = created_count + $3, replaced_count = replaced_count + $4,"
        f" file_sha256 = CASE WHEN $5::bool THEN file_sha256 END, arrived_on = NULL,"
        f" updated_at = now(), {sets} WHERE person_id = $1 RETURNING *",
        owner["person_id"],
        school,
        int(revived),
        int(not revived),
        file_kept,
        *cols.values(),
    )
    assert row is not None
    return row


async def store_record_file(
    pool: asyncpg.Pool, number: str, content: bytes, media_type: str, digest: bytes
) -> Answer:
    """B2: keep the record file if it matches its digest and the intake's claim."""
    actual = hashlib.sha256(content).digest()
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, ["n:" + number])
        owner = await _by_number(conn, number)
        if owner is None or owner["status"] not in ACTIVE:
            return Answer.error(404, "not_registered", "no registration under this number")
        if actual != digest:
            return Answer.error(409, "digest_mismatch", "the bytes do not match Content-Digest")
        if actual.hex() != owner["claim_sha256"]:
            return Answer.error(
                409, "digest_mismatch", "the bytes do not match the intake's record_file.sha256"
            )
        await conn.execute(
            "INSERT INTO reg_record_files (person_id, sha256, media_type, content)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO UPDATE"
            " SET sha256 = EXCLUDED.sha256, media_type = EXCLUDED.media_type,"
            " content = EXCLUDED.content",
            owner["person_id"],
            actual.hex(),
            media_type,
            content,
        )
        await conn.execute(
            "UPDATE reg_students SET file_sha256 = $2, updated_at = now() WHERE person_id = $1",
            owner["person_id"],
            actual.hex(),
        )
    return Answer(204)


async def withdraw(pool: asyncpg.Pool, number: str, entry_year: int) -> Answer:
    """B3: withdraw the registration of `number` for `entry_year`, if there is one."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, ["n:" + number])
        owner = await _by_number(conn, number)
        if owner is None or owner["entry_year"] != entry_year:
            return Answer(204)
        if owner["status"] == "enrolled":
            return Answer.error(
                409, "already_enrolled", "the child has already reported at the school"
            )
        if owner["status"] == "registered":
            await conn.execute(
                "UPDATE reg_students SET status = 'withdrawn', updated_at = now()"
                " WHERE person_id = $1",
                owner["person_id"],
            )
    return Answer(204)


async def change_number(pool: asyncpg.Pool, number: str, body: dict[str, Any]) -> Answer:
    """B4: move a person's registration to a new number; the old one becomes former."""
    new, id_type, id_number = body["new_student_number"], body["id_type"], body["id_number"]
    keys = ["n:" + number, "n:" + new] + ([f"i:{id_number}"] if id_number else [])
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, keys)
        owner = await _by_number(conn, number)
        if owner is None:
            former_owner = await _by_former_number(conn, number)
            if former_owner is None:
                return Answer.error(404, "not_registered", "no registration under this number")
            if former_owner["student_number"] == new:
                return Answer(200, {"student_number": new})  # a repeat of a done change
            return _conflict(former_owner["student_number"])
        if new == number:
            return Answer(200, {"student_number": new})
        if id_number is not None:
            holder = await conn.fetchrow(
                "SELECT student_number, person_id FROM reg_students WHERE id_number = $1",
                id_number,
            )
            if holder is not None and holder["person_id"] != owner["person_id"]:
                return _conflict(holder["student_number"])
        taken = await _by_number(conn, new) or await _by_former_number(conn, new)
        if taken is not None:
            return _conflict(taken["student_number"])
        await conn.execute(
            "INSERT INTO reg_former_numbers (student_number, person_id) VALUES ($1, $2)",
            number,
            owner["person_id"],
        )
        await conn.execute(
            "UPDATE reg_students SET student_number = $2, id_type = $3, id_number = $4,"
            " updated_at = now() WHERE person_id = $1",
            owner["person_id"],
            new,
            id_type,
            id_number,
        )
    return Answer(200, {"student_number": new})


async def correct_key_info(pool: asyncpg.Pool, number: str, changes: dict[str, Any]) -> Answer:
    """B5: apply an approved correction of name, gender and/or birth date."""
    cols = {k: changes[k] for k in ("name", "gender", "birth_date") if k in changes}
    if "birth_date" in cols:
        cols["birth_date"] = dt.date.fromisoformat(cols["birth_date"])
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, ["n:" + number])
        row = await conn.fetchrow(
            f"UPDATE reg_students SET {sets}, updated_at = now() WHERE student_number = $1"
            " RETURNING *",
            number,
            *cols.values(),
        )
    if row is None:
        return Answer.error(404, "not_registered", "no registration under this number")
    return Answer(200, {**student_body(row), **_key_info(row)})


def _key_info(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "name": row["name"],
        "gender": row["gender"],
        "birth_date": row["birth_date"].isoformat(),
    }


async def arrive(pool: asyncpg.Pool, number: str, school_code: str, arrived_on: str) -> Answer:
    """B6: the child reported at `school_code`: the hand-over is complete."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_keys(conn, ["n:" + number])
        owner = await _by_number(conn, number)
        if owner is None or owner["status"] not in ACTIVE:
            return Answer.error(404, "not_registered", "no registration under this number")
        if owner["school_code"] is not None and owner["school_code"] != school_code:
            return Answer.error(409, "school_mismatch", "another school admitted the child")
        if owner["status"] != "enrolled":
            await conn.execute(
                "UPDATE reg_students SET status = 'enrolled', school_code = $2, arrived_on = $3,"
                " updated_at = now() WHERE person_id = $1",
                owner["person_id"],
                school_code,
                dt.date.fromisoformat(arrived_on),
            )
    return Answer(200, {"status": "enrolled"})


async def read(pool: asyncpg.Pool, number: str) -> Answer:
    """B7: one registration by its current number."""
    row = await pool.fetchrow("SELECT * FROM reg_students WHERE student_number = $1", number)
    if row is None:
        return Answer.error(404, "not_registered", "no registration under this number")
    return Answer(200, student_body(row))


async def list_cohort(pool: asyncpg.Pool, entry_year: int, after: str, limit: int) -> Answer:
    """B8: one page of a cohort, ordered by student number, after the cursor's number."""
    rows = await pool.fetch(
        "SELECT * FROM reg_students WHERE entry_year = $1 AND student_number > $2"
        " ORDER BY student_number LIMIT $3",
        entry_year,
        after,
        limit + 1,
    )
    page = rows[:limit]
    more = len(rows) > limit
    return Answer(
        200,
        {
            "items": [student_body(r) for r in page],
            "last": page[-1]["student_number"] if more else None,
        },
    )


async def dump(pool: asyncpg.Pool, entry_year: int | None) -> list[dict[str, Any]]:
    """Every registration with full data, for tests and the demo (admin only)."""
    rows = await pool.fetch(
        "SELECT s.*, coalesce(array_agg(f.student_number ORDER BY f.replaced_at, f.student_number)"
        " FILTER (WHERE f.student_number IS NOT NULL), '{}') AS former_numbers"
        " FROM reg_students s LEFT JOIN reg_former_numbers f USING (person_id)"
        " WHERE $1::int IS NULL OR s.entry_year = $1 GROUP BY s.person_id"
        " ORDER BY s.student_number",
        entry_year,
    )
    return [
        {
            **student_body(r),
            **_key_info(r),
            "id_type": r["id_type"],
            "nationality": r["nationality"],
            "kindergarten_code": r["kindergarten_code"],
            "graduated_on": r["graduated_on"].isoformat(),
            "requested_school_code": r["requested_school_code"],
            "record_file_claim": {
                "sha256": r["claim_sha256"],
                "size": r["claim_size"],
                "media_type": r["claim_media_type"],
            },
            "arrived_on": r["arrived_on"].isoformat() if r["arrived_on"] else None,
            "former_numbers": list(r["former_numbers"]),
            "created_count": r["created_count"],
            "replaced_count": r["replaced_count"],
        }
        for r in rows
    ]


async def vanish(pool: asyncpg.Pool, number: str) -> bool:
    """Delete a registration and everything about its person (admin, for repair tests)."""
    deleted = await pool.fetchval(
        "DELETE FROM reg_students WHERE student_number = $1 RETURNING person_id", number
    )
    return deleted is not None


async def admit(pool: asyncpg.Pool, number: str, school_code: str) -> Answer:
    """Set the admitting school of a registration (admin)."""
    row = await pool.fetchrow(
        "UPDATE reg_students SET school_code = $2, updated_at = now()"
        " WHERE student_number = $1 RETURNING *",
        number,
        school_code,
    )
    if row is None:
        return Answer.error(404, "not_registered", "no registration under this number")
    return Answer(200, student_body(row))
