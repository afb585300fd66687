"""Collects the registry calls one hand-over step makes, for the ledger's attempt log."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegistryCall:
    """One attempt-log line."""

    operation: str
    status: int | None
    outcome: str
    duration_ms: int


_journal: ContextVar[list[RegistryCall] | None] = ContextVar("registry_call_journal", default=None)


def start_journal() -> list[RegistryCall]:
    """Begin collecting the calls made in this task; returns the list they go to."""
    calls: list[RegistryCall] = []
    _journal.set(calls)
    return calls


def note_call(call: RegistryCall) -> None:
    """Add *call* to the running journal, if a step is collecting."""
    calls = _journal.get()
    if calls is not None:
        calls.append(call)
