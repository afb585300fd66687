"""The operators' console: server-rendered pages that work without JavaScript.

A browser signs in by exchanging an operator token for a session cookie (HttpOnly,
SameSite=Strict; only its hash is kept). Every form that changes something carries the
session's CSRF token. A query or form that cannot be read is answered with a page that
says why (400), never a raw error.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeVar

import jinja2
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bridge.api.chart import category_chart
from bridge.api.keys import USE_CASES
from bridge.api.params import as_fields, errors_of
from bridge.domain.access import Role
from bridge.domain.reconciliation import CATEGORIES, WORKLIST, Category
from bridge.domain.student_number import mask
from bridge.domain.working_days import day_in_china
from bridge.errors import AccessDenied
from bridge.services.acting import Acting
from bridge.services.console_sessions import Session
from bridge.services.ports.reconciliation import RunInfo, Scope
from bridge.services.reconciliation import ReconciliationBusy
from bridge.services.recovery import masked_body
from bridge.services.reports import scope_for
from schemas.operator import (
    ConsoleParkedQuery,
    ConsoleReportQuery,
    ConsoleRunQuery,
    ConsoleWorklistQuery,
    ParkedForm,
    ReconcileForm,
    SetAsideForm,
)

COOKIE = "xueji_console"
PAGE = 100
JINJA = web.AppKey("console_jinja", jinja2.Environment)
M = TypeVar("M", bound=BaseModel)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.api", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["mask"] = mask
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "—"
    env.globals["CATEGORIES"] = CATEGORIES
    return env


def _page(request: web.Request, name: str, context: Mapping[str, Any]) -> str:
    return request.app[JINJA].get_template(name).render(**context)


_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'",
}  # fmt: skip


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page; HTML pages are never cached (they show children's data)."""
    return web.Response(
        text=_page(request, name, context), status=status, content_type="text/html",
        charset="utf-8", headers=_HEADERS,
    )  # fmt: skip


def refused(
    request: web.Request, session: Session, status: int, message: str, **context: Any
) -> web.HTTPException:
    """A page that says why the request was refused, to raise."""
    heading = "请求有误 Cannot do that" if status == 400 else "无权访问 Not allowed"
    html = _page(
        request, "refused.html",
        {"principal": session.principal, "csrf": session.csrf, "heading": heading,
         "message": message, "page": None, **context},
    )  # fmt: skip
    exc = web.HTTPException(text=html, content_type="text/html", headers=_HEADERS)
    exc.set_status(status)
    return exc


def read(request: web.Request, session: Session, model: type[M], values: Any = None) -> M:
    """The query string (or a form's *values*) as *model*; a page saying what is wrong."""
    try:
        return model.model_validate(as_fields(request.query, model) if values is None else values)
    except ValidationError as exc:
        raise refused(
            request, session, 400, "参数有误 Some values cannot be read.", errors=errors_of(exc)
        ) from None


def who(request: web.Request, session: Session) -> Acting:
    """The signed-in operator, for the audit log."""
    return Acting.by(session.principal, request.remote)


def scope(
    request: web.Request, session: Session, county: str | None, kindergarten: str | None
) -> Scope:
    """The operator's scope narrowed by the filters (a county sees its own only)."""
    try:
        return scope_for(session.principal, county, kindergarten)
    except AccessDenied as exc:
        raise refused(request, session, 403, str(exc)) from None


async def session(request: web.Request) -> Session:
    """The signed-in operator, or a redirect to the login page."""
    found = await request.app[USE_CASES].console.session(request.cookies.get(COOKIE))
    if found is None:
        raise web.HTTPSeeOther("/console/login")
    return found


async def checked_form(request: web.Request) -> tuple[Session, dict[str, str]]:
    """A POSTed form of the signed-in operator, after its CSRF token is checked."""
    signed_in = await session(request)
    form = await request.post()
    sent = str(form.get("csrf", ""))
    if not hmac.compare_digest(sent.encode(), signed_in.csrf.encode()):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return signed_in, {k: str(v) for k, v in form.items()}


async def login_page(request: web.Request) -> web.Response:
    """GET /console/login."""
    return render(request, "login.html", error=None)


async def login(request: web.Request) -> web.Response:
    """POST /console/login: token → session cookie."""
    form = await request.post()
    try:
        opened = await request.app[USE_CASES].console.sign_in(
            str(form.get("token", "")).strip(), request.remote
        )
    except AccessDenied as exc:
        return render(request, "login.html", status=exc.status, error=str(exc))
    response = web.HTTPSeeOther("/console/")
    response.set_cookie(
        COOKIE, opened.secret, httponly=True, samesite="Strict", secure=request.secure,
        path="/console", max_age=int(opened.lifetime_s),
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.Response:
    """POST /console/logout."""
    await checked_form(request)
    await request.app[USE_CASES].console.sign_out(request.cookies.get(COOKIE, ""))
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console")
    raise response


async def _year_and_run(
    request: web.Request, asked: ConsoleRunQuery
) -> tuple[int, RunInfo | None, list[int]]:
    use_cases = request.app[USE_CASES]
    findings = use_cases.reporting.findings
    years = await findings.entry_years()
    year = asked.entry_year or (years[0] if years else day_in_china(use_cases.clock.now()).year)
    run = await use_cases.reporting.finished(asked.run_id, None) if asked.run_id else None
    if run is None:
        run = await findings.latest(year)
    return year, run, years


async def overview(request: web.Request) -> web.Response:
    """GET /console/: the cohort at a glance, with categories over recent runs."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleRunQuery)
    use_cases = request.app[USE_CASES]
    findings = use_cases.reporting.findings
    year, run, years = await _year_and_run(request, asked)
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    counts = await findings.counts(run, where) if run else {}
    history = await findings.history(year)
    groups = await use_cases.recovery.set_aside_groups(
        who(request, signed_in), county=where.county_code
    )
    return render(
        request, "overview.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, counts=counts, chart=category_chart(history),
        page="overview", worklist=sorted(WORKLIST), set_aside=groups,
    )  # fmt: skip


async def report(request: web.Request) -> web.Response:
    """GET /console/report: a run's findings with filters."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleReportQuery)
    findings = request.app[USE_CASES].reporting.findings
    year, run, years = await _year_and_run(request, asked)
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    category = asked.category.value if asked.category else None
    page_no = asked.page or 0
    items, counts, changes = [], {}, {}
    if run is not None:
        items = await findings.items(
            run, categories=[category] if category else None, scope=where,
            new_only=asked.new, limit=PAGE, offset=page_no * PAGE,
        )  # fmt: skip
        counts = await findings.counts(run, where)
        changes = await findings.changes(run, where)
    return render(
        request, "report.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, items=items, counts=counts, changes=changes,
        category=category, new_only=asked.new, scope=where, page_no=page_no,
        more=len(items) == PAGE, page="report", title="对账报告 Reconciliation report",
    )  # fmt: skip


async def lost(request: web.Request) -> web.Response:
    """GET /console/lost: the lost-child list (not_arrived)."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleRunQuery)
    findings = request.app[USE_CASES].reporting.findings
    year, run, years = await _year_and_run(request, asked)
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    items = (
        await findings.items(run, categories=[Category.NOT_ARRIVED.value], scope=where, limit=1000)
        if run
        else []
    )
    return render(
        request, "report.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, items=items, counts={}, changes={},
        category=Category.NOT_ARRIVED.value, new_only=False, scope=where, page_no=0,
        more=False, page="lost", title="未报到名单 Lost-child list",
    )  # fmt: skip


async def worklist(request: web.Request) -> web.Response:
    """GET /console/worklist: set-aside hand-overs by group, with retry and resolve."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleWorklistQuery)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    cases = (
        await recovery.set_aside_cases(acting, reason=asked.reason, answer=asked.answer)
        if asked.reason
        else []
    )
    return render(
        request, "worklist.html", principal=signed_in.principal, csrf=signed_in.csrf,
        page="worklist", groups=await recovery.set_aside_groups(acting), cases=cases,
        reason=asked.reason, answer=asked.answer,
        retries=await recovery.recent_retries(acting, kind="handoff", limit=20),
    )  # fmt: skip


async def parked(request: web.Request) -> web.Response:
    """GET /console/parked: parked messages by reason (provincial operators)."""
    signed_in = await session(request)
    if signed_in.principal.role is not Role.PROVINCE:
        return render(request, "denied.html", status=403, principal=signed_in.principal,
                      csrf=signed_in.csrf, page="parked")  # fmt: skip
    asked = read(request, signed_in, ConsoleParkedQuery)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    message = await recovery.read_parked(asked.id, acting) if asked.id else None
    return render(
        request, "parked.html", principal=signed_in.principal, csrf=signed_in.csrf,
        page="parked", groups=await recovery.parked_groups(), reason=asked.reason,
        messages=await recovery.parked_messages(asked.reason) if asked.reason else [],
        message=message, body=masked_body(message.body) if message else "",
        retries=await recovery.recent_retries(acting, kind="parked_message", limit=20),
    )  # fmt: skip


async def post_reconcile(request: web.Request) -> web.Response:
    """POST /console/reconcile: run one now."""
    signed_in, form = await checked_form(request)
    year = read(request, signed_in, ReconcileForm, form).entry_year
    try:
        run = await request.app[USE_CASES].reporting.reconcile(
            year, trigger="console", who=who(request, signed_in)
        )
    except ReconciliationBusy:
        raise web.HTTPSeeOther(f"/console/report?entry_year={year}&busy=1") from None
    raise web.HTTPSeeOther(f"/console/report?entry_year={year}&run_id={run.run_id}")


async def post_set_aside(request: web.Request) -> web.Response:
    """POST /console/set-aside: retry a group or one child, or resolve one with a note."""
    signed_in, form = await checked_form(request)
    asked = read(request, signed_in, SetAsideForm, form)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    if asked.action == "resolve":
        if asked.student_number and asked.note:
            await recovery.resolve_set_aside(acting, asked.student_number, asked.note)
    else:
        await recovery.retry_set_aside(
            acting, reason=asked.reason, answer=asked.answer,
            student_number=asked.student_number, group_key=f"{asked.reason}/{asked.answer}",
        )  # fmt: skip
    raise web.HTTPSeeOther("/console/worklist")


async def post_parked(request: web.Request) -> web.Response:
    """POST /console/parked: retry a group or one message, or resolve one with a note."""
    signed_in, form = await checked_form(request)
    if signed_in.principal.role is not Role.PROVINCE:
        raise web.HTTPForbidden(text="provincial operators only")
    asked = read(request, signed_in, ParkedForm, form)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    if asked.action == "resolve":
        if asked.id is not None and asked.note:
            await recovery.resolve_parked_message(acting, asked.id, asked.note)
    else:
        await recovery.retry_parked_messages(
            acting, message_id=asked.id, reason=asked.reason, group_key=asked.reason
        )
    raise web.HTTPSeeOther("/console/parked")


async def export(request: web.Request) -> web.StreamResponse:
    """GET /console/export.csv: any list, de-identified."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleReportQuery)
    reporting = request.app[USE_CASES].reporting
    _year, run, _years = await _year_and_run(request, asked)
    if run is None:
        raise web.HTTPNotFound(text="no finished run")
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    category = asked.category.value if asked.category else None
    await reporting.exported(run, who(request, signed_in), format="csv", category=category or "")
    stamp = dt.date.today().isoformat()
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="xueji-{category or "all"}-{stamp}.csv"',
    })  # fmt: skip
    await response.prepare(request)
    async for text in reporting.export_csv(
        run, categories=[category] if category else None, scope=where, new_only=asked.new
    ):
        await response.write(text.encode())
    await response.write_eof()
    return response


async def stylesheet(request: web.Request) -> web.Response:
    """GET /console/static/console.css (no CDN: the data centre has no internet)."""
    css = (resources.files("bridge.api") / "static" / "console.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "max-age=300"})


def add_console(app: web.Application) -> None:
    """Register the console's pages."""
    app[JINJA] = _env()
    r = app.router
    r.add_get("/console/login", login_page)
    r.add_post("/console/login", login)
    r.add_post("/console/logout", logout)
    r.add_get("/console/", overview)
    r.add_get("/console", overview)
    r.add_get("/console/report", report)
    r.add_get("/console/lost", lost)
    r.add_get("/console/worklist", worklist)
    r.add_get("/console/parked", parked)
    r.add_get("/console/export.csv", export)
    r.add_post("/console/reconcile", post_reconcile)
    r.add_post("/console/set-aside", post_set_aside)
    r.add_post("/console/parked", post_parked)
    r.add_get("/console/static/console.css", stylesheet)
