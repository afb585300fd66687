"""How many refused attempts are written to the audit log: a bound per source and in all,
so that a stranger cannot flood the table (the rest are counted, not written)."""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class RefusalBudget:
    """At most *per_source* audit lines per source and *in_all* in all, per minute.

    Minutes are fixed windows of the monotonic clock the caller passes; the table of
    sources is dropped with each window, so it holds at most *in_all* sources.
    """

    per_source: int
    in_all: int
    _window: float = field(default=-1.0, init=False)
    _spent: dict[str, int] = field(default_factory=dict, init=False)
    _total: int = field(default=0, init=False)

    def take(self, source: str | None, now_s: float) -> bool:
        """Whether one more refusal from *source* may be written now (and count it)."""
        window = now_s // WINDOW_S
        if window != self._window:
            self._window, self._spent, self._total = window, {}, 0
        key = source or "(unknown)"
        spent = self._spent.get(key, 0)
        if spent >= self.per_source or self._total >= self.in_all:
            return False
        self._spent[key] = spent + 1
        self._total += 1
        return True
