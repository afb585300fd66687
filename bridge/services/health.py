"""Is this instance ready to work, and what do the ledger's gauges say now?"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bridge.metrics import Metrics
from bridge.services.ports.health import Probe
from bridge.services.ports.ledger import LedgerFigures

log = logging.getLogger(__name__)
# Readiness asks the database this long at most: a load balancer waits for the answer.
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Health:
    """Readiness checks and metric gauges of one running bridge."""

    broker_connected: Callable[[], bool]
    consuming: Callable[[], bool]
    worker_running: Callable[[], bool]
    database: Probe
    figures: LedgerFigures
    metrics: Metrics

    async def checks(self) -> dict[str, bool]:
        """broker, consumers, worker and database: each True when it works."""
        connected = self.broker_connected()
        checks = {
            "broker": connected,
            "consumers": self.consuming() and connected,
            "worker": self.worker_running(),
        }
        try:
            checks["database"] = await asyncio.wait_for(self.database.answers(), PROBE_TIMEOUT_S)
        except Exception:
            checks["database"] = False
        return checks

    async def refresh_gauges(self) -> None:
        """Hand-overs by phase and expired deferrals, read from the ledger now (the
        counters still help when the database is away: then the gauges stay as they were)."""
        m = self.metrics
        try:
            counts = await self.figures.phase_counts()
            m.handoffs.clear()
            for phase, n in counts.items():
                m.handoffs.labels(phase).set(n)
            m.deferrals_expired.set(await self.figures.expired_deferrals_count())
        except Exception as exc:
            log.debug("ledger gauges not refreshed: %s", type(exc).__name__)
