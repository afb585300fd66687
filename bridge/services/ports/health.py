"""What readiness asks of the database."""

from __future__ import annotations

from typing import Protocol


class Probe(Protocol):
    """A cheap question that only a working connection answers."""

    async def answers(self) -> bool:
        """True if the database answered (errors propagate)."""
        ...
