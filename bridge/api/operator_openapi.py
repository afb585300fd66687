"""The operators' API in the OpenAPI document, beside the school API (issue #18).

County operators see their county's children only; provincial operators all, and only
they handle parked messages. Refusals are the same problem+json as the school API's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.domain.reconciliation import Category
from schemas.query import BIGINT_MAX

_ROW_ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
_YEAR = {"type": "integer", "minimum": 2000, "maximum": 2100}
# An empty filter means "not given" (a form's "all").
_COUNTY = {"type": "string", "pattern": r"^([0-9]{6})?$"}
_TEN = {"type": "string", "pattern": r"^([0-9]{10})?$"}
_NULLABLE_TEXT = {"type": ["string", "null"], "maxLength": 200, "pattern": r"^[^\x00-\x1f\x7f]*$"}
_TEXT = {"type": "string", "maxLength": 200, "pattern": r"^[^\x00-\x1f\x7f]*$"}
_OBJECT: dict[str, Any] = {"type": "object"}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_REPORT = _obj(
    ["entry_year", "run_id", "status", "categories"],
    entry_year=_YEAR, run_id=_ROW_ID, status={"type": "string"},
    categories={"type": "object", "additionalProperties": _obj(
        ["count", "student_numbers"], count={"type": "integer", "minimum": 0},
        student_numbers={"type": "array", "items": {"type": "string"}})},
)  # fmt: skip
_GROUP = _obj(
    ["kind", "reason", "count"], kind={"type": "string"}, reason={"type": "string"},
    registry_answer={"type": "string"}, count={"type": "integer"}, first_seen=_TIME,
    last_seen=_TIME,
)  # fmt: skip
_GROUPS = _obj(["groups"], groups={"type": "array", "items": _GROUP},
               cases={"type": "array", "items": _OBJECT},
               messages={"type": "array", "items": _OBJECT})  # fmt: skip
_RETRIED = _obj(["retried", "skipped"], retried={"type": "array", "items": {"type": "string"}},
                skipped={"type": "array", "items": {"type": "string"}})  # fmt: skip


Param = Callable[[str, str, dict[str, Any], str], dict[str, Any]]
Problems = Callable[..., dict[str, Any]]


def operator_operations(_param: Param, _problems: Problems) -> dict[str, Any]:
    """The /v1/operator paths, with the school API's parameter and problem helpers."""
    run_id = _param("run_id", "path", {"oneOf": [_ROW_ID, {"const": "latest"}]},
                    "A run's id, or `latest` (with `entry_year`).")  # fmt: skip
    message_id = _param("id", "path", _ROW_ID, "The parked message's id.")
    filters = [
        _param("county", "query", _COUNTY, "Only this county (a county operator: its own)."),
        _param("kindergarten", "query", _TEN, "Only this kindergarten."),
    ]
    year = _param("entry_year", "query", {"anyOf": [_YEAR, {"const": ""}]},
                  "The cohort (year the children start school).")  # fmt: skip
    return {
        "/v1/operator/reconciliations": {
            "post": {
                "operationId": "startReconciliation",
                "summary": "Run a reconciliation of a cohort now; answers its report",
                "requestBody": _body(_obj(["entry_year"], entry_year=_YEAR)),
                "responses": {"201": _json("The finished run's report.", _REPORT),
                              **_problems(400, 401, 403, 409, 422)},
            },
            "get": {
                "operationId": "listReconciliations",
                "summary": "Reconciliation runs, newest first",
                "parameters": [year],
                "responses": {"200": _json("Runs.", _obj(["runs"], runs={
                    "type": "array", "items": _OBJECT})), **_problems(400, 401, 403)},
            },
        },
        "/v1/operator/reconciliations/{run_id}": {"get": {
            "operationId": "getReconciliation",
            "summary": "A run's report: every category with its student numbers (in scope)",
            "parameters": [run_id, year, *filters],
            "responses": {"200": _json("The report.", _REPORT),
                          **_problems(400, 401, 403, 404)},
        }},
        "/v1/operator/reconciliations/{run_id}/items": {"get": {
            "operationId": "getReconciliationItems",
            "summary": "A run's findings, paged (JSON) or all as de-identified CSV",
            "parameters": [
                _param("run_id", "path", _ROW_ID, "The run's id."), *filters,
                {"name": "category", "in": "query", "required": False, "style": "form",
                 "explode": True, "description": "Only these categories.",
                 "schema": {"type": "array", "items": {"enum": [c.value for c in Category]}}},
                _param("new", "query", {"type": "string"},
                       "`1`, `true` or `yes`: only findings new since the previous run."),
                _param("format", "query", {"enum": ["json", "csv"]}, "`csv`: de-identified."),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 5000},
                       "Items per page (JSON)."),
                _param("offset", "query", {"type": "integer", "minimum": 0,
                       "maximum": BIGINT_MAX}, "Items to skip (JSON)."),
            ],
            "responses": {
                "200": {"description": "Findings.", "content": {
                    "application/json": {"schema": _obj(["run_id", "items"], run_id=_ROW_ID,
                                                        items={"type": "array"})},
                    "text/csv": {"schema": {"type": "string"}}}},
                **_problems(400, 401, 403, 404),
            },
        }},
        "/v1/operator/set-aside": {"get": {
            "operationId": "listSetAside",
            "summary": "Set-aside hand-overs by reason and registry answer (and a group's cases)",
            "parameters": [_param("reason", "query", _TEXT, "A group's reason: its cases too."),
                           _param("answer", "query", _TEXT, "The group's registry answer.")],
            "responses": {"200": _json("Groups (and cases).", _GROUPS),
                          **_problems(400, 401, 403)},
        }},
        "/v1/operator/set-aside/retry": {"post": {
            "operationId": "retrySetAside",
            "summary": "Retry a group of set-aside hand-overs, or one child",
            "requestBody": _body({"type": "object", "properties": {
                "reason": _NULLABLE_TEXT, "registry_answer": _NULLABLE_TEXT,
                "student_number": _NULLABLE_TEXT}}),
            "responses": {"200": _json("What was retried.", _RETRIED),
                          **_problems(400, 401, 403, 422)},
        }},
        "/v1/operator/set-aside/resolve": {"post": {
            "operationId": "resolveSetAside",
            "summary": "Close a child's set-aside with a note",
            "requestBody": _body(_obj(["student_number", "note"], student_number=_TEXT,
                                      note={"type": "string", "minLength": 1,
                                            "maxLength": 5000})),
            "responses": {"200": _json("Resolved.", _obj(["resolved"], resolved={
                "type": "string"})), **_problems(400, 401, 403, 404, 422)},
        }},
        "/v1/operator/parked": {"get": {
            "operationId": "listParked",
            "summary": "Parked messages by reason (provincial operators)",
            "parameters": [_param("reason", "query", _TEXT, "A group's reason: its messages.")],
            "responses": {"200": _json("Groups (and messages).", _GROUPS),
                          **_problems(400, 401, 403)},
        }},
        "/v1/operator/parked/retry": {"post": {
            "operationId": "retryParked",
            "summary": "Republish one parked message (id) or a group (reason)",
            "requestBody": _body({"type": "object", "properties": {
                "id": {"type": ["integer", "null"], "minimum": 1, "maximum": BIGINT_MAX},
                "reason": _NULLABLE_TEXT}}),
            "responses": {"200": _json("What was republished.", _RETRIED),
                          **_problems(400, 401, 403, 422)},
        }},
        "/v1/operator/parked/{id}": {"get": {
            "operationId": "getParked",
            "summary": "One parked message, identity fields masked",
            "parameters": [message_id],
            "responses": {"200": _json("The message.", _obj(["id", "reason_code", "body"],
                                       id=_ROW_ID, reason_code={"type": "string"},
                                       body={"type": "string"})),
                          **_problems(400, 401, 403, 404)},
        }},
        "/v1/operator/parked/{id}/resolve": {"post": {
            "operationId": "resolveParked",
            "summary": "Close a parked message with a note",
            "parameters": [message_id],
            "requestBody": _body(_obj(["note"], note={"type": "string", "minLength": 1,
                                                      "maxLength": 5000})),
            "responses": {"200": _json("Resolved.", _obj(["resolved"], resolved={
                "type": "boolean"})), **_problems(400, 401, 403, 404, 422)},
        }},
        "/v1/operator/retries": {"get": {
            "operationId": "listRetries",
            "summary": "Recent retries and what came of them",
            "responses": {"200": _json("Retries, newest first.", _obj(["retries"], retries={
                "type": "array", "items": _OBJECT})), **_problems(401, 403)},
        }},
    }  # fmt: skip
