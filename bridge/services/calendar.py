"""Official working-day schedules: operators load the years chinese-calendar does not know."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.domain.working_days import YearSchedule
from bridge.services.acting import Acting
from bridge.services.ports.access import Audit
from bridge.services.ports.reconciliation import Calendars


class WorkingCalendar:
    """Loading a year's schedule (audited) and telling which years are official."""

    def __init__(self, calendars: Calendars, audit: Audit) -> None:
        self._calendars = calendars
        self._audit = audit

    async def load(self, data: Mapping[str, Any], who: Acting, *, source: str) -> YearSchedule:
        """Store the schedule in *data* (KeyError or ValueError if it is not one)."""
        schedule = YearSchedule.from_mapping(data)
        await self._calendars.load(schedule, actor=who.actor, source=source)
        await self._audit.record(
            action="calendar.load", outcome="ok", principal=who.principal, actor=who.actor,
            detail={"year": schedule.year},
        )  # fmt: skip
        return schedule

    async def official(self, year: int) -> bool:
        """Whether *year* counts by an official schedule (not weekends alone)."""
        return (await self._calendars.calendar()).official(year)
