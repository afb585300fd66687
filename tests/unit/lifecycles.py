"""Random lifecycles of one child as domain events, for property-based tests."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import assume
from hypothesis import strategies as st

from bridge.domain.events import (
    Cancelled,
    Child,
    ChildEvent,
    Deferred,
    EventType,
    Graduated,
    KeyInfoChanged,
    NumberAssigned,
    RecordFileClaim,
)
from tests.unit.numbers import mod11_2

ID_NUMBER_BODY = "11010520190307001"
ID_NUMBER = ID_NUMBER_BODY + mod11_2(ID_NUMBER_BODY)
G_NUMBER = "G" + ID_NUMBER
L_NUMBER = "L110105201903071234"
TIME = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)

STEP_KINDS = ["graduate", "defer", "number", "correct", "cancel"]


def _claim(variant: int) -> RecordFileClaim:
    sha = f"{variant:064x}"
    return RecordFileClaim(f"http://files/{variant}", sha, 1000 + variant, "application/json")


@st.composite
def lifecycles(draw: st.DrawFn, max_steps: int = 7) -> list[ChildEvent]:
    """Events of one child with childseq 1..n in the order the registry approved them."""
    temporary = draw(st.booleans())
    number = L_NUMBER if temporary else G_NUMBER
    id_type, id_number = ("none", None) if temporary else ("resident_id", ID_NUMBER)
    name = "王小明"
    year = 2026
    events: list[ChildEvent] = []
    steps = draw(st.lists(st.sampled_from(STEP_KINDS), min_size=1, max_size=max_steps))
    for kind in steps:
        seq = len(events) + 1
        data: object
        if kind == "graduate":
            year = draw(st.sampled_from([year, year + 1]))
            child = Child(name, "M", dt.date(2019, 3, 7), id_type, id_number, "CN")
            school = draw(st.sampled_from([None, "2111010502", "2111010503"]))
            data = Graduated(
                number, child, "1111010501", "110105", dt.date(year, 7, 3), year, school,
                _claim(draw(st.integers(1, 3))),
            )  # fmt: skip
            etype = EventType.GRADUATED
        elif kind == "defer":
            data = Deferred(
                number, year, dt.date(year + 1, 8, 31), "110105", "health", "1111010501"
            )
            etype = EventType.DEFERRED
        elif kind == "number":
            if number != L_NUMBER:
                continue
            data = NumberAssigned(L_NUMBER, G_NUMBER, "resident_id", ID_NUMBER)
            number, id_type, id_number = G_NUMBER, "resident_id", ID_NUMBER
            etype = EventType.NUMBER_ASSIGNED
        elif kind == "correct":
            name = draw(st.sampled_from(["王晓明", "王小名", "王小明"]))
            data = KeyInfoChanged(number, {"name": name}, "110105")
            etype = EventType.KEY_INFO_CHANGED
        else:
            data = Cancelled(number, "deceased", dt.date(year, 5, 2))
            etype = EventType.CANCELLED
        events.append(
            ChildEvent(str(uuid.UUID(int=seq)), seq, etype, number, TIME, data)  # type: ignore[arg-type]
        )
    assume(events)
    return events
