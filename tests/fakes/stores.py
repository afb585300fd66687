"""Record files, the audit log and parked messages in memory."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bridge.domain.access import Principal
from schemas.api import AuditEntryOut
from tests.fakes.clock import FakeClock


@dataclass(frozen=True)
class StoredFile:
    """A stored record file."""

    media_type: str
    content: bytes


class MemoryRecordFiles:
    """RecordFiles: files by sha256."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.chunks_read = 0

    async def put(self, sha256: str, media_type: str, content: bytes) -> None:
        """Keep *content* (the same bytes again change nothing)."""
        self.files.setdefault(sha256, StoredFile(media_type, content))

    async def content(self, sha256: str) -> bytes | None:
        """The whole file, or None."""
        stored = self.files.get(sha256)
        return stored.content if stored else None

    async def chunk(self, sha256: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length)."""
        self.chunks_read += 1
        return self.files[sha256].content[offset : offset + length]


class MemoryAudit:
    """Audit: an append-only list, newest last."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.entries: list[AuditEntryOut] = []

    async def record(
        self,
        *,
        action: str,
        outcome: str,
        principal: Principal | None = None,
        actor: str | None = None,
        student_number: str | None = None,
        target_token: str | None = None,
        remote: str | None = None,
        detail: dict[str, Any] | None = None,
        student_numbers: tuple[str, ...] = (),
    ) -> None:
        """Append one entry, as the PostgreSQL log would store it."""
        self.entries.append(
            AuditEntryOut(
                at=self.clock.now(),
                actor=principal.token_id if principal else (actor or "anonymous"),
                role=principal.role.value if principal else None,
                school_code=principal.school_code if principal else None,
                county_code=principal.county_code if principal else None,
                action=action, student_number=student_number, target_token=target_token,
                remote=remote, outcome=outcome, detail=detail or {},
                student_numbers=list(student_numbers),
            )
        )  # fmt: skip

    async def query(
        self, *, student_number: str | None = None, actor: str | None = None, limit: int = 100
    ) -> list[AuditEntryOut]:
        """Newest first, by child (list lines included) and/or by token."""
        found = [
            e for e in reversed(self.entries)
            if (student_number is None or student_number == e.student_number
                or student_number in e.student_numbers)
            and (actor is None or actor in (e.actor, e.target_token))
        ]  # fmt: skip
        return found[:limit]

    def actions(self) -> list[tuple[str, str]]:
        """(action, outcome) of every entry, oldest first."""
        return [(e.action, e.outcome) for e in self.entries]


@dataclass
class ParkedRow:
    """One parked message as kept."""

    id: int
    message_id: str | None
    routing_key: str | None
    code: str
    reason: str
    headers: str
    body: bytes
    parked_at: dt.datetime
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    retried_at: dt.datetime | None = None
    retries: int = 0


@dataclass
class MemoryParkedArchive:
    """ParkedArchive: what the parking queue's recorder keeps."""

    clock: FakeClock = field(default_factory=FakeClock)
    messages: list[ParkedRow] = field(default_factory=list)
    failures: int = 0  # the next this many add() calls fail (the database is away)

    async def add(
        self,
        *,
        message_id: str | None,
        routing_key: str | None,
        code: str,
        reason: str,
        headers: str,
        body: bytes,
    ) -> None:
        """Keep one parked message."""
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is away")
        self.messages.append(
            ParkedRow(len(self.messages) + 1, message_id, routing_key, code, reason, headers,
                      body, self.clock.now())
        )  # fmt: skip
