"""The school API's views: children handed over, one child's summary, arrival reports.

Each view reads the request into its model, calls a use case, and writes its answer; a
bad token or a school out of scope is said before what is wrong with the question.
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from bridge.api.auth import admit, authenticate, bearer, checked_at, remote_of, require
from bridge.api.keys import USE_CASES
from bridge.api.params import body, query
from bridge.api.problems import problem
from bridge.api.school_bodies import accepted, json_body, page_of, summary, unchanged
from bridge.domain.access import Principal, Role
from bridge.errors import NotFound, OutOfScope
from bridge.services.arrivals import ArrivalOutcome
from bridge.services.ports.schools import ListQuery
from schemas.api import ArrivalIn, HandoffListQuery, NoQuery

SCHOOL_FORM = re.compile(r"[0-9]{10}")  # fullmatch: no "$" a trailing newline slips past
# `as_of` lags the database's clock so that a change committed a little after it was
# stamped is still ahead of the next poll's `since`: ledger transactions last milliseconds.
SINCE_OVERLAP = dt.timedelta(seconds=60)
ARRIVAL_SHAPE = 'the body must be {"arrived_on": "YYYY-MM-DD"}'


def school_in_scope(principal: Principal, school_code: str) -> None:
    """A school token reaches its own school's lists only (NotFound, like a school that
    does not exist); operators are filtered by their scope."""
    if not SCHOOL_FORM.fullmatch(school_code):
        raise NotFound()
    if not principal.may_list(school_code):
        raise OutOfScope()  # answered as NotFound; audited as a refused attempt


async def list_handoffs(request: web.Request) -> web.Response:
    """`GET /v1/schools/{school_code}/handoffs`."""
    presented = bearer(request)
    school_code = request.match_info["school_code"]
    try:
        if not SCHOOL_FORM.fullmatch(school_code):
            raise NotFound()
        asked = query(request, HandoffListQuery)
    except (web.HTTPException, NotFound):
        # A bad token or a school out of scope is said first, as on every endpoint.
        school_in_scope(await authenticate(request), school_code)
        raise
    children = request.app[USE_CASES].children
    found = await children.page(
        presented,
        ListQuery(school_code, asked.entry_year, asked.state, asked.since, asked.cursor,
                  asked.limit),
    )  # fmt: skip
    principal = await admit(request, found.token, presented)
    school_in_scope(principal, school_code)
    # The token was checked in the statement that read the list: its clock is a safe as_of.
    page, shown = page_of(
        principal, found.children, asked.limit, checked_at(request) - SINCE_OVERLAP
    )
    response = json_body(page)
    await children.listed(principal, school_code, shown, remote_of(request))
    return response


async def get_handoff(request: web.Request) -> web.Response:
    """`GET /v1/handoffs/{student_number}`."""
    principal = await authenticate(request)
    children, remote = request.app[USE_CASES].children, remote_of(request)
    number = request.match_info["student_number"]
    child = await children.find(principal, number, action="handoff.read", remote=remote)
    query(request, NoQuery)
    await children.shown(principal, child, remote)
    return json_body(summary(principal, child))


async def report_arrival(request: web.Request) -> web.Response:
    """`POST /v1/handoffs/{student_number}/arrival`: schools only, for their own children."""
    principal = await require(request, Role.SCHOOL)
    use_cases, remote = request.app[USE_CASES], remote_of(request)
    number = request.match_info["student_number"]
    child = await use_cases.children.find(principal, number, action="arrival.report", remote=remote)
    query(request, NoQuery)
    if request.content_type != "application/json":
        raise problem(415, "unsupported_media_type", "send the body as application/json")
    try:
        report = body(await request.read(), ArrivalIn, expected=ARRIVAL_SHAPE)
    except web.HTTPException:
        await use_cases.arrivals.refused(principal, child, remote)
        raise
    outcome = await use_cases.arrivals.report(principal, child, report.arrived_on, remote)
    if outcome is ArrivalOutcome.UNCHANGED:
        return json_body(unchanged(child))
    return json_body(accepted(child, report.arrived_on), status=202)


def add_school_routes(app: web.Application) -> None:
    """Register the school endpoints of this module (lists, summaries, arrivals)."""
    app.router.add_get("/v1/schools/{school_code}/handoffs", list_handoffs)
    app.router.add_get("/v1/handoffs/{student_number}", get_handoff)
    app.router.add_post("/v1/handoffs/{student_number}/arrival", report_arrival)
