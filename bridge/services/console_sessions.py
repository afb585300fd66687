"""Signing in to the operators' console: an operator token becomes a session cookie.

Only the hash of the cookie is kept; every session carries a CSRF token that each form
changing something must send back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bridge.domain.access import Principal, secret_hash
from bridge.errors import Forbidden
from bridge.services.access import Gate
from bridge.services.ports.access import Audit, ConsoleSessions


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: who, and the CSRF token of the session's forms."""

    principal: Principal
    csrf: str


@dataclass(frozen=True, slots=True)
class Opened:
    """A new session: the cookie's secret (given to the browser only) and its lifetime."""

    secret: str
    lifetime_s: float


class ConsoleSignIn:
    """Sessions of the console."""

    def __init__(
        self, gate: Gate, sessions: ConsoleSessions, audit: Audit, *, lifetime_s: float
    ) -> None:
        self._gate = gate
        self._sessions = sessions
        self._audit = audit
        self._lifetime_s = lifetime_s

    async def sign_in(self, token: str, remote: str | None) -> Opened:
        """Exchange an operator token for a session (AccessDenied if it is not one)."""
        principal = await self._gate.authenticate(token, remote)
        if not principal.is_operator:
            raise Forbidden("only operators may sign in")
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self._sessions.open(
            secret_hash(secret), principal.token_id, csrf, lifetime_s=self._lifetime_s
        )
        await self._audit.record(
            action="console.login", outcome="ok", principal=principal, remote=remote
        )
        return Opened(secret, self._lifetime_s)

    async def session(self, cookie: str | None) -> Session | None:
        """The operator signed in with *cookie*, if the session and its token still hold."""
        if not cookie:
            return None
        found = await self._sessions.find(secret_hash(cookie))
        if found is None or not found[0].is_operator:
            return None
        return Session(*found)

    async def sign_out(self, cookie: str) -> None:
        """End the session of *cookie*."""
        await self._sessions.close(secret_hash(cookie))
