"""HTTP handlers of the preschool registry (A1, A2), mounted under `/preschool`."""

from __future__ import annotations

from aiohttp import web

from simulator import preschool_service as svc
from simulator.paging import encode_cursor, parse_page, parse_year
from simulator.responses import error, invalid, json_response
from simulator.runtime import runtime

PREFIX = "/preschool"
CORRUPT_KEY = web.RequestKey("simulator_corrupt", bool)


def _corrupted(content: bytes) -> bytes:
    """Same length, different bytes: what a flaky disk or proxy might serve."""
    if not content:
        return b"\x00"
    middle = len(content) // 2
    return content[:middle] + bytes([content[middle] ^ 0x5A]) + content[middle + 1 :]


async def get_record_file(request: web.Request) -> web.StreamResponse:
    """A1 `GET /v1/record-files/{file_id}/content`."""
    stored = await svc.record_file(runtime(request).pool, request.match_info["file_id"])
    if stored is None:
        return error(404, "not_found", "no such record file")
    content = stored.content
    if request.get(CORRUPT_KEY):
        content = _corrupted(content)
    # The ETag is the registry's own (claimed) sha256: a bad source file keeps its bad claim.
    return web.Response(
        body=content,
        headers={"Content-Type": stored.media_type, "ETag": f'"{stored.sha256}"'},
    )


async def get_roster(request: web.Request) -> web.Response:
    """A2 `GET /v1/cohorts/{entry_year}/roster?cursor=&limit=`."""
    year = parse_year(request.match_info["entry_year"])
    page = parse_page(request)
    if year is None:
        return invalid([{"field": "entry_year", "message": "must be a year"}])
    if isinstance(page, list):
        return invalid(page)
    items, last = await svc.roster(runtime(request).pool, year, *page)
    return json_response({"items": items, "next_cursor": encode_cursor(last)})


def add_routes(app: web.Application) -> None:
    """Mount A1 and A2 under `/preschool`."""
    app.router.add_get(PREFIX + "/v1/record-files/{file_id}/content", get_record_file)
    app.router.add_get(PREFIX + "/v1/cohorts/{entry_year}/roster", get_roster)
