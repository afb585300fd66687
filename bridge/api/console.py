"""The operators' console: server-rendered pages that work without JavaScript.

A browser signs in by exchanging an operator token for a session cookie (HttpOnly,
SameSite=Strict; only its hash is stored). Every form that changes something carries
the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from bridge.adapters.postgres.reconciliation_store import RunInfo
from bridge.api.chart import category_chart
from bridge.api.operator import OPS, scope_for
from bridge.domain.access import Principal, Role
from bridge.domain.reconciliation import CATEGORIES, WORKLIST, Category
from bridge.domain.student_number import mask
from bridge.errors import AccessDenied
from bridge.services.reconciliation import ReconciliationBusy, today_in_china
from bridge.services.recovery import masked_body
from bridge.services.reports import export_csv

COOKIE = "xueji_console"
PAGE = 100
JINJA = web.AppKey("console_jinja", jinja2.Environment)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.api", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["mask"] = mask
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "—"
    env.globals["CATEGORIES"] = CATEGORIES
    return env


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page; HTML pages are never cached (they show children's data)."""
    html = request.app[JINJA].get_template(name).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "default-src 'self'; style-src 'self'"},
    )  # fmt: skip


async def session(request: web.Request) -> tuple[Principal, str]:
    """(principal, csrf token) of the signed-in operator, or a redirect to the login page."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        row = await request.app[OPS].pool.fetchrow(
            "SELECT s.csrf_token, t.* FROM console_sessions s JOIN api_tokens t USING (token_id)"
            " WHERE s.session_hash = $1 AND s.expires_at > now()"
            " AND t.revoked_at IS NULL AND t.sealed_at IS NULL",
            _hash(cookie),
        )
        if row is not None and row["role"] in (Role.COUNTY.value, Role.PROVINCE.value):
            principal = Principal(row["token_id"], Role(row["role"]), None, row["county_code"])
            return principal, row["csrf_token"]
    raise web.HTTPSeeOther("/console/login")


async def checked_form(request: web.Request) -> tuple[Principal, Mapping[str, str]]:
    """A POSTed form of the signed-in operator, after its CSRF token is checked."""
    principal, csrf = await session(request)
    form = await request.post()
    sent = str(form.get("csrf", ""))
    if not hmac.compare_digest(sent.encode(), csrf.encode()):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return principal, {k: str(v) for k, v in form.items()}


async def login_page(request: web.Request) -> web.Response:
    """GET /console/login."""
    return render(request, "login.html", error=None)


async def login(request: web.Request) -> web.Response:
    """POST /console/login: token → session cookie."""
    ops = request.app[OPS]
    form = await request.post()
    try:
        principal = await ops.tokens.authenticate(str(form.get("token", "")).strip())
    except AccessDenied as exc:
        return render(request, "login.html", status=401, error=str(exc))
    if not principal.is_operator:
        return render(request, "login.html", status=403, error="only operators may sign in")
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    hours = ops.settings.console_session_hours
    await ops.pool.execute(
        "INSERT INTO console_sessions (session_hash, token_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        _hash(secret), principal.token_id, csrf, hours * 3600,
    )  # fmt: skip
    await ops.audit.record(
        action="console.login", outcome="ok", principal=principal, remote=request.remote
    )
    response = web.HTTPSeeOther("/console/")
    response.set_cookie(
        COOKIE, secret, httponly=True, samesite="Strict", secure=request.secure,
        path="/console", max_age=int(hours * 3600),
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.Response:
    """POST /console/logout."""
    _principal, _form = await checked_form(request)
    cookie = request.cookies.get(COOKIE, "")
    await request.app[OPS].pool.execute(
        "DELETE FROM console_sessions WHERE session_hash = $1", _hash(cookie)
    )
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console")
    raise response


async def _year_and_run(request: web.Request) -> tuple[int, RunInfo | None, list[int]]:
    ops = request.app[OPS]
    years = await ops.runs.entry_years()
    raw = request.query.get("entry_year")
    year = int(raw) if raw and raw.isdigit() else (years[0] if years else today_in_china().year)
    run_id = request.query.get("run_id")
    run = await ops.runs.get(int(run_id)) if run_id and run_id.isdigit() else None
    if run is None or run.status != "finished":
        run = await ops.runs.latest(year)
    return year, run, years


async def overview(request: web.Request) -> web.Response:
    """GET /console/: the cohort at a glance, with categories over recent runs."""
    principal, csrf = await session(request)
    ops = request.app[OPS]
    year, run, years = await _year_and_run(request)
    scope = scope_for(principal, request.query)
    counts = await ops.runs.counts(run, scope) if run else {}
    history = await ops.runs.history(year)
    return render(
        request, "overview.html", principal=principal, csrf=csrf, year=year, years=years,
        run=run, counts=counts, chart=category_chart(history), page="overview",
        worklist=sorted(WORKLIST), set_aside=await ops.recovery_store.set_aside_groups(
            scope.county_code),
    )  # fmt: skip


async def report(request: web.Request) -> web.Response:
    """GET /console/report: a run's findings with filters."""
    principal, csrf = await session(request)
    ops = request.app[OPS]
    year, run, years = await _year_and_run(request)
    scope = scope_for(principal, request.query)
    category = request.query.get("category") or None
    new_only = request.query.get("new") == "1"
    page = int(request.query.get("page", "0") or 0)
    items, counts, changes = [], {}, {}
    if run is not None:
        items = await ops.runs.items(
            run, categories=[category] if category else None, scope=scope, new_only=new_only,
            limit=PAGE, offset=page * PAGE,
        )  # fmt: skip
        counts = await ops.runs.counts(run, scope)
        changes = await ops.runs.changes(run, scope)
    return render(
        request, "report.html", principal=principal, csrf=csrf, year=year, years=years,
        run=run, items=items, counts=counts, changes=changes, category=category,
        new_only=new_only, scope=scope, page_no=page, more=len(items) == PAGE, page="report",
        title="对账报告 Reconciliation report",
    )  # fmt: skip


async def lost(request: web.Request) -> web.Response:
    """GET /console/lost: the lost-child list (not_arrived)."""
    principal, csrf = await session(request)
    ops = request.app[OPS]
    year, run, years = await _year_and_run(request)
    scope = scope_for(principal, request.query)
    items = (
        await ops.runs.items(run, categories=[Category.NOT_ARRIVED.value], scope=scope, limit=1000)
        if run
        else []
    )
    return render(
        request, "report.html", principal=principal, csrf=csrf, year=year, years=years,
        run=run, items=items, counts={}, changes={}, category=Category.NOT_ARRIVED.value,
        new_only=False, scope=scope, page_no=0, more=False, page="lost",
        title="未报到名单 Lost-child list",
    )  # fmt: skip


async def worklist(request: web.Request) -> web.Response:
    """GET /console/worklist: set-aside hand-overs by group, with retry and resolve."""
    principal, csrf = await session(request)
    store = request.app[OPS].recovery_store
    county = principal.county_code if principal.role is Role.COUNTY else None
    reason = request.query.get("reason")
    cases = (
        await store.set_aside_cases(county, reason=reason, answer=request.query.get("answer"))
        if reason
        else []
    )
    retries = [r for r in await store.recent_retries(20) if r["kind"] == "handoff"]
    return render(
        request, "worklist.html", principal=principal, csrf=csrf, page="worklist",
        groups=await store.set_aside_groups(county), cases=cases, reason=reason,
        answer=request.query.get("answer"), retries=retries,
    )  # fmt: skip


async def parked(request: web.Request) -> web.Response:
    """GET /console/parked: parked messages by reason (provincial operators)."""
    principal, csrf = await session(request)
    store = request.app[OPS].recovery_store
    if principal.role is not Role.PROVINCE:
        return render(request, "denied.html", status=403, principal=principal, csrf=csrf,
                      page="parked")  # fmt: skip
    reason = request.query.get("reason")
    one = request.query.get("id")
    message = await store.parked_message(int(one)) if one and one.isdigit() else None
    return render(
        request, "parked.html", principal=principal, csrf=csrf, page="parked",
        groups=await store.parked_groups(), reason=reason,
        messages=await store.parked_messages(reason_code=reason) if reason else [],
        message=message, body=masked_body(message.body) if message else "",
        retries=[r for r in await store.recent_retries(20) if r["kind"] == "parked_message"],
    )  # fmt: skip


async def post_reconcile(request: web.Request) -> web.Response:
    """POST /console/reconcile: run one now."""
    principal, form = await checked_form(request)
    ops = request.app[OPS]
    year = int(form.get("entry_year", "0") or 0)
    try:
        run = await ops.reconciler.run(year, trigger="console", actor=principal.token_id)
    except ReconciliationBusy:
        raise web.HTTPSeeOther(f"/console/report?entry_year={year}&busy=1") from None
    raise web.HTTPSeeOther(f"/console/report?entry_year={year}&run_id={run.run_id}")


async def post_set_aside(request: web.Request) -> web.Response:
    """POST /console/set-aside: retry a group or one child, or resolve one with a note."""
    principal, form = await checked_form(request)
    ops = request.app[OPS]
    county = principal.county_code if principal.role is Role.COUNTY else None
    reason, answer = form.get("reason") or None, form.get("answer")
    number = form.get("student_number") or None
    cases = await ops.recovery_store.set_aside_cases(
        county, reason=reason, answer=answer if answer is not None else None, student_number=number
    )
    if form.get("action") == "resolve" and cases and form.get("note", "").strip():
        await ops.recovery.resolve_handoff(
            cases[0], form["note"].strip(), principal, principal.token_id, remote=request.remote
        )
    elif form.get("action") == "retry":
        await ops.recovery.retry_handoffs(
            cases, principal, principal.token_id, group_key=f"{reason}/{answer}",
            remote=request.remote,
        )  # fmt: skip
    raise web.HTTPSeeOther("/console/worklist")


async def post_parked(request: web.Request) -> web.Response:
    """POST /console/parked: retry a group or one message, or resolve one with a note."""
    principal, form = await checked_form(request)
    if principal.role is not Role.PROVINCE:
        raise web.HTTPForbidden(text="provincial operators only")
    ops = request.app[OPS]
    store = ops.recovery_store
    one = form.get("id", "")
    message = await store.parked_message(int(one)) if one.isdigit() else None
    if form.get("action") == "resolve" and message and form.get("note", "").strip():
        await ops.recovery.resolve_parked(
            message, form["note"].strip(), principal, principal.token_id, remote=request.remote
        )
    elif form.get("action") == "retry":
        messages = (
            [message]
            if message and message.resolved_at is None
            else await store.parked_messages(reason_code=form.get("reason") or "-")
            if not message
            else []
        )
        await ops.recovery.retry_parked(
            messages, principal, principal.token_id, group_key=form.get("reason"),
            remote=request.remote,
        )  # fmt: skip
    raise web.HTTPSeeOther("/console/parked")


async def export(request: web.Request) -> web.StreamResponse:
    """GET /console/export.csv: any list, de-identified."""
    principal, _csrf = await session(request)
    ops = request.app[OPS]
    _year, run, _years = await _year_and_run(request)
    if run is None:
        raise web.HTTPNotFound(text="no finished run")
    scope = scope_for(principal, request.query)
    category = request.query.get("category")
    await ops.audit.record(
        action="reconcile.export", outcome="ok", principal=principal, remote=request.remote,
        detail={"run_id": run.run_id, "format": "csv", "category": category or ""},
    )  # fmt: skip
    stamp = dt.date.today().isoformat()
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="xueji-{category or "all"}-{stamp}.csv"',
    })  # fmt: skip
    await response.prepare(request)
    async for text in export_csv(
        ops.runs, ops.pool, run, categories=[category] if category else None, scope=scope,
        new_only=request.query.get("new") == "1",
    ):  # fmt: skip
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
