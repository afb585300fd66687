"""Record files, the audit log and parked messages in memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bridge.domain.access import Principal
from bridge.errors import RecordFileDamaged
from bridge.services.ports.files import SealedFile, VerifiedFile
from schemas.api import AuditEntryOut
from tests.fakes.clock import FakeClock


@dataclass
class StoredFile:
    """A stored record file: its bytes as the fake keeps them, and its state at rest."""

    media_type: str
    content: bytes
    stored_at: dt.datetime | None = None
    erased_at: dt.datetime | None = None
    erased_reason: str | None = None
    damaged: bool = False  # reported after failing authentication


def _scrambled(data: bytes) -> bytes:
    """The fake's sealing: reversible, and never the bytes themselves."""
    return bytes(b ^ 0x5A for b in data)


class MemoryRecordFiles:
    """RecordFiles and DamageReports: files by sha256.

    Sealing is a scramble here, and authentication the file's sha256: a file changed at
    rest (damage()) fails it wherever it is opened, and is reported as the real store
    reports it (damage_reports, and marked damaged).
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.files: dict[str, StoredFile] = {}
        self.chunks_read = 0
        self.damage_reports: list[tuple[str, str, str | None]] = []  # sha256, where, child

    def verified(self, sha256: str, media_type: str, content: bytes) -> VerifiedFile:
        """*content* "sealed" for the ledger's save."""
        return VerifiedFile(sha256, media_type, content, self.sealed_form(content))

    @staticmethod
    def sealed_form(content: bytes | None) -> SealedFile:
        """The sealed form of *content* (key material only when None)."""
        return SealedFile(
            "memory", b"wrapped", b"nonce..", None if content is None else _scrambled(content)
        )

    async def put(self, sha256: str, media_type: str, content: bytes) -> None:
        """Keep *content*; the same bytes again change nothing, but take the place of an
        erased or damaged copy."""
        stored = self.files.get(sha256)
        if stored is None or stored.erased_at is not None or stored.damaged:
            self.files[sha256] = StoredFile(media_type, content, self.clock.now())

    async def content(self, sha256: str, *, about: str | None = None) -> bytes | None:
        """The whole file, or None if unknown or erased."""
        stored = self.files.get(sha256)
        if stored is None or stored.erased_at is not None:
            return None
        await self._authenticate(sha256, stored.content, "upload", about)
        return stored.content

    async def chunk(
        self, sha256: str, offset: int, length: int, *, about: str | None = None,
        where: str = "download",
    ) -> bytes:  # fmt: skip
        """Bytes [offset, offset + length); empty if unknown or erased."""
        self.chunks_read += 1
        stored = self.files.get(sha256)
        if stored is None or stored.erased_at is not None:
            return b""
        await self._authenticate(sha256, stored.content, where, about)
        return stored.content[offset : offset + length]

    async def opened(
        self, sha256: str, size: int, sealed: SealedFile, *, about: str | None = None
    ) -> bytes:
        """The bytes of a file whose sealed form came with its lookup."""
        assert sealed.ciphertext is not None
        content = _scrambled(sealed.ciphertext)
        await self._authenticate(sha256, content, "download", about, size=size)
        return content

    async def report_damage(
        self, sha256: str, where: str, *, student_number: str | None = None
    ) -> None:
        """Note the report and mark the file damaged."""
        self.damage_reports.append((sha256, where, student_number))
        if sha256 in self.files:
            self.files[sha256].damaged = True

    async def _authenticate(
        self, sha256: str, content: bytes, where: str, about: str | None, *, size: int = -1
    ) -> None:
        if hashlib.sha256(content).hexdigest() != sha256 or size not in (-1, len(content)):
            await self.report_damage(sha256, where, student_number=about)
            raise RecordFileDamaged("a segment of the stored file failed authentication")

    # --- what tests do to files at rest -------------------------------------------------
    def damage(self, sha256: str) -> None:
        """Change a byte of the stored file, as tampering at rest would."""
        stored = self.files[sha256]
        stored.content = bytes([stored.content[0] ^ 1]) + stored.content[1:]

    def erase(self, sha256: str, reason: str = "handover_complete") -> None:
        """Erase the file as retention does: its bytes go, when and why stay."""
        stored = self.files[sha256]
        stored.content, stored.erased_at, stored.erased_reason = b"", self.clock.now(), reason


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
    properties: str = "{}"
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    retried_at: dt.datetime | None = None
    retries: int = 0


@dataclass
class MemoryParkedArchive:
    """ParkedArchive: what the parking queue's recorder keeps.

    As PostgreSQL does, it refuses text it cannot store (NUL, text that is not UTF-8, JSON
    that is not JSON); *refusals* are raised by the next add() calls, in order, and
    *refuse_all* by every one (the database away, or refusing whatever comes).
    """

    clock: FakeClock = field(default_factory=FakeClock)
    messages: list[ParkedRow] = field(default_factory=list)
    failures: int = 0  # the next this many add() calls fail (the database is away)
    refusals: list[BaseException] = field(default_factory=list)
    refuse_all: BaseException | None = None
    attempts: int = 0  # add() calls, kept or not

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
        """Keep one parked message."""
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is away")
        if self.refusals:
            raise self.refusals.pop(0)
        if self.refuse_all is not None:
            raise self.refuse_all
        for text in (message_id, routing_key, code, reason, headers, properties):
            if text is not None and "\x00" in text:
                raise ValueError("a text column cannot hold NUL")
            if text is not None:
                text.encode("utf-8")  # a lone surrogate is no UTF-8: refused
        for document in (headers, properties):
            if "\\u0000" in document:
                raise ValueError("jsonb cannot hold \\u0000")
            json.loads(document)
        self.messages.append(
            ParkedRow(len(self.messages) + 1, message_id, routing_key, code, reason, headers,
                      body, self.clock.now(), properties)
        )  # fmt: skip
