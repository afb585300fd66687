"""RFC 9457 problem details: every error the HTTP API gives, in one shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.failures import log_failure

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:xueji:problem:"
# What a client is told to wait before asking again while the database is away: about a
# server restart's length.
RETRY_AFTER_S = 5


def problem(status: int, code: str, message: str, **extra: Any) -> web.HTTPException:
    """An exception whose response is a problem+json body with a stable code.

    ``code`` and ``message`` sit beside RFC 9457's ``type``/``title``/``detail`` so that
    clients written against the registries' ``{"code", "message"}`` errors work too.
    """
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": code.replace("_", " "),
        "status": status,
        "detail": message,
        "code": code,
        "message": message,
        **extra,
    }
    exc_class = web.HTTPException
    for cls in (web.HTTPClientError, web.HTTPServerError):
        for sub in cls.__subclasses__():
            if getattr(sub, "status_code", None) == status:
                exc_class = sub
    exc = exc_class(text=orjson.dumps(body).decode(), content_type=PROBLEM_JSON)
    if exc_class is web.HTTPException:
        exc.set_status(status)
    return exc


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own errors (404 route, 405, bad JSON) into problem+json as well, and
    so the unforeseen: the database away (503, worth retrying) and any other failure (500).
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == PROBLEM_JSON or exc.status < 400:
            raise
        refusal = problem(exc.status, _code_for(exc.status), exc.reason)
        if "Allow" in exc.headers:  # 405 must say which methods the resource has
            refusal.headers["Allow"] = exc.headers["Allow"]
        raise refusal from None
    except Exception as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client is gone: there is no one to answer
        if request.writer.output_size > 0:
            # Part of the answer has gone: a problem now would land inside the body. Left to
            # aiohttp, the connection is closed and the client sees the transfer cut short.
            log.error("%s failed after the answer began: %s", _where(request), type(exc).__name__)
            raise
        where = _where(request)
        if isinstance(exc, DATABASE_UNAVAILABLE):
            log.warning("%s: the database is unavailable (%s)", where, type(exc).__name__)
            unavailable = problem(
                503, "unavailable", "the bridge's database is unavailable; try again shortly"
            )
            unavailable.headers["Retry-After"] = str(RETRY_AFTER_S)
            raise unavailable from None
        log_failure(log, "%s failed", where, exc=exc)
        raise problem(500, "server_error", "the bridge could not answer; it is logged") from None


def _where(request: web.Request) -> str:
    """The route's pattern, never the path (it holds student numbers); with the error's type,
    never its message (a driver error can quote the values it refused), it is what is logged.
    """
    route = request.match_info.route.resource
    return f"{request.method} {route.canonical if route else '(no route)'}"


def _code_for(status: int) -> str:
    return {
        400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
        405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
        422: "invalid", 429: "too_many_requests",
    }.get(status, "error" if status < 500 else "server_error")  # fmt: skip
