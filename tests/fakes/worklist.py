"""The operators' worklist in memory: set-asides read off a MemoryLedger, parked messages
off a MemoryParkedArchive."""

from __future__ import annotations

import json
from typing import Any

from bridge.services.ports.recovery import Group, ParkedMessage, SetAsideCase
from tests.fakes.ledger import MemoryLedger
from tests.fakes.stores import MemoryParkedArchive, ParkedRow


class MemoryWorklist:
    """Worklist over the ledger's children and the parked messages."""

    def __init__(self, ledger: MemoryLedger, parked: MemoryParkedArchive) -> None:
        self.ledger = ledger
        self.parked = parked
        self.resolutions: dict[tuple[int, int, str], str] = {}  # (child, seq, reason) -> note
        self.retries: list[dict[str, Any]] = []

    # --- set-aside hand-overs -----------------------------------------------------------
    def _cases(self) -> list[SetAsideCase]:
        cases = []
        for row in self.ledger.rows.values():
            record = row.record
            aside = row.handoff.active_set_aside(record)
            if aside is None or (row.child_id, aside.at_childseq, aside.reason) in self.resolutions:
                continue
            detail = dict(aside.detail)
            last = [r["at"] for r in self.retries if r["target"] == str(row.child_id)]
            cases.append(
                SetAsideCase(
                    row.child_id, record.student_number, aside.reason.value,
                    detail.get("code") or detail.get("status") or "", detail, aside.at_childseq,
                    None, record.graduation.county_code if record.graduation else None,
                    record.kindergarten_code, row.handoff.phase(record).value,
                    max(last) if last else None,
                )
            )  # fmt: skip
        return cases

    async def set_aside_groups(self, county_code: str | None) -> list[Group]:
        """Open set-asides by reason and registry answer."""
        counts: dict[tuple[str, str], int] = {}
        for case in self._cases():
            if county_code is None or case.county_code == county_code:
                counts[(case.reason, case.answer)] = counts.get((case.reason, case.answer), 0) + 1
        return [Group("handoff", r, a, n, None, None) for (r, a), n in sorted(counts.items())]

    async def set_aside_cases(
        self,
        county_code: str | None,
        *,
        reason: str | None = None,
        answer: str | None = None,
        student_number: str | None = None,
        limit: int = 500,
    ) -> list[SetAsideCase]:
        """Open set-asides, filtered (a child by any number it held)."""
        held = self.ledger.numbers.get(student_number or "")
        return [
            c for c in self._cases()
            if (county_code is None or c.county_code == county_code)
            and (reason is None or c.reason == reason)
            and (answer is None or c.answer == answer)
            and (student_number is None or c.child_id == held)
        ][:limit]  # fmt: skip

    async def resolve_set_aside(self, case: SetAsideCase, note: str, actor: str) -> None:
        """Close one set-aside (a newer event re-opens the child)."""
        self.resolutions.setdefault((case.child_id, case.at_childseq, case.reason), note)

    # --- parked messages ----------------------------------------------------------------
    def _message(self, row: ParkedRow) -> ParkedMessage:
        outcome = None
        if row.retried_at is not None:
            outcome = "processed" if row.message_id in self.ledger.inbox else "pending"
        return ParkedMessage(
            row.id, row.message_id, row.routing_key, row.code, row.reason, row.parked_at,
            row.body, row.retries, row.retried_at, row.resolved_at, row.resolution,
            row.resolved_by, outcome, json.loads(row.headers), json.loads(row.properties),
        )  # fmt: skip

    async def parked_groups(self) -> list[Group]:
        """Unresolved parked messages by reason."""
        counts: dict[str, int] = {}
        for row in self.parked.messages:
            if row.resolved_at is None:
                counts[row.code] = counts.get(row.code, 0) + 1
        return [Group("parked_message", code, "", n, None, None) for code, n in counts.items()]

    async def parked_messages(
        self, *, reason_code: str | None = None, include_resolved: bool = False, limit: int = 500
    ) -> list[ParkedMessage]:
        """Parked messages, oldest first."""
        return [
            self._message(r) for r in self.parked.messages
            if (reason_code is None or r.code == reason_code)
            and (include_resolved or r.resolved_at is None)
        ][:limit]  # fmt: skip

    async def parked_message(self, message_id: int) -> ParkedMessage | None:
        """One parked message by its row id."""
        row = next((r for r in self.parked.messages if r.id == message_id), None)
        return self._message(row) if row else None

    async def mark_parked(
        self, message_id: int, *, resolution: str, actor: str, retried: bool
    ) -> bool:
        """Resolve it (a retry as 'retried'); False if it was resolved already."""
        row = next((r for r in self.parked.messages if r.id == message_id), None)
        if row is None or row.resolved_at is not None:
            return False
        now = self.parked.clock.now()
        row.resolved_at, row.resolution, row.resolved_by = now, resolution, actor
        if retried:
            row.retried_at, row.retries = now, row.retries + 1
        return True

    async def unmark_parked(self, message_id: int) -> None:
        """Undo mark_parked: the message stays parked."""
        row = next(r for r in self.parked.messages if r.id == message_id)
        row.resolved_at = row.resolution = row.resolved_by = row.retried_at = None
        row.retries = max(row.retries - 1, 0)

    # --- retries ------------------------------------------------------------------------
    async def record_retry(
        self, *, actor: str, kind: str, target: str, group_key: str | None, result: str
    ) -> None:
        """Keep an operator's retry."""
        self.retries.append({
            "at": self.parked.clock.now(), "actor": actor, "kind": kind, "target": target,
            "group_key": group_key, "result": result,
        })  # fmt: skip

    async def recent_retries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest retries with what came of them."""
        out = []
        for r in reversed(self.retries[-limit:]):
            outcome: str | None = None
            if r["kind"] == "handoff" and (row := self.ledger.rows.get(int(r["target"]))):
                outcome = row.handoff.phase(row.record).value
            out.append(r | {"outcome": outcome})
        return out
