"""A clock that moves only when a test moves it."""

from __future__ import annotations

import datetime as dt


class FakeClock:
    """Clock (bridge.services.ports.clock), starting now unless told otherwise."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        """The time the test set."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move on by *seconds*."""
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        """Jump to *when*."""
        self._now = when
