"""Operators' JSON API: reconciliation runs and reports, set-aside work, retries (issue #6).

County operators see their county's children only; provincial operators see all, and
only they handle parked messages (a message that is not an event names no county).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.adapters.postgres.reconciliation_store import Scope
from bridge.adapters.postgres.recovery_store import SetAsideCase
from bridge.api.auth import remote_of, require, require_operator
from bridge.api.problems import problem
from bridge.domain.access import Principal, Role
from bridge.operations import Operations
from bridge.services.reconciliation import ReconciliationBusy
from bridge.services.recovery import masked, masked_body
from bridge.services.reports import export_csv, report_json, run_summary

OPS = web.AppKey("operations", Operations)


def scope_for(principal: Principal, query: Any) -> Scope:
    """The principal's scope, narrowed by ?county=&kindergarten= filters."""
    county = query.get("county") or None
    if principal.role is Role.COUNTY:
        if county and county != principal.county_code:
            raise problem(403, "forbidden", "a county operator sees only their own county")
        county = principal.county_code
    return Scope(county, query.get("kindergarten") or None)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise problem(422, "invalid", f"{name} must be an integer") from None


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise problem(400, "bad_request", "the body must be JSON") from None
    if not isinstance(body, dict):
        raise problem(422, "invalid", "the body must be a JSON object")
    return body


async def start_reconciliation(request: web.Request) -> web.StreamResponse:
    """POST /v1/operator/reconciliations {"entry_year"}: run one now; answers its report."""
    principal = await require_operator(request)
    ops = request.app[OPS]
    year = _int((await _body(request)).get("entry_year"), "entry_year")
    try:
        run = await ops.reconciler.run(year, trigger="api", actor=principal.token_id)
    except ReconciliationBusy as exc:
        raise problem(409, exc.code, str(exc)) from None
    await ops.audit.record(
        action="reconcile.run", outcome="finished", principal=principal,
        remote=remote_of(request), detail={"run_id": run.run_id, "entry_year": year},
    )  # fmt: skip
    return await _stream_report(request, principal, run.run_id, status=201)


async def list_runs(request: web.Request) -> web.Response:
    """GET /v1/operator/reconciliations?entry_year=: runs, newest first."""
    await require_operator(request)
    year = request.query.get("entry_year")
    runs = await request.app[OPS].runs.runs(_int(year, "entry_year") if year else None)
    return web.json_response({"runs": [run_summary(r) | {"counts": r.counts} for r in runs]})


async def _stream_report(
    request: web.Request, principal: Principal, run_id: int, *, status: int = 200
) -> web.StreamResponse:
    ops = request.app[OPS]
    run = await ops.runs.get(run_id)
    if run is None or run.status != "finished":
        raise problem(404, "not_found", "no finished run with this id")
    scope = scope_for(principal, request.query)
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    async for chunk in report_json(ops.runs, run, scope):
        await response.write(chunk)
    await response.write_eof()
    return response


async def get_report(request: web.Request) -> web.StreamResponse:
    """GET /v1/operator/reconciliations/{run_id} (or latest?entry_year=): the report."""
    principal = await require_operator(request)
    ops = request.app[OPS]
    raw = request.match_info["run_id"]
    if raw == "latest":
        latest = await ops.runs.latest(_int(request.query.get("entry_year"), "entry_year"))
        if latest is None:
            raise problem(404, "not_found", "no finished run of this cohort yet")
        run_id = latest.run_id
    else:
        run_id = _int(raw, "run_id")
    await ops.audit.record(
        action="reconcile.report", outcome="ok", principal=principal,
        remote=remote_of(request), detail={"run_id": run_id},
    )  # fmt: skip
    return await _stream_report(request, principal, run_id)


async def get_items(request: web.Request) -> web.StreamResponse:
    """GET .../{run_id}/items?category=&county=&kindergarten=&new=1&format=csv."""
    principal = await require_operator(request)
    ops = request.app[OPS]
    run = await ops.runs.get(_int(request.match_info["run_id"], "run_id"))
    if run is None:
        raise problem(404, "not_found", "no run with this id")
    scope = scope_for(principal, request.query)
    categories = request.query.getall("category", []) or None
    new_only = request.query.get("new") in ("1", "true", "yes")
    await ops.audit.record(
        action="reconcile.export", outcome="ok", principal=principal, remote=remote_of(request),
        detail={"run_id": run.run_id, "format": request.query.get("format", "json")},
    )  # fmt: skip
    if request.query.get("format") == "csv":
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="reconciliation-{run.run_id}.csv"',
        })  # fmt: skip
        await response.prepare(request)
        async for text in export_csv(
            ops.runs, ops.pool, run, categories=categories, scope=scope, new_only=new_only
        ):
            await response.write(text.encode())
        await response.write_eof()
        return response
    limit = min(_int(request.query.get("limit", "500"), "limit"), 5000)
    items = await ops.runs.items(
        run, categories=categories, scope=scope, new_only=new_only, limit=limit,
        offset=_int(request.query.get("offset", "0"), "offset"),
    )  # fmt: skip
    return web.json_response({
        "run_id": run.run_id,
        "items": [
            {"category": i.category, "student_number": i.student_number,
             "county_code": i.county_code, "kindergarten_code": i.kindergarten_code,
             "school_code": i.school_code, "detail": i.detail,
             "since": i.since.isoformat() if i.since else None, "new": i.new}
            for i in items
        ],
    })  # fmt: skip


def _case_out(case: SetAsideCase) -> dict[str, Any]:
    return {
        "student_number": case.student_number, "reason": case.reason,
        "registry_answer": case.answer, "detail": masked(case.detail),
        "set_aside_at": case.set_aside_at.isoformat() if case.set_aside_at else None,
        "county_code": case.county_code, "kindergarten_code": case.kindergarten_code,
        "last_retry_at": case.last_retry_at.isoformat() if case.last_retry_at else None,
    }  # fmt: skip


def _group_out(g: Any) -> dict[str, Any]:
    return {
        "kind": g.kind, "reason": g.reason, "registry_answer": g.answer, "count": g.count,
        "first_seen": g.first_seen.isoformat() if g.first_seen else None,
        "last_seen": g.last_seen.isoformat() if g.last_seen else None,
    }  # fmt: skip


async def set_aside_groups(request: web.Request) -> web.Response:
    """GET /v1/operator/set-aside: groups by reason and registry answer (and ?reason= cases)."""
    principal = await require_operator(request)
    store = request.app[OPS].recovery_store
    county = principal.county_code if principal.role is Role.COUNTY else None
    body: dict[str, Any] = {"groups": [_group_out(g) for g in await store.set_aside_groups(county)]}
    if "reason" in request.query:
        cases = await store.set_aside_cases(
            county, reason=request.query["reason"], answer=request.query.get("answer")
        )
        body["cases"] = [_case_out(c) for c in cases]
    return web.json_response(body)


async def retry_set_aside(request: web.Request) -> web.Response:
    """POST /v1/operator/set-aside/retry {"reason", "registry_answer"?} | {"student_number"}."""
    principal = await require_operator(request)
    ops = request.app[OPS]
    body = await _body(request)
    county = principal.county_code if principal.role is Role.COUNTY else None
    reason, number = body.get("reason"), body.get("student_number")
    if not reason and not number:
        raise problem(422, "invalid", "name a reason (a group) or a student_number")
    cases = await ops.recovery_store.set_aside_cases(
        county, reason=reason, answer=body.get("registry_answer"), student_number=number
    )
    group = f"{reason}/{body.get('registry_answer') or '*'}" if reason else None
    result = await ops.recovery.retry_handoffs(
        cases, principal, principal.token_id, group_key=group, remote=remote_of(request)
    )
    return web.json_response({"retried": result.retried, "skipped": result.skipped})


async def resolve_set_aside(request: web.Request) -> web.Response:
    """POST /v1/operator/set-aside/resolve {"student_number", "note"}."""
    principal = await require_operator(request)
    ops = request.app[OPS]
    body = await _body(request)
    note = str(body.get("note") or "").strip()
    if not note:
        raise problem(422, "invalid", "a resolution needs a note")
    county = principal.county_code if principal.role is Role.COUNTY else None
    cases = await ops.recovery_store.set_aside_cases(
        county, student_number=str(body.get("student_number", ""))
    )
    if not cases:
        raise problem(404, "not_found", "no open set-aside for this child in your scope")
    await ops.recovery.resolve_handoff(
        cases[0], note, principal, principal.token_id, remote=remote_of(request)
    )
    return web.json_response({"resolved": cases[0].student_number})


async def parked_groups(request: web.Request) -> web.Response:
    """GET /v1/operator/parked: groups (and ?reason= messages), provincial operators only."""
    await require(request, Role.PROVINCE)
    store = request.app[OPS].recovery_store
    body: dict[str, Any] = {"groups": [_group_out(g) for g in await store.parked_groups()]}
    if "reason" in request.query:
        messages = await store.parked_messages(reason_code=request.query["reason"])
        body["messages"] = [
            {"id": m.id, "routing_key": m.routing_key, "reason_code": m.reason_code,
             "reason": m.reason, "parked_at": m.parked_at.isoformat()}
            for m in messages
        ]  # fmt: skip
    return web.json_response(body)


async def parked_message(request: web.Request) -> web.Response:
    """GET /v1/operator/parked/{id}: one message, identity fields masked."""
    principal = await require(request, Role.PROVINCE)
    ops = request.app[OPS]
    message = await ops.recovery_store.parked_message(_int(request.match_info["id"], "id"))
    if message is None:
        raise problem(404, "not_found", "no parked message with this id")
    await ops.audit.record(
        action="parked.read", outcome="ok", principal=principal, remote=remote_of(request),
        detail={"parked_id": message.id},
    )  # fmt: skip
    return web.json_response({
        "id": message.id, "message_id": message.message_id, "routing_key": message.routing_key,
        "reason_code": message.reason_code, "reason": message.reason,
        "parked_at": message.parked_at.isoformat(), "retries": message.retries,
        "resolution": message.resolution, "outcome": message.outcome,
        "body": masked_body(message.body),
    })  # fmt: skip


async def retry_parked(request: web.Request) -> web.Response:
    """POST /v1/operator/parked/retry {"reason"} | {"id"}: republish to the events exchange."""
    principal = await require(request, Role.PROVINCE)
    ops = request.app[OPS]
    body = await _body(request)
    if "id" in body:
        one = await ops.recovery_store.parked_message(_int(body["id"], "id"))
        messages = [one] if one and one.resolved_at is None else []
    elif body.get("reason"):
        messages = await ops.recovery_store.parked_messages(reason_code=str(body["reason"]))
    else:
        raise problem(422, "invalid", "name a reason (a group) or an id")
    result = await ops.recovery.retry_parked(
        messages, principal, principal.token_id, group_key=body.get("reason"),
        remote=remote_of(request),
    )  # fmt: skip
    return web.json_response({"retried": result.retried, "skipped": result.skipped})


async def resolve_parked(request: web.Request) -> web.Response:
    """POST /v1/operator/parked/{id}/resolve {"note"}."""
    principal = await require(request, Role.PROVINCE)
    ops = request.app[OPS]
    note = str((await _body(request)).get("note") or "").strip()
    if not note:
        raise problem(422, "invalid", "a resolution needs a note")
    message = await ops.recovery_store.parked_message(_int(request.match_info["id"], "id"))
    if message is None:
        raise problem(404, "not_found", "no parked message with this id")
    done = await ops.recovery.resolve_parked(
        message, note, principal, principal.token_id, remote=remote_of(request)
    )
    return web.json_response({"resolved": done})


async def retries(request: web.Request) -> web.Response:
    """GET /v1/operator/retries: recent retries and what came of them."""
    principal = await require_operator(request)
    rows = await request.app[OPS].recovery_store.recent_retries()
    if principal.role is Role.COUNTY:
        rows = [r for r in rows if r["kind"] == "handoff"]
    return web.json_response({
        "retries": [
            {"at": r["at"].isoformat(), "actor": r["actor"], "kind": r["kind"],
             "target": r["target"], "result": r["result"], "outcome": r["outcome"]}
            for r in rows
        ]
    })  # fmt: skip


def add_operator_api(app: web.Application, bridge: object) -> None:
    """Register the operators' API and console on *app* (one call from create_app)."""
    from bridge.api.console import add_console
    from bridge.operations import operations_for

    app[OPS] = operations_for(bridge)
    r = app.router
    r.add_post("/v1/operator/reconciliations", start_reconciliation)
    r.add_get("/v1/operator/reconciliations", list_runs)
    r.add_get("/v1/operator/reconciliations/{run_id}", get_report)
    r.add_get("/v1/operator/reconciliations/{run_id}/items", get_items)
    r.add_get("/v1/operator/set-aside", set_aside_groups)
    r.add_post("/v1/operator/set-aside/retry", retry_set_aside)
    r.add_post("/v1/operator/set-aside/resolve", resolve_set_aside)
    r.add_get("/v1/operator/parked", parked_groups)
    r.add_post("/v1/operator/parked/retry", retry_parked)
    r.add_get("/v1/operator/parked/{id}", parked_message)
    r.add_post("/v1/operator/parked/{id}/resolve", resolve_parked)
    r.add_get("/v1/operator/retries", retries)
    add_console(app)
