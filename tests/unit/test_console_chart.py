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
