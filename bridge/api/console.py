"""The operators' console: server-rendered pages that work without JavaScript.

A browser signs in by exchanging an operator token for a session cookie (HttpOnly,
SameSite=Strict; only its hash is kept). Every form that changes something carries the
session's CSRF token. A query or form that cannot be read is answered with a page that
says why (400), never a raw error.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import jinja2
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bridge.api.chart import category_chart
from bridge.api.keys import USE_CASES
from bridge.api.params import as_fields, errors_of
from bridge.api.problems import status_of
from bridge.domain.access import Role
from bridge.domain.handoff import Phase
from bridge.domain.reconciliation import CATEGORIES, WORKLIST
from bridge.domain.student_number import mask
from bridge.domain.wording import (
    CATEGORY_WORDING,
    DETAIL_LABELS,
    PARKED_ADVICE,
    china_time,
    say,
    waited,
)
from bridge.domain.working_days import day_in_china
from bridge.errors import AccessDenied, BridgeError
from bridge.failures import log_failure
from bridge.services.acting import Acting
from bridge.services.casework import LOST
from bridge.services.console_sessions import Session
from bridge.services.ports.reconciliation import RunInfo, Scope
from bridge.services.reconciliation import ReconciliationBusy
from bridge.services.recovery import masked_body
from bridge.services.refusals import Refusal
from bridge.services.reports import scope_for
from schemas.operator import (
    ConsoleLostQuery,
    ConsoleParkedQuery,
    ConsoleReportQuery,
    ConsoleRunQuery,
    ConsoleWorklistQuery,
    FlashQuery,
    ParkedForm,
    ReconcileForm,
    SetAsideForm,
    StudentNumberPath,
)

log = logging.getLogger(__name__)
COOKIE = "xueji_console"
PAGE = 100
LOST_PAGE = 50
JINJA = web.AppKey("console_jinja", jinja2.Environment)
M = TypeVar("M", bound=BaseModel)


class _ChildPath(BaseModel):
    n: StudentNumberPath


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.api", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["mask"] = mask
    env.filters["when"] = china_time
    env.filters["waited"] = waited
    env.filters["outcome"] = retry_outcome
    env.filters["short"] = shortened
    env.filters["when_text"] = when_text
    env.globals.update(
        CATEGORIES=CATEGORIES, WORDING=CATEGORY_WORDING, DETAIL=DETAIL_LABELS, say=say,
        qs=query_string, PARKED_ADVICE=PARKED_ADVICE,
    )  # fmt: skip
    return env


def when_text(value: str | None) -> str:
    """An RFC 3339 time as text (an event's own), in China time; else as it came."""
    if not value:
        return "—"
    try:
        return china_time(dt.datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # a year 1 or 9999 instant has no China day
        return value


def shortened(value: object) -> str:
    """A digest or other long token cut to what tells it apart (the case page has it)."""
    text = str(value)
    return text[:12] + "…" if len(text) > 24 and " " not in text else text


def retry_outcome(outcome: str | None) -> str:
    """What came of a retry so far, in words."""
    if not outcome:
        return "—"
    if outcome.startswith("set_aside_again:"):
        reason = say("set_aside", outcome.split(":", 1)[1])
        return f"再次搁置 set aside again: {reason.zh}"
    return say("phase", outcome).both if outcome in {p.value for p in Phase} else outcome


def query_string(**params: object) -> str:
    """A query string of the non-empty *params* (filters carried by every link)."""
    kept = {k: v for k, v in params.items() if not (v is None or v is False or v == "")}
    return urlencode({k: (1 if v is True else v) for k, v in kept.items()})


def flash_of(request: web.Request) -> FlashQuery | None:
    """What the last action did, if the redirect to this page says (else nothing)."""
    try:
        return FlashQuery.model_validate(as_fields(request.query, FlashQuery))
    except ValidationError:
        return None


def _page(request: web.Request, name: str, context: Mapping[str, Any]) -> str:
    return request.app[JINJA].get_template(name).render(**context)


_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'",
}  # fmt: skip


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page; HTML pages are never cached (they show children's data)."""
    context = {"flash": flash_of(request), **context}
    return web.Response(
        text=_page(request, name, context), status=status, content_type="text/html",
        charset="utf-8", headers=_HEADERS,
    )  # fmt: skip


def refused(
    request: web.Request, session: Session, status: int, message: str, **context: Any
) -> web.HTTPException:
    """A page that says why the request was refused, to raise."""
    heading = {
        400: "请求有误 Cannot do that", 404: "找不到 Not found",
    }.get(status, "无权访问 Not allowed (403)")  # fmt: skip
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
            request, session, 400, "参数有误 Some values cannot be read.", errors=explained(exc)
        ) from None


# What each kind of refusal means, said first in Chinese (pydantic's own text follows).
_ERRORS_ZH = {
    "missing": "缺少该项", "literal_error": "不是允许的取值之一", "enum": "不是允许的取值之一",
    "string_pattern_mismatch": "格式不对", "value_error": "格式不对", "int_parsing": "不是整数",
    "int_type": "不是整数", "greater_than_equal": "太小", "less_than_equal": "太大",
    "string_too_long": "太长", "string_too_short": "不能为空", "extra_forbidden": "不接受该参数",
    "string_type": "不是文字",
}  # fmt: skip


def explained(exc: ValidationError) -> list[dict[str, str]]:
    """Where and what, Chinese first, never the input itself."""
    kinds = [e["type"] for e in exc.errors(include_input=False, include_url=False)]
    return [
        {"loc": e["loc"] or "—", "msg": f"{_ERRORS_ZH.get(kind, '取值无效')}（{e['msg']}）"}
        for e, kind in zip(errors_of(exc), kinds, strict=True)
    ]


def who(request: web.Request, session: Session) -> Acting:
    """The signed-in operator, for the audit log."""
    return Acting.by(session.principal, request.remote)


def scope(
    request: web.Request, session: Session, county: str | None, kindergarten: str | None
) -> Scope:
    """The operator's scope narrowed by the filters (a county sees its own only)."""
    try:
        return scope_for(session.principal, county, kindergarten)
    except AccessDenied:
        raise refused(
            request, session, 403,
            f"县级运维只能查看本县（{session.principal.county_code}）的儿童。"
            " A county operator sees only their own county's children.",
        ) from None  # fmt: skip


async def session(request: web.Request) -> Session:
    """The signed-in operator, or a redirect to the login page."""
    found = await request.app[USE_CASES].console.session(request.cookies.get(COOKIE))
    if found is None:
        raise web.HTTPSeeOther("/console/login")
    return found


async def checked_form(request: web.Request) -> tuple[Session, dict[str, str]]:
    """A POSTed form of the signed-in operator, after its CSRF token is checked."""
    signed_in = await session(request)
    form = await form_of(request)
    sent = form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), signed_in.csrf.encode()):
        raise refused(
            request, signed_in, 403,
            "表单已过期或不是从本控制台提交的，请返回页面重新操作。"
            " The form's CSRF token is missing or wrong: go back and try again.",
        )  # fmt: skip
    return signed_in, form


async def form_of(request: web.Request) -> dict[str, str]:
    """A POSTed console form, as the console's own forms send it (URL-encoded; a value given
    twice counts once, as first given); anything else a page saying so, never a 500."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/x-www-form-urlencoded":
        raise _error_page(
            request, 415, "请从运维台页面提交表单。"
            " The console takes its forms URL-encoded, as its pages send them.",
        )  # fmt: skip
    try:
        text = (await request.read()).decode(request.charset or "utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (LookupError, UnicodeError, ValueError):
        raise _error_page(
            request, 400, "表单内容无法读取。 The form's content cannot be read."
        ) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


async def login_page(request: web.Request) -> web.Response:
    """GET /console/login."""
    return render(request, "login.html", error=None)


async def login(request: web.Request) -> web.Response:
    """POST /console/login: token → session cookie."""
    form = await form_of(request)
    try:
        opened = await request.app[USE_CASES].console.sign_in(
            form.get("token", "").strip(), request.remote
        )
    except AccessDenied as exc:
        return render(
            request, "login.html", status=exc.status,
            error="登录失败：令牌无效、已封存，或不是县级/省级运维令牌。"
            f" Sign-in refused: {exc}",
        )  # fmt: skip
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
    year = asked.entry_year
    if year is None:
        # Land on the newest cohort that has a run (a deferral cohort may have children
        # and no run yet).
        for candidate in years:
            if await findings.latest(candidate) is not None:
                year = candidate
                break
        else:
            year = years[0] if years else day_in_china(use_cases.clock.now()).year
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
    if where.county_code or where.kindergarten_code:
        # A county operator's chart counts its county's children only.
        history = [replace(r, counts=await findings.counts(r, where)) for r in history]
    groups = await use_cases.recovery.set_aside_groups(
        who(request, signed_in), county=where.county_code
    )
    return render(
        request, "overview.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, counts=counts, chart=category_chart(history),
        page="overview", worklist=sorted(WORKLIST), set_aside=groups,
    )  # fmt: skip


async def report(request: web.Request) -> web.Response:
    """GET /console/report: a run's findings with filters, children identified (audited)."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleReportQuery)
    use_cases = request.app[USE_CASES]
    findings = use_cases.reporting.findings
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
    known = await use_cases.casework.identify(
        who(request, signed_in), "report", [i.student_number for i in items],
        [c for i in items for c in (i.school_code, i.kindergarten_code)],
    )  # fmt: skip
    filters = {
        "entry_year": year, "run_id": run.run_id if run else None, "category": category,
        "county": asked.county, "kindergarten": asked.kindergarten, "new": asked.new,
    }  # fmt: skip
    return render(
        request, "report.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, items=items, counts=counts, changes=changes,
        category=category, new_only=asked.new, scope=where, page_no=page_no,
        more=len(items) == PAGE, page="report", title="对账报告 Reconciliation report",
        names=known.names, places=known.places, filters=filters,
    )  # fmt: skip


async def lost(request: web.Request) -> web.Response:
    """GET /console/lost: the lost-child list, by school and kindergarten, longest waiting
    first, paged, children identified (one audit line per page)."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleLostQuery)
    use_cases = request.app[USE_CASES]
    year, run, years = await _year_and_run(request, asked)
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    page_no = asked.page or 0
    listing = None
    if run is not None:
        listing = await use_cases.casework.lost(
            who(request, signed_in), run, where, school=asked.school, category=asked.category,
            limit=LOST_PAGE, offset=page_no * LOST_PAGE,
        )  # fmt: skip
    filters = {
        "entry_year": year, "run_id": run.run_id if run else None, "category": asked.category,
        "county": asked.county, "kindergarten": asked.kindergarten, "school": asked.school,
    }  # fmt: skip
    return render(
        request, "lost.html", principal=signed_in.principal, csrf=signed_in.csrf,
        year=year, years=years, run=run, listing=listing, scope=where, page_no=page_no,
        per_page=LOST_PAGE, filters=filters, lost_categories=LOST, page="lost", groups_shown=30,
        title="未报到名单 Lost-child list",
    )  # fmt: skip


async def lost_export(request: web.Request) -> web.StreamResponse:
    """GET /console/lost.csv: the lost-child list (of one school, say) as CSV; identified
    only with a stated purpose (audited)."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleLostQuery)
    use_cases = request.app[USE_CASES]
    _year, run, _years = await _year_and_run(request, asked)
    if run is None:
        raise refused(request, signed_in, 404, "该届尚无对账记录。No reconciliation run yet.")
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    acting = who(request, signed_in)
    await use_cases.reporting.exported(
        run, acting, format="csv", list="lost", school=asked.school or "",
        identified="yes" if asked.purpose else "no", purpose=asked.purpose or "",
    )  # fmt: skip
    name = f"lost-{asked.school or 'all'}-{'identified' if asked.purpose else 'deidentified'}"
    response = _csv_response(f"xueji-{name}-{dt.date.today().isoformat()}.csv")
    await response.prepare(request)
    async for text in use_cases.casework.lost_csv(
        acting, run, where, school=asked.school, category=asked.category, purpose=asked.purpose
    ):
        await response.write(text.encode())
    await response.write_eof()
    return response


def _csv_response(filename: str) -> web.StreamResponse:
    return web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
    })  # fmt: skip


async def child(request: web.Request) -> web.Response:
    """GET /console/child/{student_number}: one child's case page (audited)."""
    signed_in = await session(request)
    number = read(request, signed_in, _ChildPath, {"n": request.match_info["n"]}).n
    use_cases = request.app[USE_CASES]
    acting = who(request, signed_in)
    case = await use_cases.casework.case(acting, number)
    if case is None:
        # Not found, or another county's: the same page either way, and the try is audited
        # (within the refusals' bound) as a school's try of another school's child is.
        await use_cases.refusals.refused(
            Refusal(
                status=404, code="out_of_scope", method=request.method,
                route="/console/child/{n}", token_id=signed_in.principal.token_id,
                remote=acting.remote,
            )
        )  # fmt: skip
        raise refused(
            request, signed_in, 404,
            "找不到该学籍号的儿童，或不在您的辖区内。"
            " No child with this student number in your scope.",
        )  # fmt: skip
    open_cases = await use_cases.recovery.set_aside_cases(acting, student_number=number)
    places = await use_cases.casework.identify(
        acting, "case_places", [], [case.school_code, case.kindergarten_code]
    )
    return render(
        request, "child.html", principal=signed_in.principal, csrf=signed_in.csrf,
        case=case, open_case=open_cases[0] if open_cases else None, places=places.places,
        page="lost",
    )  # fmt: skip


async def worklist(request: web.Request) -> web.Response:
    """GET /console/worklist: set-aside hand-overs by group, with retry and resolve."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleWorklistQuery)
    use_cases = request.app[USE_CASES]
    recovery, acting = use_cases.recovery, who(request, signed_in)
    cases = (
        await recovery.set_aside_cases(acting, reason=asked.reason, answer=asked.answer)
        if asked.reason
        else []
    )
    retries = await recovery.recent_retries(acting, kind="handoff", limit=20)
    shown = [c.student_number for c in cases] + [
        r["student_number"] for r in retries if r.get("student_number")
    ]
    known = await use_cases.casework.identify(
        acting, "worklist", shown, [c.kindergarten_code for c in cases]
    )
    return render(
        request, "worklist.html", principal=signed_in.principal, csrf=signed_in.csrf,
        page="worklist", groups=await recovery.set_aside_groups(acting), cases=cases,
        reason=asked.reason, answer=asked.answer, names=known.names, places=known.places,
        retries=retries,
    )  # fmt: skip


def _flattened(value: Any, path: str = "") -> list[tuple[str, str]]:
    """A masked JSON value as (field path, value) rows: the console shows no raw JSON."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows += _flattened(v, f"{path}.{k}" if path else str(k))
        return rows or [(path, "{}")]
    if isinstance(value, list):
        rows = []
        for n, v in enumerate(value):
            rows += _flattened(v, f"{path}[{n}]")
        return rows or [(path, "[]")]
    return [(path or "(正文 body)", "—" if value is None else str(value))]


async def parked(request: web.Request) -> web.Response:
    """GET /console/parked: parked messages by reason (provincial operators)."""
    signed_in = await session(request)
    if signed_in.principal.role is not Role.PROVINCE:
        return render(request, "denied.html", status=403, principal=signed_in.principal,
                      csrf=signed_in.csrf, page="parked")  # fmt: skip
    asked = read(request, signed_in, ConsoleParkedQuery)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    message = await recovery.read_parked(asked.id, acting) if asked.id else None
    fields: list[tuple[str, str]] = []
    if message is not None:
        body = masked_body(message.body)
        try:
            fields = _flattened(json.loads(body))
        except ValueError:
            fields = [("(正文 body)", body)]
    return render(
        request, "parked.html", principal=signed_in.principal, csrf=signed_in.csrf,
        page="parked", groups=await recovery.parked_groups(), reason=asked.reason,
        messages=await recovery.parked_messages(asked.reason) if asked.reason else [],
        message=message, fields=fields,
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
        raise web.HTTPSeeOther(
            f"/console/report?{query_string(entry_year=year, flash='busy')}"
        ) from None
    raise web.HTTPSeeOther(
        "/console/report?"
        + query_string(entry_year=year, run_id=run.run_id, flash="reconciled", n=run.run_id)
    )


async def post_set_aside(request: web.Request) -> web.Response:
    """POST /console/set-aside: retry a group or one child, or resolve one with a note;
    back where the operator acted, filters kept, saying what was done."""
    signed_in, form = await checked_form(request)
    asked = read(request, signed_in, SetAsideForm, form)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    said: dict[str, object]
    if asked.action == "resolve":
        if not asked.student_number or not asked.note:
            said = {"flash": "note_missing"}
        elif await recovery.resolve_set_aside(acting, asked.student_number, asked.note):
            said = {"flash": "resolved", "n": 1}
        else:
            said = {"flash": "not_open"}
    else:
        result = await recovery.retry_set_aside(
            acting, reason=asked.reason if not asked.student_number else None,
            answer=asked.answer if not asked.student_number else None,
            student_number=asked.student_number, group_key=f"{asked.reason}/{asked.answer}",
        )  # fmt: skip
        said = {"flash": "retried", "n": len(result.retried), "skipped": len(result.skipped)}
    if asked.back == "case" and asked.student_number:
        raise web.HTTPSeeOther(f"/console/child/{asked.student_number}?{query_string(**said)}")
    raise web.HTTPSeeOther(
        "/console/worklist?" + query_string(reason=asked.reason, answer=asked.answer, **said)
    )


async def post_parked(request: web.Request) -> web.Response:
    """POST /console/parked: retry a group or one message, or resolve one with a note."""
    signed_in, form = await checked_form(request)
    if signed_in.principal.role is not Role.PROVINCE:
        raise refused(
            request, signed_in, 403,
            "搁置消息不属于任何县，仅省级运维可处理。 Provincial operators only.",
        )  # fmt: skip
    asked = read(request, signed_in, ParkedForm, form)
    recovery, acting = request.app[USE_CASES].recovery, who(request, signed_in)
    said: dict[str, object]
    if asked.action == "resolve":
        if asked.id is None or not asked.note:
            said = {"flash": "note_missing"}
        else:
            done = await recovery.resolve_parked_message(acting, asked.id, asked.note)
            said = {"flash": "parked_resolved" if done else "parked_already", "n": 1}
    else:
        result = await recovery.retry_parked_messages(
            acting, message_id=asked.id, reason=asked.reason, group_key=asked.reason
        )
        said = {"flash": "parked_retried", "n": len(result.retried),
                "skipped": len(result.skipped)}  # fmt: skip
    raise web.HTTPSeeOther(
        "/console/parked?" + query_string(reason=asked.reason, id=asked.id, **said)
    )


async def export(request: web.Request) -> web.StreamResponse:
    """GET /console/export.csv: any list, de-identified (UTF-8 with a BOM)."""
    signed_in = await session(request)
    asked = read(request, signed_in, ConsoleReportQuery)
    reporting = request.app[USE_CASES].reporting
    _year, run, _years = await _year_and_run(request, asked)
    if run is None:
        raise refused(request, signed_in, 404, "该届尚无对账记录。No reconciliation run yet.")
    where = scope(request, signed_in, asked.county, asked.kindergarten)
    category = asked.category.value if asked.category else None
    await reporting.exported(
        run, who(request, signed_in), format="csv", category=category or "",
        county=where.county_code or "",
    )  # fmt: skip
    response = _csv_response(f"xueji-{category or 'all'}-{dt.date.today().isoformat()}.csv")
    await response.prepare(request)
    async for text in reporting.export_csv(
        run, categories=[category] if category else None, scope=where, new_only=asked.new,
        bom=True,
    ):  # fmt: skip
        await response.write(text.encode())
    await response.write_eof()
    return response


async def not_found(request: web.Request) -> web.Response:
    """GET of any other /console/ address: a page, not a machine's 404."""
    signed_in = await session(request)
    raise refused(
        request,
        signed_in,
        404,
        "找不到该页面，请从上方菜单进入。 No such page: use the menu above.",
    )


class _PageRouter:
    """Registers each page handler wrapped by as_page."""

    def __init__(self, router: web.UrlDispatcher) -> None:
        self._router = router

    def add_get(self, path: str, handler: Handler) -> None:
        self._router.add_get(path, as_page(handler))

    def add_post(self, path: str, handler: Handler) -> None:
        self._router.add_post(path, as_page(handler))


async def stylesheet(request: web.Request) -> web.Response:
    """GET /console/static/console.css (no CDN: the data centre has no internet)."""
    css = (resources.files("bridge.api") / "static" / "console.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "max-age=300"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def as_page(handler: Handler) -> Handler:
    """A console handler whose unforeseen failures are pages too (the API's are problems):
    the database away is a 503 page to retry, anything else a 500 page, logged by type and
    frames only (a path may hold a student number, so the route is named, not the path)."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except BridgeError as exc:
            status = status_of(exc)
            if status is None:
                return _failure_page(request, exc)
            raise _error_page(request, status, f"无法完成 Cannot do that: {exc}") from None
        except Exception as exc:
            return _failure_page(request, exc)

    return page


def _failure_page(request: web.Request, exc: Exception) -> web.Response:
    if request.transport is None or request.transport.is_closing():
        raise exc  # the browser is gone
    route = request.match_info.route.resource
    where = f"{request.method} {route.canonical if route else '?'}"
    if isinstance(exc, request.app[USE_CASES].database_away):
        log.warning("%s: the database is unavailable (%s)", where, type(exc).__name__)
        raise _error_page(
            request, 503, "数据库暂时不可用，请稍后刷新页面。"
            " The bridge's database is unavailable: refresh in a moment.",
            retry_after=5,
        )  # fmt: skip
    log_failure(log, "%s failed", where, exc=exc)
    raise _error_page(
        request, 500, "运维台出错，已记录日志，请稍后重试或联系技术人员。"
        " The console failed; it is logged. Try again, or tell the engineers.",
    )  # fmt: skip


def _error_page(
    request: web.Request, status: int, message: str, *, retry_after: int | None = None
) -> web.HTTPException:
    heading = {404: "找不到 Not found", 503: "暂时不可用 Unavailable"}.get(
        status, "出错了 Something went wrong" if status >= 500 else "无法完成 Cannot do that"
    )
    html = _page(request, "error.html", {"heading": heading, "message": message})
    exc = web.HTTPException(text=html, content_type="text/html", headers=_HEADERS)
    exc.set_status(status)
    if retry_after is not None:
        exc.headers["Retry-After"] = str(retry_after)
    return exc


def add_console(app: web.Application) -> None:
    """Register the console's pages."""
    app[JINJA] = _env()
    r = _PageRouter(app.router)
    r.add_get("/console/login", login_page)
    r.add_post("/console/login", login)
    r.add_post("/console/logout", logout)
    r.add_get("/console/", overview)
    r.add_get("/console", overview)
    r.add_get("/console/report", report)
    r.add_get("/console/lost", lost)
    r.add_get("/console/worklist", worklist)
    r.add_get("/console/parked", parked)
    # Streamed: once the first bytes are out, a failure can only cut the answer short
    # (the problems middleware does), never become a page.
    app.router.add_get("/console/export.csv", export)
    app.router.add_get("/console/lost.csv", lost_export)
    r.add_get("/console/child/{n}", child)
    r.add_post("/console/reconcile", post_reconcile)
    r.add_post("/console/set-aside", post_set_aside)
    r.add_post("/console/parked", post_parked)
    r.add_get("/console/static/console.css", stylesheet)
    r.add_get("/console/{tail:.*}", not_found)  # last: any other console address
