"""A hand-over driver on the fakes of tests/fakes, with the worker's loop reduced to its
essentials: the rig the service unit tests share."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from bridge.domain.events import Child
from bridge.domain.retry_policy import RetryPolicy
from bridge.metrics import Metrics
from bridge.services.handoff import HandoffDriver, HandoffPorts
from tests.fakes.clock import FakeClock
from tests.fakes.ledger import MemoryLedger
from tests.fakes.registries import FakeSourceRegistry, FakeTargetRegistry, Student
from tests.fakes.stores import MemoryRecordFiles
from tests.support import wire_events as wire

FILE = b'{"student_number": "...", "history": []}'
ID_NUMBER = wire.G[1:]
J = "J11010820200109001X"
SHA = hashlib.sha256(FILE).hexdigest()
SCHOOL = wire.graduated(wire.G, 1)["data"]["destination_school_code"]
PERSON = {"id_type": "resident_id", "id_number": ID_NUMBER}


def registered_elsewhere(target: FakeTargetRegistry, number: str = J) -> None:
    """The registry holds the child's identity under another number already."""
    child = Child(wire.CHILD["name"], "M", dt.date(2020, 1, 9), "resident_id", ID_NUMBER, "CN")
    target.students[number] = Student(number, 2026, child, None)


def graduated_with(number: str, seq: int, content: bytes = FILE, **child: Any) -> dict[str, Any]:
    """A graduation whose claim check points at *content* in the fake preschool registry."""
    event = wire.graduated(number, seq, {**wire.CHILD, **child} if child else None)
    event["data"]["record_file"] = {
        "uri": f"http://preschool.test/files/{number}/{seq}",
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "media_type": "application/json",
    }
    return event


@dataclass
class Rig:
    """A driver on fakes, and the ledger's worker loop reduced to its essentials."""

    clock: FakeClock = field(default_factory=FakeClock)
    files: MemoryRecordFiles = field(default_factory=MemoryRecordFiles)
    source: FakeSourceRegistry = field(default_factory=FakeSourceRegistry)
    target: FakeTargetRegistry = field(default_factory=FakeTargetRegistry)
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.ledger = MemoryLedger(clock=self.clock, files=self.files)
        self.driver = HandoffDriver(
            HandoffPorts(self.ledger, self.files, self.source, self.target, self.metrics,
                         RetryPolicy(1.0, 600.0)),
        )  # fmt: skip

    async def receive(self, *events: dict[str, Any]) -> None:
        for event in events:
            data = event["data"]
            if "record_file" in data:
                self.source.files[data["record_file"]["uri"]] = FILE
            await self.ledger.record_event(*wire.ev(event))

    async def work(self) -> None:
        """Drive every child due now until none is."""
        for _ in range(20):
            claimed = await self.ledger.claim_due_loaded("test", 50)
            if not claimed:
                return
            for state, lease in claimed:
                await self.driver.drive(state.child_id, lease, state)
        raise AssertionError("the work never ran out")

    def phase(self, number: str) -> str:
        row = self.ledger.child_of(number)
        return row.handoff.phase(row.record).value

    def counted(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def set_aside_child(rig: Rig) -> None:
    """A child set aside for identity_conflict (its identity holds J at the registry)."""
    registered_elsewhere(rig.target)
    await rig.receive(graduated_with(wire.G, 1, **PERSON))
    await rig.work()
