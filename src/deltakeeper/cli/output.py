"""Rendering command results on stdout: tables, CSV, JSON. Decimals as plain-notation strings
(`deltakeeper.jsonable`)."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from deltakeeper.jsonable import plain, to_json

__all__ = ["plain", "print_table", "to_csv", "to_json"]


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else plain(row.get(c)) for c in columns])
    return buffer.getvalue()


WIDE_COLUMNS = 200
"""The table width when stdout is not a terminal (a pipe, a file): one stable layout, every column."""
ID_COLUMNS = 12
"""On a terminal, ids (`*_id` columns) are shown to this many characters, then an ellipsis."""
TEXT_COLUMNS = 30
"""On a terminal, columns are first given up to this many characters (ids their own), then what width
is left over; longer values end with an ellipsis."""


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None = None,
                priority: Sequence[str] | None = None) -> None:
    """`rows` as a table on stdout. On a terminal it fits the terminal's width (rich reads it, or
    $COLUMNS): ids and long text are cut short with an ellipsis, times shown to the second, and the
    columns that still do not fit are left out, the least important first (`priority`: the most important
    first, then the rest in `columns`' order), with a note naming them. Elsewhere every column, in full, on a
    200-column layout."""
    if not sys.stdout.isatty():
        _print(Console(width=WIDE_COLUMNS), rows, columns, title, None)
        return
    console = Console()
    cells = {c: [_terminal_text(row.get(c)) for row in rows] for c in columns}
    natural = {c: max([_header_width(c), *map(len, cells[c])]) for c in columns}
    widths = {c: min(natural[c], _cap(c)) for c in columns}
    used, kept = 1, set[str]()  # the left border, then per column its width, padding and right border
    first = list(priority or [])
    for column in [*first, *(c for c in columns if c not in first)]:
        if used + widths[column] + 3 <= console.width or not kept:
            kept.add(column)
            used += widths[column] + 3
    shown = [c for c in columns if c in kept]
    for column in shown:  # room to spare goes to long text, in table order
        grown = min(natural[column], widths[column] + max(console.width - used, 0))
        used, widths[column] = used + grown - widths[column], grown
    _print(console, [{c: cells[c][i] for c in shown} for i in range(len(rows))], shown, title, widths)
    hidden = [c for c in columns if c not in kept]
    if hidden:
        console.print(f"not shown at {console.width} columns: {', '.join(hidden)} "
                      "(a wider terminal or --format json shows them)", highlight=False, markup=False)


def _print(console: Console, rows: Sequence[Mapping[str, Any]], shown: Sequence[str], title: str | None,
           widths: Mapping[str, int] | None) -> None:
    """Without `widths` values fold onto more lines; with them each column has its width, headers wrap
    between words and longer values end with an ellipsis."""
    table = Table(title=title)
    for column in shown:
        if widths is None:
            table.add_column(column, overflow="fold")
        else:
            table.add_column(Text(column.replace("_", " "), no_wrap=False), overflow="ellipsis", no_wrap=True,
                             width=widths[column])
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(plain(row.get(c))) for c in shown))
    console.print(table)


def _terminal_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(plain(value))


def _header_width(column: str) -> int:
    """The header wraps between words (`_` shows as a space): its longest word."""
    return max(len(word) for word in column.replace("_", " ").split())


def _cap(column: str) -> int:
    return ID_COLUMNS if column.endswith("_id") else TEXT_COLUMNS
