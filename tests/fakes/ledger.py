"""The hand-over ledger in memory: every ledger port of bridge.services.ports.ledger.

It keeps the rules of the PostgreSQL ledger that the services rely on: events recorded
once by id, a child found by any number it held (two rows merged when an event shows
they are one child), leases that fence out a second holder, progress refolded when events
arrived meanwhile, and a school's arrival report that survives a save.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.domain.arrival import Arrival
from bridge.domain.child_record import ChildRecord, RecordStatus, fold
from bridge.domain.events import ChildEvent
from bridge.domain.handoff import Handoff, Phase, SetAsideReason
from bridge.domain.retry_policy import RetryPolicy
from bridge.errors import LeaseLost
from bridge.services.call_journal import RegistryCall
from bridge.services.ports.files import VerifiedFile
from bridge.services.ports.ledger import Change, ChildState, DriveFailure, RecordedEvent
from tests.fakes.clock import FakeClock
from tests.fakes.stores import MemoryRecordFiles


@dataclass
class Row:
    """One child as the ledger holds it."""

    child_id: int
    events: list[ChildEvent] = field(default_factory=list)
    handoff: Handoff = field(default_factory=Handoff)
    attempts: int = 0
    last_error: str | None = None
    due_at: dt.datetime | None = None
    lease: str | None = None
    lease_until: dt.datetime | None = None
    calls: list[RegistryCall] = field(default_factory=list)
    # Unexpected failures of its drives, counted at one childseq (a newer event restarts).
    drive_failures: int = 0
    drive_failures_at_childseq: int = 0

    @property
    def record(self) -> ChildRecord:
        """The fold of the child's events."""
        return fold(self.events)


class MemoryLedger:
    """EventLedger, HandoffLedger, WorkQueue, Amendments and LedgerFigures in memory."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        files: MemoryRecordFiles | None = None,
        lease_s: float = 60.0,
    ) -> None:
        self.clock = clock or FakeClock()
        self.files = files or MemoryRecordFiles()
        self.lease_s = lease_s
        self.rows: dict[int, Row] = {}
        self.numbers: dict[str, int] = {}  # every number a child held -> its row
        self.inbox: dict[str, int] = {}  # event id -> child id
        self.raw: dict[str, bytes] = {}  # event id -> the event as it was stored
        self._next_id = 1
        # Recording as the database may answer it: the next record_event() calls raise
        # *refusals*, in order, and every one raises *refuse_all* (if set).
        self.refusals: list[BaseException] = []
        self.refuse_all: BaseException | None = None
        self.record_attempts = 0

    # --- EventLedger --------------------------------------------------------------------
    async def record_event(self, event: ChildEvent, raw: bytes) -> RecordedEvent:
        """Store *event* for its child; a redelivered event changes nothing."""
        self.record_attempts += 1
        if self.refusals:
            raise self.refusals.pop(0)
        if self.refuse_all is not None:
            raise self.refuse_all
        if event.event_id in self.inbox:
            return RecordedEvent(self.inbox[event.event_id], duplicate=True)
        ids = sorted({self.numbers[n] for n in event.numbers if n in self.numbers})
        if not ids:
            row = Row(self._next_id)
            self._next_id += 1
            self.rows[row.child_id] = row
        else:
            row = self.rows[ids[0]]
            if len(ids) > 1:
                self._merge(row, [self.rows[i] for i in ids[1:]])
        row.events.append(event)
        for number in event.numbers:
            self.numbers.setdefault(number, row.child_id)
        self.inbox[event.event_id] = row.child_id
        self.raw[event.event_id] = raw
        record = row.record
        # A new event makes the child due now, whatever retry it was waiting for.
        row.due_at = self.clock.now() if row.handoff.next_action(record) else None
        return RecordedEvent(row.child_id, False, row.handoff.phase(record))

    def _merge(self, survivor: Row, others: list[Row]) -> None:
        survivor.handoff = Handoff.merge([survivor.handoff, *(o.handoff for o in others)])
        for other in others:
            survivor.events.extend(other.events)
            del self.rows[other.child_id]
            for table in (self.numbers, self.inbox):
                for key, child_id in table.items():
                    if child_id == other.child_id:
                        table[key] = survivor.child_id

    # --- HandoffLedger ------------------------------------------------------------------
    async def load(self, child_id: int) -> ChildState | None:
        """The child's record and hand-over, or None if it was merged away."""
        row = self.rows.get(child_id)
        return None if row is None else ChildState(child_id, row.record, row.handoff, row.attempts)

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
        """Progress under *lease*; LeaseLost if another holds the child now."""
        if file is not None:  # verified bytes are kept whoever holds the child
            await self.files.put(file.sha256, file.media_type, file.content)
        row = self.rows.get(state.child_id)
        if row is None or row.lease != lease:
            raise LeaseLost("another instance holds this child now")
        stored = row.handoff.arrival
        if stored is not None and stored != handoff.arrival:
            handoff = handoff.arrival_requested(stored)
        record = state.record
        refolded = record.events_folded != len({e.event_id for e in row.events})
        if refolded:
            record = row.record
        attempts = state.attempts + 1 if retry_at else 0
        has_work = handoff.next_action(record) is not None
        row.handoff, row.attempts, row.last_error = handoff, attempts, last_error
        row.calls.extend(calls)
        now = self.clock.now()
        # An event that arrived meanwhile and left work counts now, not after the retry.
        due = None if refolded and has_work else retry_at
        row.due_at = due if due is not None else (now if has_work else None)
        if retry_at is not None or not has_work:
            row.lease = row.lease_until = None
        else:
            row.lease_until = now + dt.timedelta(seconds=self.lease_s)
        return ChildState(state.child_id, record, handoff, attempts)

    # --- WorkQueue ----------------------------------------------------------------------
    async def claim_due_loaded(self, owner: str, limit: int) -> list[tuple[ChildState, str]]:
        """Lease up to *limit* children whose work is due and who are not leased."""
        now = self.clock.now()
        due = sorted(
            (r for r in self.rows.values() if r.due_at is not None and r.due_at <= now
             and (r.lease_until is None or r.lease_until < now)),
            key=lambda r: (r.due_at, r.child_id),
        )[:limit]  # fmt: skip
        claimed = []
        for row in due:
            row.lease = f"{owner}/{uuid.uuid4()}"
            row.lease_until = now + dt.timedelta(seconds=self.lease_s)
            claimed.append(
                (ChildState(row.child_id, row.record, row.handoff, row.attempts), row.lease)
            )
        return claimed

    async def release_instance_leases(self, owner: str) -> int:
        """Free the leases an earlier run of *owner* held."""
        freed = 0
        for row in self.rows.values():
            if row.lease is not None and row.lease.startswith(owner + "/"):
                row.lease = row.lease_until = None
                freed += 1
        return freed

    async def release_leases(self, leases: Sequence[tuple[int, str]]) -> int:
        """Give back these leases of ours (drives the database cut off): due at once."""
        freed = 0
        for child_id, lease in leases:
            row = self.rows.get(child_id)
            if row is not None and row.lease == lease:
                row.lease = row.lease_until = None
                freed += 1
        return freed

    async def note_drive_failure(
        self, child_id: int, lease: str, error: str, *, limit: int, retry: RetryPolicy
    ) -> DriveFailure | None:
        """Retry after *retry*'s backoff, or set aside as internal_error at *limit*
        failures at the child's current childseq; None if the lease is not ours."""
        row = self.rows.get(child_id)
        if row is None or row.lease != lease:
            return None
        record = row.record
        same_seq = row.drive_failures_at_childseq == record.last_childseq
        failures = (row.drive_failures if same_seq else 0) + 1
        aside = failures >= limit
        retry_at = (
            None if aside
            else self.clock.now() + dt.timedelta(seconds=retry.delay_s(failures - 1))
        )  # fmt: skip
        row.drive_failures, row.drive_failures_at_childseq = failures, record.last_childseq
        row.last_error = f"internal_error:{error}"[:200]
        row.lease = row.lease_until = None
        row.due_at = retry_at
        if aside:
            row.handoff = row.handoff.aside(
                record, SetAsideReason.INTERNAL_ERROR, error=error[:100]
            )
        return DriveFailure(failures, aside, retry_at)

    # --- Amendments and arrivals --------------------------------------------------------
    async def amend(self, child_id: int, change: Change) -> Phase | None:
        """Apply *change* unless the child is gone, leased now, or *change* declines."""
        row = self.rows.get(child_id)
        now = self.clock.now()
        if row is None or (row.lease_until is not None and row.lease_until > now):
            return None
        record = row.record
        handoff = change(record, row.handoff)
        if handoff is None:
            return None
        row.handoff, row.attempts, row.last_error = handoff, 0, None
        row.drive_failures = 0
        row.due_at = now if handoff.next_action(record) else None
        return handoff.phase(record)

    async def request_arrival(self, child_id: int, arrival: Arrival) -> ChildState | None:
        """Put a school's arrival report on the hand-over and make B6 due now."""
        row = self.rows.get(child_id)
        if row is None:
            return None
        record = row.record
        row.handoff = row.handoff.arrival_requested(arrival)
        if row.handoff.next_action(record) is not None:
            row.due_at = self.clock.now()
        return ChildState(child_id, record, row.handoff, row.attempts)

    # --- LedgerFigures and friends ------------------------------------------------------
    async def phase_counts(self, entry_year: int | None = None) -> dict[str, int]:
        """Hand-overs per phase."""
        counts: dict[str, int] = {}
        for row in self.rows.values():
            record = row.record
            if entry_year is None or record.entry_year == entry_year:
                phase = row.handoff.phase(record).value
                counts[phase] = counts.get(phase, 0) + 1
        return counts

    async def expired_deferrals_count(self) -> int:
        """Deferred children whose deferral ran out with no newer event."""
        today = self.clock.now().date()
        return sum(
            1 for r in self.rows.values()
            if (rec := r.record).status is RecordStatus.DEFERRED
            and rec.deferral is not None and rec.deferral.deferred_until < today
        )  # fmt: skip

    async def pending_work(self) -> int:
        """Children with a step still to take."""
        return sum(1 for r in self.rows.values() if r.due_at is not None)

    # --- for tests ----------------------------------------------------------------------
    def child_of(self, number: str) -> Row:
        """The row of the child that holds or held *number*."""
        return self.rows[self.numbers[number]]

    def lapse_leases(self) -> None:
        """Every lease runs out (an instance died)."""
        lapsed = self.clock.now() - dt.timedelta(seconds=1)
        for row in self.rows.values():
            row.lease_until = None if row.lease is None else lapsed
