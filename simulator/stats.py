"""In-memory request and fault counters behind `GET /_sim/stats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counts of answered requests by endpoint and status, and of injected faults."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record_request(self, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self.requests[(endpoint, status)] += 1

    def record_fault(self, side: str, kind: str) -> None:
        """Count one injected fault."""
        self.faults[(side, kind)] += 1

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.requests.clear()
        self.faults.clear()

    def as_json(self) -> dict[str, Any]:
        """`{"requests": {endpoint: {status: n}}, "faults": {side: {kind: n}}, totals}`."""
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in sorted(self.requests.items()):
            requests.setdefault(endpoint, {})[str(status)] = n
        faults: dict[str, dict[str, int]] = {}
        for (side, kind), n in sorted(self.faults.items()):
            faults.setdefault(side, {})[kind] = n
        return {
            "requests": requests,
            "faults": faults,
            "total_requests": sum(self.requests.values()),
            "total_faults": sum(self.faults.values()),
        }
