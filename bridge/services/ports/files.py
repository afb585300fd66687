"""Record files (学籍档案) kept by the bridge, by content address (sha256), sealed at rest.

The store seals a file before it reaches the database and opens it after it leaves, a
segment at a time for a range (bridge/domain/file_segments.py). A file that fails
authentication is reported by the store (metric, audit line, marked damaged for
reconciliation to fetch it again) and raises RecordFileDamaged: never served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SealedFile:
    """A file's sealed form as stored: the wrapped data key, its wrapping key's id, the
    nonce prefix, and the sealed segments (None when only the key material was read)."""

    key_id: str
    wrapped_key: bytes
    nonce_prefix: bytes
    ciphertext: bytes | None = None


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    """A record file checked against its claim, to keep with the save: sealed for the
    ledger, and its bytes for the upload that follows (in memory only)."""

    sha256: str
    media_type: str
    content: bytes
    sealed: SealedFile

    @property
    def size(self) -> int:
        """Bytes of the plaintext."""
        return len(self.content)


class RecordFiles(Protocol):
    """Sealing, and reading stored record files whole or a piece at a time.

    *about* names the child a read is for (masked in logs, in the audit line of a failure).
    """

    def verified(self, sha256: str, media_type: str, content: bytes) -> VerifiedFile:
        """*content* (already checked against its claim) sealed under a new data key."""
        ...

    async def content(self, sha256: str, *, about: str | None = None) -> bytes | None:
        """The whole file, or None if unknown or erased (RecordFileDamaged, reported)."""
        ...

    async def chunk(
        self, sha256: str, offset: int, length: int, *, about: str | None = None,
        where: str = "download",
    ) -> bytes:  # fmt: skip
        """Bytes [offset, offset + length), opening only the segments that hold them; empty
        if the file is unknown or erased (RecordFileDamaged, reported)."""
        ...

    async def opened(
        self, sha256: str, size: int, sealed: SealedFile, *, about: str | None = None
    ) -> bytes:
        """The plaintext of a file whose sealed bytes came with a lookup (RecordFileDamaged,
        reported)."""
        ...


class DamageReports(Protocol):
    """Where a file found failing authentication is reported."""

    async def report_damage(
        self, sha256: str, where: str, *, student_number: str | None = None
    ) -> None:
        """Count it, mark it for repair, audit it."""
        ...
