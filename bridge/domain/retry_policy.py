"""How long a hand-over waits before its next attempt after a passing failure."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Full-jitter exponential backoff for durable (ledger-held) retries."""

    base_s: float = 1.0
    # Ten minutes: a registry down for hours is retried often enough to catch its return,
    # rarely enough not to hammer it when millions of children are waiting.
    max_s: float = 600.0

    def delay_s(
        self, attempts: int, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Delay before attempt number *attempts* + 1; never sooner than Retry-After."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempts, 30))
        delay = (rng or random).uniform(0, ceiling)
        return max(delay, retry_after_s or 0.0)
