"""The simulator's app factory and entry points: both registries on one port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from simulator import admin_api, preschool_api, registry_api
from simulator.config import SimConfig
from simulator.db import open_pool
from simulator.middlewares import check_access, count_and_shape_errors, inject_faults
from simulator.runtime import RUNTIME, Runtime

log = logging.getLogger("simulator")

# Above B2's 20 MiB limit, so B2 itself answers 413 in the contract's shape.
CLIENT_MAX_SIZE = 21 * 1024 * 1024


def build_app(config: SimConfig) -> web.Application:
    """The aiohttp application; the database pool opens and closes with it."""
    app = web.Application(
        middlewares=[count_and_shape_errors, inject_faults, check_access],
        client_max_size=CLIENT_MAX_SIZE,
    )
    rt = Runtime(config=config, public_url=config.public_url or "")
    app[RUNTIME] = rt

    async def database(app: web.Application) -> AsyncIterator[None]:
        rt.pool_or_none = await open_pool(config.database_url, max_size=config.db_pool_max)
        try:
            yield
        finally:
            pool, rt.pool_or_none = rt.pool_or_none, None
            await pool.close()

    app.cleanup_ctx.append(database)
    registry_api.add_routes(app)
    preschool_api.add_routes(app)
    admin_api.add_routes(app)
    return app


async def start_simulator(config: SimConfig) -> tuple[web.AppRunner, str]:
    """Start serving; return the runner (call `cleanup()` to stop) and the base URL.

    `config.port` may be 0: the base URL carries the port actually bound.
    """
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1] if runner.addresses else config.port
    host = f"[{config.host}]" if ":" in config.host else config.host
    base_url = f"http://{host}:{port}"
    if not config.public_url:
        app[RUNTIME].public_url = base_url
    log.info("simulator listening on %s", base_url)
    return runner, base_url


async def serve(config: SimConfig) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner, base_url = await start_simulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"simulator: preschool at {base_url}/preschool, registry at {base_url}/registry")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m simulator [--host H] [--port P]`; env `SIM_*` for the rest."""
    parser = argparse.ArgumentParser(
        prog="simulator", description="Serve the preschool and primary registries' stand-ins."
    )
    parser.add_argument("--host", help="listen address (default SIM_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default SIM_PORT or 8090)")
    parser.add_argument("--database-url", help="PostgreSQL DSN (default SIM_DATABASE_URL)")
    args = parser.parse_args(argv)
    config = SimConfig.from_env()
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("database_url", args.database_url))
        if v is not None
    }
    if overrides:
        config = dataclasses.replace(config, **overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return 0
