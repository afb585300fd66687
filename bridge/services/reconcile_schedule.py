"""Scheduled reconciliation: each configured cohort every interval, once across instances."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bridge.failures import log_failure
from bridge.services.reconciliation import Reconciler

log = logging.getLogger(__name__)


async def reconcile_on_schedule(
    reconciler: Reconciler, entry_years: Sequence[int], interval_s: float
) -> None:
    """Run each cohort's reconciliation when due, until cancelled; a failure is logged and
    the next round tries again."""
    while True:
        for year in entry_years:
            try:
                run = await reconciler.run_if_due(year, interval_s)
                if run is not None:
                    log.info("scheduled reconciliation %s of %s done", run.run_id, year)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, "scheduled reconciliation of %s failed", year, exc=exc)
        await asyncio.sleep(min(interval_s, 60.0))
