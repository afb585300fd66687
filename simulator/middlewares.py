"""Request pipeline: counting and JSON errors, fault injection, bearer tokens, loopback."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from simulator.faults import Fault
from simulator.preschool_api import CORRUPT_KEY
from simulator.responses import error
from simulator.runtime import runtime

log = logging.getLogger("simulator")

_FAULT_STATUS = {"503": 503, "429": 429, "500": 500, "502": 502, "504": 504}


def side_of(path: str) -> str | None:
    """`registry`, `preschool` or None (admin and anything else) for a request path."""
    if path.startswith("/registry/"):
        return "registry"
    if path.startswith("/preschool/"):
        return "preschool"
    return None


def _endpoint(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return f"{request.method} {resource.canonical}"


@web.middleware
async def count_and_shape_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count contract answers by endpoint and status; give HTTP errors the contract's body."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.empty_body:
            response = web.Response(status=exc.status, headers=exc.headers)
        else:
            code = exc.reason.lower().replace(" ", "_")
            response = error(exc.status, code, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Endpoint pattern and error type only: paths and database error details can carry
        # identity numbers.
        log.error("internal error in %s: %s", _endpoint(request), type(exc).__name__)
        response = error(500, "internal", "the simulator failed; see its log")
    if side_of(request.path) is not None:  # admin calls would only blur the figures
        runtime(request).stats.record_request(_endpoint(request), response.status)
    return response


def _fault_response(fault: Fault) -> web.Response:
    response = error(int(fault.kind), "unavailable", f"simulated {fault.kind}")
    if fault.kind in ("503", "429"):
        response.headers["Retry-After"] = str(fault.retry_after_s)
    return response


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Draw a fault for contract requests before anything runs, so faults have no effect."""
    side = side_of(request.path)
    if side is None:
        return await handler(request)
    rt = runtime(request)
    can_corrupt = side == "preschool" and "/record-files/" in request.path
    fault = rt.faults.draw(side, can_corrupt=can_corrupt)
    if fault is None:
        return await handler(request)
    rt.stats.record_fault(side, fault.kind)
    if fault.kind == "drop":
        # Close without answering: the client sees the connection end.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if fault.kind in _FAULT_STATUS:
        return _fault_response(fault)
    if fault.kind == "slow":
        await asyncio.sleep(fault.slow_s)
    elif fault.kind == "corrupt":
        request[CORRUPT_KEY] = True
    return await handler(request)


@web.middleware
async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token per registry on contract paths; loopback only on `/_sim`."""
    rt = runtime(request)
    side = side_of(request.path)
    if side is not None:
        expected = rt.config.registry_token if side == "registry" else rt.config.preschool_token
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return error(401, "unauthorized", "missing or wrong bearer token")
    elif request.path.startswith("/_sim/") and not rt.config.admin_open:
        remote = request.remote or ""
        try:
            loopback = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return error(403, "forbidden", "admin endpoints answer loopback clients only")
    return await handler(request)
