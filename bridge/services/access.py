"""Who is calling (tokens admitted or refused), tokens managed, and the audit log read."""

from __future__ import annotations

from bridge.domain.access import PresentedToken, Principal, Role, present
from bridge.errors import TokenSealed
from bridge.services.acting import Acting
from bridge.services.ports.access import (
    Audit,
    IssuedToken,
    TokenAccounts,
    TokenChecks,
    TokenInfo,
    TokenRow,
)
from bridge.services.ports.schools import SchoolReads
from bridge.services.sealing import seal_unused_tokens
from schemas.api import AuditEntryOut


class Gate:
    """Admits a presented bearer token or refuses it; a seal made on the way is audited."""

    def __init__(self, checks: TokenChecks, audit: Audit) -> None:
        self._checks = checks
        self._audit = audit

    async def token_row(self, presented: PresentedToken) -> TokenRow | None:
        """The token's row, for admit (the hot reads bring it along themselves)."""
        return await self._checks.token_row(presented)

    async def admit(
        self, row: TokenRow | None, presented: PresentedToken, remote: str | None
    ) -> Principal:
        """The principal; Unauthenticated or TokenSealed otherwise."""
        try:
            return await self._checks.admit(row, presented)
        except TokenSealed as exc:
            if exc.sealed_now:
                await self._audit.record(
                    action="token.seal", outcome="sealed", actor="system:auth",
                    target_token=exc.sealed_now, remote=remote,
                    detail={"reason": "unused for 180 days"},
                )  # fmt: skip
            raise

    async def authenticate(self, token: str, remote: str | None) -> Principal:
        """The principal of a token as presented (e.g. at the console's sign-in)."""
        presented = present(token)
        return await self.admit(await self._checks.token_row(presented), presented, remote)


class TokenAdministration:
    """Operators' token commands; every one audited under who ran it."""

    def __init__(self, accounts: TokenAccounts, audit: Audit) -> None:
        self._accounts = accounts
        self._audit = audit

    async def issue(
        self,
        role: Role,
        who: Acting,
        *,
        school_code: str | None = None,
        county_code: str | None = None,
        label: str | None = None,
    ) -> IssuedToken:
        """A new token bound to one role and scope (its secret is shown only now)."""
        token = await self._accounts.issue(
            role, school_code=school_code, county_code=county_code, label=label
        )
        await self._audit.record(
            action="token.issue", outcome="ok", actor=who.actor, target_token=token.token_id,
            detail={"role": role.value, **token.scope},
        )  # fmt: skip
        return token

    async def rotate(self, token_id: str, who: Acting) -> IssuedToken | None:
        """A new secret for an active token; None if there is none."""
        token = await self._accounts.rotate(token_id)
        await self._audit.record(
            action="token.rotate", outcome="ok" if token else "not_found", actor=who.actor,
            target_token=token_id,
        )  # fmt: skip
        return token

    async def revoke(self, token_id: str, who: Acting) -> bool:
        """Revoke for good; False if there was no active token."""
        return await self._simple("revoke", token_id, who)

    async def unseal(self, token_id: str, who: Acting) -> bool:
        """Lift a seal; False if the token was not sealed (or is revoked)."""
        return await self._simple("unseal", token_id, who)

    async def _simple(self, what: str, token_id: str, who: Acting) -> bool:
        act = self._accounts.revoke if what == "revoke" else self._accounts.unseal
        ok = await act(token_id)
        await self._audit.record(
            action=f"token.{what}", outcome="ok" if ok else "not_found", actor=who.actor,
            target_token=token_id,
        )  # fmt: skip
        return ok

    async def seal_unused(self, who: Acting) -> list[str]:
        """Seal the tokens unused for 180 days now."""
        return await seal_unused_tokens(self._accounts, self._audit, actor=who.actor)

    async def list(self) -> list[TokenInfo]:
        """Every token, newest first (never a secret)."""
        return await self._accounts.list()


class AuditTrail:
    """Reading the audit log: the province everything, a county its children and tokens."""

    def __init__(self, audit: Audit, children: SchoolReads, accounts: TokenAccounts) -> None:
        self._audit = audit
        self._children = children
        self._accounts = accounts

    async def query(
        self, who: Acting, *, student_number: str | None, token_id: str | None, limit: int
    ) -> list[AuditEntryOut] | None:
        """Entries about a child and/or by a token, newest first; None when a county
        operator asks about a child or token outside its county (or unknown: alike)."""
        principal = who.principal
        if principal is not None and principal.is_county:
            if (
                student_number is not None
                and await self._children.child(principal, student_number) is None
            ):
                return None
            if token_id is not None:
                token = await self._accounts.get(token_id)
                if token is None or token.scope.get("county_code") != principal.county_code:
                    return None
        entries = await self._audit.query(
            student_number=student_number, actor=token_id, limit=limit
        )
        await self._audit.record(
            action="audit.query", outcome="ok", principal=principal, actor=who.actor,
            student_number=student_number, target_token=token_id, remote=who.remote,
        )  # fmt: skip
        return entries
