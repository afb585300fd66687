"""Cursor and limit parsing shared by the two list endpoints (A2, B8)."""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import web

MAX_LIMIT = 5000
DEFAULT_LIMIT = 1000
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY = re.compile(r"^[GJL][0-9X]{18}$")  # cursors continue after a student number


def encode_cursor(last_key: str | None) -> str | None:
    """An opaque cursor continuing after `last_key` (None: no more pages)."""
    if last_key is None:
        return None
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def parse_page(request: web.Request) -> tuple[str, int] | list[dict[str, str]]:
    """(key to continue after, limit) from `?cursor=&limit=`, or the validation errors."""
    errors: list[dict[str, str]] = []
    after = ""
    cursor = request.query.get("cursor")
    if cursor:
        try:
            after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            after = ""
        if not _CURSOR.match(cursor) or not _KEY.match(after):
            errors.append({"field": "cursor", "message": "not a cursor this registry gave out"})
    limit = DEFAULT_LIMIT
    raw_limit = request.query.get("limit")
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors.append({"field": "limit", "message": f"must be an integer in 1..{MAX_LIMIT}"})
        else:
            limit = int(raw_limit)
    return errors if errors else (after, limit)


def parse_year(raw: str) -> int | None:
    """An entry year from a path or query segment, or None if it is not one."""
    if not raw.isdigit() or len(raw) != 4:
        return None
    return int(raw)
