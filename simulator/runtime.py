"""The simulator's run-time state shared by handlers (one typed AppKey)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from simulator.config import SimConfig
from simulator.faults import FaultInjector
from simulator.stats import Stats


@dataclass
class Runtime:
    """Config, database pool, fault settings and counters of one simulator instance."""

    config: SimConfig
    faults: FaultInjector = field(default_factory=FaultInjector)
    stats: Stats = field(default_factory=Stats)
    pool_or_none: asyncpg.Pool | None = None
    # Filled in once the listening address is known (port 0 in tests).
    public_url: str = ""

    @property
    def pool(self) -> asyncpg.Pool:
        """The database pool (open while the app runs)."""
        if self.pool_or_none is None:
            raise RuntimeError("the simulator's database pool is not open")
        return self.pool_or_none


RUNTIME = web.AppKey("simulator_runtime", Runtime)


def runtime(request: web.Request) -> Runtime:
    """The runtime of the app serving `request`."""
    return request.app[RUNTIME]
