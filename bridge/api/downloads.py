"""The school API's file views: one record file (ETag, 304, one range) or many as a ZIP.

HTTP's part is here (conditional requests, ranges, headers); what goes out and what is
kept of it is the Downloads use case's.
"""

from __future__ import annotations

import base64
import re

from aiohttp import web

from bridge.api.auth import admit, bearer, remote_of, require
from bridge.api.keys import USE_CASES
from bridge.api.params import query
from bridge.api.problems import problem
from bridge.api.schools import school_in_scope
from bridge.domain.access import Role
from bridge.domain.student_number import has_number_form
from bridge.errors import NotFound
from bridge.services.downloads import ByteRange
from schemas.api import ArchiveQuery, NoQuery

_EXTENSIONS = {"application/json": ".json"}
# 19 digits hold any file size; a longer number is a range we cannot read (whole file).
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


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
    media_type = served_media_type(child.media_type)
    headers = {
        "ETag": etag,
        "Repr-Digest": digest,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        **attachment(f"{child.student_number}{_EXTENSIONS.get(media_type, '.bin')}"),
    }
    if request.method == "HEAD":  # the size, asked before a download: audited, no body
        await downloads.asked_about(principal, child, remote)
        head = web.StreamResponse(status=200, headers=headers)
        head.content_type, head.content_length = media_type, size
        await head.prepare(request)
        await head.write_eof()
        return head
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
    """`GET /v1/schools/{school_code}/record-files.zip?entry_year=`: the school's own
    batch; operators download one file at a time (each read audited as theirs)."""
    principal = await require(request, Role.SCHOOL)
    school_code = request.match_info["school_code"]
    school_in_scope(principal, school_code)
    entry_year = query(request, ArchiveQuery).entry_year
    name = f"record-files-{school_code}-{entry_year or 'all'}.zip"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Cache-Control": "private, no-cache",
            **attachment(name),
        }
    )
    # Everything is checked before the answer begins; past here a failure cuts it short.
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response
    downloads = request.app[USE_CASES].downloads
    async for data in downloads.archive(principal, school_code, entry_year, remote_of(request)):
        await response.write(data)
    await response.write_eof()
    return response


def served_media_type(declared: str | None) -> str:
    """The media type a record file goes out as: JSON as the contract has it, anything else
    as bytes to save (never text/html or an image a browser would render on our origin)."""
    essence = (declared or "").split(";", 1)[0].strip().lower()
    return "application/json" if essence == "application/json" else "application/octet-stream"


def attachment(filename: str) -> dict[str, str]:
    """Headers that make a browser save a file, never render it on the console's origin."""
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }


def add_download_routes(app: web.Application) -> None:
    """Register the file endpoints (HEAD with each GET)."""
    app.router.add_get("/v1/schools/{school_code}/record-files.zip", get_record_files_zip)
    app.router.add_get("/v1/handoffs/{student_number}/record-file", get_record_file)
