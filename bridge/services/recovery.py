"""Recovery of set-aside work (the ServicePulse model): inspect, retry, resolve; all audited.

A retry goes back through the same idempotent path as the first try: a parked message
is republished to the events exchange (the inbox drops an event already recorded), a
set-aside hand-over is released and driven again (its idempotency key is unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.recovery_store import ParkedMessage, RecoveryStore, SetAsideCase
from bridge.domain.access import Principal
from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff
from bridge.domain.student_number import mask

# (routing key, body, message id) -> published and confirmed
Publish = Callable[[str, bytes, str | None], Awaitable[None]]

_IDENTITY_KEYS = {"id_number", "student_number", "previous_student_number", "new_student_number"}
_PERSONAL_KEYS = {"name", "birth_date"}


def mask_name(name: str) -> str:
    """Keep the family name's first character: enough to tell cases apart, not to identify."""
    return (name[:1] + "*" * max(len(name) - 1, 1)) if name else ""


def masked(value: Any, key: str = "") -> Any:
    """A JSON value with identity fields masked (names, numbers, birth dates)."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        if key in _IDENTITY_KEYS or key == "subject" or key == "existing_student_number":
            return mask(value)
        if key == "name":
            return mask_name(value)
        if key in _PERSONAL_KEYS:
            return value[:4] + "-**-**" if len(value) >= 4 else "****"
        if key == "content_base64":
            return f"<{len(value)} characters>"
    return value


def masked_body(body: bytes) -> str:
    """A parked message's body for an operator's eyes: JSON with identity fields masked."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        # Not JSON: its bytes may hold anything; show only its size.
        return f"<{len(body)} bytes, not JSON>"
    return json.dumps(masked(parsed), ensure_ascii=False, indent=2)


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What a retry did, per target."""

    retried: list[str]
    skipped: list[str]


class Recovery:
    """Operators' actions on set-aside work."""

    def __init__(
        self,
        store: RecoveryStore,
        ledger: Ledger,
        audit: AuditLog,
        publish: Publish,
        wake: Callable[[], None],
    ) -> None:
        self._store, self._ledger, self._audit = store, ledger, audit
        self._publish, self._wake = publish, wake

    # --- hand-overs ---------------------------------------------------------------------
    async def retry_handoffs(
        self, cases: list[SetAsideCase], principal: Principal | None, actor: str,
        *, group_key: str | None = None, remote: str | None = None,
    ) -> RetryResult:  # fmt: skip
        """Release each set-aside and let the worker decide again from the facts."""
        result = RetryResult([], [])

        def release(record: ChildRecord, handoff: Handoff) -> Handoff | None:
            return handoff.released() if handoff.active_set_aside(record) else None

        for case in cases:
            phase = await self._ledger.amend(case.child_id, release)
            outcome = "released" if phase is not None else "skipped_busy"
            (result.retried if phase is not None else result.skipped).append(case.student_number)
            await self._store.record_retry(
                actor=actor, kind="handoff", target=str(case.child_id), group_key=group_key,
                result=outcome,
            )  # fmt: skip
            await self._audit.record(
                action="set_aside.retry", outcome=outcome, principal=principal,
                actor=actor, student_number=case.student_number, remote=remote,
                detail={"reason": case.reason, "group": group_key or ""},
            )  # fmt: skip
        if result.retried:
            self._wake()
        return result

    async def resolve_handoff(
        self, case: SetAsideCase, note: str, principal: Principal | None, actor: str,
        *, remote: str | None = None,
    ) -> None:  # fmt: skip
        """Close a set-aside with a note; it leaves the worklist."""
        await self._store.resolve_set_aside(case, note, actor)
        await self._audit.record(
            action="set_aside.resolve", outcome="resolved", principal=principal, actor=actor,
            student_number=case.student_number, remote=remote,
            detail={"reason": case.reason, "note": note[:500]},
        )  # fmt: skip

    # --- parked messages ----------------------------------------------------------------
    async def retry_parked(
        self, messages: list[ParkedMessage], principal: Principal | None, actor: str,
        *, group_key: str | None = None, remote: str | None = None,
    ) -> RetryResult:  # fmt: skip
        """Republish each to the events exchange under its routing key."""
        result = RetryResult([], [])
        for message in messages:
            target = str(message.id)
            if not message.routing_key or not await self._store.mark_parked(
                message.id, resolution="retried", actor=actor, retried=True
            ):
                result.skipped.append(target)
                continue
            try:
                await self._publish(message.routing_key, message.body, message.message_id)
            except BaseException:
                await self._store.unmark_parked(message.id)
                raise
            result.retried.append(target)
            await self._store.record_retry(
                actor=actor, kind="parked_message", target=target, group_key=group_key,
                result="republished",
            )  # fmt: skip
            await self._audit.record(
                action="parked.retry", outcome="republished", principal=principal, actor=actor,
                remote=remote, detail={"parked_id": message.id, "reason": message.reason_code},
            )  # fmt: skip
        return result

    async def resolve_parked(
        self, message: ParkedMessage, note: str, principal: Principal | None, actor: str,
        *, remote: str | None = None,
    ) -> bool:  # fmt: skip
        """Close a parked message with a note."""
        done = await self._store.mark_parked(
            message.id, resolution=note[:1000] or "resolved", actor=actor, retried=False
        )
        await self._audit.record(
            action="parked.resolve", outcome="resolved" if done else "already_resolved",
            principal=principal, actor=actor, remote=remote,
            detail={"parked_id": message.id, "note": note[:500]},
        )  # fmt: skip
        return done
