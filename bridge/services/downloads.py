"""Record file downloads: one file (whole, or a range of it) or many as a streamed ZIP.

A file up to CHUNK_BYTES comes with the lookup and goes out whole; a larger one comes
from the store in chunks, handed on as they come, so neither a large file nor an archive
is held whole in memory. Every download is kept as a receipt and audited, and a complete
one is kept before its last bytes go: no client holds a whole file whose receipt and
audit line are not committed (a crash cannot leave a complete read unaudited).

Files are sealed at rest and opened here, after the shared lookup: a small file's sealed
bytes come with it, a larger one's segments with each chunk. A file erased after its
retention period is refused with when and why (RecordFileGone); one whose stored copy
fails authentication is refused before any of it goes (RecordFileDamaged; the store has
reported it, for reconciliation to fetch it again). Either refusal is audited.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, NoReturn, cast

import orjson

from bridge.domain.access import PresentedToken, Principal, Role
from bridge.domain.retention import erased_file_message
from bridge.errors import RecordFileDamaged, RecordFileGone
from bridge.services.ports.clock import Clock
from bridge.services.ports.files import RecordFiles
from bridge.services.ports.schools import (
    AuditLine,
    ChildFile,
    ChildView,
    FileLookup,
    ListQuery,
    ReadEntry,
    Receipt,
    Receipts,
    SchoolReads,
    SharedLookups,
)

# Large enough that a few-MB file is a handful of queries, small enough to keep memory flat.
CHUNK_BYTES = 256 * 1024
# Children per query while building an archive.
ZIP_PAGE = 200
_EXTENSIONS = {"application/json": ".json", "application/pdf": ".pdf"}
ACTION = "record_file.read"
HEAD_ACTION = "record_file.head"
DAMAGED = (
    "the bridge's stored copy of this record file failed its integrity check: it is"
    " reported and will be fetched again from the preschool registry; try again later"
)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive first and last byte."""

    first: int
    last: int


def _entry(
    principal: Principal,
    child: ChildFile,
    *,
    via: str,
    span: ByteRange | None,
    sent: int,
    complete: bool,
    outcome: str,
    remote: str | None,
) -> ReadEntry:
    """The receipt, the pull (the admitting school's complete download) and the audit line."""
    assert child.sha256 is not None
    detail: dict[str, object] = {
        "sha256": child.sha256, "bytes": sent, "via": via, "reader": reader_of(principal)
    }  # fmt: skip
    if span is not None:
        detail["range"] = f"{span.first}-{span.last}"
    own = principal.role is Role.SCHOOL and principal.school_code == child.school_code
    return ReadEntry(
        audit=(AuditLine(principal, ACTION, outcome, child.student_number, remote, detail),),
        receipt=Receipt(
            principal, child.child_id, child.student_number, child.sha256, via,
            span.first if span else None, span.last if span else None, sent, complete, remote,
        ),
        pulled=(child.child_id, child.school_code, child.sha256)
        if own and complete and child.school_code else None,
    )  # fmt: skip


def reader_of(principal: Principal) -> str:
    """Who read a record file: its school, or an operator in scope (an operator's read)."""
    return "school" if principal.role is Role.SCHOOL else "operator"


class Delivery:
    """One file going out, whole or a range: its bytes in order, its receipt kept before the
    last of them (or, if it never got there, how far it got)."""

    def __init__(
        self,
        downloads: Downloads,
        principal: Principal,
        child: ChildFile,
        span: ByteRange | None,
        remote: str | None,
        connected: Callable[[], bool],
    ) -> None:
        assert child.sha256 is not None and child.size is not None
        self._d, self._principal, self._child = downloads, principal, child
        self._span, self._remote, self._connected = span, remote, connected
        self.first, self.last = (span.first, span.last) if span else (0, child.size - 1)
        self.length = self.last - self.first + 1
        self._sent, self._kept = 0, False

    async def whole(self) -> bytes | None:
        """The bytes of a small file that came (sealed) with its lookup, opened and kept as
        delivered; None for a file to be streamed."""
        child, sealed = self._child, self._child.sealed
        if sealed is None or sealed.ciphertext is None:
            return None
        assert child.sha256 is not None and child.size is not None
        try:
            content = await self._d.files.opened(
                child.sha256, child.size, sealed, about=child.student_number
            )
        except RecordFileDamaged:
            await self._damaged()
        body = content[self.first : self.last + 1]
        if len(body) != self.length:
            raise RuntimeError("stored record file is shorter than recorded")
        await self._delivered()
        return body

    async def stream(
        self,
        write: Callable[[bytes], Awaitable[None]],
        *,
        start: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """The bytes from the store, a chunk at a time, each handed to *write* and counted
        once written. *start* (sending the headers) is awaited once the first chunk is
        opened: a file that fails authentication is refused before anything goes out."""
        sha, pos, last = self._child.sha256, self.first, self.last
        assert sha is not None
        about = self._child.student_number
        try:
            data = await self._d.files.chunk(
                sha, pos, min(CHUNK_BYTES, last + 1 - pos), about=about
            )
        except RecordFileDamaged:
            await self._damaged()
        if start is not None:
            await start()
        while True:
            if not data:
                raise RuntimeError("stored record file is shorter than recorded")
            if pos + len(data) > last:
                await self._delivered()
            await write(data)
            pos += len(data)
            self._sent += len(data)
            if pos > last:
                return
            # A later chunk that fails authentication cuts the transfer short (reported).
            data = await self._d.files.chunk(
                sha, pos, min(CHUNK_BYTES, last + 1 - pos), about=about
            )

    async def _delivered(self) -> None:
        # Before the last bytes go, so the school's next request already sees the file as
        # pulled. If the commit fails, the last bytes are never sent.
        if not self._connected():
            raise ConnectionResetError("the client went away")
        self._kept = True
        await self._d.receipts.keep(
            _entry(self._principal, self._child, via="file", span=self._span, sent=self.length,
                   complete=self.last == (self._child.size or 0) - 1,
                   outcome="partial" if self._span else "ok", remote=self._remote)
        )  # fmt: skip

    async def _damaged(self) -> NoReturn:
        # Nothing of the file went: the refusal's audit line is the whole trace of it.
        self._kept = True
        await self._d.unavailable(
            self._principal, dataclasses.replace(self._child, damaged=True), self._remote
        )

    async def close(self) -> None:
        """Refused, short or cut off before the last bytes: say how far it got."""
        if not self._kept:
            await self._d.receipts.keep(
                _entry(self._principal, self._child, via="file", span=self._span,
                       sent=self._sent, complete=False, outcome="aborted", remote=self._remote)
            )  # fmt: skip


class _Sink:
    """A write-only, unseekable file for zipfile, drained after each write."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _left_out(child: ChildView, *, damaged: bool = False) -> dict[str, object]:
    """A manifest line for a file the archive cannot hold."""
    if child.file_erased_at is not None and not damaged:
        return {
            "student_number": child.student_number, "sha256": child.file_sha256,
            "reason": "erased", "erased_at": child.file_erased_at.isoformat(),
        }  # fmt: skip
    return {"student_number": child.student_number, "sha256": child.file_sha256,
            "reason": "damaged"}  # fmt: skip


def _entry_name(child: ChildView) -> str:
    return child.student_number + _EXTENSIONS.get(child.file_media_type or "", ".bin")


class Downloads:
    """Schools take in record files (接收): one at a time, or all of a school's as a ZIP."""

    def __init__(
        self,
        lookups: SharedLookups,
        receipts: Receipts,
        files: RecordFiles,
        children: SchoolReads,
        clock: Clock,
    ) -> None:
        self.files = files
        self.receipts = receipts
        self._lookups = lookups
        self._children = children
        self._clock = clock

    def lookup(
        self, presented: PresentedToken, student_number: str | None, *, conditional: bool
    ) -> Awaitable[FileLookup]:
        """The token's row and, in its scope, the child's file, read with the downloads
        waiting at that moment. A conditional request usually ends in 304: its bytes are
        not fetched. The token must still be admitted."""
        # The hot path: the lookup's own awaitable, not a coroutine around it.
        inline_max = 0 if conditional else CHUNK_BYTES
        return self._lookups.file_for(presented, student_number, inline_max=inline_max)

    async def refused(
        self, principal: Principal, student_number: str | None, remote: str | None
    ) -> None:
        """No file for this principal under this number (audited)."""
        line = AuditLine(principal, ACTION, "not_found", student_number, remote)
        await self.receipts.keep(ReadEntry(audit=(line,)))

    async def unavailable(
        self, principal: Principal, child: ChildFile, remote: str | None
    ) -> NoReturn:
        """Refuse a file erased after its retention period (RecordFileGone, saying when and
        why) or one that failed authentication (RecordFileDamaged); audited, no byte sent."""
        assert child.sha256 is not None
        refusal: RecordFileGone | RecordFileDamaged
        if child.erased_at is not None:
            outcome = "gone"
            refusal = RecordFileGone(
                erased_file_message(child.erased_reason, child.erased_at),
                erased_at=child.erased_at, reason=child.erased_reason,
            )  # fmt: skip
        else:
            outcome, refusal = "damaged", RecordFileDamaged(DAMAGED)
        line = AuditLine(principal, ACTION, outcome, child.student_number, remote,
                         {"sha256": child.sha256})  # fmt: skip
        await self.receipts.keep(ReadEntry(audit=(line,)))
        raise refusal

    async def asked_about(self, principal: Principal, child: ChildFile, remote: str | None) -> None:
        """A HEAD of the file (its size and digest, asked before a download): audited, no
        receipt (nothing of the file went)."""
        assert child.sha256 is not None
        line = AuditLine(principal, HEAD_ACTION, "ok", child.student_number, remote,
                         {"sha256": child.sha256, "reader": reader_of(principal)})  # fmt: skip
        await self.receipts.keep(ReadEntry(audit=(line,)))

    async def not_modified(
        self, principal: Principal, child: ChildFile, remote: str | None
    ) -> None:
        """The client holds this version already (304): a receipt of nothing sent."""
        await self.receipts.keep(
            _entry(principal, child, via="not_modified", span=None, sent=0, complete=True,
                   outcome="not_modified", remote=remote)
        )  # fmt: skip

    def deliver(
        self,
        principal: Principal,
        child: ChildFile,
        span: ByteRange | None,
        remote: str | None,
        connected: Callable[[], bool],
    ) -> Delivery:
        """The file (or *span* of it) going out; close() it whatever happens."""
        return Delivery(self, principal, child, span, remote, connected)

    async def archive(
        self, principal: Principal, school_code: str, entry_year: int | None, remote: str | None
    ) -> AsyncIterator[bytes]:
        """Every record file of the school's children *principal* may see, as a ZIP whose
        last entry, manifest.json, lists each file's name, number, sha256 and size."""
        sink = _Sink()
        # Stored, not deflated: compressing hundreds of files would hold up the event loop,
        # and the attachments inside record files are compressed already.
        archive = zipfile.ZipFile(cast(IO[bytes], sink), "w", zipfile.ZIP_STORED, allowZip64=True)
        stamp = self._clock.now().astimezone().timetuple()[:6]
        manifest: list[dict[str, object]] = []
        left_out: list[dict[str, object]] = []  # erased after retention, or damaged
        after = 0
        while True:
            page = await self._children.school_children(
                principal,
                ListQuery(school_code=school_code, entry_year=entry_year, after_child_id=after,
                          limit=ZIP_PAGE),
            )  # fmt: skip
            for child in page[:ZIP_PAGE]:
                if child.file_sha256 is None or child.file_size is None:
                    continue
                if child.file_erased_at is not None or child.file_damaged:
                    left_out.append(_left_out(child))
                    continue
                sha, size, about = child.file_sha256, child.file_size, child.student_number
                # The first chunk is opened before the entry starts: a file that fails
                # authentication is left out whole (a later chunk can only cut the archive).
                try:
                    data = await self.files.chunk(
                        sha, 0, min(CHUNK_BYTES, size), about=about, where="zip"
                    )
                except RecordFileDamaged:  # reported by the store
                    left_out.append(_left_out(child, damaged=True))
                    continue
                entry = zipfile.ZipInfo(_entry_name(child), date_time=stamp)
                digest = hashlib.sha256()
                sent = 0
                with archive.open(entry, "w", force_zip64=size >= 2**31) as out:
                    while sent < size:
                        if not data:
                            raise RuntimeError("stored record file is shorter than recorded")
                        out.write(data)
                        digest.update(data)
                        sent += len(data)
                        yield sink.take()
                        if sent < size:
                            data = await self.files.chunk(
                                sha, sent, min(CHUNK_BYTES, size - sent), about=about,
                                where="zip",
                            )  # fmt: skip
                yield sink.take()
                manifest.append({
                    "name": entry.filename, "student_number": child.student_number,
                    "sha256": digest.hexdigest(), "size": sent,
                    "media_type": child.file_media_type,
                })  # fmt: skip
                kept = ChildFile(
                    child.child_id, child.student_number, child.school_code, sha, size,
                    child.file_media_type, None,
                )  # fmt: skip
                await self.receipts.keep(
                    _entry(principal, kept, via="zip", span=None, sent=sent, complete=True,
                           outcome="ok", remote=remote)
                )  # fmt: skip
            if len(page) <= ZIP_PAGE:
                break
            after = page[ZIP_PAGE - 1].child_id
        body = {"school_code": school_code, "entry_year": entry_year, "files": manifest,
                "not_included": left_out}  # fmt: skip
        archive.writestr(
            zipfile.ZipInfo("manifest.json", date_time=stamp),
            orjson.dumps(body, option=orjson.OPT_INDENT_2),
        )
        archive.close()
        yield sink.take()
