"""Identity numbers: the ISO 7064 MOD 11-2 check character and the student-number forms.

Written from rules.md on purpose (not python-stdnum, not the bridge's domain), so that a
misreading on either side of the contract shows up as a disagreement in tests.
"""

from __future__ import annotations

import datetime as dt
import re

# Weights 2^(17-i) mod 11 for positions 1..17 (GB 11643-1999).
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

_RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")
_J_BODY = re.compile(r"^\d{17}[\dX]$")
_L_BODY = re.compile(r"^\d{18}$")


def check_char(body17: str) -> str:
    """Return the MOD 11-2 check character for 17 digits."""
    if len(body17) != 17 or not body17.isdigit():
        raise ValueError("need exactly 17 digits")
    total = sum(int(c) * w for c, w in zip(body17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def _date_ok(yyyymmdd: str) -> bool:
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def resident_id_problem(value: str) -> str | None:
    """Why `value` is not a valid 18-character resident ID number, or None if it is."""
    if not _RESIDENT_ID.match(value):
        return "must be 17 digits and a check character"
    if not _date_ok(value[6:14]):
        return "characters 7-14 are not a valid birth date"
    if check_char(value[:17]) != value[17]:
        return "bad check character"
    return None


def student_number_problem(value: str) -> str | None:
    """Why `value` is not a student number of form G, J or L (rules.md), or None if it is."""
    if not isinstance(value, str) or len(value) != 19:
        return "must be G, J or L followed by 18 characters"
    prefix, body = value[0], value[1:]
    if prefix == "G":
        problem = resident_id_problem(body)
        return None if problem is None else f"G number: {problem}"
    if prefix == "J":
        if not _J_BODY.match(body):
            return "J number: must be 17 digits and a check character"
        if not _date_ok(body[6:14]):
            return "J number: characters 7-14 are not a valid birth date"
        if check_char(body[:17]) != body[17]:
            return "J number: bad check character"
        return None
    if prefix == "L":
        if not _L_BODY.match(body):
            return "L number: must be 18 digits"
        if not _date_ok(body[6:14]):
            return "L number: characters 7-14 are not a valid birth date"
        return None
    return "must start with G, J or L"


def is_student_number(value: str) -> bool:
    """True if `value` is a well-formed student number."""
    return student_number_problem(value) is None
