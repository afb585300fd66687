"""Who is calling: the bearer token's principal, checked on every API request."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.tokens import PresentedToken, TokenRow, TokenStore, present
from bridge.api.problems import problem
from bridge.domain.access import Principal, Role
from bridge.errors import AccessDenied, Forbidden, TokenSealed, Unauthenticated

TOKENS = web.AppKey("tokens", TokenStore)
AUDIT = web.AppKey("audit", AuditLog)
_PRINCIPAL = web.RequestKey("xueji.principal", Principal)
_CHECKED_AT = web.RequestKey("xueji.checked_at", dt.datetime)


def remote_of(request: web.Request) -> str | None:
    """Where the request came from, for the audit log."""
    return request.remote


def denied(exc: AccessDenied) -> web.HTTPException:
    """The problem response for an access refusal."""
    return problem(exc.status, exc.code, str(exc))


def bearer(request: web.Request) -> PresentedToken:
    """The presented bearer token; raises a 401 problem if it is missing or not ours."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <token>")
        return present(token.strip())
    except AccessDenied as exc:
        raise denied(exc) from None


async def admit(request: web.Request, row: TokenRow | None, presented: PresentedToken) -> Principal:
    """The principal of a token row read with tokens_of_requests; 401 problem (seals audited)."""
    try:
        principal = await request.app[TOKENS].admit(row, presented)
    except TokenSealed as exc:
        if exc.sealed_now:
            await request.app[AUDIT].record(
                action="token.seal", outcome="sealed", actor="system:auth",
                target_token=exc.sealed_now, remote=remote_of(request),
                detail={"reason": "unused for 180 days"},
            )  # fmt: skip
        raise denied(exc) from None
    except AccessDenied as exc:
        raise denied(exc) from None
    request[_PRINCIPAL] = principal
    if row is not None:
        request[_CHECKED_AT] = row.db_now
    return principal


async def authenticate(request: web.Request) -> Principal:
    """The caller's principal; raises a 401 problem if the token is missing, bad or sealed."""
    cached = request.get(_PRINCIPAL)
    if isinstance(cached, Principal):
        return cached
    presented = bearer(request)
    return await admit(request, await request.app[TOKENS].token_row(presented), presented)


def checked_at(request: web.Request) -> dt.datetime:
    """The database's clock when this request's token was checked (after authenticate)."""
    return request[_CHECKED_AT]


async def require(request: web.Request, *roles: Role) -> Principal:
    """The caller's principal, if its role is one of *roles* (403 problem otherwise)."""
    principal = await authenticate(request)
    if roles and principal.role not in roles:
        raise denied(Forbidden("this token's role may not use this endpoint"))
    return principal


async def require_operator(request: web.Request) -> Principal:
    """County or provincial operator."""
    return await require(request, Role.COUNTY, Role.PROVINCE)
