"""Pure demonstrations for leads 2, 4, 5 (no database).

Run: cd /work/main && .venv/bin/python -m pytest -q -c pyproject.toml -p no:cacheprovider docs/known-defects/test_unit_leads.py
"""

from __future__ import annotations

import datetime as dt
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))

import orjson
from events_helper import G, cancelled, ev, graduated, key_info

from bridge.adapters.postgres.derived import Derived
from bridge.adapters.postgres.handoff_codec import dump_handoff, load_handoff
from bridge.adapters.postgres.ledger import Ledger
from bridge.domain.child_record import RecordStatus, fold
from bridge.domain.handoff import Arrival, Handoff, SetAsideReason
from bridge.domain.intake import IntakeRequest
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


# --- lead 2: the save guard's last_childseq is a max, blind to a late lower-seq event ---------
def test_late_lower_childseq_event_changes_record_but_not_last_childseq() -> None:
    grad, cancel, correct = ev(graduated(G, 7)), ev(cancelled(G, 9)), ev(key_info(G, 10))
    seen_by_worker = fold([grad[0], correct[0]])  # leased before seq 9 arrived
    stored = fold([grad[0], correct[0], cancel[0]])  # what _record_event folds after it
    assert seen_by_worker.status is RecordStatus.GRADUATED
    assert stored.status is RecordStatus.CANCELLED
    # The fast-save guard (ledger_batch.py: c.last_childseq = v.expected_childseq) and the
    # slow path's refold test (ledger.py: row['last_childseq'] != record.last_childseq)
    # both compare this number, which did not move:
    assert seen_by_worker.last_childseq == stored.last_childseq == 10
    # ... so the worker's save writes the stale derivation over the fresh one.
    intake = IntakeRequest.for_record(seen_by_worker)
    h = Handoff().file_verified(intake.file_sha256).intake_registered(intake, "2111010898")
    h = h.file_delivered(G, intake.file_sha256)
    stale, fresh = Derived.of(seen_by_worker, h), Derived.of(stored, h)
    assert (stale.status, stale.phase.value, stale.has_work) == (
        "graduated",
        "file_delivered",
        False,
    )
    assert (fresh.status, fresh.phase.value, fresh.has_work) == ("cancelled", "withdrawing", True)


# --- lead 4: _merge keeps registrations and verified file only -----------------------------
class FakeConn:
    def __init__(self, handoffs: list[Handoff]) -> None:
        self.handoffs = handoffs
        self.written: Handoff | None = None

    async def fetch(self, sql: str, *args: object) -> list[dict[str, str]]:
        return [{"handoff": orjson.dumps(dump_handoff(h)).decode()} for h in self.handoffs]

    async def execute(self, sql: str, *args: object) -> str:
        if sql.startswith("UPDATE children SET handoff"):
            self.written = load_handoff(orjson.loads(args[1]))  # type: ignore[arg-type]
        return "UPDATE 1"


async def test_merge_drops_arrival_set_aside_and_generation() -> None:
    grad = ev(graduated(G, 7))[0]
    record = fold([grad])
    survivor = Handoff(generation=2).arrival_requested(Arrival("2111010898", dt.date(2026, 9, 1)))
    other = Handoff(generation=1).aside(record, SetAsideReason.IDENTITY_CONFLICT, code="x")
    conn = FakeConn([survivor, other])
    merged = await Ledger._merge(None, conn, 1, [2])  # type: ignore[arg-type]
    assert conn.written == merged
    assert merged.arrival is None  # the school's arrival report is gone
    assert merged.set_aside is None  # the operator hold is gone
    assert merged.generation == 0  # idempotency generation reset (keys reused)


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
