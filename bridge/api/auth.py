"""Who is calling: the bearer token's principal, checked on every API request."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from bridge.api.keys import USE_CASES
from bridge.domain.access import PresentedToken, Principal, Role, present
from bridge.errors import Forbidden, Unauthenticated
from bridge.services.ports.access import TokenRow

_PRINCIPAL = web.RequestKey("xueji.principal", Principal)
_CHECKED_AT = web.RequestKey("xueji.checked_at", dt.datetime)


def remote_of(request: web.Request) -> str | None:
    """Where the request came from, for the audit log."""
    return request.remote


def bearer(request: web.Request) -> PresentedToken:
    """The presented bearer token; Unauthenticated (401) if it is missing or not ours."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    return present(token.strip())


async def admit(request: web.Request, row: TokenRow | None, presented: PresentedToken) -> Principal:
    """The principal of a token row as a lookup read it; 401 if refused (seals audited)."""
    gate = request.app[USE_CASES].gate
    principal = await gate.admit(row, presented, remote_of(request))
    request[_PRINCIPAL] = principal
    if row is not None:
        request[_CHECKED_AT] = row.db_now
    return principal


async def authenticate(request: web.Request) -> Principal:
    """The caller's principal; 401 if the token is missing, bad or sealed."""
    cached = request.get(_PRINCIPAL)
    if isinstance(cached, Principal):
        return cached
    presented = bearer(request)
    row = await request.app[USE_CASES].gate.token_row(presented)
    return await admit(request, row, presented)


def checked_at(request: web.Request) -> dt.datetime:
    """The database's clock when this request's token was checked (after authenticate)."""
    return request[_CHECKED_AT]


async def require(request: web.Request, *roles: Role) -> Principal:
    """The caller's principal, if its role is one of *roles* (403 otherwise)."""
    principal = await authenticate(request)
    if roles and principal.role not in roles:
        raise Forbidden("this token's role may not use this endpoint")
    return principal


async def require_operator(request: web.Request) -> Principal:
    """County or provincial operator."""
    return await require(request, Role.COUNTY, Role.PROVINCE)
