"""Record file downloads, one file (with ETag, 304 and ranges) or many as a streamed ZIP.

A file up to CHUNK_BYTES comes with the lookup and goes out in one write; a larger one
comes from the store in chunks and goes out as they come, so neither a large file nor an
archive is held whole in memory. Every download is kept as a receipt and audited.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
import zipfile
from dataclasses import dataclass
from typing import IO, cast

import orjson
from aiohttp import web

from bridge.adapters.postgres.school_lookups import ChildFile
from bridge.adapters.postgres.school_pulls import ChildView, ListQuery
from bridge.adapters.postgres.school_reads import AuditLine, ReadEntry, Receipt
from bridge.api.auth import admit, authenticate, bearer, remote_of
from bridge.api.problems import problem
from bridge.api.schools import (
    NUMBER_FORM,
    SCHOOL_API,
    SchoolApi,
    int_param,
    not_found,
    only_params,
    school_in_scope,
)
from bridge.domain.access import Principal, Role
from bridge.domain.retention import erased_file_message
from bridge.errors import RecordFileDamaged

# Large enough that a few-MB file is a handful of queries, small enough to keep memory flat.
CHUNK_BYTES = 256 * 1024
# Children per query while building an archive.
ZIP_PAGE = 200
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_EXTENSIONS = {"application/json": ".json", "application/pdf": ".pdf"}


def repr_digest(sha256_hex: str) -> str:
    """RFC 9530 sha-256 digest field value."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive first and last byte."""

    first: int
    last: int


class Unsatisfiable(Exception):
    """The range lies outside the file."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One `bytes=` range, or None to send the whole file.

    Several ranges, or a header we cannot read, are ignored: RFC 9110 lets a server
    answer with the whole representation, which every client handles.
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise Unsatisfiable
    if end < start:
        return None
    return ByteRange(start, end)


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
    detail: dict[str, object] = {"sha256": child.sha256, "bytes": sent, "via": via}
    if span is not None:
        detail["range"] = f"{span.first}-{span.last}"
    own = principal.role is Role.SCHOOL and principal.school_code == child.school_code
    return ReadEntry(
        audit=(AuditLine(principal, "record_file.read", outcome, child.student_number, remote,
                         detail),),
        receipt=Receipt(
            principal, child.child_id, child.student_number, child.sha256, via,
            span.first if span else None, span.last if span else None, sent, complete, remote,
        ),
        pulled=(child.child_id, child.school_code, child.sha256)
        if own and complete and child.school_code else None,
    )  # fmt: skip


def _damaged() -> web.HTTPException:
    return problem(
        500, "record_file_damaged",
        "the bridge's stored copy of this record file failed its integrity check: it is"
        " reported and will be fetched again from the preschool registry; try again later",
    )  # fmt: skip


async def _unavailable(
    api: SchoolApi, principal: Principal, child: ChildFile, remote: str | None
) -> web.HTTPException:
    """410 for a file erased after its retention period, 500 for one that failed
    authentication at rest; either way audited, and no byte of it sent."""
    assert child.sha256 is not None
    if child.erased_at is not None:
        outcome = "gone"
        refusal = problem(
            410, "gone", erased_file_message(child.erased_reason, child.erased_at),
            erased_at=child.erased_at.isoformat(), reason=child.erased_reason,
        )  # fmt: skip
    else:
        outcome, refusal = "damaged", _damaged()
    line = AuditLine(principal, "record_file.read", outcome, child.student_number, remote,
                     {"sha256": child.sha256})  # fmt: skip
    await api.book.keep(ReadEntry(audit=(line,)))
    return refusal


async def _opened(
    api: SchoolApi, principal: Principal, child: ChildFile, remote: str | None
) -> bytes:
    """The plaintext of a small file that came sealed with its lookup."""
    assert child.sha256 is not None and child.size is not None and child.sealed is not None
    try:
        return api.files.unseal(child.sha256, child.size, child.sealed)
    except RecordFileDamaged:
        await api.files.report_damage(child.sha256, "download", student_number=child.student_number)
        raise await _unavailable(
            api, principal, dataclasses.replace(child, damaged=True), remote
        ) from None


async def _first_chunk(api: SchoolApi, child: ChildFile, first: int, length: int) -> bytes:
    assert child.sha256 is not None
    try:
        return await api.files.chunk(child.sha256, first, length, about=child.student_number)
    except RecordFileDamaged:  # reported by the store
        raise _damaged() from None


async def get_record_file(request: web.Request) -> web.StreamResponse:
    """`GET /v1/handoffs/{student_number}/record-file`.

    The hot path of the school API: token, scope, file metadata and (for a file up to
    CHUNK_BYTES) the bytes come in one query shared with the downloads waiting at that
    moment, and the bookkeeping is group-committed.
    """
    presented = bearer(request)
    number = request.match_info["student_number"]
    well_formed = bool(NUMBER_FORM.match(number))
    # A conditional request usually ends in 304: do not fetch bytes it will not send.
    inline_max = 0 if "If-None-Match" in request.headers else CHUNK_BYTES
    api = request.app[SCHOOL_API]
    found = await api.lookups.file_for(
        presented, number if well_formed else None, inline_max=inline_max
    )
    principal = await admit(request, found.token, presented)
    remote = remote_of(request)
    child = found.child
    if child is None:
        refused = AuditLine(principal, "record_file.read", "not_found",
                            number if well_formed else None, remote)  # fmt: skip
        await api.book.keep(ReadEntry(audit=(refused,)))
        raise not_found()
    only_params(request)
    if child.sha256 is None or child.size is None:
        raise not_found()
    if child.erased_at is not None or child.damaged:
        raise await _unavailable(api, principal, child, remote)
    sha, size = child.sha256, child.size
    etag, digest = f'"{sha}"', repr_digest(sha)
    headers = {
        "ETag": etag,
        "Repr-Digest": digest,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        await api.book.keep(
            _entry(principal, child, via="not_modified", span=None, sent=0, complete=True,
                   outcome="not_modified", remote=remote)
        )  # fmt: skip
        return web.Response(status=304, headers=headers)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's partial copy is of another version: send it all
    try:
        span = parse_range(range_header, size)
    except Unsatisfiable:
        exc = problem(416, "range_not_satisfiable", f"the file has {size} bytes")
        exc.headers["Content-Range"] = f"bytes */{size}"
        raise exc from None
    first, last = (span.first, span.last) if span else (0, size - 1)
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    else:
        headers["Content-Digest"] = digest  # the content is the whole file here
    status = 206 if span else 200
    media_type = child.media_type or "application/octet-stream"
    length = last - first + 1
    sent, kept = 0, False
    content = None
    if child.sealed is not None and child.sealed.ciphertext is not None:
        content = await _opened(api, principal, child, remote)  # after the shared lookup

    async def keep_delivered() -> None:
        # Before the last bytes go: no client holds a whole file whose receipt and audit
        # line are not committed (a crash cannot leave a complete read unaudited), and the
        # school's next request already sees the file as pulled. If the commit fails, the
        # last bytes are never sent.
        nonlocal kept
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client went away")
        kept = True
        await api.book.keep(
            _entry(principal, child, via="file", span=span, sent=length,
                   complete=last == size - 1, outcome="partial" if span else "ok",
                   remote=remote)
        )  # fmt: skip

    try:
        if content is not None:
            # A small file is in hand: headers and body leave in one write.
            body = content[first : last + 1]
            if len(body) != length:
                raise RuntimeError("stored record file is shorter than recorded")
            response: web.StreamResponse = web.Response(
                status=status, headers=headers, body=body, content_type=media_type
            )
            await keep_delivered()
            await response.prepare(request)
            await response.write_eof()
        else:
            # The first chunk is opened before the headers go: a file that fails
            # authentication still gets a clean 500 (a later chunk can only cut the transfer).
            data = await _first_chunk(api, child, first, min(CHUNK_BYTES, length))
            response = web.StreamResponse(status=status, headers=headers)
            response.content_type = media_type
            response.content_length = length
            await response.prepare(request)
            pos = first
            while pos <= last:
                if not data:
                    raise RuntimeError("stored record file is shorter than recorded")
                if pos + len(data) > last:
                    await keep_delivered()
                await response.write(data)
                pos += len(data)
                sent += len(data)
                if pos <= last:
                    data = await api.files.chunk(
                        sha, pos, min(CHUNK_BYTES, last + 1 - pos), about=child.student_number
                    )
            await response.write_eof()
    finally:
        if not kept:  # refused, short or cut off before the last bytes: say how far it got
            await api.book.keep(
                _entry(principal, child, via="file", span=span, sent=sent, complete=False,
                       outcome="aborted", remote=remote)
            )  # fmt: skip
    return response


class _Sink:
    """A write-only, unseekable file for zipfile; the handler drains it after each write."""

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


async def get_record_files_zip(request: web.Request) -> web.StreamResponse:
    """`GET /v1/schools/{school_code}/record-files.zip?entry_year=`."""
    principal = await authenticate(request)
    school_code = request.match_info["school_code"]
    school_in_scope(principal, school_code)
    only_params(request, "entry_year")
    entry_year = int_param(request, "entry_year", 2000, 2100)
    api = request.app[SCHOOL_API]
    remote = remote_of(request)
    name = f"record-files-{school_code}-{entry_year or 'all'}.zip"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-cache",
        }
    )
    await response.prepare(request)
    sink = _Sink()
    # Stored, not deflated: compressing hundreds of files would hold up the event loop,
    # and the attachments inside record files are compressed already.
    archive = zipfile.ZipFile(cast(IO[bytes], sink), "w", zipfile.ZIP_STORED, allowZip64=True)
    stamp = dt.datetime.now().timetuple()[:6]
    manifest: list[dict[str, object]] = []
    left_out: list[dict[str, object]] = []  # erased after retention, or failed authentication
    after = 0
    while True:
        page = await api.pulls.school_children(
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
            # The first chunk is opened before the entry starts: a file that fails
            # authentication is left out whole (a later chunk can only cut the archive).
            try:
                data = await api.files.chunk(
                    child.file_sha256, 0, min(CHUNK_BYTES, child.file_size),
                    about=child.student_number, where="zip",
                )  # fmt: skip
            except RecordFileDamaged:  # reported by the store
                left_out.append(_left_out(child, damaged=True))
                continue
            entry = zipfile.ZipInfo(_entry_name(child), date_time=stamp)
            digest = hashlib.sha256()
            sent = 0
            with archive.open(entry, "w", force_zip64=child.file_size >= 2**31) as out:
                while sent < child.file_size:
                    if not data:
                        raise RuntimeError("stored record file is shorter than recorded")
                    out.write(data)
                    digest.update(data)
                    sent += len(data)
                    await response.write(sink.take())
                    if sent < child.file_size:
                        data = await api.files.chunk(
                            child.file_sha256, sent, min(CHUNK_BYTES, child.file_size - sent),
                            about=child.student_number, where="zip",
                        )  # fmt: skip
            await response.write(sink.take())
            manifest.append({
                "name": entry.filename, "student_number": child.student_number,
                "sha256": digest.hexdigest(), "size": sent,
                "media_type": child.file_media_type,
            })  # fmt: skip
            kept = ChildFile(
                child.child_id,
                child.student_number,
                child.school_code,
                child.file_sha256,
                child.file_size,
                child.file_media_type,
                None,
            )
            await api.book.keep(
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
    await response.write(sink.take())
    await response.write_eof()
    return response
