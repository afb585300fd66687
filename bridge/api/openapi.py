"""The API description (OpenAPI 3.1) generated from the pydantic models, and a docs page."""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from bridge.api.operator_openapi import operator_operations
from schemas.api import API_MODELS, ArrivalIn

PROBLEM = "application/problem+json"
_REF = "#/components/schemas/{model}"

_SCHOOL_CODE = {"type": "string", "pattern": r"^\d{10}$", "example": "2111010502"}
_STUDENT_NUMBER = {
    "type": "string",
    "pattern": r"^[GJL][0-9]{17}[0-9X]$",
    "description": "The child's student number (学籍号); a former number finds the child too.",
}
_ENTRY_YEAR = {"type": "integer", "minimum": 2000, "maximum": 2100}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name, "in": where, "required": where == "path", "schema": schema,
        "description": description,
    }  # fmt: skip


def _problems(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "The query or body is malformed (`invalid_parameter`, `invalid_cursor`,"
        " `invalid_json`).",
        401: "No token, an unknown or revoked one (`unauthenticated`), or a sealed one"
        " (`token_sealed`).",
        403: "The token's role may not use this endpoint (`forbidden`).",
        413: "The body is larger than 64 KiB (`too_large`), declared or chunked.",
        404: "No such child or school for this token (`not_found`); the same answer whether"
        " or not it exists.",
        409: "The registry says another school admitted the child (`school_mismatch`).",
        410: "The record file was erased after the hand-over completed (`gone`, with"
        " `erased_at` and `reason`): the bridge keeps files only while a hand-over needs them.",
        415: "The body is not JSON (`unsupported_media_type`).",
        416: "The range is outside the file (`range_not_satisfiable`).",
        422: "The body is well-formed but cannot be true (`invalid`, `invalid_arrival`).",
        500: "The bridge failed to answer (`server_error`); it is logged. For a record file,"
        " `record_file_damaged`: its stored copy failed its integrity check, and no byte of it"
        " is sent; it is fetched again from the preschool registry.",
        503: "The bridge's database is unavailable (`unavailable`): ask again after"
        " `Retry-After` seconds.",
    }
    answers: dict[str, Any] = {
        str(s): {"description": texts[s], "content": {PROBLEM: {"schema": _ref("Problem")}}}
        for s in statuses
    }
    if 401 in statuses:
        answers["401"]["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer realm=\"xueji-bridge\"`.",
                                 "schema": {"type": "string"}}
        }  # fmt: skip
    if 503 in statuses:
        answers["503"]["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return answers


def _json(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _file_headers() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "ETag": {"description": "The quoted sha256 of the whole file.", "schema": text},
        "Repr-Digest": {"description": "RFC 9530 sha-256 of the whole file.", "schema": text},
        "Accept-Ranges": {"description": "`bytes`.", "schema": text},
        "Content-Disposition": {"description": "`attachment; filename=…`.", "schema": text},
    }


def _operations() -> dict[str, Any]:
    number = _param("student_number", "path", _STUDENT_NUMBER, "Student number (学籍号).")
    school = _param("school_code", "path", _SCHOOL_CODE, "10-digit school identifier.")
    entry_year = _param("entry_year", "query", _ENTRY_YEAR, "Year the children start school.")
    binary = {"type": "string", "format": "binary"}
    return {
        "/v1/schools/{school_code}/handoffs": {"get": {
            "operationId": "listHandoffs",
            "summary": "Children handed over to a school",
            "description": "Paged with `cursor`. A school sees its own children only; a"
            " county operator its county's, with names masked.",
            "parameters": [
                school, entry_year,
                _param("state", "query", {"type": "string",
                       "enum": ["not_pulled", "pulled", "arrived"]}, "Only this state."),
                _param("since", "query", {"type": "string", "format": "date-time"},
                       "Only children changed at or after this time (pass the last `as_of`)."),
                _param("cursor", "query", {"type": "string", "maxLength": 200},
                       "`next_cursor` of the previous page."),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                       "default": 100}, "Items per page."),
            ],
            "responses": {"200": _json("One page.", "HandoffPage"), **_problems(400, 401, 404)},
        }},
        "/v1/schools/{school_code}/record-files.zip": {"get": {
            "operationId": "downloadRecordFilesZip",
            "summary": "Many record files at once, as a streamed ZIP with manifest.json",
            "description": "Schools only (operators download one file at a time)."
            " `manifest.json` (last entry) lists each file's name, student"
            " number, sha256, size and media type. Every file in it counts as downloaded."
            " Files it cannot hold (erased after retention, or damaged) are listed under"
            " `not_included` with the reason.",
            "parameters": [school, entry_year],
            "responses": {
                "200": {"description": "A ZIP archive.",
                        "content": {"application/zip": {"schema": binary}}},
                **_problems(400, 401, 403, 404),
            },
        }},
        "/v1/handoffs/{student_number}": {"get": {
            "operationId": "getHandoff",
            "summary": "One child's hand-over",
            "parameters": [number],
            "responses": {"200": _json("The hand-over.", "HandoffSummary"),
                          **_problems(401, 404)},
        }},
        "/v1/handoffs/{student_number}/record-file": {"get": {
            "operationId": "downloadRecordFile",
            "summary": "The record file (学籍档案), streamed",
            "description": "The child's school, and operators in scope (their reads audited"
            " as an operator's). Sent as an attachment: `application/json` as the contract"
            " has it, anything else as `application/octet-stream`. `ETag` is the quoted"
            " sha256; `If-None-Match` gives 304, `Range` (one range) gives 206 for resuming."
            " `HEAD` gives the size without the file (audited as `record_file.head`). Every"
            " download is kept as a receipt.",
            "parameters": [
                number,
                _param("If-None-Match", "header", {"type": "string"}, "ETags you hold."),
                _param("Range", "header", {"type": "string"}, "e.g. `bytes=0-65535`."),
            ],
            "responses": {
                # No schema: the bytes are the file's own, of its own media type (a part
                # of it, for 206), which no JSON Schema here describes.
                "200": {"description": "The whole file.", "headers": _file_headers(),
                        "content": {"application/json": {}, "application/octet-stream": {}}},
                "206": {"description": "The requested range.", "headers": _file_headers(),
                        "content": {"application/json": {}, "application/octet-stream": {}}},
                "304": {"description": "You hold this version already."},
                **_problems(401, 404, 410, 416),
            },
        }},
        "/v1/handoffs/{student_number}/arrival": {"post": {
            "operationId": "reportArrival",
            "summary": "Report the child's actual arrival (实际报到)",
            "description": "Schools only. Recorded at once and told to the registry (B6) with"
            " durable retries. If the registry says another school admitted the child, the"
            " case is set aside for an operator and the summary says so.",
            "parameters": [number],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("ArrivalIn")}}},
            "responses": {
                "200": _json("Already enrolled: nothing changed.", "ArrivalAccepted"),
                "202": _json("Recorded; the registry is being told.", "ArrivalAccepted"),
                **_problems(400, 401, 403, 404, 409, 413, 415, 422),
            },
        }},
        "/v1/audit": {"get": {
            "operationId": "queryAudit",
            "summary": "The audit log, by child or by token (operators)",
            "parameters": [
                _param("student_number", "query", _STUDENT_NUMBER, "Entries about this child."),
                _param("token_id", "query", {"type": "string", "pattern": r"^tok_[0-9a-f]{12}$"},
                       "Entries by or about this token."),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                       "default": 100}, "At most this many, newest first."),
            ],
            "responses": {"200": _json("Entries, newest first.", "AuditPage"),
                          **_problems(400, 401, 403, 404)},
        }},
    }  # fmt: skip


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the school and operator API."""
    modes = [(m, "validation" if m is ArrivalIn else "serialization") for m in API_MODELS]
    _, top = models_json_schema(modes, ref_template=_REF)  # type: ignore[arg-type]
    paths = _operations() | operator_operations(_param, _problems)
    for path_item in paths.values():
        for op in path_item.values():
            op["security"] = [{"bearer": []}]
            op["responses"].update(_problems(500, 503))  # any operation, when things fail
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "xueji-bridge: record files and arrivals for primary schools",
            "version": "1.0.0",
            "description": "Receiving primary schools take in (接收) the record file of each"
            " child admitted and report the child's arrival (实际报到). Every call needs"
            " `Authorization: Bearer <token>`; errors are RFC 9457 problem+json with a stable"
            " `code`. County and provincial operators reconcile, read reports and work the"
            " set-aside hand-overs and parked messages under /v1/operator.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    """`GET /v1/openapi.json`."""
    return web.json_response(openapi_document())


async def get_docs(request: web.Request) -> web.Response:
    """`GET /v1/docs`: a plain page listing the operations (no CDN: works offline)."""
    doc = openapi_document()
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = ", ".join(
                f"<code>{html.escape(p['name'])}</code> ({p['in']})"
                for p in op.get("parameters", [])
            )
            statuses = ", ".join(sorted(op["responses"]))
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td><b>{html.escape(op['summary'])}</b><br>"
                f"{html.escape(op.get('description', ''))}</td>"
                f"<td>{params}</td><td>{statuses}</td></tr>"
            )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(doc["info"]["title"])}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}
td,th{{border-bottom:1px solid #ccc;padding:.4em;vertical-align:top;text-align:left}}
table{{border-collapse:collapse}}</style></head>
<body><h1>{html.escape(doc["info"]["title"])}</h1>
<p>{html.escape(doc["info"]["description"])}</p>
<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1).</p>
<table><tr><th>operation</th><th>what</th><th>parameters</th><th>answers</th></tr>
{"".join(rows)}</table></body></html>"""
    return web.Response(text=page, content_type="text/html")


def add_openapi_routes(app: web.Application) -> None:
    """Register the description and the docs page (no token needed)."""
    app.router.add_get("/v1/openapi.json", get_openapi)
    app.router.add_get("/v1/docs", get_docs)
