"""Record files (学籍档案) kept by content address; the sending side keeps its copy."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A stored file's metadata."""

    sha256: str
    size: int
    media_type: str


class RecordFileStore:
    """Put and read record files by sha256."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, sha256: str, media_type: str, content: bytes) -> None:
        """Store *content*; storing the same bytes again is a no-op."""
        await self._pool.execute(
            "INSERT INTO record_files (sha256, size, media_type, content) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (sha256) DO NOTHING",
            sha256, len(content), media_type, content,
        )  # fmt: skip

    async def content(self, sha256: str) -> bytes | None:
        """The whole file, or None if unknown."""
        value: bytes | None = await self._pool.fetchval(
            "SELECT content FROM record_files WHERE sha256 = $1", sha256
        )
        return value

    async def info(self, sha256: str) -> StoredFile | None:
        """Size and media type without the bytes."""
        row = await self._pool.fetchrow(
            "SELECT sha256, size, media_type FROM record_files WHERE sha256 = $1", sha256
        )
        return StoredFile(row["sha256"], row["size"], row["media_type"]) if row else None

    async def chunk(self, sha256: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) — for streaming without loading the whole file."""
        value: bytes = await self._pool.fetchval(
            "SELECT substring(content FROM $2 FOR $3) FROM record_files WHERE sha256 = $1",
            sha256, offset + 1, length,
        )  # fmt: skip
        return value
