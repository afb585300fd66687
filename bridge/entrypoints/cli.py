"""The ``xueji`` command line (also ``python -m bridge``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence

from aiohttp import web

from bridge.api.app import create_app
from bridge.api.server import BridgeRunner
from bridge.bootstrap import operator_tools, running_bridge
from bridge.entrypoints.demo import run_demo
from bridge.entrypoints.file_commands import register_file_commands, seal_stored_files
from bridge.entrypoints.guard import EXIT_CODES_HELP, CommandFailed, Exit, debugging, guarded
from bridge.entrypoints.operator_commands import register_operator_commands
from bridge.entrypoints.school_name_commands import register_school_name_commands
from bridge.entrypoints.token_commands import register_access_commands
from bridge.failures import redact_logs
from bridge.settings import Settings
from simulator.app import main as simulate


def _configure_logging(level: int) -> None:
    redact_logs()  # no identity or student number in any line, a library's included
    logging.basicConfig(
        level=level,
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


async def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    async with operator_tools(settings) as tools:  # opening the pool migrates
        if not args.json:
            print("database schema is up to date")
        shown = bool(getattr(args, "progress", False)) or sys.stderr.isatty()
        files = await seal_stored_files(tools, progress_shown=shown, speak=not args.json)
        if args.json:
            print(json.dumps({"schema": "up to date", "record_files": files}))


def _cmd_run(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.event_loop == "uvloop":  # optional: fewer CPU cycles per I/O (bench/)
        import uvloop

        uvloop.run(_run(settings))
    else:
        asyncio.run(_run(settings))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    asyncio.run(_migrate(Settings(), args))
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
    parser = argparse.ArgumentParser(
        prog="xueji", description=__doc__, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="consume events and hand children over; serve HTTP").set_defaults(
        func=_cmd_run
    )
    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--json", action="store_true", help="say what was done as JSON")
    migrate.set_defaults(func=_cmd_migrate)
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
    register_school_name_commands(sub)
    _common_options(parser)
    return parser


def _every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for each in action.choices.values():
                yield from _every_parser(each)


def _common_options(parser: argparse.ArgumentParser) -> None:
    """``--debug`` and ``--progress`` on every command, before or after its name; each
    command knows its full name for its failure's sentence."""
    for each in _every_parser(parser):
        top = each is parser
        # SUPPRESS below the top: a sub-command's default must not undo `xueji --debug ...`.
        default = False if top else argparse.SUPPRESS
        each.add_argument(
            "--debug", action="store_true", default=default,
            help="on failure, show the traceback too (also XUEJI_DEBUG=1)",
        )  # fmt: skip
        each.add_argument(
            "--progress", action="store_true", default=default,
            help="show progress on stderr even when it is not a terminal",
        )  # fmt: skip
        each.set_defaults(command_name=each.prog)


# Commands that serve or run for long log at BRIDGE_LOG_LEVEL; the others at WARNING or
# above unless --debug, so that what they print is theirs.
_SERVICES = ("run", "demo", "simulate", "migrate")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xueji`` console script."""
    args = build_parser().parse_args(argv)

    def command() -> int:
        named = Settings().log_level  # invalid settings end here, in one sentence
        level = logging.getLevelName(named.upper())
        if not isinstance(level, int):
            raise CommandFailed(
                f"the setting BRIDGE_LOG_LEVEL ({named!r}) is not a level: use DEBUG, INFO,"
                " WARNING or ERROR",
                Exit.CONFIGURATION,
            )
        quiet = args.command not in _SERVICES and not debugging(args.debug)
        if quiet:
            level = max(level, logging.WARNING)
        _configure_logging(level)
        if quiet:  # a broker away is the failure's sentence, not the client's log lines too
            for chatty in ("aiormq", "aio_pika"):
                logging.getLogger(chatty).setLevel(logging.CRITICAL)
        return int(args.func(args))

    # Every failure ends in one sentence (what, which setting or URL, what to do) and its
    # exit code; a deployment unfit to start (StartRefused) exits 4 naming the setting.
    return guarded(args.command_name, command, debug=args.debug)
