"""Working days: the official calendar, 调休 weekends, loaded schedules, provisional deadlines."""

from __future__ import annotations

import datetime as dt

import pytest

from bridge.domain.working_days import WorkingCalendar, YearSchedule

D = dt.date


def test_ten_working_days_across_national_day_count_the_adjusted_saturday() -> None:
    deadline = WorkingCalendar().add_working_days(D(2026, 9, 28), 10)
    # Oct 1-7 are off; Saturday Oct 10 is a working day (调休): the 10th falls on Oct 16.
    assert deadline.day == D(2026, 10, 16)
    assert not deadline.provisional
    assert not deadline.passed(D(2026, 10, 16)) and deadline.passed(D(2026, 10, 17))


def test_a_plain_week_skips_the_weekend() -> None:
    assert WorkingCalendar().add_working_days(D(2026, 6, 5), 1).day == D(2026, 6, 8)
    assert WorkingCalendar().add_working_days(D(2026, 6, 5), 0).day == D(2026, 6, 5)


def test_a_year_without_a_schedule_counts_weekends_only_and_says_so() -> None:
    deadline = WorkingCalendar().add_working_days(D(2027, 9, 28), 10)
    assert deadline == type(deadline)(D(2027, 10, 12), provisional=True)
    assert "provisional" in str(deadline)


def test_a_deadline_reaching_into_an_unknown_year_is_provisional() -> None:
    assert WorkingCalendar().add_working_days(D(2026, 12, 24), 10).provisional


def test_a_loaded_schedule_makes_a_later_year_official() -> None:
    schedule = YearSchedule.from_mapping(
        {"year": 2027, "holidays": {f"2027-10-0{d}": "National Day" for d in range(1, 8)},
         "working_days": ["2027-09-26", "2027-10-09"]}
    )  # fmt: skip
    cal = WorkingCalendar({2027: schedule})
    assert cal.official(2027)
    assert cal.is_working_day(D(2027, 10, 9)) and not cal.is_working_day(D(2027, 10, 4))
    deadline = cal.add_working_days(D(2027, 9, 28), 5)
    assert deadline.day == D(2027, 10, 11) and not deadline.provisional
    assert YearSchedule.from_mapping(schedule.to_mapping()) == schedule


@pytest.mark.parametrize(
    "data",
    [
        {"year": 2027, "holidays": ["2028-01-01"]},
        {"year": 2027, "holidays": ["2027-10-09"], "working_days": ["2027-10-09"]},
        {"year": 2027, "working_days": ["2027-10-11"]},
    ],
)
def test_a_schedule_that_contradicts_itself_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        YearSchedule.from_mapping(data)


def test_latest_start_passed_agrees_with_deadlines() -> None:
    cal = WorkingCalendar()
    today = D(2026, 10, 17)
    cut = cal.latest_start_passed(today, 10)
    assert cal.add_working_days(cut.day, 10).passed(today)
    assert not cal.add_working_days(cut.day + dt.timedelta(days=1), 10).passed(today)
