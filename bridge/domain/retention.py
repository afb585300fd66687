"""How long a child's record file and personal data stay at the bridge, and why they go.

The bridge is a transit point, not an archive (rules.md): the kindergarten's registry keeps
its copy, and once the child has arrived the primary registry and the school hold theirs.
So a hand-over's record file and the personal fields of the child's events are erased a
while after the hand-over completed (the child enrolled) or the cancellation took effect;
what reconciliation and the audit trail need stays (numbers, digests, dates, codes).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

# A stored file that no child refers to (one superseded by a corrected file, or stored by
# a save that lost its lease) is kept this long before it goes: a drive may be about to
# refer to it.
UNREFERENCED_GRACE = dt.timedelta(days=1)


class ErasureReason(enum.StrEnum):
    """Why something was erased. Names are part of the operator interface and the API."""

    HANDOVER_COMPLETE = "handover_complete"  # the child enrolled at its school
    CANCELLED = "cancelled"  # the record was cancelled (注销)
    SUPERSEDED = "superseded"  # a file no child refers to any more

    @classmethod
    def for_phase(cls, phase: str) -> ErasureReason:
        """The reason for a child whose hand-over ended in *phase*."""
        return cls.CANCELLED if phase == "cancelled" else cls.HANDOVER_COMPLETE


CLOSED_PHASES = frozenset({"enrolled", "cancelled"})


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days kept after a hand-over closed."""

    days: float

    def cutoff(self, now: dt.datetime) -> dt.datetime:
        """Children closed before this moment are due."""
        return now - dt.timedelta(days=self.days)

    def due(self, phase: str, closed_at: dt.datetime | None, now: dt.datetime) -> bool:
        """True once a child's data has been kept long enough."""
        return phase in CLOSED_PHASES and closed_at is not None and closed_at < self.cutoff(now)


_WHY = {
    ErasureReason.HANDOVER_COMPLETE: "after the hand-over completed (the child enrolled)",
    ErasureReason.CANCELLED: "after the record was cancelled (注销)",
    ErasureReason.SUPERSEDED: "because no hand-over refers to it any more",
}


def erased_file_message(reason: str | None, erased_at: dt.datetime) -> str:
    """What a school is told when it asks for an erased record file."""
    try:
        why = _WHY[ErasureReason(reason or "")]
    except ValueError:
        why = "at the end of its retention period"
    china = dt.timezone(dt.timedelta(hours=8))
    return (
        f"the record file was erased on {erased_at.astimezone(china).date().isoformat()} {why};"
        " the bridge keeps record files only while a hand-over needs them. The primary"
        " registry and the receiving school keep their copies."
    )
