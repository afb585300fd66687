"""The system clock (Clock)."""

from __future__ import annotations

import datetime as dt


class SystemClock:
    """Now in UTC."""

    def now(self) -> dt.datetime:
        """The current time, aware."""
        return dt.datetime.now(dt.UTC)
