"""A school's report that the child arrived (实际报到): what B6 tells the registry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Arrival:
    """The school's report that the child actually arrived (实际报到)."""

    school_code: str
    arrived_on: dt.date
