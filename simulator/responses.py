"""JSON answers in the contract's shapes (`{"code", "message"}` for errors)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer serialised with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """An error answer `{"code", "message", ...extra}`."""
    return json_response({"code": code, "message": message, **extra}, status=status)


def invalid(
    errors: list[dict[str, str]], message: str = "the request breaks the contract"
) -> web.Response:
    """The 422 answer `{"code": "invalid", "errors": [...]}`."""
    return error(422, "invalid", message, errors=errors)


def not_registered(student_number: str) -> web.Response:
    """The 404 answer for a number the registry does not hold."""
    del student_number  # never echoed: numbers embed identity numbers
    return error(404, "not_registered", "no registration under this student number")


async def read_json(request: web.Request) -> tuple[Any, web.Response | None]:
    """Parse the body as JSON; on failure return the 422 answer to send instead."""
    raw = await request.read()
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        return None, invalid([{"field": "", "message": "body is not valid JSON"}])


class Answer:
    """A contract answer decided by a service: status and JSON body (None for no body)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any = None) -> None:
        self.status = status
        self.body = body

    @classmethod
    def error(cls, status: int, code: str, message: str, **extra: Any) -> Answer:
        """An error answer `{"code", "message", ...extra}`."""
        return cls(status, {"code": code, "message": message, **extra})

    def to_response(self) -> web.Response:
        """The aiohttp response for this answer."""
        if self.body is None:
            return web.Response(status=self.status)
        return json_response(self.body, status=self.status)
