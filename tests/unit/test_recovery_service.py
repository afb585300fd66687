"""Operators' recovery actions on in-memory ports: what they release, republish and record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from bridge.domain.access import Principal, Role
from bridge.services.acting import Acting
from bridge.services.ports.recovery import OriginalMessage
from bridge.services.recovery import Recovery
from tests.fakes.stores import MemoryAudit, MemoryParkedArchive
from tests.fakes.worklist import MemoryWorklist
from tests.support import wire_events as wire
from tests.unit.handoff_rig import SHA, J, Rig, set_aside_child

CLI = Acting("cli:test")
PROVINCE = Acting.by(Principal("tok_000000000001", Role.PROVINCE), "10.0.0.1")
OTHER_COUNTY = Acting.by(Principal("tok_000000000002", Role.COUNTY, None, "310104"))
OWN_COUNTY = Acting.by(Principal("tok_000000000003", Role.COUNTY, None, "110108"))


@dataclass
class Desk:
    """Recovery over a hand-over rig's ledger, a parked archive and a log of publishes."""

    rig: Rig = field(default_factory=Rig)
    published: list[tuple[str, bytes, str | None]] = field(default_factory=list)
    originals: list[OriginalMessage | None] = field(default_factory=list)
    wakes: int = 0
    publish_fails: bool = False

    def __post_init__(self) -> None:
        self.parked = MemoryParkedArchive(self.rig.clock)
        self.worklist = MemoryWorklist(self.rig.ledger, self.parked)
        self.audit = MemoryAudit(self.rig.clock)
        self.recovery = Recovery(
            self.worklist, self.rig.ledger, self.audit, self.publish, self.wake
        )

    async def publish(
        self, routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        if self.publish_fails:
            raise ConnectionError("the broker is away")
        self.published.append((routing_key, body, message_id))
        self.originals.append(original)

    def wake(self) -> None:
        self.wakes += 1

    async def park(
        self, message_id: str = "m-1", code: str = "delivery_limit", *, headers: str = "{}",
        properties: str = "{}",
    ) -> None:  # fmt: skip
        body = b'{"id": "%s"}' % message_id.encode()
        await self.parked.add(
            message_id=message_id, routing_key="child.graduated", code=code,
            reason="failed on every delivery", headers=headers, body=body,
            properties=properties,
        )  # fmt: skip


async def test_retrying_a_group_releases_it_wakes_the_worker_and_is_audited() -> None:
    desk = Desk()
    await set_aside_child(desk.rig)
    del desk.rig.target.students[J]  # the county sorted the duplicate out at the registry
    result = await desk.recovery.retry_set_aside(
        PROVINCE, reason="identity_conflict", group_key="identity_conflict/*"
    )
    assert (result.retried, result.skipped, desk.wakes) == ([wire.G], [], 1)
    assert desk.audit.actions() == [("set_aside.retry", "released")]
    assert desk.audit.entries[0].actor == PROVINCE.actor and desk.audit.entries[0].remote
    assert [r["result"] for r in desk.worklist.retries] == ["released"]
    await desk.rig.work()
    assert desk.rig.target.held() == {wire.G: (2026, "registered", SHA)}
    assert await desk.recovery.set_aside_groups(PROVINCE) == []


async def test_a_child_a_worker_holds_right_now_is_skipped_not_overwritten() -> None:
    desk = Desk()
    await set_aside_child(desk.rig)
    row = desk.rig.ledger.child_of(wire.G)
    row.lease, row.lease_until = "other/1", desk.rig.clock.now().replace(year=2999)
    result = await desk.recovery.retry_set_aside(CLI, student_number=wire.G)
    assert (result.retried, result.skipped, desk.wakes) == ([], [wire.G], 0)
    assert desk.audit.actions() == [("set_aside.retry", "skipped_busy")]


async def test_a_county_operator_sees_and_retries_its_own_county_only() -> None:
    desk = Desk()
    await set_aside_child(desk.rig)
    assert await desk.recovery.set_aside_groups(OTHER_COUNTY) == []
    nothing = await desk.recovery.retry_set_aside(OTHER_COUNTY, reason="identity_conflict")
    assert nothing.retried == [] and desk.audit.entries == []
    [group] = await desk.recovery.set_aside_groups(OWN_COUNTY)
    assert (group.reason, group.answer, group.count) == ("identity_conflict", "", 1)


async def test_resolving_a_set_aside_takes_it_off_the_worklist_with_its_note() -> None:
    desk = Desk()
    await set_aside_child(desk.rig)
    case = await desk.recovery.resolve_set_aside(PROVINCE, wire.G, "duplicate, settled")
    assert case is not None and case.student_number == wire.G
    assert await desk.recovery.set_aside_cases(PROVINCE) == []
    assert desk.audit.actions() == [("set_aside.resolve", "resolved")]
    assert desk.audit.entries[0].detail["note"] == "duplicate, settled"
    assert await desk.recovery.resolve_set_aside(PROVINCE, wire.G, "again") is None


async def test_a_parked_message_is_republished_once() -> None:
    desk = Desk()
    await desk.park()
    first = await desk.recovery.retry_parked_messages(PROVINCE, reason="delivery_limit")
    again = await desk.recovery.retry_parked_messages(PROVINCE, message_id=1)
    assert (first.retried, again.retried, again.skipped) == (["1"], [], [])
    assert desk.published == [("child.graduated", b'{"id": "m-1"}', "m-1")]
    assert desk.originals == [None]  # a row without properties goes as events.md has it
    assert desk.audit.actions() == [("parked.retry", "republished")]
    assert await desk.recovery.parked_groups() == []


async def test_a_parked_binary_event_is_republished_as_it_arrived() -> None:
    desk = Desk()
    headers = {
        "cloudEvents_id": "m-1", "cloudEvents_type": "cn.edu.preschool.child.graduated",
        "x-death": [{"count": 20}], "x-park-code": "delivery_limit",
        "raw": {"$amqp": "bytes", "base64": "AP8="},
    }  # fmt: skip
    properties = {"content_type": "application/json; charset=utf-8", "content_encoding": None}
    await desk.park(headers=json.dumps(headers), properties=json.dumps(properties))
    await desk.recovery.retry_parked_messages(PROVINCE, message_id=1)
    [original] = desk.originals
    assert original == OriginalMessage(
        "application/json; charset=utf-8", None,
        {"cloudEvents_id": "m-1", "cloudEvents_type": "cn.edu.preschool.child.graduated",
         "raw": bytearray(b"\x00\xff")},
    )  # fmt: skip


async def test_a_republish_that_fails_leaves_the_message_parked() -> None:
    desk = Desk(publish_fails=True)
    await desk.park()
    with pytest.raises(ConnectionError):
        await desk.recovery.retry_parked_messages(PROVINCE, message_id=1)
    [message] = await desk.recovery.parked_messages("delivery_limit")
    assert message.resolved_at is None and message.retries == 0
    assert desk.audit.entries == []


async def test_a_retry_that_names_nothing_republishes_nothing() -> None:
    desk = Desk()
    await desk.park()
    result = await desk.recovery.retry_parked_messages(PROVINCE)
    assert (result.retried, desk.published) == ([], [])


async def test_reading_or_resolving_a_parked_message_is_audited() -> None:
    desk = Desk()
    await desk.park()
    message = await desk.recovery.read_parked(1, PROVINCE)
    assert message is not None and message.reason_code == "delivery_limit"
    assert await desk.recovery.read_parked(2, PROVINCE) is None
    assert await desk.recovery.resolve_parked_message(PROVINCE, 1, "not an event") is True
    assert await desk.recovery.resolve_parked_message(PROVINCE, 1, "again") is False
    assert await desk.recovery.resolve_parked_message(PROVINCE, 9, "none") is None
    assert desk.audit.actions() == [
        ("parked.read", "ok"), ("parked.resolve", "resolved"),
        ("parked.resolve", "already_resolved"),
    ]  # fmt: skip
