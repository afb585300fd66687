"""The school API: children handed over, one child's summary, arrival reports (B6).

Scope is checked before anything else is looked at, and a child out of scope answers
exactly like a child that does not exist: numbers cannot be probed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.adapters.postgres.school_lookups import SchoolLookups
from bridge.adapters.postgres.school_pulls import ChildView, ListQuery, SchoolPulls
from bridge.adapters.postgres.school_reads import AuditLine, ReadBook, ReadEntry
from bridge.api.auth import admit, authenticate, bearer, checked_at, remote_of, require
from bridge.api.problems import problem
from bridge.domain.access import Principal, Role
from bridge.domain.arrival import Arrival
from bridge.domain.handoff import SetAsideReason
from bridge.domain.school_view import (
    GENERIC_SET_ASIDE_MESSAGE,
    SCHOOL_MISMATCH_MESSAGE,
    SET_ASIDE_MESSAGES,
    ArrivalStatus,
    InvalidArrival,
    PullState,
    arrival_status,
    check_arrival_date,
    mask_id_number,
    mask_name,
)
from schemas.api import (
    ArrivalAccepted,
    ArrivalIn,
    ArrivalOut,
    HandoffItem,
    HandoffPage,
    HandoffSummary,
    RecordFileOut,
    SetAsideOut,
)

if TYPE_CHECKING:
    from bridge.bootstrap import Bridge

log = logging.getLogger(__name__)

NUMBER_FORM = re.compile(r"^[GJL][0-9]{17}[0-9X]$")
SCHOOL_FORM = re.compile(r"^\d{10}$")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# `as_of` lags the clock so that a change committed a little after it was stamped is
# still ahead of the next poll's `since`: ledger transactions last milliseconds.
SINCE_OVERLAP = dt.timedelta(seconds=60)
# China has one time zone and no daylight saving: "today" for an arrival is in UTC+8.
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
ARRIVAL_MESSAGES = {
    ArrivalStatus.PENDING: "Recorded; the registry is being told and will be retried until it"
    " answers.",
    ArrivalStatus.ENROLLED: "The registry enrolled the child: the hand-over is complete.",
    ArrivalStatus.REFUSED: SCHOOL_MISMATCH_MESSAGE,
}


@dataclass(frozen=True, slots=True)
class SchoolApi:
    """What the school endpoints use."""

    pulls: SchoolPulls
    files: RecordFileStore
    ledger: Ledger
    audit: AuditLog
    wake_worker: Callable[[], None]
    book: ReadBook  # receipts and audit lines of file downloads and lists, group-committed
    lookups: SchoolLookups  # downloads' and lists' reads with their token checks, batched


SCHOOL_API = web.AppKey("school_api", SchoolApi)


# --- scope --------------------------------------------------------------------------------
def not_found() -> web.HTTPException:
    """The one answer for unknown, malformed and out-of-scope alike."""
    return problem(404, "not_found", "no such hand-over or school for this token")


def bad_parameter(message: str, code: str = "invalid_parameter") -> web.HTTPException:
    """A malformed query parameter."""
    return problem(400, code, message)


async def child_in_scope(request: web.Request, principal: Principal, action: str) -> ChildView:
    """The child named in the path if *principal* may see it; refusals are audited too."""
    api = request.app[SCHOOL_API]
    number = request.match_info["student_number"]
    well_formed = bool(NUMBER_FORM.match(number))
    child = await api.pulls.child(principal, number) if well_formed else None
    if child is None:
        await api.audit.record(
            action=action, outcome="not_found", principal=principal,
            student_number=number if well_formed else None, remote=remote_of(request),
        )  # fmt: skip
        raise not_found()
    return child


def school_in_scope(principal: Principal, school_code: str) -> None:
    """A school token reaches its own school's lists only; operators filter by scope."""
    if not SCHOOL_FORM.match(school_code):
        raise not_found()
    if principal.role is Role.SCHOOL and principal.school_code != school_code:
        raise not_found()


# --- query parameters ---------------------------------------------------------------------
def only_params(request: web.Request, *allowed: str) -> None:
    """Refuse parameters this endpoint does not know: a typo must not widen the answer."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "none"
        raise bad_parameter(f"unknown query parameter(s); this endpoint takes: {known}")


def int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    """An optional integer query parameter within [low, high]."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"-?\d{1,9}", raw):
        raise bad_parameter(f"{name} must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise bad_parameter(f"{name} must be between {low} and {high}")
    return value


def since_param(request: web.Request) -> dt.datetime | None:
    """`since`: an RFC 3339 date-time with its offset."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise bad_parameter("since must be an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise bad_parameter("since needs a UTC offset, e.g. 2026-09-01T02:00:00+08:00")
    return value


def encode_cursor(child_id: int) -> str:
    """Opaque to clients; only this module reads it."""
    return base64.urlsafe_b64encode(f"after:{child_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int:
    """The child id a cursor continues after (0 for the first page)."""
    if raw is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_parameter("cursor is not one this API gave", "invalid_cursor") from None
    match = re.fullmatch(r"after:(\d{1,18})", text)
    if not match:
        raise bad_parameter("cursor is not one this API gave", "invalid_cursor")
    return int(match.group(1))


def list_query(request: web.Request, school_code: str) -> ListQuery:
    """The list's filters from the query string (400 if malformed)."""
    only_params(request, "entry_year", "state", "since", "cursor", "limit")
    state = request.query.get("state")
    if state is not None and state not in tuple(PullState):
        raise bad_parameter("state must be one of not_pulled, pulled, arrived")
    return ListQuery(
        school_code=school_code,
        entry_year=int_param(request, "entry_year", 2000, 2100),
        state=state,
        since=since_param(request),
        after_child_id=decode_cursor(request.query.get("cursor")),
        limit=int_param(request, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
    )


# --- views --------------------------------------------------------------------------------
def is_own_school(principal: Principal, child: ChildView) -> bool:
    """Only the child's own school sees its name and identity number unmasked."""
    return principal.role is Role.SCHOOL and principal.school_code == child.school_code


def item(principal: Principal, child: ChildView) -> HandoffItem:
    """A child as listed."""
    return HandoffItem(**_item_fields(principal, child))


def _item_fields(principal: Principal, child: ChildView) -> dict[str, object]:
    own = is_own_school(principal, child)
    record_file = None
    if child.file_sha256 and child.file_size is not None and child.file_media_type:
        record_file = RecordFileOut(
            sha256=child.file_sha256, size=child.file_size, media_type=child.file_media_type
        )
    return {
        "student_number": child.student_number,
        "entry_year": child.entry_year,
        "school_code": child.school_code,
        "name": child.name if own else mask_name(child.name),
        "gender": child.gender,
        "birth_date": child.birth_date,
        "record_file": record_file,
        "state": child.state,
        "phase": child.phase,
        "changed_at": child.visible_at,
    }


def arrival_out(child: ChildView) -> ArrivalOut | None:
    """The arrival's standing, with a message a clerk can act on."""
    status = arrival_status(
        phase=child.phase,
        arrival_reported=child.arrived_on is not None,
        set_aside_reason=child.set_aside_reason,
    )
    if status is None:
        return None
    return ArrivalOut(
        arrived_on=child.arrived_on, status=status.value, message=ARRIVAL_MESSAGES[status]
    )


def summary(principal: Principal, child: ChildView) -> HandoffSummary:
    """One child in full."""
    own = is_own_school(principal, child)
    aside = None
    if child.set_aside_reason:
        message = SET_ASIDE_MESSAGES.get(child.set_aside_reason, GENERIC_SET_ASIDE_MESSAGE)
        aside = SetAsideOut(reason=child.set_aside_reason, message=message)
    return HandoffSummary(
        **_item_fields(principal, child),
        county_code=child.county_code,
        id_number=child.id_number if own else mask_id_number(child.id_number),
        pulled_at=child.pulled_at,
        arrival=arrival_out(child),
        set_aside=aside,
    )


def json_body(
    model: HandoffPage | HandoffSummary | ArrivalAccepted, status: int = 200
) -> web.Response:
    """A pydantic body as JSON."""
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


# --- handlers -----------------------------------------------------------------------------
async def list_handoffs(request: web.Request) -> web.Response:
    """`GET /v1/schools/{school_code}/handoffs`."""
    presented = bearer(request)
    school_code = request.match_info["school_code"]
    try:
        if not SCHOOL_FORM.match(school_code):
            raise not_found()
        query = list_query(request, school_code)
    except web.HTTPException:
        # A bad token or a school out of scope is said first, as on every endpoint.
        school_in_scope(await authenticate(request), school_code)
        raise
    api = request.app[SCHOOL_API]
    found = await api.lookups.list_for(presented, query)
    principal = await admit(request, found.token, presented)
    school_in_scope(principal, school_code)
    # The token was checked in the statement that read the list: its clock is a safe as_of.
    as_of = checked_at(request) - SINCE_OVERLAP
    more = len(found.children) > query.limit
    rows = found.children[: query.limit]
    page = HandoffPage(
        items=[item(principal, r) for r in rows],
        next_cursor=encode_cursor(rows[-1].child_id) if more and rows else None,
        as_of=as_of,
    )
    response = json_body(page)
    if rows:  # one line for the page, naming every child on it
        shown = AuditLine(
            principal, "handoff.list", "ok", None, remote_of(request),
            {"school_code": school_code}, student_numbers=tuple(r.student_number for r in rows),
        )  # fmt: skip
        await api.book.keep(ReadEntry(audit=(shown,)))
    return response


async def get_handoff(request: web.Request) -> web.Response:
    """`GET /v1/handoffs/{student_number}`."""
    principal = await authenticate(request)
    child = await child_in_scope(request, principal, "handoff.read")
    only_params(request)
    api = request.app[SCHOOL_API]
    await api.audit.record(
        action="handoff.read", outcome="ok", principal=principal,
        student_number=child.student_number, remote=remote_of(request),
    )  # fmt: skip
    return json_body(summary(principal, child))


def _arrival_problem(exc: ValidationError) -> web.HTTPException:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "invalid_json", "the body is not valid JSON")
    # Locations and messages only: the input itself is never echoed back.
    details = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in errors]
    return problem(422, "invalid", "the body must be {\"arrived_on\": \"YYYY-MM-DD\"}",
                   errors=details)  # fmt: skip


async def report_arrival(request: web.Request) -> web.Response:
    """`POST /v1/handoffs/{student_number}/arrival`: schools only, for their own children."""
    principal = await require(request, Role.SCHOOL)
    child = await child_in_scope(request, principal, "arrival.report")
    only_params(request)
    api = request.app[SCHOOL_API]
    remote = remote_of(request)

    async def audit(outcome: str, **detail: str) -> None:
        await api.audit.record(
            action="arrival.report", outcome=outcome, principal=principal,
            student_number=child.student_number, remote=remote, detail=detail or None,
        )  # fmt: skip

    if request.content_type != "application/json":
        raise problem(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = ArrivalIn.model_validate_json(await request.read())
        check_arrival_date(
            body.arrived_on, today=dt.datetime.now(CHINA).date(), entry_year=child.entry_year
        )
    except ValidationError as exc:
        await audit("invalid")
        raise _arrival_problem(exc) from None
    except InvalidArrival as exc:
        await audit("invalid")
        raise problem(422, exc.code, str(exc)) from None
    arrived_on = body.arrived_on.isoformat()
    if child.set_aside_reason == SetAsideReason.SCHOOL_MISMATCH:
        await audit("school_mismatch", arrived_on=arrived_on)
        raise problem(409, "school_mismatch", SCHOOL_MISMATCH_MESSAGE)
    if child.phase == "enrolled":
        await api.pulls.record_arrival_report(principal, child, body.arrived_on, "unchanged")
        await audit("unchanged", arrived_on=arrived_on)
        out = arrival_out(child)
        assert out is not None
        return json_body(
            ArrivalAccepted(student_number=child.student_number, arrival=out, state="arrived")
        )
    assert principal.school_code is not None
    state = await api.ledger.request_arrival(
        child.child_id, Arrival(principal.school_code, body.arrived_on)
    )
    if state is None:  # merged into another child a moment ago: ask again
        raise not_found()
    api.wake_worker()
    await api.pulls.record_arrival_report(principal, child, body.arrived_on, "accepted")
    await audit("accepted", arrived_on=arrived_on)
    log.info("arrival reported for child %s", child.child_id)
    pending = ArrivalOut(
        arrived_on=body.arrived_on, status="pending",
        message=ARRIVAL_MESSAGES[ArrivalStatus.PENDING],
    )  # fmt: skip
    return json_body(
        ArrivalAccepted(student_number=child.student_number, arrival=pending, state="arrived"),
        status=202,
    )


def add_school_api(app: web.Application, bridge: Bridge) -> None:
    """Register the school endpoints (lists, summaries, files, arrivals) on *app*."""
    from bridge.api.downloads import get_record_file, get_record_files_zip

    book = ReadBook(bridge.pool)
    lookups = SchoolLookups(bridge.pool)
    app[SCHOOL_API] = SchoolApi(
        SchoolPulls(bridge.pool),
        bridge.files,
        bridge.ledger,
        bridge.audit,
        bridge.worker.wake,
        book,
        lookups,
    )

    async def close_book(app: web.Application) -> AsyncIterator[None]:
        yield
        await lookups.aclose()  # after the last request, before the pool closes
        await book.aclose()

    app.cleanup_ctx.append(close_book)
    app.router.add_get("/v1/schools/{school_code}/handoffs", list_handoffs, allow_head=False)
    app.router.add_get(
        "/v1/schools/{school_code}/record-files.zip", get_record_files_zip, allow_head=False
    )
    app.router.add_get("/v1/handoffs/{student_number}", get_handoff, allow_head=False)
    app.router.add_get(
        "/v1/handoffs/{student_number}/record-file", get_record_file, allow_head=False
    )
    app.router.add_post("/v1/handoffs/{student_number}/arrival", report_arrival)
