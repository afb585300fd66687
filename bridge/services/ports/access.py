"""Tokens, console sessions and the audit log: who may do what, and who did."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.domain.access import PresentedToken, Principal, Role
from schemas.api import AuditEntryOut


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as shown once, at issue or rotation."""

    token_id: str
    token: str
    role: Role
    scope: dict[str, str]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    token_id: str
    role: Role
    scope: dict[str, str]
    label: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    sealed_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def state(self) -> str:
        """active, sealed or revoked."""
        if self.revoked_at:
            return "revoked"
        return "sealed" if self.sealed_at else "active"


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as the check reads it, for TokenChecks.admit to decide on."""

    token_id: str
    role: str
    school_code: str | None
    county_code: str | None
    secret_hash: str
    revoked: bool
    sealed: bool
    overdue: bool
    db_now: dt.datetime  # the database's clock when the token was read


class TokenChecks(Protocol):
    """Checking a presented token (and touching its last use)."""

    async def token_row(self, presented: PresentedToken) -> TokenRow | None:
        """The token's row, read (and touched, if due) in one round trip."""
        ...

    async def admit(self, row: TokenRow | None, presented: PresentedToken) -> Principal:
        """The principal, or Unauthenticated / TokenSealed (sealing one overdue now)."""
        ...


class TokenAccounts(Protocol):
    """Issuing and managing tokens; only hashes of secrets are kept."""

    async def issue(
        self,
        role: Role,
        *,
        school_code: str | None = None,
        county_code: str | None = None,
        label: str | None = None,
    ) -> IssuedToken:
        """A token bound to one role and scope; its secret is returned only now."""
        ...

    async def rotate(self, token_id: str) -> IssuedToken | None:
        """A new secret; the old one stops working at once."""
        ...

    async def revoke(self, token_id: str) -> bool:
        """Revoke for good."""
        ...

    async def unseal(self, token_id: str) -> bool:
        """Lift a seal; the 180 days count again from now."""
        ...

    async def seal_unused(self, now: dt.datetime | None = None) -> list[str]:
        """Seal every active token unused for 180 days; their ids."""
        ...

    async def list(self) -> list[TokenInfo]:
        """Every token, newest first."""
        ...

    async def get(self, token_id: str) -> TokenInfo | None:
        """One token's listing."""
        ...


class Audit(Protocol):
    """The append-only audit log (谁使用谁负责)."""

    async def record(
        self,
        *,
        action: str,
        outcome: str,
        principal: Principal | None = None,
        actor: str | None = None,
        student_number: str | None = None,
        target_token: str | None = None,
        remote: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry. *actor* names a non-token caller (e.g. ``cli:root``)."""
        ...

    async def query(
        self, *, student_number: str | None = None, actor: str | None = None, limit: int = 100
    ) -> list[AuditEntryOut]:
        """Newest first, by child or by token (or both)."""
        ...


class ConsoleSessions(Protocol):
    """Signed-in console sessions, by the hash of their cookie."""

    async def open(self, session_hash: str, token_id: str, csrf: str, *, lifetime_s: float) -> None:
        """Keep a new session."""
        ...

    async def find(self, session_hash: str) -> tuple[Principal, str] | None:
        """(operator, CSRF token) of a live session whose token is still good."""
        ...

    async def close(self, session_hash: str) -> None:
        """End a session."""
        ...
