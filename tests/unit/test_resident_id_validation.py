"""The cached resident-ID check decides exactly as stdnum's own ``ric.validate``."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from bridge.domain.student_number import validate_resident_id
from bridge.errors import InvalidStudentNumber
from simulator.names import COUNTIES, resident_id

# Real county codes, a code stdnum does not know, and codes it knows only for some years.
REGIONS = (*COUNTIES, "999999", "110000", "110106", "320402")


def _candidates(n: int) -> list[str]:
    rng = random.Random(11643)
    out = []
    for _ in range(n):
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(66 * 365))
        number = resident_id(rng, rng.choice(REGIONS), birth, rng.choice("MF"))
        roll = rng.random()
        if roll < 0.2:
            number = number[:-1] + rng.choice("0123456789X")  # wrong check character
        elif roll < 0.25:
            number = number[:10] + "1340" + number[14:]  # no such date
        elif roll < 0.3:
            number = number[:17]  # too short
        out.append(number)
    return out


def _stdnum(number: str) -> str | None:
    try:
        return str(ric.validate(number))
    except (ValidationError, KeyError):  # KeyError: stdnum's slip on some unknown regions
        return None


def _ours(number: str) -> str | None:
    try:
        return validate_resident_id(number)
    except InvalidStudentNumber:
        return None


def test_cached_check_agrees_with_stdnum() -> None:
    candidates = _candidates(5000)
    assert [n for n in candidates if _ours(n) != _stdnum(n)] == []
    assert 0 < sum(_ours(n) is None for n in candidates) < len(candidates)


def test_a_region_stdnum_trips_over_is_refused_not_raised() -> None:
    # stdnum raises KeyError for region 123456; that once escaped event parsing entirely.
    body = "12345620190925031"
    with pytest.raises(InvalidStudentNumber):
        validate_resident_id(body + ric.calc_check_digit(body + "0"))
