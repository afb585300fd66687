"""Student number forms and check characters (rules.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.student_number import NumberForm, StudentNumber, mask
from bridge.errors import InvalidStudentNumber
from tests.unit.numbers import g_numbers, j_numbers, l_numbers, mod11_2


@given(g_numbers())
def test_every_well_formed_g_number_is_accepted(number: str) -> None:
    parsed = StudentNumber.parse(number)
    assert parsed.form is NumberForm.RESIDENT_ID
    assert parsed.birth_date.strftime("%Y%m%d") == number[7:15]


@given(j_numbers())
def test_every_well_formed_j_number_is_accepted(number: str) -> None:
    assert StudentNumber.parse(number).form is NumberForm.FORMAL_NO_ID


@given(l_numbers())
def test_every_well_formed_l_number_is_accepted(number: str) -> None:
    assert StudentNumber.parse(number).form is NumberForm.TEMPORARY


@given(st.one_of(g_numbers(), j_numbers()), st.sampled_from("0123456789X"))
def test_a_wrong_check_character_is_refused(number: str, replacement: str) -> None:
    if number[-1] == replacement:
        return
    with pytest.raises(InvalidStudentNumber):
        StudentNumber.parse(number[:-1] + replacement)


def test_the_contract_example_number_is_valid() -> None:
    assert StudentNumber.parse("G110105201903070012").value == "G110105201903070012"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "G11010520190307001",  # too short
        "X110105201903070012",  # unknown form
        "G110105201902300016",  # 30 February
        "L1101052019030712AB",  # L takes digits only
        "J11010520190307001" + "Y",
        "L110105201913071234",  # month 13
    ],
)
def test_malformed_numbers_are_refused(value: str) -> None:
    with pytest.raises(InvalidStudentNumber):
        StudentNumber.parse(value)


def test_refusal_messages_never_echo_the_number() -> None:
    number = "G110105201903070013"
    with pytest.raises(InvalidStudentNumber) as info:
        StudentNumber.parse(number)
    assert number[1:] not in str(info.value)


def test_check_character_of_the_contract_example() -> None:
    assert mod11_2("11010520190307001") == "2"


def test_mask_keeps_no_more_than_form_and_two_characters() -> None:
    assert mask("G110105201903070012") == "G***12"
    assert mask(None) == "-"


@pytest.mark.parametrize(
    "value",
    [
        "J" + "١١٠١٠٥" + "20190307" + "001" + "5",  # Arabic-Indic digits: \d would take them
        "L" + "110105" + "20190307" + "٠٠١٢",
        "L11010520190307001\n",
    ],
)
def test_a_number_is_ascii_digits_matched_whole(value: str) -> None:
    with pytest.raises(InvalidStudentNumber):
        StudentNumber.parse(value)
