"""The value types every query string, form and body is read with (schemas/query.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.api import HandoffListQuery, encode_cursor
from schemas.operator import ItemsQuery, ReconcileIn, RetryParkedIn, SetAsideForm


@pytest.mark.parametrize("value", ["+5", "5_0", "5.0", " 5", "5\n", "0x5", "٥", "-1", "1" * 20, ""])
def test_a_limit_is_plain_decimal_digits_within_its_range(value: str) -> None:
    with pytest.raises(ValidationError):
        ItemsQuery.model_validate({"limit": value})


def test_query_numbers_read_as_numbers() -> None:
    assert ItemsQuery.model_validate({"limit": "0050", "offset": "0"}).limit == 50
    assert HandoffListQuery.model_validate({"entry_year": "2026"}).entry_year == 2026


@pytest.mark.parametrize(
    "since",
    ["0001-01-01T00:00:00+01:00", "2026-09-01T00:00:00", "1788000000", "2026-09-01",
     "2026-09-01T00:00:00+08:00\n"],
)  # fmt: skip
def test_since_is_an_instant_with_its_offset(since: str) -> None:
    with pytest.raises(ValidationError):
        HandoffListQuery.model_validate({"since": since})


def test_a_cursor_is_one_this_api_gave() -> None:
    assert HandoffListQuery.model_validate({"cursor": encode_cursor(41)}).cursor == 41
    with pytest.raises(ValidationError):
        HandoffListQuery.model_validate({"cursor": "nonsense"})


@pytest.mark.parametrize("body", [b'{"entry_year": true}', b'{"entry_year": "2026"}',
                                  b'{"entry_year": 2026.5}', b'{"entry_year": 1}'])  # fmt: skip
def test_a_json_entry_year_is_a_json_integer_in_range(body: bytes) -> None:
    with pytest.raises(ValidationError):
        ReconcileIn.model_validate_json(body)


def test_a_parked_id_fits_a_bigint_and_names_something() -> None:
    assert RetryParkedIn.model_validate_json(b'{"id": 7}').id == 7
    for body in (b'{"id": 99999999999999999999}', b"{}", b'{"id": true}'):
        with pytest.raises(ValidationError):
            RetryParkedIn.model_validate_json(body)


def test_an_empty_form_field_is_not_given_but_an_empty_answer_is_an_answer() -> None:
    form = SetAsideForm.model_validate({"action": "resolve", "reason": "", "answer": ""})
    assert (form.reason, form.answer) == (None, "")


@pytest.mark.parametrize("fields", [{}, {"reason": "", "student_number": ""}, {"answer": "409"}])
def test_a_console_retry_naming_neither_a_group_nor_a_child_is_refused(
    fields: dict[str, str],
) -> None:
    # Else it would release every open set-aside in the operator's scope at once.
    with pytest.raises(ValidationError):
        SetAsideForm.model_validate({"action": "retry", **fields})
    assert SetAsideForm.model_validate({"action": "retry", "reason": "identity_conflict"})


def test_a_console_form_student_number_has_the_form_of_one() -> None:
    with pytest.raises(ValidationError):
        SetAsideForm.model_validate({"action": "resolve", "student_number": "../x?y"})
