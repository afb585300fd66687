"""The baseline of bench/pull.py: the school API's two pull endpoints with nothing behind them.

A bare aiohttp server answering the two URL shapes the pull benchmark sends:

- ``GET /v1/schools/{school}/handoffs?limit=&cursor=`` — a page of the school's children
  (default 100, at most 1000, as the bridge's), the same JSON shape as the bridge's
  ``HandoffPage`` (``items``, ``next_cursor``, ``as_of``), joined from list items
  rendered once at start-up in the order the bridge lists them;
- ``GET /v1/handoffs/{number}/record-file`` — the file's bytes from memory, with ETag,
  Content-Type and Content-Length.

No token check, no scope, no database, no audit lines or receipts, no query validation
beyond what paging needs: what the hardware and aiohttp give with nothing the bridge
must do. It serves what bench.pull seeded the bridge with, read from the index file that
bench.pull writes (``write_index``); ``/readyz`` answers once it listens.

``python -m bench.pull_baseline --port P --files INDEX [--uvloop]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import pickle
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000  # the bridge's list's
# The bridge's `as_of` lags its clock by this much (bridge/api/schools.py's SINCE_OVERLAP).
AS_OF_LAG = dt.timedelta(seconds=60)
_CURSOR = re.compile(r"after:(\d{1,9})")


@dataclass(frozen=True, slots=True)
class Listed:
    """One child as handed to the baseline: its list item as the bridge words it, its file."""

    school_code: str
    item: dict[str, Any]
    media_type: str
    body: bytes


def write_index(path: Path, children: Iterable[Listed]) -> None:
    """The file the baseline reads at start-up: a pickle of plain tuples (both ends are
    this module, and under ``-m`` its classes would be ``__main__``'s)."""
    rows = [(c.school_code, c.item, c.media_type, c.body) for c in children]
    with path.open("wb") as out:
        pickle.dump(rows, out, protocol=pickle.HIGHEST_PROTOCOL)


def read_index(path: Path) -> list[Listed]:
    """What write_index wrote."""
    with path.open("rb") as f:
        rows: list[tuple[str, dict[str, Any], str, bytes]] = pickle.load(f)
    return [Listed(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class File:
    """A record file ready to send."""

    body: bytes
    etag: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Index:
    """Everything served, in memory: list items pre-encoded, files by student number."""

    items: dict[str, list[bytes]]  # school code → its children's items, in list order
    files: dict[str, File]

    @classmethod
    def build(cls, children: Iterable[Listed]) -> Index:
        """Encode every list item once; take each file's ETag from its listed sha256."""
        items: dict[str, list[bytes]] = {}
        files: dict[str, File] = {}
        for child in children:
            items.setdefault(child.school_code, []).append(orjson.dumps(child.item))
            sha = child.item["record_file"]["sha256"]
            files[child.item["student_number"]] = File(child.body, f'"{sha}"', child.media_type)
        return cls(items, files)


INDEX = web.AppKey("index", Index)


def encode_cursor(offset: int) -> str:
    """Opaque to clients, of the bridge's form (``after:N``, base64url)."""
    return base64.urlsafe_b64encode(f"after:{offset}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int:
    """The offset a cursor continues at (0 for the first page); ValueError if not ours."""
    if raw is None:
        return 0
    match = _CURSOR.fullmatch(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    if not match:
        raise ValueError("not a cursor of this server")
    return int(match.group(1))


async def list_handoffs(request: web.Request) -> web.Response:
    """`GET /v1/schools/{school_code}/handoffs`: a page cut from the pre-encoded items."""
    items = request.app[INDEX].items.get(request.match_info["school_code"])
    if items is None:
        raise web.HTTPNotFound()
    try:
        start = decode_cursor(request.query.get("cursor"))
        limit = min(MAX_LIMIT, max(1, int(request.query.get("limit", DEFAULT_LIMIT))))
    except ValueError:
        raise web.HTTPBadRequest() from None
    end = start + limit
    cursor = b'"%s"' % encode_cursor(end).encode() if end < len(items) else b"null"
    as_of = (dt.datetime.now(dt.UTC) - AS_OF_LAG).isoformat().replace("+00:00", "Z")
    page = (b",".join(items[start:end]), cursor, as_of.encode())
    body = b'{"items":[%s],"next_cursor":%s,"as_of":"%s"}' % page
    return web.Response(body=body, content_type="application/json")


async def record_file(request: web.Request) -> web.Response:
    """`GET /v1/handoffs/{student_number}/record-file`: the bytes, from memory."""
    found = request.app[INDEX].files.get(request.match_info["student_number"])
    if found is None:
        raise web.HTTPNotFound()
    headers = {"ETag": found.etag}
    return web.Response(body=found.body, headers=headers, content_type=found.media_type)


async def ready(request: web.Request) -> web.Response:
    """`GET /readyz`."""
    return web.Response(text="ok")


def create_app(index: Index) -> web.Application:
    """The baseline's application: three routes, no middleware."""
    app = web.Application()
    app[INDEX] = index
    app.router.add_get("/readyz", ready)
    app.router.add_get("/v1/schools/{school_code}/handoffs", list_handoffs, allow_head=False)
    app.router.add_get("/v1/handoffs/{student_number}/record-file", record_file, allow_head=False)
    return app


async def serve(index: Index, port: int) -> None:
    """Serve on 127.0.0.1:*port* until SIGTERM or SIGINT."""
    runner = web.AppRunner(create_app(index), access_log=None)  # as the bridge's runner
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # As the bridge does after start-up: the index lives as long as the process, so
    # collections need not walk it again and again.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.pull_baseline", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--files", type=Path, required=True, help="the index bench.pull wrote")
    parser.add_argument("--uvloop", action="store_true", help="the bridge's event_loop=uvloop")
    args = parser.parse_args(argv)
    index = Index.build(read_index(args.files))
    if args.uvloop:
        import uvloop

        uvloop.run(serve(index, args.port))
    else:
        asyncio.run(serve(index, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
