"""Every code an operator can meet has a sentence, in Chinese first with English beside."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from bridge.domain.handoff import Phase, SetAsideReason
from bridge.domain.reconciliation import Category
from bridge.domain.wording import (
    CATEGORY_WORDING,
    PARKED_WORDING,
    PHASE_WORDING,
    SET_ASIDE_WORDING,
    china_time,
    say,
)
from bridge.domain.working_days import WorkingCalendar
from bridge.services.casework import read_school_names

ROOT = Path(__file__).resolve().parents[2]
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _chinese_first(text: str) -> bool:
    return bool(_CJK.match(text))


@pytest.mark.parametrize("category", list(Category))
def test_every_category_is_a_sentence_with_advice(category: Category) -> None:
    w = CATEGORY_WORDING[category]
    assert _chinese_first(w.zh) and w.en and w.advice_zh and w.advice_en
    assert w.zh.endswith("。") and category.value not in w.zh


@pytest.mark.parametrize("reason", list(SetAsideReason))
def test_every_set_aside_reason_is_worded(reason: SetAsideReason) -> None:
    w = SET_ASIDE_WORDING[reason]
    assert _chinese_first(w.zh) and w.en and w.advice_zh


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_is_worded(phase: Phase) -> None:
    assert _chinese_first(PHASE_WORDING[phase].zh)


def _parking_codes() -> set[str]:
    """Every reason code the consumers and the event schema park a message with."""
    codes: set[str] = set()
    for path in [*(ROOT / "consumers").glob("*.py"), ROOT / "schemas" / "events.py"]:
        text = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'code="([a-z_]+)"', text))
        codes |= set(re.findall(r'return "([a-z_]+)", ', text))
    return codes


def test_every_parking_reason_code_in_the_source_is_worded() -> None:
    codes = _parking_codes()
    assert {"not_json", "invalid_data", "delivery_limit"} <= codes  # the scan finds them
    missing = codes - set(PARKED_WORDING)
    assert not missing, missing
    for code in codes:
        assert _chinese_first(PARKED_WORDING[code].zh)


def test_an_unknown_code_is_shown_as_itself_not_dropped() -> None:
    assert "no_such_code" in say("category", "no_such_code").zh
    assert say("set_aside", "bad_source_file") is SET_ASIDE_WORDING[SetAsideReason.BAD_SOURCE_FILE]


def test_times_are_china_time_with_the_zone_shown() -> None:
    # A run at 00:08 China time is 16:08 UTC the day before.
    moment = dt.datetime(2026, 9, 1, 16, 8, tzinfo=dt.UTC)
    assert china_time(moment) == "2026-09-02 00:08 北京时间 (UTC+8)"
    assert china_time(None) == "—"


def test_working_days_waited_skip_weekends_and_holidays() -> None:
    cal = WorkingCalendar()
    # 2026-09-25 (Mid-Autumn) to 2026-10-09: National Day week is off; Mon 28, Tue 29,
    # Wed 30 Sep and Thu 8, Fri 9 Oct are working days.
    assert cal.working_days_between(dt.date(2026, 9, 25), dt.date(2026, 10, 9)) == 5
    assert cal.working_days_between(dt.date(2026, 9, 7), dt.date(2026, 9, 7)) == 0
    assert cal.working_days_between(dt.date(2026, 9, 4), dt.date(2026, 9, 7)) == 1


def test_a_school_names_file_is_read_with_its_bom_and_header_and_refused_line_by_line() -> None:
    text = "\ufeffcode,name\n2111010502,朝阳区实验小学\n\n1111010501, 朝阳区第一幼儿园 \n"
    assert read_school_names(text) == [
        ("2111010502", "朝阳区实验小学"), ("1111010501", "朝阳区第一幼儿园"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="line 2"):
        read_school_names("2111010502,甲\n21110105,乙\n")
    with pytest.raises(ValueError, match="line 1"):
        read_school_names("2111010502,\n")
