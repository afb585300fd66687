"""The bridge's HTTP face: health, readiness and metrics (more endpoints join here)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.api.auth import AUDIT, TOKENS
from bridge.api.openapi import add_openapi_routes
from bridge.api.operator import add_operator_api
from bridge.api.operators_audit import add_audit_routes
from bridge.api.problems import problems_middleware
from bridge.api.schools import add_school_api
from bridge.bootstrap import Bridge

log = logging.getLogger(__name__)

BRIDGE = web.AppKey("bridge", Bridge)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: broker connected, database answering, consumers attached, worker running."""
    bridge = request.app[BRIDGE]
    checks: dict[str, bool] = {
        "broker": not bridge.amqp.is_closed,
        "consumers": bridge.consuming and not bridge.amqp.is_closed,
        "worker": bridge.worker.running,
    }
    try:
        await asyncio.wait_for(bridge.pool.fetchval("SELECT 1"), 2.0)
        checks["database"] = True
    except Exception:
        checks["database"] = False
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; hand-overs by phase are read from the ledger now."""
    bridge = request.app[BRIDGE]
    m = bridge.metrics
    try:
        counts = await bridge.ledger.phase_counts()
        m.handoffs.clear()
        for phase, n in counts.items():
            m.handoffs.labels(phase).set(n)
        m.deferrals_expired.set(await bridge.ledger.expired_deferrals_count())
    except Exception as exc:  # the counters still help when the database is away
        log.debug("ledger gauges not refreshed: %s", type(exc).__name__)
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(bridge: Bridge) -> web.Application:
    """The aiohttp application of one running bridge."""
    app = web.Application(middlewares=[problems_middleware])
    app[BRIDGE] = bridge
    app[TOKENS] = bridge.tokens
    app[AUDIT] = bridge.audit
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_school_api(app, bridge)
    add_audit_routes(app)
    add_openapi_routes(app)
    add_operator_api(app, bridge)
    return app
