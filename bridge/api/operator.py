"""Operators' JSON API: reconciliation runs and reports, set-aside work, retries (issue #6).

County operators see their county's children only; provincial operators see all, and
only they handle parked messages (a message that is not an event names no county).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from bridge.api.auth import remote_of, require, require_operator
from bridge.api.keys import USE_CASES
from bridge.api.params import body, path, query
from bridge.api.problems import problem
from bridge.domain.access import Principal, Role
from bridge.errors import NotFound
from bridge.services.acting import Acting
from bridge.services.ports.recovery import Group, SetAsideCase
from bridge.services.recovery import RetryResult, masked, masked_body
from bridge.services.reports import run_summary, scope_for
from schemas.operator import (
    ItemsQuery,
    ParkedQuery,
    ReconcileIn,
    ReportQuery,
    ResolveParkedIn,
    ResolveSetAsideIn,
    RetryParkedIn,
    RetrySetAsideIn,
    RunsQuery,
    SetAsideQuery,
)
from schemas.query import RowId

ROW_ID: TypeAdapter[int] = TypeAdapter(RowId)


def _who(request: web.Request, principal: Principal) -> Acting:
    return Acting.by(principal, remote_of(request))


async def start_reconciliation(request: web.Request) -> web.StreamResponse:
    """POST /v1/operator/reconciliations {"entry_year"}: run one now; answers its report."""
    principal = await require_operator(request)
    asked = body(await request.read(), ReconcileIn)
    reporting = request.app[USE_CASES].reporting
    who = _who(request, principal)
    run = await reporting.reconcile(asked.entry_year, trigger="api", who=who)
    await reporting.opened(run.run_id, who)  # the answer is the report, whole numbers and all
    return await _stream_report(request, principal, run.run_id, status=201)


async def list_runs(request: web.Request) -> web.Response:
    """GET /v1/operator/reconciliations?entry_year=: runs, newest first."""
    await require_operator(request)
    asked = query(request, RunsQuery)
    runs = await request.app[USE_CASES].reporting.runs(asked.entry_year)
    return web.json_response({"runs": [run_summary(r) | {"counts": r.counts} for r in runs]})


async def _stream_report(
    request: web.Request, principal: Principal, run_id: int, *, status: int = 200
) -> web.StreamResponse:
    reporting = request.app[USE_CASES].reporting
    run = await reporting.finished(run_id, None)
    if run is None:
        raise NotFound("no finished run with this id")
    asked = query(request, ReportQuery)
    scope = scope_for(principal, asked.county, asked.kindergarten)
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    async for chunk in reporting.report_json(run, scope):
        await response.write(chunk)
    await response.write_eof()
    return response


async def get_report(request: web.Request) -> web.StreamResponse:
    """GET /v1/operator/reconciliations/{run_id} (or latest?entry_year=): the report."""
    principal = await require_operator(request)
    reporting = request.app[USE_CASES].reporting
    if request.match_info["run_id"] == "latest":
        entry_year = query(request, ReportQuery).entry_year
        if entry_year is None:
            raise problem(400, "invalid_parameter", "latest needs entry_year")
        latest = await reporting.finished(None, entry_year)
        if latest is None:
            raise NotFound("no finished run of this cohort yet")
        run_id = latest.run_id
    else:
        run_id = path(request, "run_id", ROW_ID)
    await reporting.opened(run_id, _who(request, principal))
    return await _stream_report(request, principal, run_id)


async def get_items(request: web.Request) -> web.StreamResponse:
    """GET .../{run_id}/items?category=&county=&kindergarten=&new=1&format=csv."""
    principal = await require_operator(request)
    reporting = request.app[USE_CASES].reporting
    run = await reporting.findings.get(path(request, "run_id", ROW_ID))
    if run is None:
        raise NotFound("no run with this id")
    asked = query(request, ItemsQuery)
    scope = scope_for(principal, asked.county, asked.kindergarten)
    categories = [c.value for c in asked.category] or None
    await reporting.exported(run, _who(request, principal), format=asked.format)
    if asked.format == "csv":
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="reconciliation-{run.run_id}.csv"',
        })  # fmt: skip
        await response.prepare(request)
        async for text in reporting.export_csv(
            run, categories=categories, scope=scope, new_only=asked.new, bom=True
        ):
            await response.write(text.encode())
        await response.write_eof()
        return response
    items = await reporting.findings.items(
        run, categories=categories, scope=scope, new_only=asked.new, limit=asked.limit,
        offset=asked.offset,
    )  # fmt: skip
    await request.app[USE_CASES].casework.listed(
        _who(request, principal), "items", [i.student_number for i in items]
    )
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


def _group_out(g: Group) -> dict[str, Any]:
    return {
        "kind": g.kind, "reason": g.reason, "registry_answer": g.answer, "count": g.count,
        "first_seen": g.first_seen.isoformat() if g.first_seen else None,
        "last_seen": g.last_seen.isoformat() if g.last_seen else None,
    }  # fmt: skip


def _retried(result: RetryResult) -> web.Response:
    return web.json_response({"retried": result.retried, "skipped": result.skipped})


async def set_aside_groups(request: web.Request) -> web.Response:
    """GET /v1/operator/set-aside: groups by reason and registry answer (and ?reason= cases)."""
    who = _who(request, await require_operator(request))
    asked = query(request, SetAsideQuery)
    recovery = request.app[USE_CASES].recovery
    out: dict[str, Any] = {"groups": [_group_out(g) for g in await recovery.set_aside_groups(who)]}
    if asked.reason is not None:
        cases = await recovery.set_aside_cases(who, reason=asked.reason, answer=asked.answer)
        out["cases"] = [_case_out(c) for c in cases]
        # Whole numbers: one audit line naming them, as the console's worklist writes.
        await request.app[USE_CASES].casework.listed(
            who, "set_aside", [c.student_number for c in cases]
        )
    return web.json_response(out)


async def retry_set_aside(request: web.Request) -> web.Response:
    """POST /v1/operator/set-aside/retry {"reason", "registry_answer"?} | {"student_number"}."""
    who = _who(request, await require_operator(request))
    asked = body(await request.read(), RetrySetAsideIn)
    group = f"{asked.reason}/{asked.registry_answer or '*'}" if asked.reason else None
    result = await request.app[USE_CASES].recovery.retry_set_aside(
        who, reason=asked.reason, answer=asked.registry_answer,
        student_number=asked.student_number, group_key=group,
    )  # fmt: skip
    return _retried(result)


async def resolve_set_aside(request: web.Request) -> web.Response:
    """POST /v1/operator/set-aside/resolve {"student_number", "note"}."""
    who = _who(request, await require_operator(request))
    asked = body(await request.read(), ResolveSetAsideIn)
    case = await request.app[USE_CASES].recovery.resolve_set_aside(
        who, asked.student_number, asked.note
    )
    if case is None:
        raise NotFound("no open set-aside for this child in your scope")
    return web.json_response({"resolved": case.student_number})


async def parked_groups(request: web.Request) -> web.Response:
    """GET /v1/operator/parked: groups (and ?reason= messages), provincial operators only."""
    await require(request, Role.PROVINCE)
    asked = query(request, ParkedQuery)
    recovery = request.app[USE_CASES].recovery
    out: dict[str, Any] = {"groups": [_group_out(g) for g in await recovery.parked_groups()]}
    if asked.reason is not None:
        out["messages"] = [
            {"id": m.id, "routing_key": m.routing_key, "reason_code": m.reason_code,
             "reason": m.reason, "parked_at": m.parked_at.isoformat()}
            for m in await recovery.parked_messages(asked.reason)
        ]  # fmt: skip
    return web.json_response(out)


async def parked_message(request: web.Request) -> web.Response:
    """GET /v1/operator/parked/{id}: one message, identity fields masked."""
    who = _who(request, await require(request, Role.PROVINCE))
    message = await request.app[USE_CASES].recovery.read_parked(path(request, "id", ROW_ID), who)
    if message is None:
        raise NotFound("no parked message with this id")
    return web.json_response({
        "id": message.id, "message_id": message.message_id, "routing_key": message.routing_key,
        "reason_code": message.reason_code, "reason": message.reason,
        "parked_at": message.parked_at.isoformat(), "retries": message.retries,
        "resolution": message.resolution, "outcome": message.outcome,
        "body": masked_body(message.body),
    })  # fmt: skip


async def retry_parked(request: web.Request) -> web.Response:
    """POST /v1/operator/parked/retry {"reason"} | {"id"}: republish to the events exchange."""
    who = _who(request, await require(request, Role.PROVINCE))
    asked = body(await request.read(), RetryParkedIn)
    result = await request.app[USE_CASES].recovery.retry_parked_messages(
        who, message_id=asked.id, reason=asked.reason if asked.id is None else None,
        group_key=asked.reason,
    )  # fmt: skip
    return _retried(result)


async def resolve_parked(request: web.Request) -> web.Response:
    """POST /v1/operator/parked/{id}/resolve {"note"}."""
    who = _who(request, await require(request, Role.PROVINCE))
    asked = body(await request.read(), ResolveParkedIn)
    done = await request.app[USE_CASES].recovery.resolve_parked_message(
        who, path(request, "id", ROW_ID), asked.note
    )
    if done is None:
        raise NotFound("no parked message with this id")
    return web.json_response({"resolved": done})


async def retries(request: web.Request) -> web.Response:
    """GET /v1/operator/retries: recent retries and what came of them."""
    who = _who(request, await require_operator(request))
    rows = await request.app[USE_CASES].recovery.recent_retries(who)
    return web.json_response({
        "retries": [
            {"at": r["at"].isoformat(), "actor": r["actor"], "kind": r["kind"],
             "target": r["target"], "result": r["result"], "outcome": r["outcome"]}
            for r in rows
        ]
    })  # fmt: skip


def add_operator_routes(app: web.Application) -> None:
    """Register the operators' API."""
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
    # "retry" is the POST beside the ids, not an id: a GET of it is a 405 naming POST.
    r.add_get("/v1/operator/parked/{id:(?!retry$)[^{}/]+}", parked_message)
    r.add_post("/v1/operator/parked/{id}/resolve", resolve_parked)
    r.add_get("/v1/operator/retries", retries)
