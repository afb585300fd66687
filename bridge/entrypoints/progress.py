"""Progress of a long command on stderr, never on stdout (which stays the command's output).

At a terminal a line is redrawn in place; elsewhere (``--progress`` into a log) a line at
most once a second, so that a log shows the pace without drowning in it.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console

_EVERY_S = 1.0


def wanted(args: argparse.Namespace, console: Console) -> bool:
    """Progress is shown at a terminal, or when asked (``--progress``)."""
    return bool(getattr(args, "progress", False)) or console.is_terminal


class Ticker:
    """``ticker(text)`` shows how far a command is; ``ticker.done()`` ends the line."""

    def __init__(self, console: Console, *, shown: bool) -> None:
        self._console = console
        self._shown = shown
        self._last = 0.0
        self._open = False

    def __call__(self, text: str) -> None:
        if not self._shown:
            return
        if self._console.is_terminal:
            self._console.print(text, end="\r", markup=False, highlight=False)
            self._open = True
            return
        now = time.monotonic()
        if now - self._last >= _EVERY_S:
            self._last = now
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def done(self, text: str | None = None) -> None:
        """End the line in place; *text*, the final count, is printed in any case shown."""
        if not self._shown:
            return
        if text is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        elif self._open:
            self._console.print()
        self._open = False
