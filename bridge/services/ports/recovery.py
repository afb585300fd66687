"""Set-aside work for operators: set-aside hand-overs, parked messages, and republishing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    """A parked message's properties and headers as it arrived (binary CloudEvents carry
    their attributes in the headers), for publishing it again as it was."""

    content_type: str | None
    content_encoding: str | None
    headers: dict[str, Any]


class Publish(Protocol):
    """Publish to the events exchange and wait for the broker's confirm."""

    async def __call__(
        self, routing_key: str, body: bytes, message_id: str | None, *,
        original: OriginalMessage | None = None,
    ) -> None:  # fmt: skip
        """*original*: the properties and headers to send it with (else events.md's)."""
        ...


@dataclass(frozen=True, slots=True)
class Group:
    """Work sharing one reason (and registry answer), with counts and first/last seen."""

    kind: str  # parked_message | handoff
    reason: str
    answer: str
    count: int
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None


@dataclass(frozen=True, slots=True)
class SetAsideCase:
    """One set-aside hand-over."""

    child_id: int
    student_number: str
    reason: str
    answer: str
    detail: dict[str, Any]
    at_childseq: int
    set_aside_at: dt.datetime | None
    county_code: str | None
    kindergarten_code: str | None
    phase: str
    last_retry_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """One parked message (its body is shown masked, never raw)."""

    id: int
    message_id: str | None
    routing_key: str | None
    reason_code: str
    reason: str
    parked_at: dt.datetime
    body: bytes
    retries: int
    retried_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolution: str | None
    resolved_by: str | None
    outcome: str | None
    # As stored (JSON, schemas.amqp_values): to publish it again as it arrived.
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


class Worklist(Protocol):
    """Set-aside hand-overs and parked messages, grouped, with operators' marks."""

    async def set_aside_groups(self, county_code: str | None) -> list[Group]:
        """Open set-asides by reason and registry answer."""
        ...

    async def set_aside_cases(
        self,
        county_code: str | None,
        *,
        reason: str | None = None,
        answer: str | None = None,
        student_number: str | None = None,
        limit: int = 500,
    ) -> list[SetAsideCase]:
        """Open set-asides, filtered."""
        ...

    async def resolve_set_aside(self, case: SetAsideCase, note: str, actor: str) -> None:
        """Close one set-aside with an operator's note."""
        ...

    async def parked_groups(self) -> list[Group]:
        """Unresolved parked messages by reason."""
        ...

    async def parked_messages(
        self, *, reason_code: str | None = None, include_resolved: bool = False, limit: int = 500
    ) -> list[ParkedMessage]:
        """Parked messages, oldest first."""
        ...

    async def parked_message(self, message_id: int) -> ParkedMessage | None:
        """One parked message by its row id."""
        ...

    async def mark_parked(
        self, message_id: int, *, resolution: str, actor: str, retried: bool
    ) -> bool:
        """Resolve a parked message (a retry as 'retried'); False if it was already."""
        ...

    async def unmark_parked(self, message_id: int) -> None:
        """Undo mark_parked when the republish failed."""
        ...

    async def record_retry(
        self, *, actor: str, kind: str, target: str, group_key: str | None, result: str
    ) -> None:
        """Keep an operator's retry."""
        ...

    async def recent_retries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest retries with what came of them so far."""
        ...


class ParkedArchive(Protocol):
    """Where the parking queue's recorder keeps each parked message."""

    async def add(
        self,
        *,
        message_id: str | None,
        routing_key: str | None,
        code: str,
        reason: str,
        headers: str,
        body: bytes,
        properties: str = "{}",
    ) -> None:
        """Keep one parked message (*headers* and *properties* as JSON text)."""
        ...
