"""The bridge's HTTP face: health, readiness, metrics, the school and operator APIs, the
console. Built from the use cases bootstrap made; it opens and closes nothing itself."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.api.console import add_console
from bridge.api.downloads import add_download_routes
from bridge.api.keys import USE_CASES
from bridge.api.openapi import add_openapi_routes
from bridge.api.operator import add_operator_routes
from bridge.api.operators_audit import add_audit_routes
from bridge.api.problems import problems_middleware
from bridge.api.schools import add_school_routes
from bridge.api.server import BODY_LIMIT, harden, refusals_middleware, requests_middleware
from bridge.services.health import Health
from bridge.services.use_cases import UseCases


def _health(request: web.Request) -> Health:
    health = request.app[USE_CASES].health
    assert health is not None  # create_app serves running bridges only
    return health


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: broker connected, database answering, consumers attached, worker running."""
    checks = await _health(request).checks()
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; hand-overs by phase are read from the ledger now."""
    health = _health(request)
    await health.refresh_gauges()
    body = generate_latest(health.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(use_cases: UseCases) -> web.Application:
    """The aiohttp application of one running bridge's use cases."""
    if use_cases.health is None:
        raise ValueError("the HTTP API serves a running bridge (bootstrap.running_bridge)")
    # Outermost first: refusals are audited as the views raised them, then every refusal
    # becomes a problem, and what no view should see is refused before any view runs.
    app = web.Application(
        middlewares=[
            problems_middleware(use_cases.database_away),
            refusals_middleware(use_cases.refusals),
            requests_middleware(),
        ],
        client_max_size=BODY_LIMIT,
    )
    harden(app)
    app[USE_CASES] = use_cases
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_school_routes(app)
    add_download_routes(app)
    add_audit_routes(app)
    add_openapi_routes(app)
    add_operator_routes(app)
    add_console(app)
    return app
