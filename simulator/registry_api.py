"""HTTP handlers of the primary/secondary registry (B1-B8), mounted under `/registry`."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from simulator import registry_service as svc
from simulator.paging import encode_cursor, parse_page, parse_year
from simulator.responses import Answer, invalid, read_json
from simulator.runtime import runtime
from simulator.validation import (
    check_arrival,
    check_intake,
    check_key_info_patch,
    check_number_change,
    check_student_number,
)

MAX_RECORD_FILE_BYTES = 20 * 1024 * 1024
PREFIX = "/registry"


async def put_intake(request: web.Request) -> web.Response:
    """B1 `PUT /v1/students/{n}/intake`."""
    number = request.match_info["student_number"]
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = check_intake(number, body)
    key = request.headers.get("Idempotency-Key", "")
    if not key.strip() or len(key) > 255:
        errors.append({"field": "Idempotency-Key", "message": "header missing or too long"})
    if errors:
        return invalid(errors)
    answer = await svc.intake(runtime(request).pool, number, body, key)
    return answer.to_response()


def parse_content_digest(header: str) -> bytes | None:
    """The sha-256 digest from an RFC 9530 `Content-Digest` header, or None."""
    for member in header.split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        value = value.strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            return None
        try:
            digest = base64.b64decode(value[1:-1], validate=True)
        except binascii.Error:
            return None
        return digest if len(digest) == 32 else None
    return None


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None if it is over the 20 MiB limit."""
    if (request.content_length or 0) > MAX_RECORD_FILE_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > MAX_RECORD_FILE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def put_record_file(request: web.Request) -> web.Response:
    """B2 `PUT /v1/students/{n}/record-file`."""
    number = request.match_info["student_number"]
    content = await _read_capped(request)
    if content is None:
        return Answer.error(413, "too_large", "record files are limited to 20 MiB").to_response()
    digest = parse_content_digest(request.headers.get("Content-Digest", ""))
    if digest is None:
        return invalid(
            [{"field": "Content-Digest", "message": "needs sha-256=:<base64 of 32 bytes>:"}]
        )
    media_type = request.headers.get("Content-Type", "application/octet-stream")
    answer = await svc.store_record_file(runtime(request).pool, number, content, media_type, digest)
    return answer.to_response()


async def delete_intake(request: web.Request) -> web.Response:
    """B3 `DELETE /v1/students/{n}/intake?entry_year=Y`."""
    number = request.match_info["student_number"]
    year = parse_year(request.query.get("entry_year", ""))
    if year is None:
        return invalid([{"field": "entry_year", "message": "query parameter must be a year"}])
    return (await svc.withdraw(runtime(request).pool, number, year)).to_response()


async def post_number_change(request: web.Request) -> web.Response:
    """B4 `POST /v1/students/{n}/number-change`."""
    number = request.match_info["student_number"]
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = check_number_change(number, body)
    if errors:
        return invalid(errors)
    return (await svc.change_number(runtime(request).pool, number, body)).to_response()


async def patch_student(request: web.Request) -> web.Response:
    """B5 `PATCH /v1/students/{n}`."""
    number = request.match_info["student_number"]
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = check_key_info_patch(number, body)
    if errors:
        return invalid(errors)
    return (await svc.correct_key_info(runtime(request).pool, number, body)).to_response()


async def post_arrival(request: web.Request) -> web.Response:
    """B6 `POST /v1/students/{n}/arrival`."""
    number = request.match_info["student_number"]
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = check_arrival(number, body)
    if errors:
        return invalid(errors)
    answer = await svc.arrive(
        runtime(request).pool, number, body["school_code"], body["arrived_on"]
    )
    return answer.to_response()


async def get_student(request: web.Request) -> web.Response:
    """B7 `GET /v1/students/{n}`."""
    number = request.match_info["student_number"]
    errors: list[dict[str, str]] = []
    check_student_number(errors, "student_number", number)
    if errors:
        return invalid(errors)
    return (await svc.read(runtime(request).pool, number)).to_response()


async def list_students(request: web.Request) -> web.Response:
    """B8 `GET /v1/cohorts/{entry_year}/students?cursor=&limit=`."""
    year = parse_year(request.match_info["entry_year"])
    page = parse_page(request)
    if year is None:
        return invalid([{"field": "entry_year", "message": "must be a year"}])
    if isinstance(page, list):
        return invalid(page)
    answer = await svc.list_cohort(runtime(request).pool, year, *page)
    body = answer.body
    body["next_cursor"] = encode_cursor(body.pop("last"))
    return answer.to_response()


def add_routes(app: web.Application) -> None:
    """Mount B1-B8 under `/registry`."""
    student = PREFIX + "/v1/students/{student_number}"
    app.router.add_put(student + "/intake", put_intake)
    app.router.add_delete(student + "/intake", delete_intake)
    app.router.add_put(student + "/record-file", put_record_file)
    app.router.add_post(student + "/number-change", post_number_change)
    app.router.add_post(student + "/arrival", post_arrival)
    app.router.add_patch(student, patch_student)
    app.router.add_get(student, get_student)
    app.router.add_get(PREFIX + "/v1/cohorts/{entry_year}/students", list_students)
