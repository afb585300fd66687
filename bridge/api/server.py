"""HTTP as RFC 9110 says, for every route in one place: the school and operators' APIs, the
console, health and metrics.

Before a view runs: a method nobody knows is 501, a body over BODY_LIMIT is 413 (declared
by Content-Length or found while reading a chunked one). Every answer names the server
without versions and forbids sniffing; a 401 names its scheme. Refused attempts (401,
403, another school's list) are audited within a bound (the Refusals use case). A failure
after an answer began is never answered inside it: the connection is cut instead (see
problems.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.api.auth import remote_of
from bridge.api.problems import (
    PROBLEM_JSON,
    PROBLEM_TYPE_BASE,
    answer_began,
    code_for,
    problem,
)
from bridge.domain.access import TOKEN_ID_FORM, TOKEN_PREFIX
from bridge.errors import AccessDenied, OutOfScope
from bridge.services.refusals import Refusal, Refusals

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER = "xueji-bridge"
# A school's arrival report is a few dozen bytes, a console form a few hundred; nothing the
# bridge takes in comes near this.
BODY_LIMIT = 64 * 1024
# RFC 9110's methods, PATCH (RFC 5789) and QUERY (safe, with a body): a known path answers
# them 405 with Allow; anything else is a method nobody here knows (501).
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
ALWAYS = {"X-Content-Type-Options": "nosniff"}
_NOT_IMPLEMENTED = "该方法未实现 this method is not implemented"
CHALLENGE = 'Bearer realm="xueji-bridge"'


def requests_middleware() -> Middleware:
    """Refuse what no view should see: unknown methods (501), bodies over the limit (413).

    A body is read whole here (at most BODY_LIMIT bytes; aiohttp refuses more as it reads),
    so a chunked body is measured before any view looks at it.
    """

    @web.middleware
    async def requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in KNOWN_METHODS:
            raise problem(501, "not_implemented", _NOT_IMPLEMENTED)
        if request.content_length is not None and request.content_length > BODY_LIMIT:
            raise _too_large()
        if request.body_exists:
            try:
                await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _too_large() from None
            except web.RequestPayloadError:  # e.g. a gzip body that is not gzip
                raise problem(
                    400, "bad_request", "请求体无法读取 the body cannot be read as sent"
                ) from None
        return await handler(request)

    return requests


def _too_large() -> web.HTTPException:
    return problem(413, "too_large", f"请求体过大 the body is larger than {BODY_LIMIT // 1024} KiB")


def refusals_middleware(refusals: Refusals) -> Middleware:
    """Audit refused attempts, whatever refused them: a 401 or 403 from any route (a wrong
    secret, a role that may not, a failed console sign-in, a CSRF token that does not
    match) and a school asking for another school's list or ZIP (answered 404 alike)."""

    @web.middleware
    async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except OutOfScope:
            await _refused(refusals, request, 404, "out_of_scope")
            raise
        except AccessDenied as exc:
            await _refused(refusals, request, exc.status, exc.code)
            raise
        except web.HTTPException as exc:
            if exc.status in (401, 403):
                await _refused(refusals, request, exc.status, _code_of(exc))
            raise
        if response.status in (401, 403):
            await _refused(refusals, request, response.status, "refused")
        return response

    return audited


def _code_of(exc: web.HTTPException) -> str:
    if exc.content_type == "application/problem+json" and exc.text and '"code":"' in exc.text:
        return exc.text.split('"code":"', 1)[1].split('"', 1)[0]
    return "forbidden" if exc.status == 403 else "unauthenticated"


async def _refused(refusals: Refusals, request: web.Request, status: int, code: str) -> None:
    route = request.match_info.route.resource
    await refusals.refused(
        Refusal(
            status=status,
            code=code,
            method=request.method,
            route=route.canonical if route is not None else "(no route)",
            token_id=_token_id(request),
            remote=remote_of(request),
        )
    )


def _token_id(request: web.Request) -> str | None:
    """The token id a caller presented (never its secret), if it looks like one of ours."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    parts = token.strip().split("_")
    if scheme.lower() == "bearer" and len(parts) >= 4 and parts[0] == TOKEN_PREFIX:
        candidate = f"tok_{parts[2]}"
        # Only an id of our form reaches the audit log: a stranger writes no text of theirs.
        return candidate if TOKEN_ID_FORM.fullmatch(candidate) else None
    return None


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER
    for name, value in ALWAYS.items():
        response.headers.setdefault(name, value)
    if response.status == 401:
        response.headers.setdefault("WWW-Authenticate", CHALLENGE)
    answer_began(request, response)


def harden(app: web.Application) -> None:
    """Every answer *app* prepares gets the common headers, and is marked as begun."""
    app.on_response_prepare.append(_headers)


_METHOD = re.compile(r"(?:^|b')([^\s']{1,32}) ")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")


class _Connection(RequestHandler):
    """A connection whose own refusals (a request aiohttp cannot read, before any view or
    middleware sees it) are problems with the common headers too."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0 or status == 500:
            # Ours to answer (a failure that escaped every middleware): aiohttp's plain 500,
            # but naming no versions either (its log line is redacted like every other).
            failed = super().handle_error(request, status, exc, message)
            failed.headers.update({"Server": SERVER, **ALWAYS})
            return failed
        code, said = code_for(status), "请求无法解析 the request cannot be read as HTTP"
        if isinstance(exc, BadHttpMethod):
            # The request line: the pure-Python parser's line, or quoted in llhttp's message.
            found = _METHOD.search(exc.line or exc.message)
            if found and _TOKEN.fullmatch(found.group(1)):  # a method nobody here knows
                status, code, said = 501, "not_implemented", _NOT_IMPLEMENTED
        log.info("refused a request it could not read: %s %s", status, type(exc).__name__)
        body = orjson.dumps({
            "type": PROBLEM_TYPE_BASE + code, "title": code.replace("_", " "),
            "status": status, "detail": said, "code": code, "message": said,
        })  # fmt: skip
        response = web.Response(
            status=status, body=body, content_type=PROBLEM_JSON,
            headers={"Server": SERVER, **ALWAYS},
        )  # fmt: skip
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class BridgeRunner(web.AppRunner):
    """An AppRunner whose connections answer what aiohttp refuses itself as problems."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
