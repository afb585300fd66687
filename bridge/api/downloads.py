"""The school API's file views: one record file (ETag, 304, one range) or many as a ZIP.

HTTP's part is here (conditional requests, ranges, headers); what goes out and what is
kept of it is the Downloads use case's.
"""

from __future__ import annotations

import base64
import re

from aiohttp import web

from bridge.api.auth import admit, authenticate, bearer, remote_of
from bridge.api.keys import USE_CASES
from bridge.api.params import query
from bridge.api.problems import problem
from bridge.api.schools import school_in_scope
from bridge.domain.student_number import has_number_form
from bridge.errors import NotFound
from bridge.services.downloads import ByteRange
from schemas.api import ArchiveQuery, NoQuery

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


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


class Unsatisfiable(Exception):
    """The range lies outside the file."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One `bytes=` range, or None to send the whole file.

    Several ranges, or a header we cannot read, are ignored: RFC 9110 lets a server
    answer with the whole representation, which every client handles.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
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


async def get_record_file(request: web.Request) -> web.StreamResponse:
    """`GET /v1/handoffs/{student_number}/record-file`.

    The hot path of the school API: token, scope, file metadata and (for a small file)
    the bytes come in one query shared with the downloads waiting at that moment, and
    the bookkeeping is group-committed.
    """
    presented = bearer(request)
    number = request.match_info["student_number"]
    asked_for = number if has_number_form(number) else None
    downloads = request.app[USE_CASES].downloads
    found = await downloads.lookup(
        presented, asked_for, conditional="If-None-Match" in request.headers
    )
    principal = await admit(request, found.token, presented)
    remote = remote_of(request)
    child = found.child
    if child is None:
        await downloads.refused(principal, asked_for, remote)
        raise NotFound()
    if request.query:
        query(request, NoQuery)
    if child.sha256 is None or child.size is None:
        raise NotFound()
    if not child.servable:  # erased after retention (410), or damaged at rest (500)
        await downloads.unavailable(principal, child, remote)
    sha, size = child.sha256, child.size
    etag, digest = f'"{sha}"', repr_digest(sha)
    headers = {
        "ETag": etag,
        "Repr-Digest": digest,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        await downloads.not_modified(principal, child, remote)
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
    delivery = downloads.deliver(principal, child, span, remote, lambda: _connected(request))
    if span:
        headers["Content-Range"] = f"bytes {delivery.first}-{delivery.last}/{size}"
    else:
        headers["Content-Digest"] = digest  # the content is the whole file here
    status = 206 if span else 200
    media_type = child.media_type or "application/octet-stream"
    try:
        whole = await delivery.whole()
        if whole is not None:
            # A small file is in hand: headers and body leave in one write.
            response: web.StreamResponse = web.Response(
                status=status, headers=headers, body=whole, content_type=media_type
            )
            await response.prepare(request)
        else:
            response = web.StreamResponse(status=status, headers=headers)
            response.content_type = media_type
            response.content_length = delivery.length
            # The headers go once the first chunk is opened: a file failing authentication
            # still gets a clean refusal.
            await delivery.stream(response.write, start=lambda: response.prepare(request))
        await response.write_eof()
    finally:
        await delivery.close()
    return response


def _connected(request: web.Request) -> bool:
    return request.transport is not None and not request.transport.is_closing()


async def get_record_files_zip(request: web.Request) -> web.StreamResponse:
    """`GET /v1/schools/{school_code}/record-files.zip?entry_year=`."""
    principal = await authenticate(request)
    school_code = request.match_info["school_code"]
    school_in_scope(principal, school_code)
    entry_year = query(request, ArchiveQuery).entry_year
    name = f"record-files-{school_code}-{entry_year or 'all'}.zip"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-cache",
        }
    )
    await response.prepare(request)
    downloads = request.app[USE_CASES].downloads
    async for data in downloads.archive(principal, school_code, entry_year, remote_of(request)):
        await response.write(data)
    await response.write_eof()
    return response


def add_download_routes(app: web.Application) -> None:
    """Register the file endpoints."""
    app.router.add_get(
        "/v1/schools/{school_code}/record-files.zip", get_record_files_zip, allow_head=False
    )
    app.router.add_get(
        "/v1/handoffs/{student_number}/record-file", get_record_file, allow_head=False
    )
