"""Operator-loaded working-day schedules (years chinese-calendar does not know)."""

from __future__ import annotations

import json

import asyncpg

from bridge.domain.working_days import WorkingCalendar, YearSchedule


class CalendarStore:
    """The calendar_years table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self, schedule: YearSchedule, *, actor: str, source: str | None) -> None:
        """Store (or replace) one year's official schedule."""
        await self._pool.execute(
            "INSERT INTO calendar_years (year, schedule, source, loaded_by)"
            " VALUES ($1, $2::jsonb, $3, $4) ON CONFLICT (year) DO UPDATE SET"
            " schedule = EXCLUDED.schedule, source = EXCLUDED.source,"
            " loaded_by = EXCLUDED.loaded_by, loaded_at = now()",
            schedule.year, json.dumps(schedule.to_mapping()), source, actor,
        )  # fmt: skip

    async def schedules(self) -> dict[int, YearSchedule]:
        """Every loaded year."""
        rows = await self._pool.fetch("SELECT year, schedule FROM calendar_years ORDER BY year")
        return {r["year"]: YearSchedule.from_mapping(json.loads(r["schedule"])) for r in rows}

    async def calendar(self) -> WorkingCalendar:
        """The working calendar with every loaded year."""
        return WorkingCalendar(await self.schedules())
