"""``xueji schools load FILE.csv``: names of schools and kindergartens for the console.

The registries' contracts carry only codes (学校标识码); a county data centre keeps the
names. A CSV of `code,name` rows (UTF-8, a BOM and a header row allowed) is loaded, each
code's name replaced by the file's.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
from pathlib import Path
from typing import Any

from bridge.bootstrap import operator_tools
from bridge.entrypoints.guard import CommandFailed
from bridge.entrypoints.operator_commands import actor
from bridge.services.acting import Acting
from bridge.services.casework import read_school_names
from bridge.settings import Settings


def cmd_schools(args: argparse.Namespace) -> int:
    """xueji schools load FILE."""
    try:
        rows = read_school_names(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise CommandFailed(
            f"xueji schools load: {args.file} could not be read as code,name rows ({exc}): "
            "fix the file and load it again"
        ) from exc

    async def main() -> int:
        async with operator_tools(Settings()) as tools:
            n = await tools.use_cases.casework.load_school_names(
                rows, Acting(actor()), source=Path(args.file).name
            )
        print(f"loaded {n} school and kindergarten names from {args.file}")
        return 0

    return asyncio.run(main())


def register_school_name_commands(sub: Any) -> None:
    """Add ``schools`` to the command line."""
    schools = sub.add_parser("schools", help="names of schools and kindergartens")
    ssub = schools.add_subparsers(dest="schools", required=True)
    load = ssub.add_parser("load", help="load code,name rows from a CSV file")
    load.add_argument("file", help="CSV of code,name (UTF-8)")
    schools.set_defaults(func=cmd_schools)
