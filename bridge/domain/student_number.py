"""Student numbers (学籍号): the three forms of rules.md and their check characters."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from dataclasses import dataclass

from stdnum.cn import ric
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from stdnum.iso7064 import mod_11_2

from bridge.errors import InvalidStudentNumber


class NumberForm(enum.StrEnum):
    """Which kind of number a child holds."""

    RESIDENT_ID = "G"  # G + 18-character resident ID number
    FORMAL_NO_ID = "J"  # J + region + birth date + sequence + check character
    TEMPORARY = "L"  # L + region + birth date + 4 random digits, no check character


# The shape of any number, before its check characters are looked at (fullmatch: no "$"
# that a trailing newline slips past).
NUMBER_FORM = re.compile(r"[GJL][0-9]{17}[0-9X]")
# ASCII digits only (\d takes any script's digits), matched whole.
_J_PATTERN = re.compile(r"[0-9]{6}([0-9]{8})[0-9]{3}[0-9X]")
_L_PATTERN = re.compile(r"[0-9]{6}([0-9]{8})[0-9]{4}")


def _birth_date(yyyymmdd: str) -> dt.date:
    try:
        return dt.datetime.strptime(yyyymmdd, "%Y%m%d").date()
    except ValueError as exc:
        # The digits are a birth date: personal data, kept out of the message.
        raise InvalidStudentNumber("the birth date it holds is not a calendar date") from exc


@functools.lru_cache(maxsize=4096)
def _birth_place_known(region: str, birth_year: int) -> bool:
    # stdnum's lookup of the region code table dominated parsing an event; the answer
    # depends only on the region and the birth year, of which there are few.
    try:
        ric.get_birth_place(f"{region}{birth_year:04d}01010000")
    except (ValidationError, KeyError):  # stdnum raises KeyError for some unknown regions
        return False
    return True


def validate_resident_id(value: str) -> str:
    """Return the resident ID number (居民身份证号) if its form, date and check character hold.

    The checks and messages of stdnum's ``ric.validate``, with the region lookup cached.
    """
    try:
        number = str(ric.compact(value))
        if len(number) != 18:
            raise InvalidLength()
        if not number[:-1].isdigit() or not number[:-1].isascii():
            raise InvalidFormat()
        if number[-1] != ric.calc_check_digit(number):
            raise InvalidChecksum()
        birth = ric.get_birth_date(number)
        if not _birth_place_known(number[:6], birth.year):
            raise InvalidComponent()
        return number
    except ValidationError as exc:
        # stdnum's message never echoes the number, so it is safe to pass on.
        raise InvalidStudentNumber(f"resident ID number is not valid: {exc}") from exc


@dataclass(frozen=True, slots=True)
class StudentNumber:
    """A validated lifelong student number."""

    value: str

    @classmethod
    def parse(cls, value: str) -> StudentNumber:
        """Validate *value* against the forms of rules.md; raise InvalidStudentNumber if not."""
        if not isinstance(value, str) or len(value) != 19:
            raise InvalidStudentNumber("a student number is 19 characters: G, J or L and 18 more")
        prefix, body = value[0], value[1:]
        if prefix == NumberForm.RESIDENT_ID:
            validate_resident_id(body)
        elif prefix == NumberForm.FORMAL_NO_ID:
            match = _J_PATTERN.fullmatch(body)
            if not match:
                raise InvalidStudentNumber(
                    "J number must be region(6) date(8) sequence(3) check(1)"
                )
            _birth_date(match.group(1))
            if not mod_11_2.is_valid(body):
                raise InvalidStudentNumber("J number check character is wrong")
        elif prefix == NumberForm.TEMPORARY:
            match = _L_PATTERN.fullmatch(body)
            if not match:
                raise InvalidStudentNumber("L number must be region(6) date(8) random(4) digits")
            _birth_date(match.group(1))
        else:
            raise InvalidStudentNumber("a student number starts with G, J or L")
        return cls(value)

    @property
    def form(self) -> NumberForm:
        """G, J or L."""
        return NumberForm(self.value[0])

    @property
    def birth_date(self) -> dt.date:
        """The birth date every form carries in characters 7-14 of its body."""
        return _birth_date(self.value[7:15])

    def __str__(self) -> str:
        return self.value


def has_number_form(value: str) -> bool:
    """Whether *value* is shaped like a student number (G, J or L and 18 more)."""
    return NUMBER_FORM.fullmatch(value) is not None


def mask(value: str | None) -> str:
    """Mask an identity or student number for logs: keep the form and last two characters."""
    if not value:
        return "-"
    return f"{value[:1]}***{value[-2:]}" if len(value) > 4 else "***"
