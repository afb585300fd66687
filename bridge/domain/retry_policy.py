"""How long a hand-over waits before its next attempt after a passing failure."""

from __future__ import annotations

import random

BASE_DELAY_S = 1.0
# Ten minutes: a registry down for hours is retried often enough to catch its return,
# rarely enough not to hammer it when 17 million children are waiting.
MAX_DELAY_S = 600.0


def next_delay_s(
    attempts: int, retry_after_s: float | None = None, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff, never sooner than the server's Retry-After."""
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(attempts, 20))
    delay = (rng or random).uniform(0, ceiling)
    return max(delay, retry_after_s or 0.0)
