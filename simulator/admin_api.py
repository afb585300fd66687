"""Test and demo controls under `/_sim` (no token, loopback only, never faulted)."""

from __future__ import annotations

from aiohttp import web

from simulator import db
from simulator import preschool_service as pre
from simulator import registry_service as reg
from simulator.paging import parse_year
from simulator.responses import error, invalid, json_response, read_json
from simulator.runtime import runtime
from simulator.validation import Errors, check_school_code

PREFIX = "/_sim"
MAX_SEED_BATCH = 10_000


async def get_faults(request: web.Request) -> web.Response:
    """`GET /_sim/faults`: the current fault settings."""
    return json_response(runtime(request).faults.as_json())


async def put_faults(request: web.Request) -> web.Response:
    """`PUT /_sim/faults`: replace the fault settings (missing keys mean no fault)."""
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = runtime(request).faults.configure(body)
    if errors:
        return invalid(errors)
    return json_response(runtime(request).faults.as_json())


async def post_children(request: web.Request) -> web.Response:
    """`POST /_sim/preschool/children`: seed children (a list or `{"children": [...]}`)."""
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    items = body.get("children") if isinstance(body, dict) else body
    if not isinstance(items, list) or len(items) > MAX_SEED_BATCH:
        return invalid([{"field": "children", "message": f"a list of at most {MAX_SEED_BATCH}"}])
    errors: Errors = []
    for i, item in enumerate(items):
        errors.extend(pre.check_seed_item(f"children[{i}]", item))
    if errors:
        return invalid(errors)
    rt = runtime(request)
    answers = await pre.seed_children(rt.pool, items, rt.public_url)
    return json_response({"children": answers})


async def patch_child(request: web.Request) -> web.Response:
    """`PATCH /_sim/preschool/children/{n}`: change state, childseq, number, id, year."""
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors = pre.check_child_patch(body)
    if errors:
        return invalid(errors)
    item = await pre.patch_child(runtime(request).pool, request.match_info["student_number"], body)
    if item is None:
        return error(404, "not_found", "no such child, or the new number is taken")
    return json_response(item)


async def get_dump(request: web.Request) -> web.Response:
    """`GET /_sim/registry/dump?entry_year=`: every registration with full data."""
    raw = request.query.get("entry_year")
    year = None if raw is None else parse_year(raw)
    if raw is not None and year is None:
        return invalid([{"field": "entry_year", "message": "must be a year"}])
    return json_response({"students": await reg.dump(runtime(request).pool, year)})


async def delete_student(request: web.Request) -> web.Response:
    """`DELETE /_sim/registry/students/{n}`: make a registration vanish entirely."""
    if await reg.vanish(runtime(request).pool, request.match_info["student_number"]):
        return web.Response(status=204)
    return error(404, "not_registered", "no registration under this number")


async def post_admit(request: web.Request) -> web.Response:
    """`POST /_sim/registry/students/{n}/admit` `{"school_code"}`: set the admitting school."""
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    errors: Errors = []
    check_school_code(
        errors, "school_code", body.get("school_code") if isinstance(body, dict) else None,
        nullable=False,
    )  # fmt: skip
    if errors:
        return invalid(errors)
    answer = await reg.admit(
        runtime(request).pool, request.match_info["student_number"], body["school_code"]
    )
    return answer.to_response()


async def get_stats(request: web.Request) -> web.Response:
    """`GET /_sim/stats`: request counts by endpoint and status, injected faults."""
    return json_response(runtime(request).stats.as_json())


async def post_reset(request: web.Request) -> web.Response:
    """`POST /_sim/reset`: wipe all state, counters and fault settings."""
    rt = runtime(request)
    await db.wipe(rt.pool)
    rt.stats.reset()
    rt.faults.configure({})
    return web.Response(status=204)


async def get_health(request: web.Request) -> web.Response:
    """`GET /_sim/health`: 200 once the database answers."""
    await runtime(request).pool.fetchval("SELECT 1")
    return json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    """Mount the admin endpoints under `/_sim`."""
    app.router.add_get(PREFIX + "/faults", get_faults)
    app.router.add_put(PREFIX + "/faults", put_faults)
    app.router.add_post(PREFIX + "/preschool/children", post_children)
    app.router.add_patch(PREFIX + "/preschool/children/{student_number}", patch_child)
    app.router.add_get(PREFIX + "/registry/dump", get_dump)
    app.router.add_delete(PREFIX + "/registry/students/{student_number}", delete_student)
    app.router.add_post(PREFIX + "/registry/students/{student_number}/admit", post_admit)
    app.router.add_get(PREFIX + "/stats", get_stats)
    app.router.add_post(PREFIX + "/reset", post_reset)
    app.router.add_get(PREFIX + "/health", get_health)
