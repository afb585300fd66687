"""Run-time switchable fault injection for the contract endpoints.

A fault is decided before a request does anything, so a faulted request has no effect
(except `slow`, which delays a request that then runs normally).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

SIDES = ("registry", "preschool")
# Fault kinds that answer (or drop) instead of running the request, in draw order.
FAILING_KINDS = ("drop", "503", "429", "500", "502", "504")


@dataclass(frozen=True)
class SideFaults:
    """Probabilities (0..1) of each fault on one registry, and their parameters."""

    p_503: float = 0.0
    p_429: float = 0.0
    p_500: float = 0.0
    p_502: float = 0.0
    p_504: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 5.0
    p_drop: float = 0.0
    retry_after_s: int = 1
    p_corrupt: float = 0.0  # preschool record files only: serve bytes not matching sha256

    @classmethod
    def from_json(cls, raw: Any, side: str) -> tuple[SideFaults | None, list[dict[str, str]]]:
        """Parse one side's settings; missing keys are 0 (or their default)."""
        if raw is None:
            return cls(), []
        if not isinstance(raw, dict):
            return None, [{"field": side, "message": "must be an object"}]
        errors: list[dict[str, str]] = []
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            where = f"{side}.{key}"
            if key not in known:
                errors.append({"field": where, "message": "unknown fault setting"})
            elif isinstance(value, bool) or not isinstance(value, int | float):
                errors.append({"field": where, "message": "must be a number"})
            elif key.startswith("p_") and not 0.0 <= value <= 1.0:
                errors.append({"field": where, "message": "a probability must be in 0..1"})
            elif value < 0:
                errors.append({"field": where, "message": "must not be negative"})
            else:
                values[key] = int(value) if key == "retry_after_s" else float(value)
        if side != "preschool" and values.get("p_corrupt"):
            errors.append({"field": f"{side}.p_corrupt", "message": "preschool only"})
        return (None, errors) if errors else (cls(**values), [])


@dataclass(frozen=True)
class Fault:
    """The fault decided for one request."""

    kind: str  # one of FAILING_KINDS, "slow" or "corrupt"
    retry_after_s: int = 1
    slow_s: float = 0.0


class FaultInjector:
    """Holds the current settings and draws faults from a seedable random source."""

    def __init__(self) -> None:
        self.sides: dict[str, SideFaults] = {side: SideFaults() for side in SIDES}
        self.seed: int | None = None
        self._rng = random.Random()

    def configure(self, raw: Any) -> list[dict[str, str]]:
        """Replace all settings from `{"registry": {...}, "preschool": {...}, "seed"?}`."""
        if not isinstance(raw, dict):
            return [{"field": "", "message": "must be an object"}]
        errors: list[dict[str, str]] = []
        parsed: dict[str, SideFaults] = {}
        for key in raw:
            if key not in (*SIDES, "seed"):
                errors.append({"field": key, "message": "unknown key"})
        for side in SIDES:
            settings, side_errors = SideFaults.from_json(raw.get(side), side)
            errors.extend(side_errors)
            if settings is not None:
                parsed[side] = settings
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            errors.append({"field": "seed", "message": "must be an integer"})
        if errors:
            return errors
        self.sides = parsed
        self.seed = seed
        self._rng = random.Random(seed)
        return []

    def as_json(self) -> dict[str, Any]:
        """The current settings, in the shape `configure` takes."""
        return {**{side: asdict(s) for side, s in self.sides.items()}, "seed": self.seed}

    def draw(self, side: str, *, can_corrupt: bool = False) -> Fault | None:
        """Decide the fault (if any) for one request on `side`."""
        settings = self.sides[side]
        roll = self._rng.random()
        for kind in FAILING_KINDS:
            p = getattr(settings, f"p_{kind}")
            if roll < p:
                return Fault(kind, retry_after_s=settings.retry_after_s)
            roll -= p
        if settings.p_slow and self._rng.random() < settings.p_slow:
            return Fault("slow", slow_s=settings.slow_s)
        if can_corrupt and settings.p_corrupt and self._rng.random() < settings.p_corrupt:
            return Fault("corrupt")
        return None
