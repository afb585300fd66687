"""Hypothesis strategies for valid and invalid student numbers (test-side, from rules.md)."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def mod11_2(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character, written out here independently of the code."""
    total = sum(int(c) * w for c, w in zip(body17, WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


regions = st.sampled_from(["110105", "310115", "440305", "510107", "320102"])
birth_dates = st.dates(dt.date(2015, 1, 1), dt.date(2023, 12, 31))
sequences = st.integers(0, 999)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    """A valid 18-character resident ID number."""
    body = f"{draw(regions)}{draw(birth_dates):%Y%m%d}{draw(sequences):03d}"
    return body + mod11_2(body)


@st.composite
def g_numbers(draw: st.DrawFn) -> str:
    return "G" + draw(resident_ids())


@st.composite
def j_numbers(draw: st.DrawFn) -> str:
    body = f"{draw(regions)}{draw(birth_dates):%Y%m%d}{draw(sequences):03d}"
    return "J" + body + mod11_2(body)


@st.composite
def l_numbers(draw: st.DrawFn) -> str:
    return f"L{draw(regions)}{draw(birth_dates):%Y%m%d}{draw(st.integers(0, 9999)):04d}"
