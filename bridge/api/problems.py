"""RFC 9457 problem details: every error the HTTP API gives, in one shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.errors import (
    AccessDenied,
    BridgeError,
    Conflict,
    InputRefused,
    NotFound,
    RecordFileDamaged,
    RecordFileGone,
)
from bridge.failures import described, log_failure

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
    text = orjson.dumps(body).decode()
    for cls in (web.HTTPClientError, web.HTTPServerError):
        for sub in cls.__subclasses__():
            if getattr(sub, "status_code", None) == status:
                try:
                    return sub(text=text, content_type=PROBLEM_JSON)
                except TypeError:  # 405, 413: their classes want more; the plain one will do
                    break
    exc = web.HTTPException(text=text, content_type=PROBLEM_JSON)
    exc.set_status(status)
    return exc


def status_of(exc: BridgeError) -> int | None:
    """The HTTP status of a refusal the services raise; None for anything else (a 500)."""
    if isinstance(exc, AccessDenied):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InputRefused):
        return 422
    if isinstance(exc, RecordFileGone):
        return 410
    if isinstance(exc, RecordFileDamaged):
        return 500  # ours, not the caller's: said plainly, never a byte of the file
    return None


def details_of(exc: BridgeError) -> dict[str, Any]:
    """Fields a refusal adds to its problem body beside code and message."""
    if isinstance(exc, RecordFileGone):
        return {"erased_at": exc.erased_at.isoformat(), "reason": exc.reason}
    return {}


def problems_middleware(database_away: tuple[type[BaseException], ...]) -> Middleware:
    """Every answer that is not a success as problem+json: the services' refusals by their
    family (status_of), aiohttp's own errors (404 route, 405, bad JSON), and the unforeseen:
    the database away (*database_away*: 503, worth retrying) and any other failure (500).
    """

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if _answer_began(request):
                return _cut_short(request, exc)
            # Written already: a problem, or a page of the console saying why.
            if exc.content_type in (PROBLEM_JSON, "text/html") or exc.status < 400:
                raise
            refusal = problem(exc.status, code_for(exc.status), _said(exc))
            if "Allow" in exc.headers:  # 405 must say which methods the resource has
                refusal.headers["Allow"] = exc.headers["Allow"]
            raise refusal from None
        except BridgeError as exc:
            if _answer_began(request):
                return _cut_short(request, exc)
            status = status_of(exc)
            if status is None:
                _failed(request, exc, database_away)
            raise problem(status, exc.code, str(exc), **details_of(exc)) from None
        except Exception as exc:
            if _answer_began(request):
                return _cut_short(request, exc)
            _failed(request, exc, database_away)

    return problems


_BEGUN = web.RequestKey("xueji.answer_begun", web.StreamResponse)


def answer_began(request: web.Request, response: web.StreamResponse) -> None:
    """Mark *request* as answered in part: *response* is prepared (its headers may be held
    back until its first bytes, so the writer's count alone cannot tell)."""
    request[_BEGUN] = response


def _cut_short(request: web.Request, exc: BaseException) -> web.StreamResponse:
    """A failure after the answer began: a problem now would be a second answer inside the
    first (a keep-alive client or a proxy would then mismatch answers). The connection is
    cut instead, and the client sees the transfer cut short."""
    log.error("%s failed after the answer began: %s", _where(request), described(exc))
    if request.transport is not None:
        request.transport.abort()
    return request[_BEGUN]


def _failed(
    request: web.Request, exc: Exception, database_away: tuple[type[BaseException], ...]
) -> NoReturn:
    if request.transport is None or request.transport.is_closing():
        raise exc  # the client is gone: there is no one to answer
    where = _where(request)
    if isinstance(exc, database_away):
        log.warning("%s: the database is unavailable (%s)", where, type(exc).__name__)
        unavailable = problem(
            503, "unavailable", "the bridge's database is unavailable; try again shortly"
        )
        unavailable.headers["Retry-After"] = str(RETRY_AFTER_S)
        raise unavailable from None
    log_failure(log, "%s failed", where, exc=exc)
    raise problem(500, "server_error", "the bridge could not answer; it is logged") from None


def _answer_began(request: web.Request) -> bool:
    return _BEGUN in request or request.writer.output_size > 0


def _where(request: web.Request) -> str:
    """The route's pattern, never the path (it holds student numbers); with the error's type,
    never its message (a driver error can quote the values it refused), it is what is logged.
    """
    route = request.match_info.route.resource
    return f"{request.method} {route.canonical if route else '(no route)'}"


_SAID = {
    404: "没有这个地址 no such path",
    405: "该地址不接受此方法 this path does not take this method; see Allow",
    413: "请求体过大 the body is too large",
}


def _said(exc: web.HTTPException) -> str:
    # aiohttp's own texts are fine to pass on (no input in them), its reasons terse.
    return _SAID.get(exc.status, exc.reason)


def code_for(status: int) -> str:
    return {
        400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
        405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
        422: "invalid", 429: "too_many_requests",
    }.get(status, "error" if status < 500 else "server_error")  # fmt: skip
