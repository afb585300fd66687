"""Recovery of set-aside work (the ServicePulse model): inspect, retry, resolve; all audited.

A retry goes back through the same idempotent path as the first try: a parked message
is republished to the events exchange (the inbox drops an event already recorded), a
set-aside hand-over is released and driven again (its idempotency key is unchanged).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.adapters.amqp_values import from_json
from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.ledger import Ledger
from bridge.adapters.postgres.recovery_store import ParkedMessage, RecoveryStore, SetAsideCase
from bridge.domain.access import Principal
from bridge.domain.child_record import ChildRecord
from bridge.domain.handoff import Handoff
from bridge.domain.student_number import mask


class Publish(Protocol):
    """Publish to the events exchange and wait for the broker's confirm."""

    async def __call__(
        self, routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        """*original*: the properties and headers to send it with (else events.md's)."""


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    """A parked message's properties and headers as it arrived (binary CloudEvents carry
    their attributes in the headers), for publishing it again as it was."""

    content_type: str | None
    content_encoding: str | None
    headers: dict[str, Any]


_IDENTITY_KEYS = {"id_number", "student_number", "previous_student_number", "new_student_number"}
_PERSONAL_KEYS = {"name", "birth_date"}
# An identity number (18 characters) or a student number (G, J or L and 18 more) anywhere in
# text: masked whatever field holds it.
_NUMBERS = re.compile(r"(?<![0-9A-Za-z])[GJLgjl]?[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# Deeper than any event: what lies beyond is not shown (and costs no recursion).
_MASK_DEPTH = 24
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def mask_name(name: str) -> str:
    """Keep the family name's first character: enough to tell cases apart, not to identify."""
    return (name[:1] + "*" * max(len(name) - 1, 1)) if name else ""


def masked(value: Any, key: str = "", depth: int = 0) -> Any:
    """A JSON value with identity fields masked (names, numbers, birth dates).

    It sees through encodings: ``data_base64`` and any other base64 of JSON, and JSON
    written as a string, are decoded and masked alike (shown decoded); identity and student
    numbers are masked wherever they appear.
    """
    if depth > _MASK_DEPTH:
        return "<nested too deeply to show>"
    if isinstance(value, dict):
        return {_printable(k): masked(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key, depth + 1) for v in value]
    if isinstance(value, str):
        if key in _IDENTITY_KEYS or key == "subject" or key == "existing_student_number":
            return mask(value)
        if key == "name":
            return mask_name(value)
        if key in _PERSONAL_KEYS:
            return value[:4] + "-**-**" if len(value) >= 4 else "****"
        if key == "content_base64":
            return f"<{len(value)} characters>"
        inner = _decoded(value)
        if inner is not None:
            return {"(decoded)": masked(inner, key, depth + 1)}
        if key == "data_base64":
            return f"<{len(value)} characters of base64>"
        return _printable(_NUMBERS.sub(lambda m: mask(m.group(0)), value))
    return value


def _printable(text: str) -> str:
    # A lone surrogate (JSON's "\ud800") cannot be written as UTF-8: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _decoded(text: str) -> Any:
    """The JSON object or array *text* holds, as JSON or base64 of JSON; else None."""
    candidates: list[str] = []
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        candidates.append(stripped)
    if _BASE64.fullmatch(stripped):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(stripped, validate=True).decode("utf-8"))
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, dict | list):
            return parsed
    return None


def masked_body(body: bytes) -> str:
    """A parked message's body for an operator's eyes: JSON with identity fields masked."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        inner = _decoded(body.decode("ascii", "replace"))  # base64 of JSON, perhaps
        if inner is None:
            # Not JSON: its bytes may hold anything; show only its size.
            return f"<{len(body)} bytes, not JSON>"
        parsed = {"(decoded)": inner}
    return json.dumps(masked(parsed), ensure_ascii=False, indent=2)


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
                await self._publish(
                    message.routing_key, message.body, message.message_id,
                    original=original_message(message.properties, message.headers),
                )  # fmt: skip
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
