"""Refused attempts on the API and the console, audited within a bound (access.refused).

A wrong secret for a real token id, a role that may not, another school's list or ZIP, a
failed sign-in, a CSRF token that does not match: each is one audit line, until its source
has spent its budget for the minute (RefusalBudget); past it, refusals are only counted
(xueji_refusals_total), so that strangers cannot flood the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.domain.refusal_budget import RefusalBudget
from bridge.failures import log_failure
from bridge.services.ports.access import Audit

log = logging.getLogger(__name__)
ACTION = "access.refused"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused attempt: what was answered, to which request, from where."""

    status: int
    code: str
    method: str
    route: str
    token_id: str | None
    remote: str | None


class Refusals:
    """Writes refused attempts to the audit log within *budget*; counts every one."""

    def __init__(
        self,
        audit: Audit,
        budget: RefusalBudget,
        *,
        counted: Callable[[int, bool], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self.budget = budget
        self._counted = counted
        self._monotonic = monotonic

    async def refused(self, refusal: Refusal) -> bool:
        """Audit *refusal* if the budget allows; True if it was written. A failure to write
        it is logged, never the caller's answer."""
        written = self.budget.take(refusal.remote, self._monotonic())
        if written:
            try:
                await self._audit.record(
                    # A 401's token id is what was presented, not who called.
                    action=ACTION, outcome=refusal.code,
                    actor=(refusal.status != 401 and refusal.token_id) or "anonymous",
                    target_token=refusal.token_id, remote=refusal.remote,
                    detail={"status": refusal.status, "method": refusal.method[:16],
                            "route": refusal.route},
                )  # fmt: skip
            except Exception as exc:  # the database away: the refusal is answered anyway
                log_failure(log, "auditing a refused attempt failed", exc=exc)
                written = False
        if self._counted is not None:
            self._counted(refusal.status, written)
        return written
