"""The school API's answers, from the children as the services give them.

Only the child's own school sees its name and identity number unmasked (rules.md: what
goes outward is de-identified).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import BaseModel

from bridge.domain.access import Principal, Role
from bridge.domain.school_view import (
    GENERIC_SET_ASIDE_MESSAGE,
    SCHOOL_MISMATCH_MESSAGE,
    SET_ASIDE_MESSAGES,
    ArrivalStatus,
    arrival_status,
    mask_id_number,
    mask_name,
)
from bridge.services.ports.schools import ChildView
from schemas.api import (
    ArrivalAccepted,
    ArrivalOut,
    HandoffItem,
    HandoffPage,
    HandoffSummary,
    RecordFileOut,
    SetAsideOut,
    encode_cursor,
)

ARRIVAL_MESSAGES = {
    ArrivalStatus.PENDING: "Recorded; the registry is being told and will be retried until it"
    " answers.",
    ArrivalStatus.ENROLLED: "The registry enrolled the child: the hand-over is complete.",
    ArrivalStatus.REFUSED: SCHOOL_MISMATCH_MESSAGE,
}


def is_own_school(principal: Principal, child: ChildView) -> bool:
    """Only the child's own school sees its name and identity number unmasked."""
    return principal.role is Role.SCHOOL and principal.school_code == child.school_code


def _item_fields(principal: Principal, child: ChildView) -> dict[str, object]:
    own = is_own_school(principal, child)
    record_file = None
    if child.file_sha256 and child.file_size is not None and child.file_media_type:
        record_file = RecordFileOut(
            sha256=child.file_sha256,
            size=child.file_size,
            media_type=child.file_media_type,
            erased_at=child.file_erased_at,
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


def page_of(
    principal: Principal, children: list[ChildView], limit: int, as_of: dt.datetime
) -> tuple[HandoffPage, list[ChildView]]:
    """A list page from up to *limit* + 1 children (one more says more follow), and the
    children it shows."""
    rows = children[:limit]
    more = len(children) > limit
    page = HandoffPage(
        items=[HandoffItem(**_item_fields(principal, r)) for r in rows],
        next_cursor=encode_cursor(rows[-1].child_id) if more and rows else None,
        as_of=as_of,
    )
    return page, rows


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


def accepted(child: ChildView, arrived_on: dt.date) -> ArrivalAccepted:
    """An arrival just recorded: the registry is being told."""
    pending = ArrivalOut(
        arrived_on=arrived_on, status="pending", message=ARRIVAL_MESSAGES[ArrivalStatus.PENDING]
    )
    return ArrivalAccepted(student_number=child.student_number, arrival=pending, state="arrived")


def unchanged(child: ChildView) -> ArrivalAccepted:
    """An arrival of a child the registry enrolled already."""
    out = arrival_out(child)
    assert out is not None
    return ArrivalAccepted(student_number=child.student_number, arrival=out, state="arrived")


def json_body(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic body as JSON."""
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )
