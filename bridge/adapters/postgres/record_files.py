"""Record files (学籍档案) kept by content address, sealed at rest (file_crypto).

No statement here reads or writes a file's bytes in the clear: files are sealed before they
reach the database and opened after they leave it, a segment at a time for ranges. A file
that fails authentication is reported (metric, audit line, row marked damaged, which
reconciliation repairs by fetching it again) and never served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg

from bridge.adapters.file_crypto import FileKeys, open_file, open_span, required, seal
from bridge.adapters.postgres.audit import AuditLog
from bridge.domain.file_segments import SEGMENT_BYTES, TAG_BYTES, sealed_offset, span
from bridge.domain.student_number import mask
from bridge.errors import RecordFileDamaged
from bridge.services.ports.files import SealedFile, VerifiedFile

log = logging.getLogger(__name__)

# A file stored again takes the place of one that was erased, damaged or (before
# `xueji migrate`) in the clear; a sealed, sound one stays as it is.
SEALED_COLUMNS = "sha256, size, media_type, ciphertext, key_id, wrapped_key, nonce_prefix"
REPLACE_UNSOUND = """
ON CONFLICT (sha256) DO UPDATE SET
    size = excluded.size, media_type = excluded.media_type, ciphertext = excluded.ciphertext,
    key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,
    nonce_prefix = excluded.nonce_prefix, content = NULL, erased_at = NULL,
    erased_reason = NULL, damaged_at = NULL, fetched_at = now()
WHERE record_files.ciphertext IS NULL OR record_files.damaged_at IS NOT NULL
"""
INTEGRITY_ACTOR = "system:record-files"
_SEALED_META = "size, key_id, wrapped_key, nonce_prefix, erased_at"


class RecordFileStore:
    """Seal, store and open record files by sha256 (RecordFiles, DamageReports)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        keys: FileKeys | None,
        *,
        audit: AuditLog,
        count_failure: Callable[[str], None] | None = None,
    ) -> None:
        """*keys* None: a command that seals and opens nothing (using them is refused
        with FileKeysInvalid). *count_failure(where)* hears of every file that fails
        authentication."""
        self._pool = pool
        self._given_keys = keys
        self._audit = audit
        self._count_failure = count_failure or (lambda where: None)

    @property
    def keys(self) -> FileKeys:
        """The key-encryption keys files are sealed and opened with."""
        return required(self._given_keys)

    def verified(self, sha256: str, media_type: str, content: bytes) -> VerifiedFile:
        """*content* (already checked against its claim) sealed under a new data key."""
        return VerifiedFile(sha256, media_type, content, seal(self.keys, sha256, content))

    async def put(self, sha256: str, media_type: str, content: bytes) -> None:
        """Seal and store *content*; storing the same bytes again changes nothing."""
        s = seal(self.keys, sha256, content)
        await self._pool.execute(
            f"INSERT INTO record_files ({SEALED_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            + REPLACE_UNSOUND,
            sha256, len(content), media_type, s.ciphertext, s.key_id, s.wrapped_key,
            s.nonce_prefix,
        )  # fmt: skip

    async def content(self, sha256: str, *, about: str | None = None) -> bytes | None:
        """The whole file, or None if unknown or erased.

        RecordFileDamaged (reported, *about* naming the child) if it fails authentication.
        """
        row = await self._pool.fetchrow(
            f"SELECT {_SEALED_META}, ciphertext FROM record_files WHERE sha256 = $1", sha256
        )
        if row is None or row["ciphertext"] is None:
            return None
        sealed = SealedFile(
            row["key_id"], row["wrapped_key"], row["nonce_prefix"], row["ciphertext"]
        )
        try:
            return open_file(self.keys, sha256, row["size"], sealed)
        except RecordFileDamaged:
            await self.report_damage(sha256, "upload", student_number=about)
            raise

    async def opened(
        self, sha256: str, size: int, sealed: SealedFile, *, about: str | None = None
    ) -> bytes:
        """The plaintext of a file whose sealed bytes came with its lookup.

        RecordFileDamaged (reported, *about* naming the child) if it fails authentication.
        """
        try:
            return open_file(self.keys, sha256, size, sealed)
        except RecordFileDamaged:
            await self.report_damage(sha256, "download", student_number=about)
            raise

    async def chunk(
        self, sha256: str, offset: int, length: int, *, about: str | None = None,
        where: str = "download",
    ) -> bytes:  # fmt: skip
        """Plaintext bytes [offset, offset+length), opening only the segments that hold them.

        One statement reads the key material and the whole segments from where the range
        starts (their offset does not depend on the file's size). Empty if the file is
        unknown or erased; RecordFileDamaged (reported) if it fails authentication.
        """
        first_index = offset // SEGMENT_BYTES
        last_index = (offset + max(length, 1) - 1) // SEGMENT_BYTES
        row = await self._pool.fetchrow(
            f"SELECT {_SEALED_META}, substring(ciphertext FROM $2 FOR $3) AS data"
            " FROM record_files WHERE sha256 = $1",
            sha256, sealed_offset(first_index) + 1,
            (last_index - first_index + 1) * (SEGMENT_BYTES + TAG_BYTES),
        )  # fmt: skip
        if row is None or row["data"] is None or offset >= row["size"]:
            return b""
        size: int = row["size"]
        length = min(length, size - offset)
        part = span(size, offset, length)
        sealed = SealedFile(row["key_id"], row["wrapped_key"], row["nonce_prefix"])
        try:
            plain = open_span(
                self.keys, sha256, size, sealed, part, row["data"][: part.sealed_bytes]
            )
        except RecordFileDamaged:
            await self.report_damage(sha256, where, student_number=about)
            raise
        return plain[part.skip : part.skip + length]

    async def report_damage(
        self, sha256: str, where: str, *, student_number: str | None = None
    ) -> None:
        """A file failed authentication: count it, mark it for repair, audit it."""
        self._count_failure(where)
        log.error(
            "record file %s… failed authentication (%s)%s", sha256[:12], where,
            f" for child {mask(student_number)}" if student_number else "",
        )  # fmt: skip
        await self._pool.execute(
            "UPDATE record_files SET damaged_at = coalesce(damaged_at, now()) WHERE sha256 = $1",
            sha256,
        )
        await self._audit.record(
            action="record_file.integrity_failure", outcome="damaged", actor=INTEGRITY_ACTOR,
            student_number=student_number, detail={"sha256": sha256, "where": where},
        )  # fmt: skip
