"""The hand-over ledger as the consumer, the driver, the worker and operators use it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.domain.child_record import ChildRecord
from bridge.domain.events import ChildEvent
from bridge.domain.handoff import Handoff, Phase
from bridge.domain.retry_policy import RetryPolicy
from bridge.services.call_journal import RegistryCall
from bridge.services.ports.files import VerifiedFile


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """What recording an event did."""

    child_id: int
    duplicate: bool
    phase: Phase | None = None


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as the ledger holds it: its record and its hand-over."""

    child_id: int
    record: ChildRecord
    handoff: Handoff
    attempts: int


@dataclass(frozen=True, slots=True)
class DriveFailure:
    """What noting an unexpected failure of a drive did."""

    failures: int  # at the child's current childseq, this one included
    set_aside: bool
    retry_at: dt.datetime | None


# An operator's or a repair's change of a hand-over, given the child's record: the new
# hand-over, or None to leave it as it is.
Change = Callable[[ChildRecord, Handoff], Handoff | None]


class EventLedger(Protocol):
    """Where the consumer records events (durably, before the ack)."""

    async def record_event(self, event: ChildEvent, raw: bytes) -> RecordedEvent:
        """Store *event* for its child; idempotent by event id."""
        ...


class HandoffLedger(Protocol):
    """What driving one child's hand-over reads and writes."""

    async def load(self, child_id: int) -> ChildState | None:
        """The child's record and hand-over, or None if it is gone (merged)."""
        ...

    async def save(
        self,
        state: ChildState,
        handoff: Handoff,
        lease: str,
        *,
        calls: Sequence[RegistryCall] = (),
        retry_at: dt.datetime | None = None,
        last_error: str | None = None,
        file: VerifiedFile | None = None,
    ) -> ChildState:
        """Record progress under *lease* (LeaseLost if it is not ours any more)."""
        ...


class WorkQueue(Protocol):
    """The worker's view of the ledger: children with work due, leased."""

    async def claim_due_loaded(self, owner: str, limit: int) -> list[tuple[ChildState, str]]:
        """Lease up to *limit* children with work due; each with its lease."""
        ...

    async def release_instance_leases(self, owner: str) -> int:
        """Free the leases an earlier run of this instance held."""
        ...

    async def release_leases(self, leases: Sequence[tuple[int, str]]) -> int:
        """Give back these leases of ours (drives the database cut off): due at once."""
        ...

    async def note_drive_failure(
        self, child_id: int, lease: str, error: str, *, limit: int, retry: RetryPolicy
    ) -> DriveFailure | None:
        """A drive of the child failed unexpectedly (*error*: the exception's type).

        Under our lease: the lease is given back and the child retried after *retry*'s
        backoff, or set aside as internal_error on its *limit*-th failure at its current
        childseq. None if the lease is no longer ours.
        """
        ...


class Amendments(Protocol):
    """Changes of a hand-over from outside the worker (operators, repairs)."""

    async def amend(self, child_id: int, change: Change) -> Phase | None:
        """Apply *change* under the row lock and make the child due; its new phase, or None
        if the child is gone, leased right now, or *change* declined."""
        ...


class LedgerFigures(Protocol):
    """Counts for metrics and progress displays."""

    async def phase_counts(self, entry_year: int | None = None) -> dict[str, int]:
        """Hand-overs per phase."""
        ...

    async def expired_deferrals_count(self) -> int:
        """Deferred children whose deferral ran out with no newer event."""
        ...
