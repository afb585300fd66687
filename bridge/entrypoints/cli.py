"""The ``xueji`` command line (also ``python -m bridge``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from bridge.api.app import create_app
from bridge.api.server import BridgeRunner
from bridge.bootstrap import operator_tools, running_bridge
from bridge.entrypoints.demo import run_demo
from bridge.entrypoints.file_commands import register_file_commands, seal_stored_files
from bridge.entrypoints.operator_commands import register_operator_commands
from bridge.entrypoints.token_commands import register_access_commands
from bridge.errors import StartRefused
from bridge.failures import redact_logs
from bridge.settings import Settings
from simulator.app import main as simulate


def _configure_logging(level: str) -> None:
    redact_logs()  # no identity or student number in any line, a library's included
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # aio-pika and aiormq are chatty about reconnects at INFO.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run(settings: Settings) -> None:
    async with running_bridge(settings) as bridge:
        runner = BridgeRunner(create_app(bridge.use_cases), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        # What start-up built lives as long as the process: a full collection walking it
        # again stalls every request in flight for 30-50 ms (the school API's p99).
        gc.collect()
        gc.freeze()
        logging.getLogger("bridge").info(
            "bridge %s serving on %s:%s", settings.instance_id, settings.http_host,
            settings.http_port,
        )  # fmt: skip
        try:
            await _until_signalled()
        finally:
            await runner.cleanup()


async def _migrate(settings: Settings) -> None:
    async with operator_tools(settings) as tools:  # opening the pool migrates
        print("database schema is up to date")
        await seal_stored_files(tools)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.event_loop == "uvloop":  # optional: fewer CPU cycles per I/O (bench/)
        import uvloop

        uvloop.run(_run(settings))
    else:
        asyncio.run(_run(settings))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    asyncio.run(_migrate(Settings()))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    return simulate(args.rest)


def _cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(
        run_demo(
            Settings(),
            children=args.children,
            seed=args.seed,
            external=args.external,
            simulator_url=args.simulator_url,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; sub-commands register here."""
    parser = argparse.ArgumentParser(prog="xueji", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="consume events and hand children over; serve HTTP").set_defaults(
        func=_cmd_run
    )
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        func=_cmd_migrate
    )
    sim = sub.add_parser("simulate", help="serve both registries' simulator")
    sim.add_argument("rest", nargs=argparse.REMAINDER, help="options for the simulator")
    sim.set_defaults(func=_cmd_simulate)
    demo = sub.add_parser("demo", help="simulator + bridge + a cohort, end to end")
    demo.add_argument("--children", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument(
        "--external", action="store_true",
        help="use a bridge already running (BRIDGE_* settings) instead of starting one",
    )  # fmt: skip
    demo.add_argument("--simulator-url", help="a running simulator instead of an in-process one")
    demo.set_defaults(func=_cmd_demo)
    register_access_commands(sub)
    register_operator_commands(sub)
    register_file_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xueji`` console script."""
    args = build_parser().parse_args(argv)
    _configure_logging(Settings().log_level)
    try:
        return int(args.func(args))
    except StartRefused as exc:
        # A deployment unfit to start (a key missing or wrong, files in the clear): what
        # to fix, without a traceback.
        print(f"xueji: {exc}", file=sys.stderr)
        return 2
