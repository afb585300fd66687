"""Schools' arrival reports, kept with their audit line and their effect in one transaction."""

from __future__ import annotations

import asyncpg

from bridge.adapters.postgres.audit import append
from bridge.adapters.postgres.ledger import request_arrival
from bridge.services.ports.schools import ArrivalReport


class ArrivalBook:
    """arrival_reports, audit_log and the hand-over's arrival: all of a report, or none."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, report: ArrivalReport) -> bool:
        """Keep *report*; False (nothing kept) if its child is gone."""
        line = report.audit
        async with self._pool.acquire() as conn, conn.transaction():
            wanted = report.request
            if wanted is not None and await request_arrival(conn, report.child_id, wanted) is None:
                return False
            await conn.execute(
                "INSERT INTO arrival_reports (child_id, student_number, school_code,"
                " arrived_on, token_id, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
                report.child_id, report.student_number, report.principal.school_code,
                report.arrived_on, report.principal.token_id, report.outcome,
            )  # fmt: skip
            await append(
                conn, action=line.action, outcome=line.outcome, principal=line.principal,
                student_number=line.student_number, remote=line.remote,
                detail=line.detail or None,
            )  # fmt: skip
        return True
