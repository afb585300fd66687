"""Value types of query strings and forms: text that must read as exactly one value.

Lax parsing would take "+5", "5_0", "5.0", " 5" or "5\n" for 5, and a bare number for a
time; here a number is decimal digits and a time is RFC 3339 with its offset, matched
whole (no "$" that a trailing newline slips past).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
BIGINT_MAX = 2**63 - 1  # PostgreSQL's bigint: every row id


def _whole_number(value: object) -> object:
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise ValueError("must be a whole number of at most 19 decimal digits")
    return value


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with its offset, e.g. 2026-09-01T02:00:00+08:00"
        )
    return value


def an_instant(value: dt.datetime) -> dt.datetime:
    """*value*, if it is an instant UTC can name (year 1 at +01:00 is not)."""
    try:
        value.astimezone(dt.UTC)  # e.g. year 1 at +01:00 is no instant in UTC
    except OverflowError:
        raise ValueError("is out of range") from None
    return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


QueryInt = Annotated[int, BeforeValidator(_whole_number)]
EntryYearParam = Annotated[QueryInt, Field(ge=2000, le=2100)]
RowId = Annotated[QueryInt, Field(ge=1, le=BIGINT_MAX)]
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(an_instant)]
# An empty form field or parameter (a select's "all", an empty filter) means "not given".
Blank = BeforeValidator(_blank_is_none)
