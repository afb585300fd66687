"""A school reports that a child arrived (实际报到): kept at once, told to the registry (B6).

The report, its audit line and the arrival on the hand-over are one transaction; then
the worker is woken, and performs B6 with the durable retries of every registry call.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable

from bridge.domain.access import Principal
from bridge.domain.arrival import Arrival
from bridge.domain.handoff import SetAsideReason
from bridge.domain.school_view import SCHOOL_MISMATCH_MESSAGE, InvalidArrival, check_arrival_date
from bridge.domain.working_days import day_in_china
from bridge.errors import ArrivalRefused, NotFound
from bridge.services.ports.access import Audit
from bridge.services.ports.clock import Clock
from bridge.services.ports.schools import ArrivalBook, ArrivalReport, AuditLine, ChildView

log = logging.getLogger(__name__)
ACTION = "arrival.report"


class ArrivalOutcome(enum.Enum):
    """What a valid report did."""

    ACCEPTED = "accepted"  # recorded; the registry is being told
    UNCHANGED = "unchanged"  # the registry had enrolled the child already


class Arrivals:
    """Schools' arrival reports."""

    def __init__(
        self, book: ArrivalBook, audit: Audit, clock: Clock, wake: Callable[[], None]
    ) -> None:
        self._book = book
        self._audit = audit
        self._clock = clock
        self._wake = wake

    async def refused(self, principal: Principal, child: ChildView, remote: str | None) -> None:
        """A report whose body could not be read is refused (audited)."""
        await self._audit_line(principal, child, remote, "invalid")

    async def report(
        self, principal: Principal, child: ChildView, arrived_on: dt.date, remote: str | None
    ) -> ArrivalOutcome:
        """Take in the school's report of *child*'s arrival on *arrived_on*.

        InvalidArrival if the date cannot be true, ArrivalRefused if the registry said
        another school admitted the child, NotFound if the child was merged meanwhile.
        """
        try:
            check_arrival_date(
                arrived_on, today=day_in_china(self._clock.now()), entry_year=child.entry_year
            )
        except InvalidArrival:
            await self._audit_line(principal, child, remote, "invalid")
            raise
        on = arrived_on.isoformat()
        if child.set_aside_reason == SetAsideReason.SCHOOL_MISMATCH:
            await self._audit_line(principal, child, remote, "school_mismatch", arrived_on=on)
            raise ArrivalRefused(SCHOOL_MISMATCH_MESSAGE)
        if child.phase == "enrolled":
            outcome, request = ArrivalOutcome.UNCHANGED, None
        else:
            assert principal.school_code is not None  # schools only report arrivals
            outcome = ArrivalOutcome.ACCEPTED
            request = Arrival(principal.school_code, arrived_on)
        line = AuditLine(principal, ACTION, outcome.value, child.student_number, remote,
                         {"arrived_on": on})  # fmt: skip
        report = ArrivalReport(
            child.child_id, child.student_number, principal, arrived_on, outcome.value, line,
            request,
        )  # fmt: skip
        if not await self._book.record(report):
            raise NotFound()  # merged into another child a moment ago: ask again
        if request is not None:
            self._wake()
            log.info("arrival reported for child %s", child.child_id)
        return outcome

    async def _audit_line(
        self, principal: Principal, child: ChildView, remote: str | None, outcome: str,
        **detail: str,
    ) -> None:  # fmt: skip
        await self._audit.record(
            action=ACTION, outcome=outcome, principal=principal,
            student_number=child.student_number, remote=remote, detail=detail or None,
        )  # fmt: skip
