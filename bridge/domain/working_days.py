"""Official PRC working days (rules.md "Working days"), and deadlines counted in them.

``chinese-calendar`` carries the State Council's schedule for 2004-2026 and raises for
later years. An operator loads a later year's schedule (holidays and 调休 working
weekends) from a file; a year with neither is counted by weekends alone, and every
deadline that counted such a day says so (``provisional``) wherever it is shown.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import chinese_calendar

_SATURDAY = 5
# China has one time zone and no daylight saving: a fixed offset is exact.
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")


def day_in_china(now: dt.datetime) -> dt.date:
    """The calendar day in China at *now* (an aware datetime): deadlines, arrival dates
    and cohorts are counted in Chinese days."""
    return now.astimezone(CHINA).date()


@dataclass(frozen=True, slots=True)
class YearSchedule:
    """One year's official schedule: its public holidays and its 调休 working weekend days."""

    year: int
    holidays: Mapping[dt.date, str] = field(default_factory=dict)
    working_weekends: frozenset[dt.date] = frozenset()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> YearSchedule:
        """Parse ``{"year", "holidays": {date: name} | [date], "working_days": [date]}``.

        Raises ValueError on a date outside the year or a day that is both.
        """
        year = int(data["year"])
        raw_holidays = data.get("holidays", {})
        if isinstance(raw_holidays, Mapping):
            holidays = {dt.date.fromisoformat(str(k)): str(v) for k, v in raw_holidays.items()}
        else:
            holidays = {dt.date.fromisoformat(str(d)): "holiday" for d in raw_holidays}
        raw_working = data.get("working_days", data.get("working_weekends", []))
        working = frozenset(dt.date.fromisoformat(str(d)) for d in raw_working)
        for day in (*holidays, *working):
            if day.year != year:
                raise ValueError(f"{day} is not in {year}")
        both = working & holidays.keys()
        if both:
            raise ValueError(f"{min(both)} is listed both as a holiday and as a working day")
        for day in working:
            if day.weekday() < _SATURDAY:
                raise ValueError(f"{day} is a weekday: only weekend days are declared working")
        return cls(year, holidays, working)

    def to_mapping(self) -> dict[str, Any]:
        """The file form (inverse of from_mapping)."""
        return {
            "year": self.year,
            "holidays": {d.isoformat(): n for d, n in sorted(self.holidays.items())},
            "working_days": sorted(d.isoformat() for d in self.working_weekends),
        }

    def is_working_day(self, day: dt.date) -> bool:
        """Per this schedule."""
        if day in self.working_weekends:
            return True
        return day.weekday() < _SATURDAY and day not in self.holidays


@dataclass(frozen=True, slots=True)
class Deadline:
    """A day computed in working days; provisional if a year without a schedule counted."""

    day: dt.date
    provisional: bool = False

    def passed(self, today: dt.date) -> bool:
        """True once *today* is after the deadline day."""
        return today > self.day

    def __str__(self) -> str:
        return self.day.isoformat() + (" (provisional)" if self.provisional else "")


@functools.cache
def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(dt.date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


class WorkingCalendar:
    """Working days from chinese-calendar, overridden or extended by loaded schedules."""

    def __init__(self, schedules: Mapping[int, YearSchedule] | None = None) -> None:
        self._schedules = dict(schedules or {})
        # A cohort's deadlines start on a few hundred distinct days: count each once.
        self._deadlines: dict[tuple[dt.date, int], Deadline] = {}

    def official(self, year: int) -> bool:
        """Whether *year* has an official schedule (loaded or in the library)."""
        return year in self._schedules or _library_knows(year)

    def is_working_day(self, day: dt.date) -> bool:
        """A loaded schedule wins over the library: an operator may correct it."""
        schedule = self._schedules.get(day.year)
        if schedule is not None:
            return schedule.is_working_day(day)
        if _library_knows(day.year):
            return bool(chinese_calendar.is_workday(day))
        return day.weekday() < _SATURDAY

    def add_working_days(self, start: dt.date, days: int) -> Deadline:
        """The *days*-th working day after *start* (start itself never counts)."""
        if days < 0:
            raise ValueError("days must not be negative")
        known = self._deadlines.get((start, days))
        if known is not None:
            return known
        day, counted, provisional = start, 0, not self.official(start.year)
        while counted < days:
            day += dt.timedelta(days=1)
            provisional = provisional or not self.official(day.year)
            if self.is_working_day(day):
                counted += 1
        deadline = self._deadlines[(start, days)] = Deadline(day, provisional)
        return deadline

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days after *start* up to and including *end* (0 if *end* is not later):
        how long something due on *start* has waited by *end*."""
        day, counted = start, 0
        while day < end:
            day += dt.timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return counted

    def latest_start_passed(self, today: dt.date, days: int) -> Deadline:
        """The latest start day whose deadline of *days* working days has passed by *today*.

        Deadlines grow with their start, so "deadline passed" is "start on or before this
        day": one cut-off answers for a whole cohort.
        """
        # The deadline of `start` passed iff the working days in (start, today) are >= days.
        day, counted, provisional = today, 0, not self.official(today.year)
        while True:
            day -= dt.timedelta(days=1)
            provisional = provisional or not self.official(day.year)
            if counted >= days:
                return Deadline(day, provisional)
            if self.is_working_day(day):
                counted += 1
