"""What a receiving primary school sees of a hand-over, and what it may report (B6).

Pure rules: the state a school filters by, the arrival's standing, the checks an
arrival report must pass before the bridge accepts it, and masking for viewers who are
not the child's school (rules.md: what goes outward is de-identified).
"""

from __future__ import annotations

import datetime as dt
import enum

from bridge.domain.handoff import Phase, SetAsideReason
from bridge.errors import InputRefused


class PullState(enum.StrEnum):
    """Where the school stands with the child: part of the public API."""

    NOT_PULLED = "not_pulled"  # the school has not taken the current record file yet
    PULLED = "pulled"  # the school downloaded the current record file (接收)
    ARRIVED = "arrived"  # the school reported the child's arrival (实际报到)


class ArrivalStatus(enum.StrEnum):
    """How far a reported arrival got at the registry."""

    PENDING = "pending"  # recorded; B6 not answered yet (retried durably)
    ENROLLED = "enrolled"  # the registry enrolled the child: the hand-over is complete
    REFUSED = "refused"  # the registry says another school admitted the child


SCHOOL_MISMATCH_MESSAGE = (
    "The primary registry records another school as admitting this child, so the arrival"
    " was not recorded there. The case has been set aside for an operator of the county,"
    " who will sort out the admission; nothing more is needed from the school for now."
)
SET_ASIDE_MESSAGES: dict[str, str] = {
    SetAsideReason.SCHOOL_MISMATCH: SCHOOL_MISMATCH_MESSAGE,
    SetAsideReason.IDENTITY_CONFLICT: "The registry holds this identity under another number;"
    " an operator must resolve it.",
    SetAsideReason.ALREADY_ENROLLED: "The child is enrolled for another year; an operator must"
    " sort it out.",
}
GENERIC_SET_ASIDE_MESSAGE = "The hand-over waits for an operator."


def arrival_status(
    *, phase: str, arrival_reported: bool, set_aside_reason: str | None
) -> ArrivalStatus | None:
    """The standing of the school's arrival report, or None if none was made."""
    if phase == Phase.ENROLLED:
        return ArrivalStatus.ENROLLED
    if not arrival_reported:
        return None
    if set_aside_reason == SetAsideReason.SCHOOL_MISMATCH:
        return ArrivalStatus.REFUSED
    return ArrivalStatus.PENDING


def pull_state(*, arrival: ArrivalStatus | None, pulled: bool) -> PullState:
    """The school-facing state: arrived wins over pulled; a refused arrival is not one."""
    if arrival in (ArrivalStatus.PENDING, ArrivalStatus.ENROLLED):
        return PullState.ARRIVED
    return PullState.PULLED if pulled else PullState.NOT_PULLED


class InvalidArrival(InputRefused):
    """The arrival report cannot be true as sent (e.g. a date in the future)."""

    code = "invalid_arrival"


def check_arrival_date(arrived_on: dt.date, *, today: dt.date, entry_year: int | None) -> None:
    """An arrival is not in the future, nor before the year the child starts school."""
    if arrived_on > today:
        raise InvalidArrival("arrived_on is in the future")
    if entry_year is not None and arrived_on.year < entry_year:
        raise InvalidArrival(f"arrived_on is before the child's entry year {entry_year}")


def mask_name(name: str | None) -> str | None:
    """Keep the surname's first character only: 王小明 → 王**."""
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def mask_id_number(value: str | None) -> str | None:
    """Keep the region's first two digits and the last two characters."""
    if not value:
        return value
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
