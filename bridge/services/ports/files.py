"""Record files (学籍档案) kept by the bridge, by content address (sha256)."""

from __future__ import annotations

from typing import Protocol


class RecordFiles(Protocol):
    """Reading stored record files, whole or a piece at a time."""

    async def content(self, sha256: str) -> bytes | None:
        """The whole file, or None if unknown."""
        ...

    async def chunk(self, sha256: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length): for streaming without loading the whole file."""
        ...
