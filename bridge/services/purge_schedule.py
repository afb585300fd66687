"""Scheduled retention purges: every interval, once across instances."""

from __future__ import annotations

import asyncio
import logging

from bridge.failures import log_failure
from bridge.services.retention import Retention

log = logging.getLogger(__name__)


async def purge_on_schedule(retention: Retention, interval_s: float) -> None:
    """Purge every *interval_s*, never twice at once across instances, until cancelled; a
    failure is logged and the next round tries again."""
    while True:
        try:
            await retention.purge_if_due(interval_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(log, "scheduled retention purge failed", exc=exc)
        await asyncio.sleep(min(interval_s, 60.0))
