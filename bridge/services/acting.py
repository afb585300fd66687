"""Who acts, as the audit log names them: a token's principal, or a named actor."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.domain.access import Principal


@dataclass(frozen=True, slots=True)
class Acting:
    """The one behind an operator's or a school's action (谁使用谁负责).

    *actor* is what the action is recorded under: the token's id for an API or console
    caller, ``cli:<user>``, ``scheduler`` or ``reconciliation`` otherwise.
    """

    actor: str
    principal: Principal | None = None
    remote: str | None = None

    @classmethod
    def by(cls, principal: Principal, remote: str | None = None) -> Acting:
        """An API or console caller."""
        return cls(principal.token_id, principal, remote)

    @property
    def county_code(self) -> str | None:
        """The county a county operator is bound to; None for everyone else."""
        p = self.principal
        return p.county_code if p is not None and p.is_county else None
