"""The preschool registry's side (section A of registry-api.md) and its seeding."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from simulator.numbers import student_number_problem
from simulator.validation import Errors

STATES = ("graduated", "deferred", "cancelled", "in_kindergarten")
_TEN_DIGITS = re.compile(r"^\d{10}$")
_SIX_DIGITS = re.compile(r"^\d{6}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True)
class RecordFile:
    """A stored record file: its bytes and the sha256 the registry claims for them."""

    content: bytes
    media_type: str
    sha256: str


def roster_item(row: asyncpg.Record) -> dict[str, Any]:
    """One A2 roster item."""
    return {
        "student_number": row["student_number"],
        "id_number": row["id_number"],
        "state": row["state"],
        "childseq": row["childseq"],
        "kindergarten_code": row["kindergarten_code"],
    }


def _check_int(errors: Errors, field: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append({"field": field, "message": f"must be an integer in {low}..{high}"})


def check_seed_item(where: str, item: Any) -> Errors:
    """Validate one child of `POST /_sim/preschool/children`."""
    if not isinstance(item, dict):
        return [{"field": where, "message": "must be an object"}]
    errors: Errors = []
    problem = student_number_problem(item.get("student_number"))  # type: ignore[arg-type]
    if problem:
        errors.append({"field": f"{where}.student_number", "message": problem})
    if item.get("id_number") is not None and not isinstance(item["id_number"], str):
        errors.append({"field": f"{where}.id_number", "message": "must be a string or null"})
    if item.get("state") not in STATES:
        errors.append({"field": f"{where}.state", "message": f"must be one of {STATES}"})
    _check_int(errors, f"{where}.childseq", item.get("childseq"), 0, 2**31 - 1)
    _check_int(errors, f"{where}.entry_year", item.get("entry_year"), 2000, 2100)
    if not _TEN_DIGITS.match(str(item.get("kindergarten_code"))):
        errors.append({"field": f"{where}.kindergarten_code", "message": "must be 10 digits"})
    if not _SIX_DIGITS.match(str(item.get("county_code"))):
        errors.append({"field": f"{where}.county_code", "message": "must be 6 digits"})
    file = item.get("file")
    if file is not None:
        if not isinstance(file, dict) or not isinstance(file.get("media_type"), str):
            errors.append({"field": f"{where}.file", "message": "needs content_base64, media_type"})
        else:
            try:
                base64.b64decode(file.get("content_base64", ""), validate=True)
            except (binascii.Error, TypeError):
                errors.append({"field": f"{where}.file.content_base64", "message": "not base64"})
    claimed = item.get("claimed_sha256")
    if claimed is not None and (not isinstance(claimed, str) or not _SHA256.match(claimed)):
        errors.append({"field": f"{where}.claimed_sha256", "message": "must be 64 hex chars"})
    file_id = item.get("file_id")
    if file_id is not None and (not isinstance(file_id, str) or not _FILE_ID.match(file_id)):
        errors.append({"field": f"{where}.file_id", "message": "must be 1-64 of [0-9A-Za-z_-]"})
    return errors


def file_uri(public_url: str, file_id: str) -> str:
    """The absolute A1 URI of a record file."""
    return f"{public_url}/preschool/v1/record-files/{file_id}/content"


async def seed_children(
    pool: asyncpg.Pool, items: list[dict[str, Any]], public_url: str
) -> list[dict[str, Any]]:
    """Store (or overwrite) children and their record files; return each file's claim."""
    children: list[tuple[Any, ...]] = []
    files: list[tuple[str, str, str, bytes]] = []
    answers: list[dict[str, Any]] = []
    for item in items:
        claim = None
        file_id = None
        if item.get("file") is not None:
            content = base64.b64decode(item["file"]["content_base64"])
            file_id = item.get("file_id") or uuid.uuid4().hex
            sha256 = item.get("claimed_sha256") or hashlib.sha256(content).hexdigest()
            media_type = item["file"]["media_type"]
            files.append((file_id, media_type, sha256, content))
            claim = {
                "uri": file_uri(public_url, file_id),
                "sha256": sha256,
                "size": len(content),
                "media_type": media_type,
            }
        children.append(
            (
                item["student_number"],
                item.get("id_number"),
                item["state"],
                item["childseq"],
                item["kindergarten_code"],
                item["county_code"],
                item["entry_year"],
                file_id,
            )
        )
        answers.append({"student_number": item["student_number"], "record_file": claim})
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO pre_record_files (file_id, media_type, sha256, content)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (file_id) DO UPDATE SET"
            " media_type = EXCLUDED.media_type, sha256 = EXCLUDED.sha256,"
            " content = EXCLUDED.content",
            files,
        )
        await conn.executemany(
            "INSERT INTO pre_children (student_number, id_number, state, childseq,"
            " kindergarten_code, county_code, entry_year, file_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (student_number) DO UPDATE SET"
            " id_number = EXCLUDED.id_number, state = EXCLUDED.state,"
            " childseq = EXCLUDED.childseq, kindergarten_code = EXCLUDED.kindergarten_code,"
            " county_code = EXCLUDED.county_code, entry_year = EXCLUDED.entry_year,"
            " file_id = coalesce(EXCLUDED.file_id, pre_children.file_id)",
            children,
        )
    return answers


def check_child_patch(body: Any) -> Errors:
    """Validate `PATCH /_sim/preschool/children/{n}`."""
    if not isinstance(body, dict) or not body:
        return [{"field": "", "message": "must be a non-empty object"}]
    errors: Errors = []
    for key in sorted(set(body) - {"state", "childseq", "student_number", "id_number",
                                   "entry_year"}):  # fmt: skip
        errors.append({"field": key, "message": "cannot be changed"})
    if "state" in body and body["state"] not in STATES:
        errors.append({"field": "state", "message": f"must be one of {STATES}"})
    if "childseq" in body:
        _check_int(errors, "childseq", body["childseq"], 0, 2**31 - 1)
    if "entry_year" in body:
        _check_int(errors, "entry_year", body["entry_year"], 2000, 2100)
    if "student_number" in body:
        problem = student_number_problem(body["student_number"])
        if problem:
            errors.append({"field": "student_number", "message": problem})
    return errors


async def patch_child(
    pool: asyncpg.Pool, number: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """Update a child's roster entry; None if unknown (or the new number is taken)."""
    sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, start=2))
    try:
        row = await pool.fetchrow(
            f"UPDATE pre_children SET {sets} WHERE student_number = $1 RETURNING *",
            number,
            *changes.values(),
        )
    except asyncpg.UniqueViolationError:
        return None
    return None if row is None else roster_item(row)


async def record_file(pool: asyncpg.Pool, file_id: str) -> RecordFile | None:
    """A1: the stored file, or None if unknown."""
    row = await pool.fetchrow(
        "SELECT content, media_type, sha256 FROM pre_record_files WHERE file_id = $1", file_id
    )
    if row is None:
        return None
    return RecordFile(row["content"], row["media_type"], row["sha256"])


async def roster(
    pool: asyncpg.Pool, entry_year: int, after: str, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A2: one page of the roster after `after`, and the last number if more follow."""
    rows = await pool.fetch(
        "SELECT * FROM pre_children WHERE entry_year = $1 AND student_number > $2"
        " ORDER BY student_number LIMIT $3",
        entry_year,
        after,
        limit + 1,
    )
    page = rows[:limit]
    last = page[-1]["student_number"] if len(rows) > limit else None
    return [roster_item(r) for r in page], last
