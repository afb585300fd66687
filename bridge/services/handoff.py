"""Driving one child's hand-over: decide the next step, perform it, record the outcome."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from bridge.adapters.call_journal import start_journal
from bridge.adapters.postgres.ledger import ChildState, Ledger
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.adapters.preschool_registry import PreschoolRegistry
from bridge.adapters.primary_registry import PrimaryRegistry
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
from bridge.errors import LeaseLost, NeedsOperator, NotRegistered, RetryLater
from bridge.metrics import Metrics

log = logging.getLogger(__name__)

# A bound on steps per lease: a healthy child needs at most about six (fetch, withdraw,
# change number, intake, correct, upload); more means the registry keeps contradicting us.
MAX_STEPS_PER_LEASE = 12


@dataclass(frozen=True, slots=True)
class HandoffPorts:
    """What driving a hand-over needs from the outside world."""

    ledger: Ledger
    files: RecordFileStore
    preschool: PreschoolRegistry
    registry: PrimaryRegistry
    metrics: Metrics
    retry: RetryPolicy


class HandoffDriver:
    """Takes a leased child as far as it can go now."""

    def __init__(self, ports: HandoffPorts) -> None:
        self._p = ports

    async def drive(self, child_id: int, lease: str, loaded: ChildState | None = None) -> None:
        """Step the child until done, set aside, or waiting for a retry.

        *loaded* is the child as leased, when the lease brought it along.
        """
        state = loaded or await self._p.ledger.load(child_id)
        if state is None:
            return  # merged into another child meanwhile
        # Record files fetched in this drive: uploading them next needs no trip to the store.
        fetched: dict[str, bytes] = {}
        try:
            for step in range(MAX_STEPS_PER_LEASE):
                action = state.handoff.next_action(state.record)
                if action is None:
                    if step == 0:  # leased with nothing to do: give the lease back
                        await self._p.ledger.save(state, state.handoff, lease)
                    # Otherwise the last save found no work left and released the lease:
                    # saving again would only find the lease gone.
                    return
                state, more = await self._step(state, action, lease, fetched)
                if not more:
                    return
            # Too many steps: let the ledger hand the child out again later.
            delay = self._p.retry.delay_s(state.attempts)
            await self._p.ledger.save(
                state, state.handoff, lease, retry_at=_after(delay), last_error="too_many_steps"
            )
        except LeaseLost:
            log.warning("lease lost for child %s; another instance goes on", child_id)

    async def _step(
        self, state: ChildState, action: Action, lease: str, fetched: dict[str, bytes]
    ) -> tuple[ChildState, bool]:
        calls = start_journal()
        record = state.record
        intent = state.handoff.attempting(action)
        if intent != state.handoff:
            # Durable before the call: a crash or time-out after the registry acted must
            # not leave a registration the ledger does not know of.
            state = await self._p.ledger.save(state, intent, lease)
        try:
            handoff = await self._perform(action, state, fetched)
        except NeedsOperator as exc:
            reason = SetAsideReason(exc.code)
            self._p.metrics.set_aside.labels(reason.value).inc()
            log.warning("child %s set aside: %s", mask(record.student_number), reason.value)
            handoff = state.handoff.refused(action).aside(record, reason, **exc.detail)
        except RetryLater as exc:
            delay = self._p.retry.delay_s(state.attempts, exc.retry_after_s)
            self._p.metrics.retries.labels(type(action).__name__, "durable").inc()
            await self._p.ledger.save(
                state, state.handoff, lease, calls=calls, retry_at=_after(delay),
                last_error=exc.code,
            )  # fmt: skip
            return state, False
        new_state = await self._p.ledger.save(state, handoff, lease, calls=calls)
        return new_state, True

    async def _perform(
        self, action: Action, state: ChildState, fetched: dict[str, bytes]
    ) -> Handoff:
        """Carry out *action*; return the hand-over as it stands afterwards."""
        h, record, reg = state.handoff, state.record, self._p.registry
        match action:
            case FetchFile(claim):
                content = await self._p.preschool.fetch_record_file(claim)
                await self._p.files.put(claim.sha256, claim.media_type, content)
                fetched[claim.sha256] = content
                return h.file_verified(claim.sha256)
            case SubmitIntake(intake, key):
                result = await reg.put_intake(intake, key)
                return h.intake_registered(intake, result.school_code)
            case UploadFile(number, sha256, media_type):
                stored = fetched.get(sha256) or await self._p.files.content(sha256)
                if stored is None:  # the store lost it? fetch it again
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


def _after(delay_s: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
