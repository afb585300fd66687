"""Pure demonstration of defect 5 (no database). It passes while the defect is there.

Run: .venv/bin/python -m pytest -q -c pyproject.toml -p no:cacheprovider docs/known-defects/
"""

from __future__ import annotations

import datetime as dt

from bridge.domain.reconciliation import (
    WORKLIST,
    Category,
    LedgerEntry,
    Policy,
    RegistryEntry,
    RosterEntry,
    classify,
)
from bridge.domain.working_days import WorkingCalendar
from tests.support.wire_events import G

# --- lead 5: a registration under a former number, no shared id, is information only -----
POLICY = Policy(
    today=dt.date(2026, 9, 20), calendar=WorkingCalendar(), term_start=dt.date(2026, 9, 1)
)


def test_stray_registration_under_old_number_is_only_not_in_roster() -> None:
    L_NUM = "L110108202001091537"
    # Registry still holds the child under its temporary number (id_type none -> no id).
    stray = RegistryEntry(L_NUM, None, "registered", "2111010898", None)
    found = classify(None, None, stray, POLICY)
    assert found.categories == {Category.NOT_IN_ROSTER}
    assert not (found.categories & WORKLIST)  # Handling.NONE: nobody is asked to act
    # The same child under its current number looks perfectly fine.
    sha = "a" * 64
    r = RosterEntry(G, G[1:], "graduated", 8, "1111010873")
    led = LedgerEntry(
        1,
        G,
        "graduated",
        "enrolled",
        id_number=G[1:],
        county_code="110108",
        kindergarten_code="1111010873",
        school_code="2111010898",
        last_childseq=8,
        first_graduated_on=dt.date(2026, 7, 5),
        handed_over_on=dt.date(2026, 7, 8),
        file_sha256=sha,
        arrived=True,
        file_pulled=True,
    )
    reg = RegistryEntry(G, G[1:], "enrolled", "2111010898", sha)
    assert classify(r, led, reg, POLICY).categories == {Category.MATCHED}
    # No identity number is shared (None under L), so two_numbers_one_identity cannot fire.
