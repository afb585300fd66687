"""Checks of request bodies against registry-api.md; each returns a list of errors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from simulator.numbers import resident_id_problem, student_number_problem

Errors = list[dict[str, str]]

ID_TYPES = ("resident_id", "hk_macau_taiwan_permit", "passport", "none")
GENDERS = ("M", "F")
_SCHOOL_CODE = re.compile(r"^\d{10}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_LEN = 50


def _err(errors: Errors, field: str, message: str) -> None:
    errors.append({"field": field, "message": message})


def parse_date(value: Any) -> dt.date | None:
    """An ISO 8601 calendar date `YYYY-MM-DD`, or None if `value` is not one."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def check_student_number(errors: Errors, field: str, value: Any) -> None:
    """Add an error if `value` is not a well-formed student number."""
    problem = student_number_problem(value) if isinstance(value, str) else "must be a string"
    if problem:
        _err(errors, field, problem)


def check_school_code(errors: Errors, field: str, value: Any, *, nullable: bool) -> None:
    """Add an error if `value` is not a 10-digit school identifier (or null if allowed)."""
    if value is None and nullable:
        return
    if not isinstance(value, str) or not _SCHOOL_CODE.match(value):
        _err(errors, field, "must be a 10-digit school identifier")


def check_key_info(errors: Errors, prefix: str, body: dict[str, Any], *, required: bool) -> None:
    """Check `name`, `gender`, `birth_date` (all required, or any present)."""
    for key in ("name", "gender", "birth_date"):
        if key not in body:
            if required:
                _err(errors, prefix + key, "missing")
            continue
        value = body[key]
        if key == "name" and (
            not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LEN
        ):
            _err(errors, prefix + key, "must be a non-empty string")
        elif key == "gender" and value not in GENDERS:
            _err(errors, prefix + key, "must be M or F")
        elif key == "birth_date" and parse_date(value) is None:
            _err(errors, prefix + key, "must be a date YYYY-MM-DD")


def check_identity(errors: Errors, prefix: str, id_type: Any, id_number: Any) -> None:
    """Check an `id_type` / `id_number` pair."""
    if id_type not in ID_TYPES:
        _err(errors, prefix + "id_type", f"must be one of {', '.join(ID_TYPES)}")
        return
    if id_type == "none":
        if id_number is not None:
            _err(errors, prefix + "id_number", "must be null when id_type is none")
        return
    if not isinstance(id_number, str) or not id_number.strip():
        _err(errors, prefix + "id_number", "missing")
        return
    if id_type == "resident_id":
        problem = resident_id_problem(id_number)
        if problem:
            _err(errors, prefix + "id_number", problem)


def check_number_matches_identity(
    errors: Errors, field: str, number: str, id_type: Any, id_number: Any
) -> None:
    """A G number is the resident ID number behind a `G`: they must agree."""
    if number.startswith("G") and id_type == "resident_id" and id_number != number[1:]:
        _err(errors, field, "a G number must be G followed by the child's resident ID number")


def check_intake(number: str, body: Any) -> Errors:
    """Validate a B1 intake body for `number`."""
    errors: Errors = []
    check_student_number(errors, "student_number", number)
    if not isinstance(body, dict):
        return [*errors, {"field": "", "message": "body must be a JSON object"}]
    year = body.get("entry_year")
    if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
        _err(errors, "entry_year", "must be a year")
    child = body.get("child")
    if not isinstance(child, dict):
        _err(errors, "child", "missing or not an object")
    else:
        check_key_info(errors, "child.", child, required=True)
        if "id_type" not in child:
            _err(errors, "child.id_type", "missing")
        elif "id_number" not in child:
            _err(errors, "child.id_number", "missing")
        else:
            check_identity(errors, "child.", child["id_type"], child["id_number"])
            if not errors:
                check_number_matches_identity(
                    errors, "student_number", number, child["id_type"], child["id_number"]
                )
        nationality = child.get("nationality")
        if not isinstance(nationality, str) or not nationality.strip():
            _err(errors, "child.nationality", "missing")
    check_school_code(errors, "kindergarten_code", body.get("kindergarten_code"), nullable=False)
    if parse_date(body.get("graduated_on")) is None:
        _err(errors, "graduated_on", "must be a date YYYY-MM-DD")
    check_school_code(
        errors, "requested_school_code", body.get("requested_school_code"), nullable=True
    )
    check_record_file_claim(errors, body.get("record_file"))
    return errors


def check_record_file_claim(errors: Errors, claim: Any) -> None:
    """Check `record_file` = `{"sha256", "size", "media_type"}`."""
    if not isinstance(claim, dict):
        _err(errors, "record_file", "missing or not an object")
        return
    if not isinstance(claim.get("sha256"), str) or not _SHA256.match(claim["sha256"]):
        _err(errors, "record_file.sha256", "must be 64 lowercase hex characters")
    size = claim.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        _err(errors, "record_file.size", "must be a non-negative integer")
    if not isinstance(claim.get("media_type"), str) or "/" not in claim["media_type"]:
        _err(errors, "record_file.media_type", "must be a media type")


def check_number_change(number: str, body: Any) -> Errors:
    """Validate a B4 number-change body."""
    errors: Errors = []
    check_student_number(errors, "student_number", number)
    if not isinstance(body, dict):
        return [*errors, {"field": "", "message": "body must be a JSON object"}]
    new = body.get("new_student_number")
    check_student_number(errors, "new_student_number", new)
    if "id_type" not in body:
        _err(errors, "id_type", "missing")
    elif "id_number" not in body:
        _err(errors, "id_number", "missing")
    else:
        check_identity(errors, "", body["id_type"], body["id_number"])
    if not errors:
        check_number_matches_identity(
            errors, "new_student_number", str(new), body["id_type"], body["id_number"]
        )
    return errors


def check_key_info_patch(number: str, body: Any) -> Errors:
    """Validate a B5 body: one or more of name, gender, birth_date and nothing else."""
    errors: Errors = []
    check_student_number(errors, "student_number", number)
    if not isinstance(body, dict):
        return [*errors, {"field": "", "message": "body must be a JSON object"}]
    unknown = set(body) - {"name", "gender", "birth_date"}
    for key in sorted(unknown):
        _err(errors, key, "only name, gender and birth_date can be corrected")
    if not set(body) & {"name", "gender", "birth_date"}:
        _err(errors, "", "give at least one of name, gender, birth_date")
    check_key_info(errors, "", body, required=False)
    return errors


def check_arrival(number: str, body: Any) -> Errors:
    """Validate a B6 body `{"school_code", "arrived_on"}`."""
    errors: Errors = []
    check_student_number(errors, "student_number", number)
    if not isinstance(body, dict):
        return [*errors, {"field": "", "message": "body must be a JSON object"}]
    check_school_code(errors, "school_code", body.get("school_code"), nullable=False)
    if parse_date(body.get("arrived_on")) is None:
        _err(errors, "arrived_on", "must be a date YYYY-MM-DD")
    return errors
