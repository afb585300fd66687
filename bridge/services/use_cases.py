"""Every use case the HTTP API and the command line call, as one typed bundle.

bridge/bootstrap.py builds it (for a running bridge, or for a command that needs no
broker); the entry points only pass it on.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.services.access import AuditTrail, Gate, TokenAdministration
from bridge.services.arrivals import Arrivals
from bridge.services.calendar import WorkingCalendar
from bridge.services.casework import Casework
from bridge.services.console_sessions import ConsoleSignIn
from bridge.services.downloads import Downloads
from bridge.services.file_keys import FileKeyAdministration
from bridge.services.health import Health
from bridge.services.ports.clock import Clock
from bridge.services.reconciliation import Reconciler
from bridge.services.recovery import Recovery
from bridge.services.refusals import Refusals
from bridge.services.reports import Reporting
from bridge.services.retention import Retention
from bridge.services.schools import SchoolChildren


@dataclass(frozen=True, slots=True)
class UseCases:
    """What schools, operators and the command line can do."""

    gate: Gate
    children: SchoolChildren
    arrivals: Arrivals
    downloads: Downloads
    audit_trail: AuditTrail
    reconciler: Reconciler
    reporting: Reporting
    recovery: Recovery
    console: ConsoleSignIn
    tokens: TokenAdministration
    calendar: WorkingCalendar
    file_keys: FileKeyAdministration
    retention: Retention
    clock: Clock
    casework: Casework
    refusals: Refusals
    # The errors that mean the database is away (worth a 503 and a retry), as the
    # database adapter names them.
    database_away: tuple[type[BaseException], ...]
    health: Health | None = None  # a running bridge's (a command has no broker or worker)
