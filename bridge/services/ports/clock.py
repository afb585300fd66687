"""The time, for the services that judge dates (arrivals, deadlines, the console's year)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    """Now, as an aware datetime."""

    def now(self) -> dt.datetime: ...
