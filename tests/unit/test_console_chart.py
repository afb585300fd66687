"""The overview chart shows every category but matched, each in a colour of its own."""

from __future__ import annotations

import datetime as dt

from bridge.api.chart import COLOURS, SHOWN, category_chart
from bridge.domain.reconciliation import Category
from bridge.services.ports.reconciliation import RunInfo


def test_every_category_but_matched_has_its_own_colour_in_the_legend() -> None:
    assert Category.NOT_IN_ROSTER in SHOWN and Category.MATCHED not in SHOWN
    assert len(SHOWN) == len(Category) - 1
    assert len(set(COLOURS)) == len(COLOURS) == len(SHOWN)
    run = RunInfo(
        1, 2026, "test", None, "finished", dt.datetime.now(dt.UTC), None,
        dt.date(2026, 9, 1), False, {}, {c.value: 1 for c in Category}, 0, None,
    )  # fmt: skip
    svg = str(category_chart([run]))
    for category in SHOWN:
        assert f"{category.value}</text>" in svg, category
        assert f"{category.value}: 1</title>" in svg, category


def test_links_carry_only_the_filters_given() -> None:
    from bridge.api.console import query_string

    assert query_string(entry_year=2026, county="110105", school=None, new=True, page=0) == (
        "entry_year=2026&county=110105&new=1&page=0"
    )


def test_a_parked_body_is_shown_as_fields_not_json() -> None:
    from bridge.api.console import _flattened

    rows = _flattened({"data": {"child": {"name": "王*"}, "list": [1, {}]}, "id": None})
    assert rows == [
        ("data.child.name", "王*"), ("data.list[0]", "1"), ("data.list[1]", "{}"), ("id", "—"),
    ]  # fmt: skip


def test_refusals_say_in_chinese_first_what_is_wrong() -> None:
    from pydantic import ValidationError

    from bridge.api.console import explained
    from schemas.operator import ConsoleLostQuery

    try:
        ConsoleLostQuery.model_validate({"page": "abc", "school": "12"})
    except ValidationError as exc:
        said = {e["loc"]: e["msg"] for e in explained(exc)}
    assert said["page"].startswith("格式不对") and said["school"].startswith("格式不对")
    assert "abc" not in str(said)
