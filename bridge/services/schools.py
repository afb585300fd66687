"""What a school (or an operator) reads of the children handed over: lists and one child.

Scope is checked before anything else is looked at, and a child out of scope is refused
exactly like a child that does not exist (NotFound): numbers cannot be probed. Every
read and every refusal is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from bridge.domain.access import PresentedToken, Principal
from bridge.domain.student_number import has_number_form
from bridge.errors import NotFound
from bridge.services.ports.access import Audit
from bridge.services.ports.schools import (
    AuditLine,
    ChildView,
    ListLookup,
    ListQuery,
    ReadEntry,
    Receipts,
    SchoolReads,
    SharedLookups,
)


class SchoolChildren:
    """Children as their school (or an operator within scope) sees them."""

    def __init__(
        self, children: SchoolReads, lookups: SharedLookups, receipts: Receipts, audit: Audit
    ) -> None:
        self._children = children
        self._lookups = lookups
        self._receipts = receipts
        self._audit = audit

    async def find(
        self, principal: Principal, student_number: str, *, action: str, remote: str | None
    ) -> ChildView:
        """The child *principal* may see under *student_number*; NotFound (audited as the
        refusal of *action*) for anything else."""
        well_formed = has_number_form(student_number)
        child = await self._children.child(principal, student_number) if well_formed else None
        if child is None:
            await self._audit.record(
                action=action, outcome="not_found", principal=principal,
                student_number=student_number if well_formed else None, remote=remote,
            )  # fmt: skip
            raise NotFound()
        return child

    async def shown(self, principal: Principal, child: ChildView, remote: str | None) -> None:
        """The child's summary is shown to *principal*."""
        await self._audit.record(
            action="handoff.read", outcome="ok", principal=principal,
            student_number=child.student_number, remote=remote,
        )  # fmt: skip

    def page(self, presented: PresentedToken, query: ListQuery) -> Awaitable[ListLookup]:
        """The token's row and one page of the school's children it may see (limit + 1, to
        tell whether more follow), in one statement shared with the lists asked meanwhile.
        The token must still be admitted."""
        return self._lookups.list_for(presented, query)

    async def listed(
        self,
        principal: Principal,
        school_code: str,
        shown: Sequence[ChildView],
        remote: str | None,
    ) -> None:
        """One audit line for a page, naming every child it showed (none for an empty one)."""
        if not shown:
            return
        line = AuditLine(
            principal, "handoff.list", "ok", None, remote, {"school_code": school_code},
            student_numbers=tuple(c.student_number for c in shown),
        )  # fmt: skip
        await self._receipts.keep(ReadEntry(audit=(line,)))
