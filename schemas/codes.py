"""Constrained string types shared by every wire model."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from bridge.domain.student_number import StudentNumber


def _student_number(value: str) -> str:
    return StudentNumber.parse(value).value


StudentNumberStr = Annotated[str, AfterValidator(_student_number)]
CountyCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
SchoolCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
EntryYear = Annotated[int, "entry year"]
