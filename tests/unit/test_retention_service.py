"""The purge on in-memory ports: who and what goes when, once at a time, with its trail.

tests/integration/test_files_at_rest.py runs the same purge on PostgreSQL, with the
minimised events and the crypto-shredded files a school then asks for.
"""

from __future__ import annotations

import hashlib

import pytest

from bridge.domain.retention import RetentionPolicy
from bridge.services.retention import PurgeBusy, Retention
from tests.fakes.retention import MemoryErasures, Parked

A, B, C = "G110105201903070012", "G110105201903070039", "G110108202001097076"
DAYS = 90


async def stored(erasures: MemoryErasures, content: bytes) -> str:
    sha = hashlib.sha256(content).hexdigest()
    await erasures.files.put(sha, "application/json", content)
    return sha


def setting() -> tuple[MemoryErasures, Retention]:
    """The purge over an empty office whose clock starts three days ago (files are stored
    then, before the clock moves on to now)."""
    erasures = MemoryErasures()
    erasures.clock.advance(-3 * 86400)
    return erasures, Retention(erasures, RetentionPolicy(DAYS), erasures.clock, batch=2)


async def test_children_closed_long_enough_lose_their_data_then_their_files_go() -> None:
    erasures, retention = setting()
    f1, f2, f3 = [await stored(erasures, b"file %d" % i) for i in (1, 2, 3)]
    erasures.clock.advance(3 * 86400)
    erasures.child(A, "enrolled", closed_days_ago=DAYS + 1, file=f1)
    erasures.child(B, "enrolled", closed_days_ago=DAYS - 1, file=f2)  # not yet
    erasures.child(C, "file_delivered", closed_days_ago=None, file=f3)  # under way
    erased = []
    retention = Retention(
        erasures, RetentionPolicy(DAYS), erasures.clock,
        on_erased=lambda what, n: erased.append((what, n)),
    )  # fmt: skip
    report = await retention.purge(trigger="test", actor="cli:test")
    assert [c.student_number for c in report.children] == [A]
    assert [(f.sha256, f.reason, f.student_numbers) for f in report.files] == [
        (f1, "handover_complete", (A,))
    ]
    assert await erasures.files.content(f1) is None  # a download finds it gone
    assert await erasures.files.content(f2) == b"file 2"
    assert erasures.visible == [1]  # A's school sees its file changed at the next poll
    assert erased == [("children", 1), ("files", 1)]
    assert erasures.audit.actions() == [
        ("retention.erase", "erased"), ("record_file.erase", "erased"),
    ]  # fmt: skip
    [run] = erasures.runs
    assert (run.trigger, run.actor, run.counts, run.error) == ("test", "cli:test", (1, 1, 0), None)
    assert run.finished_at is not None
    again = await retention.purge(trigger="test")
    assert (again.children, again.files) == ([], [])


async def test_a_file_two_children_share_goes_only_once_neither_needs_it() -> None:
    erasures, retention = setting()
    shared = await stored(erasures, b"the same record file")
    erasures.clock.advance(3 * 86400)
    erasures.child(A, "enrolled", closed_days_ago=DAYS + 5, file=shared)
    erasures.child(B, "cancelled", closed_days_ago=DAYS - 5, file=shared)
    first = await retention.purge(trigger="test")
    assert [c.student_number for c in first.children] == [A] and first.files == []
    assert await erasures.files.content(shared) == b"the same record file"
    erasures.clock.advance(6 * 86400)
    later = await retention.purge(trigger="test")
    assert [(c.student_number, c.reason) for c in later.children] == [(B, "cancelled")]
    assert [(f.reason, sorted(f.student_numbers)) for f in later.files] == [
        ("cancelled", [B]),
    ]  # fmt: skip
    assert await erasures.files.content(shared) is None


async def test_a_dry_run_says_what_would_go_and_changes_nothing() -> None:
    erasures, retention = setting()
    f1 = await stored(erasures, b"file 1")
    erasures.clock.advance(3 * 86400)
    erasures.child(A, "enrolled", closed_days_ago=DAYS + 1, file=f1)
    erasures.parked.append(Parked(1, erasures.clock.now().replace(year=2000)))
    plan = await retention.plan()
    assert plan.dry_run and plan.run_id is None
    assert [c.student_number for c in plan.children] == [A]
    assert [f.sha256 for f in plan.files] == [f1] and plan.parked == 1
    assert erasures.runs == [] and erasures.audit.entries == []
    assert await erasures.files.content(f1) == b"file 1"
    assert erasures.children[1].erased_at is None and not erasures.parked[0].erased


async def test_a_file_no_child_refers_to_goes_after_a_day_of_grace() -> None:
    erasures, retention = setting()
    erasures.clock.advance(3 * 86400)
    old = await stored(erasures, b"superseded by a corrected file")
    erasures.clock.advance(3600)  # a drive may be about to refer to a file just stored
    assert (await retention.purge(trigger="test")).files == []
    erasures.clock.advance(86400)
    [gone] = (await retention.purge(trigger="test")).files
    assert (gone.sha256, gone.reason, gone.student_numbers) == (old, "superseded", ())


async def test_a_child_whose_hand_over_is_not_settled_is_left_as_it_is() -> None:
    erasures, retention = setting()
    f1 = await stored(erasures, b"file 1")
    erasures.clock.advance(3 * 86400)
    erasures.child(A, "enrolled", closed_days_ago=DAYS + 1, file=f1, settled=False)
    report = await retention.purge(trigger="test")
    assert (report.children, report.files) == ([], [])
    assert erasures.children[1].erased_at is None
    assert await erasures.files.content(f1) == b"file 1"


async def test_data_reaching_an_erased_child_later_goes_at_the_next_purge() -> None:
    erasures, retention = setting()
    erasures.clock.advance(3 * 86400)
    child = erasures.child(A, "enrolled", closed_days_ago=DAYS + 1, file=None)
    await retention.purge(trigger="test")
    erasures.clock.advance(60)
    child.updated_at = erasures.clock.now()  # a correction recorded after the erasure
    report = await retention.purge(trigger="test")
    assert [(c.student_number, c.again) for c in report.children] == [(A, True)]


async def test_resolved_parked_messages_lose_their_bodies_after_the_period() -> None:
    erasures, retention = setting()
    erasures.clock.advance(3 * 86400)
    now = erasures.clock.now()
    erasures.parked += [
        Parked(1, now.replace(year=now.year - 1)), Parked(2, now), Parked(3, None),
    ]  # fmt: skip
    report = await retention.purge(trigger="test")
    assert report.parked == 1
    assert [p.erased for p in erasures.parked] == [True, False, False]


async def test_one_purge_at_a_time_and_the_schedule_waits_for_its_interval() -> None:
    erasures, retention = setting()
    erasures.locked = True  # another instance is purging
    with pytest.raises(PurgeBusy):
        await retention.purge(trigger="cli")
    assert await retention.purge_if_due(3600) is None
    erasures.locked = False
    first = await retention.purge_if_due(3600)
    assert first is not None and erasures.runs[0].trigger == "schedule"
    erasures.clock.advance(1800)
    assert await retention.purge_if_due(3600) is None
    erasures.clock.advance(1801)
    assert await retention.purge_if_due(3600) is not None
    assert len(erasures.runs) == 2


async def test_a_purge_that_fails_is_kept_with_its_error_and_what_it_did() -> None:
    erasures, retention = setting()
    f1 = await stored(erasures, b"file 1")
    erasures.clock.advance(3 * 86400)
    erasures.child(A, "enrolled", closed_days_ago=DAYS + 1, file=f1)

    async def failing(*args: object, **kwargs: object) -> list[int]:
        raise ConnectionError("the database went away")

    erasures.erase_parked = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await retention.purge(trigger="test")
    [run] = erasures.runs
    assert run.error == "ConnectionError" and run.counts == (1, 1, 0)
