"""Recovery of set-aside work (the ServicePulse model): inspect, retry, resolve; all audited.

A retry goes back through the same idempotent path as the first try: a parked message
is republished to the events exchange (the inbox drops an event already recorded), a
set-aside hand-over is released and driven again (its idempotency key is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff

# The masking of what operators see lives in the domain; these names are the display code's.
from bridge.domain.personal_data import mask_name as mask_name
from bridge.domain.personal_data import masked as masked
from bridge.domain.personal_data import masked_body as masked_body
from bridge.services.acting import Acting
from bridge.services.ports.access import Audit
from bridge.services.ports.ledger import Amendments
from bridge.services.ports.recovery import (
    Group,
    OriginalMessage,
    ParkedMessage,
    Publish,
    SetAsideCase,
    Worklist,
)
from schemas.amqp_values import from_json

# Headers the broker or the bridge put on a parked message: not the publisher's.
_NOT_THE_PUBLISHERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count",
                       "x-park-", "x-original-routing-key", "x-xueji-")  # fmt: skip


def original_message(
    properties: Mapping[str, Any], headers: Mapping[str, Any]
) -> OriginalMessage | None:
    """How a parked message arrived (None when the row keeps no properties: older rows)."""
    if not properties:
        return None
    kept = {
        name: from_json(value) for name, value in headers.items()
        if not name.startswith(_NOT_THE_PUBLISHERS)
    }  # fmt: skip
    content_type = from_json(properties.get("content_type"))
    encoding = from_json(properties.get("content_encoding"))
    return OriginalMessage(
        content_type if isinstance(content_type, str) else None,
        encoding if isinstance(encoding, str) else None,
        kept,
    )


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What a retry did, per target."""

    retried: list[str]
    skipped: list[str]


def _release(record: ChildRecord, handoff: Handoff) -> Handoff | None:
    return handoff.released() if handoff.active_set_aside(record) else None


class Recovery:
    """Operators' actions on set-aside work. A county operator (Acting.county_code) sees
    and acts on its county's hand-overs only; parked messages name no county."""

    def __init__(
        self,
        store: Worklist,
        ledger: Amendments,
        audit: Audit,
        publish: Publish,
        wake: Callable[[], None],
    ) -> None:
        self._store, self._ledger, self._audit = store, ledger, audit
        self._publish, self._wake = publish, wake

    # --- what there is ------------------------------------------------------------------
    async def set_aside_groups(self, who: Acting, *, county: str | None = None) -> list[Group]:
        """Open set-asides by reason and registry answer (of *county*, if a provincial
        operator names one)."""
        return await self._store.set_aside_groups(who.county_code or county)

    async def set_aside_cases(
        self,
        who: Acting,
        *,
        reason: str | None = None,
        answer: str | None = None,
        student_number: str | None = None,
    ) -> list[SetAsideCase]:
        """Open set-asides, filtered."""
        return await self._store.set_aside_cases(
            who.county_code, reason=reason, answer=answer, student_number=student_number
        )

    async def parked_groups(self) -> list[Group]:
        """Unresolved parked messages by reason."""
        return await self._store.parked_groups()

    async def parked_messages(self, reason: str | None) -> list[ParkedMessage]:
        """Unresolved parked messages (of one reason), oldest first."""
        return await self._store.parked_messages(reason_code=reason)

    async def read_parked(self, message_id: int, who: Acting) -> ParkedMessage | None:
        """One parked message, its read audited (show its body masked: masked_body)."""
        message = await self._store.parked_message(message_id)
        if message is not None:
            await self._audit.record(
                action="parked.read", outcome="ok", principal=who.principal, actor=who.actor,
                remote=who.remote, detail={"parked_id": message.id},
            )  # fmt: skip
        return message

    async def recent_retries(
        self, who: Acting, *, kind: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest retries with what came of them; a county's of hand-overs only."""
        county = who.county_code
        if county is not None:
            kind = "handoff"
        rows = await self._store.recent_retries(limit)
        return [
            r for r in rows
            if (kind is None or r["kind"] == kind)
            and (county is None or r.get("county_code") == county)
        ]  # fmt: skip

    # --- hand-overs ---------------------------------------------------------------------
    async def retry_set_aside(
        self,
        who: Acting,
        *,
        reason: str | None = None,
        answer: str | None = None,
        student_number: str | None = None,
        group_key: str | None = None,
    ) -> RetryResult:
        """Retry the open set-asides matching the filters (a group, or one child)."""
        cases = await self.set_aside_cases(
            who, reason=reason, answer=answer, student_number=student_number
        )
        return await self.retry_handoffs(cases, who, group_key=group_key)

    async def retry_handoffs(
        self, cases: list[SetAsideCase], who: Acting, *, group_key: str | None = None
    ) -> RetryResult:
        """Release each set-aside and let the worker decide again from the facts."""
        result = RetryResult([], [])
        for case in cases:
            phase = await self._ledger.amend(case.child_id, _release)
            outcome = "released" if phase is not None else "skipped_busy"
            (result.retried if phase is not None else result.skipped).append(case.student_number)
            await self._store.record_retry(
                actor=who.actor, kind="handoff", target=str(case.child_id), group_key=group_key,
                result=outcome,
            )  # fmt: skip
            await self._audit.record(
                action="set_aside.retry", outcome=outcome, principal=who.principal,
                actor=who.actor, student_number=case.student_number, remote=who.remote,
                detail={"reason": case.reason, "group": group_key or ""},
            )  # fmt: skip
        if result.retried:
            self._wake()
        return result

    async def resolve_set_aside(
        self, who: Acting, student_number: str, note: str
    ) -> SetAsideCase | None:
        """Close the child's open set-aside with a note; None if it has none (in scope)."""
        cases = await self.set_aside_cases(who, student_number=student_number)
        if not cases:
            return None
        await self.resolve_handoff(cases[0], note, who)
        return cases[0]

    async def resolve_handoff(self, case: SetAsideCase, note: str, who: Acting) -> None:
        """Close a set-aside with a note; it leaves the worklist."""
        await self._store.resolve_set_aside(case, note, who.actor)
        await self._audit.record(
            action="set_aside.resolve", outcome="resolved", principal=who.principal,
            actor=who.actor, student_number=case.student_number, remote=who.remote,
            detail={"reason": case.reason, "note": note[:500]},
        )  # fmt: skip

    # --- parked messages ----------------------------------------------------------------
    async def retry_parked_messages(
        self,
        who: Acting,
        *,
        message_id: int | None = None,
        reason: str | None = None,
        group_key: str | None = None,
    ) -> RetryResult:
        """Republish one unresolved parked message, or a whole group; nothing if neither is
        named."""
        if message_id is not None:
            one = await self._store.parked_message(message_id)
            messages = [one] if one is not None and one.resolved_at is None else []
        elif reason is not None:
            messages = await self._store.parked_messages(reason_code=reason)
        else:
            messages = []
        return await self.retry_parked(messages, who, group_key=group_key)

    async def retry_parked(
        self, messages: list[ParkedMessage], who: Acting, *, group_key: str | None = None
    ) -> RetryResult:
        """Republish each to the events exchange under its routing key."""
        result = RetryResult([], [])
        for message in messages:
            target = str(message.id)
            if not message.routing_key or not await self._store.mark_parked(
                message.id, resolution="retried", actor=who.actor, retried=True
            ):
                result.skipped.append(target)
                continue
            try:
                await self._publish(
                    message.routing_key, message.body, message.message_id,
                    original=original_message(message.properties, message.headers),
                )  # fmt: skip
            except BaseException:
                await self._store.unmark_parked(message.id)
                raise
            result.retried.append(target)
            await self._store.record_retry(
                actor=who.actor, kind="parked_message", target=target, group_key=group_key,
                result="republished",
            )  # fmt: skip
            await self._audit.record(
                action="parked.retry", outcome="republished", principal=who.principal,
                actor=who.actor, remote=who.remote,
                detail={"parked_id": message.id, "reason": message.reason_code},
            )  # fmt: skip
        return result

    async def resolve_parked_message(self, who: Acting, message_id: int, note: str) -> bool | None:
        """Close a parked message with a note: True if this closed it, False if it was
        closed already, None if there is no such message."""
        message = await self._store.parked_message(message_id)
        if message is None:
            return None
        return await self.resolve_parked(message, note, who)

    async def resolve_parked(self, message: ParkedMessage, note: str, who: Acting) -> bool:
        """Close a parked message with a note."""
        done = await self._store.mark_parked(
            message.id, resolution=note[:1000] or "resolved", actor=who.actor, retried=False
        )
        await self._audit.record(
            action="parked.resolve", outcome="resolved" if done else "already_resolved",
            principal=who.principal, actor=who.actor, remote=who.remote,
            detail={"parked_id": message.id, "note": note[:500]},
        )  # fmt: skip
        return done
