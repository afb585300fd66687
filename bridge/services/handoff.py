"""Driving one child's hand-over: decide the next step, perform it, record the outcome."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from bridge.domain.actions import (
    Action,
    ChangeNumber,
    CorrectKeyInfo,
    FetchFile,
    ReportArrival,
    SubmitIntake,
    UploadFile,
    Withdraw,
)
from bridge.domain.handoff import Handoff, SetAsideReason
from bridge.domain.intake import IntakeRequest, KeyInfo
from bridge.domain.retry_policy import RetryPolicy
from bridge.domain.student_number import mask
from bridge.errors import LeaseLost, NeedsOperator, NotRegistered, RecordFileDamaged, RetryLater
from bridge.metrics import Metrics
from bridge.services.call_journal import RegistryCall, start_journal
from bridge.services.ports.files import RecordFiles, VerifiedFile
from bridge.services.ports.ledger import ChildState, HandoffLedger
from bridge.services.ports.registries import SourceRegistry, TargetRegistry

log = logging.getLogger(__name__)

# A bound on steps per lease: a healthy child needs at most about six (fetch, withdraw,
# change number, intake, correct, upload); more means the registry keeps contradicting us.
MAX_STEPS_PER_LEASE = 12


@dataclass(frozen=True, slots=True)
class HandoffPorts:
    """What driving a hand-over needs from the outside world."""

    ledger: HandoffLedger
    files: RecordFiles
    preschool: SourceRegistry
    registry: TargetRegistry
    metrics: Metrics
    retry: RetryPolicy


class HandoffDriver:
    """Takes a leased child as far as it can go now.

    The ledger is written when it must be, not after every call: before a call that may
    create a registration the ledger must know of (B1, B4: the intent), and when the child
    is done, set aside or waiting for a retry. The outcomes of the calls in between are
    kept in memory and go with the next write: after a crash they are simply made again,
    which every call of registry-api.md allows (B1 replays its answer to the same
    idempotency key; B2-B6 are idempotent).
    """

    def __init__(self, ports: HandoffPorts, *, lease_s: float = 60.0) -> None:
        self._p = ports
        # Progress renews the lease: a drive that has not written for this long writes
        # before its next call, so that a slow registry cannot make it lose the child.
        self._renew_after_s = lease_s / 3

    async def drive(self, child_id: int, lease: str, loaded: ChildState | None = None) -> None:
        """Step the child until done, set aside, or waiting for a retry.

        *loaded* is the child as leased, when the lease brought it along.
        """
        state = loaded or await self._p.ledger.load(child_id)
        if state is None:
            return  # merged into another child meanwhile
        try:
            await self._drive(state, lease)
        except LeaseLost:
            log.warning("lease lost for child %s; another instance goes on", child_id)

    async def _drive(self, state: ChildState, lease: str) -> None:
        # *state* is what the ledger holds; *progress* what the registries hold as far as we
        # know, with the calls and the verified file that are not written yet.
        progress = _Unwritten(state.handoff)
        calls = start_journal()
        for _ in range(MAX_STEPS_PER_LEASE):
            action = progress.handoff.next_action(state.record)
            if action is None:
                # Done or set aside: the write releases the lease (also when leased with
                # nothing to do, which gives the lease back) ...
                written = await self._write(state, progress, calls, lease)
                if (
                    written.record is state.record
                    or written.handoff.next_action(written.record) is None
                ):
                    return
                # ... unless an event arrived meanwhile (a correction close behind the
                # graduation): the lease is still ours, go on from the newest facts.
                state = written
                continue
            intent = progress.handoff.attempting(action)
            if intent != progress.handoff or progress.stale(self._renew_after_s):
                # Durable before the call: a crash or time-out after the registry acted must
                # not leave a registration the ledger does not know of.
                progress.handoff = intent
                written = await self._write(state, progress, calls, lease)
                refolded = written.record is not state.record
                state = written
                if refolded:
                    continue  # new events arrived meanwhile: decide again from them
            try:
                progress.handoff = await self._perform(action, state, progress)
            except NeedsOperator as exc:
                reason = SetAsideReason(exc.code)
                self._p.metrics.set_aside.labels(reason.value).inc()
                log.warning(
                    "child %s set aside: %s", mask(state.record.student_number), reason.value
                )
                handoff = progress.handoff.refused(action)
                progress.handoff = handoff.aside(state.record, reason, **exc.detail)
            except RetryLater as exc:
                delay = self._p.retry.delay_s(state.attempts, exc.retry_after_s)
                self._p.metrics.retries.labels(type(action).__name__, "durable").inc()
                await self._write(
                    state, progress, calls, lease, retry_at=_after(delay), last_error=exc.code
                )
                return
        # Too many steps: let the ledger hand the child out again later.
        delay = self._p.retry.delay_s(state.attempts)
        await self._write(
            state, progress, calls, lease, retry_at=_after(delay), last_error="too_many_steps"
        )

    async def _write(
        self,
        state: ChildState,
        progress: _Unwritten,
        calls: list[RegistryCall],
        lease: str,
        *,
        retry_at: dt.datetime | None = None,
        last_error: str | None = None,
    ) -> ChildState:
        written = await self._p.ledger.save(
            state, progress.handoff, lease, calls=tuple(calls), retry_at=retry_at,
            last_error=last_error, file=progress.file,
        )  # fmt: skip
        calls.clear()
        progress.written(written.handoff)
        return written

    async def _perform(self, action: Action, state: ChildState, progress: _Unwritten) -> Handoff:
        """Carry out *action*; return the hand-over as it stands afterwards."""
        h, record, reg = progress.handoff, state.record, self._p.registry
        match action:
            case FetchFile(claim):
                content = await self._p.preschool.fetch_record_file(claim)
                # Sealed here, before the ledger's statement: the database never sees it clear.
                progress.fetched(self._p.files.verified(claim.sha256, claim.media_type, content))
                return h.file_verified(claim.sha256)
            case SubmitIntake(intake, key):
                result = await reg.put_intake(intake, key)
                return h.intake_registered(intake, result.school_code)
            case UploadFile(number, sha256, media_type):
                try:
                    stored = progress.content(sha256) or await self._p.files.content(
                        sha256, about=record.student_number
                    )
                except RecordFileDamaged:  # reported by the store; the source keeps a copy
                    stored = None
                if stored is None:  # the store lost it (or it failed authentication): fetch
                    return h.file_verified("")
                try:
                    await reg.put_record_file(number, stored, media_type, sha256)
                except NotRegistered:
                    return h.registration_missing(number)
                return h.file_delivered(number, sha256)
            case Withdraw(number, entry_year):
                await reg.withdraw(number, entry_year)
                return h.withdrawn(number)
            case ChangeNumber(old, new, child):
                try:
                    await reg.change_number(old, new, child)
                except NotRegistered:
                    return h.registration_missing(old)
                return h.number_changed(old, new, IntakeRequest.for_record(record).terms)
            case CorrectKeyInfo(number, _changes):
                try:
                    await reg.correct(number, action.changes)
                except NotRegistered:
                    return h.registration_missing(number)
                assert record.child is not None
                return h.key_info_corrected(number, KeyInfo.of(record.child))
            case ReportArrival(number, arrival):
                try:
                    await reg.report_arrival(number, arrival.school_code, arrival.arrived_on)
                except NotRegistered:
                    return h.registration_missing(number)
                return h.arrival_reported(number)
        raise AssertionError(f"unknown action {action!r}")


class _Unwritten:
    """A drive's progress beyond what the ledger holds: hand-over, verified file."""

    def __init__(self, handoff: Handoff) -> None:
        self.handoff = handoff
        self.file: VerifiedFile | None = None  # fetched, not written yet
        self._content: dict[str, bytes] = {}  # every file fetched in this drive, by sha256
        self._written_at = time.monotonic()

    def fetched(self, file: VerifiedFile) -> None:
        """A record file was fetched and verified; it goes with the next write."""
        self.file = file
        self._content[file.sha256] = file.content

    def content(self, sha256: str) -> bytes | None:
        """Bytes fetched in this drive: uploading them needs no trip to the store."""
        return self._content.get(sha256)

    def written(self, handoff: Handoff) -> None:
        """The ledger holds *handoff* now (it may carry an arrival reported meanwhile)."""
        self.handoff = handoff
        self.file = None
        self._written_at = time.monotonic()

    def stale(self, after_s: float) -> bool:
        """True when the last write is older than *after_s* (the lease wants renewing)."""
        return time.monotonic() - self._written_at > after_s


def _after(delay_s: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
