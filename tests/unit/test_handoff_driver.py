"""The hand-over driver on in-memory ports: what the registry ends up holding, per case.

No broker, no database, no HTTP: the ledger, both registries and the file store are the
fakes of tests/fakes, so each case runs in milliseconds. tests/integration and
tests/faults drive the same code through the real services.
"""

from __future__ import annotations

import pytest

from bridge.domain.arrival import Arrival
from bridge.errors import RegistryUnavailable
from tests.support import wire_events as wire
from tests.unit.handoff_rig import FILE, SCHOOL, SHA, J, Rig, graduated_with, set_aside_child


async def test_a_graduated_child_is_registered_with_its_verified_file() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.G, 1))
    await rig.work()
    assert rig.target.held() == {wire.G: (2026, "registered", SHA)}
    assert rig.phase(wire.G) == "file_delivered"
    assert await rig.files.content(SHA) == FILE  # the sending side keeps its copy
    assert len(rig.source.fetched) == 1
    row = rig.ledger.child_of(wire.G)
    assert row.due_at is None and row.lease is None  # done: nothing due, lease given back


async def test_a_passing_failure_waits_in_the_ledger_then_resumes() -> None:
    rig = Rig()
    rig.target.failures.add("intake", RegistryUnavailable("intake: HTTP 503"))
    await rig.receive(graduated_with(wire.G, 1))
    await rig.work()
    row = rig.ledger.child_of(wire.G)
    assert rig.target.held() == {}
    assert (row.attempts, row.last_error) == (1, "registry_unavailable")
    assert row.due_at is not None and row.due_at > rig.clock.now() and row.lease is None
    assert rig.counted("xueji_retries_total", operation="SubmitIntake", kind="durable") == 1
    rig.clock.advance(700)  # past the longest durable delay
    await rig.work()
    assert rig.target.held() == {wire.G: (2026, "registered", SHA)}
    assert rig.ledger.child_of(wire.G).attempts == 0


async def test_an_identity_under_another_number_is_set_aside_never_worked_around() -> None:
    rig = Rig()
    await set_aside_child(rig)
    assert set(rig.target.held()) == {J}  # no second number for the same person
    assert rig.phase(wire.G) == "set_aside"
    aside = rig.ledger.child_of(wire.G).handoff.set_aside
    assert aside is not None and aside.reason == "identity_conflict"
    assert aside.detail["existing_student_number"] == J
    assert rig.counted("xueji_set_aside_total", reason="identity_conflict") == 1
    assert rig.ledger.child_of(wire.G).due_at is None  # never retried by itself


async def test_a_deferral_after_the_hand_over_withdraws_the_registration() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.G, 1))
    await rig.work()
    await rig.receive(wire.deferred(wire.G, 2))
    await rig.work()
    assert rig.target.held() == {}
    assert rig.target.students[wire.G].status == "withdrawn"
    assert rig.phase(wire.G) == "deferred"


async def test_a_new_number_after_the_hand_over_moves_the_registration() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.L, 1))
    await rig.work()
    await rig.receive(wire.number_assigned(wire.L, wire.G, 2))
    await rig.work()
    assert rig.target.held() == {wire.G: (2026, "registered", SHA)}
    assert "number_change" in rig.target.calls and rig.target.calls.count("intake") == 1
    assert rig.ledger.child_of(wire.L) is rig.ledger.child_of(wire.G)  # one child, two numbers


async def test_a_crash_after_the_registry_acted_repeats_the_call_not_the_registration() -> None:
    rig = Rig()
    rig.target.failures.add("record_file", RuntimeError("the process died here"))
    await rig.receive(graduated_with(wire.G, 1))
    with pytest.raises(RuntimeError):
        await rig.work()
    assert rig.target.students[wire.G].status == "registered"  # B1 happened
    rig.ledger.lapse_leases()  # the instance is gone; its lease runs out
    await rig.work()
    assert rig.target.held() == {wire.G: (2026, "registered", SHA)}
    assert rig.target.calls.count("intake") == 2  # asked again, with the same key ...
    assert rig.target.students[wire.G].created_count == 1  # ... and registered once


async def test_a_reported_arrival_is_told_to_the_registry() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.G, 1))
    await rig.work()
    row = rig.ledger.child_of(wire.G)
    await rig.ledger.request_arrival(row.child_id, Arrival(SCHOOL, rig.clock.now().date()))
    await rig.work()
    assert rig.target.students[wire.G].status == "enrolled"
    assert rig.phase(wire.G) == "enrolled"


async def test_a_drive_whose_lease_went_to_another_instance_calls_nothing() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.G, 1))
    [(state, first)] = await rig.ledger.claim_due_loaded("one", 1)
    rig.ledger.lapse_leases()
    [(_, second)] = await rig.ledger.claim_due_loaded("two", 1)
    await rig.driver.drive(state.child_id, first, state)  # LeaseLost: logged, not raised
    assert rig.target.calls == []  # its intent could not be written: no B1 went out
    assert rig.ledger.child_of(wire.G).lease == second


async def test_a_stored_copy_failing_authentication_is_fetched_again_for_an_upload() -> None:
    rig = Rig()
    await rig.receive(graduated_with(wire.G, 1))
    await rig.work()
    rig.files.damage(SHA)
    # The registration went missing: the repair submits it again, and the file with it,
    # from the stored copy, which fails authentication; the preschool registry's copy
    # is fetched, checked against its claim and stored anew.
    child_id = rig.ledger.child_of(wire.G).child_id
    await rig.ledger.amend(child_id, lambda record, h: h.registration_missing(wire.G))
    rig.target.students.clear()
    rig.target.answers.clear()
    await rig.work()
    assert rig.files.damage_reports == [(SHA, "upload", wire.G)]
    assert len(rig.source.fetched) == 2
    assert rig.target.held() == {wire.G: (2026, "registered", SHA)}  # B2 checks the digest
    assert await rig.files.content(SHA) == FILE  # the sound copy took the damaged one's place
