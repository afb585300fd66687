"""Tables for people at any terminal width ($COLUMNS, 80 when not a terminal).

A cell wraps between words (between any two characters of Chinese) and never loses a
character: a code such as
``invalid_data_content_type`` is shown whole or the table is not drawn. When the
columns' longest words do not fit side by side, each row is printed as a record, one
``column  value`` line each, which fits any width.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Per column: a space of padding on each side and one border; one more border at the end.
_PER_COLUMN, _EDGE = 3, 1


# Chinese text breaks between any two characters (no spaces to wait for); a run of
# other characters breaks only at a space.
_UNBREAKABLE = re.compile(r"[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+|\S")


def _longest_word(value: str) -> int:
    return max((cell_len(word) for word in _UNBREAKABLE.findall(value)), default=0)


def _longest_line(value: str) -> int:
    return max((cell_len(line) for line in value.splitlines()), default=0)


def column_widths(
    columns: Sequence[str], rows: Sequence[Sequence[str]], width: int
) -> list[int] | None:
    """Each column's width for a table *width* cells wide that cuts no word, or None when
    even the longest words side by side do not fit."""
    cells = [[column, *(row[i] for row in rows)] for i, column in enumerate(columns)]
    least = [max(_longest_word(v) for v in values) or 1 for values in cells]
    most = [
        max(max(_longest_line(v) for v in values), low)
        for values, low in zip(cells, least, strict=True)
    ]
    room = width - _PER_COLUMN * len(columns) - _EDGE
    if sum(least) > room:
        return None
    widths = list(most)
    while sum(widths) > room:
        # Take a cell from the widest column that can still give one.
        i = max((j for j in range(len(widths)) if widths[j] > least[j]), key=lambda j: widths[j])
        widths[i] -= 1
    return widths


def print_table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[str] = (),
) -> None:
    """*rows* under *columns* as a table if it fits *console* without cutting a word,
    else as records; *right* names the columns aligned right (numbers)."""
    widths = column_widths(columns, rows, console.width)
    if widths is None:
        print_records(console, title, columns, rows)
        return
    table = Table(title=title)
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column, justify="right" if column in right else "left", width=width, overflow="fold"
        )
    for row in rows:
        table.add_row(*(Text(value) for value in row))  # values are data, never markup
    console.print(table)


def print_records(
    console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]
) -> None:
    """One ``column  value`` line per cell, a blank line between rows."""
    console.print(Text(title, style="bold"))
    pad = max((cell_len(c) for c in columns), default=0)
    for row in rows:
        console.print()
        for column, value in zip(columns, row, strict=True):
            label = column + " " * (pad - cell_len(column))
            console.print(Text(f"{label}  {value}"), soft_wrap=False)
