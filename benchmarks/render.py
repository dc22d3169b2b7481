"""Drawing grids: boxed rich tables on a terminal, plain text in a pipe, markdown.

``draw`` lays a grid out with ``layout.arrange`` for the console's width,
so whichever way it is drawn, no figure is ever cut: rich gets every
column's exact width (its own shrinking never starts), plain text is
written as is, and markdown has no width at all.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .layout import BOXED, PLAIN, Fitted, Grid, arrange, plain_lines, record_lines, wrap

#: rich style of a cell's first line, per tone; lines under it are dim.
TONES = {"best": "bold green", "good": "green", "bad": "red", "dim": "dim"}


def emit(console: Console, lines: Iterable[str]) -> None:
    """Write lines as they are: no markup, no highlighting, no wrapping or cropping."""
    for line in lines:
        console.file.write(line + "\n")
    console.file.flush()


def boxed(console: Console) -> bool:
    """True for a terminal with colours: boxed tables, the best figure in green.

    Anything else (a pipe, a file, ``NO_COLOR``) gets plain text, where
    ``*`` marks the best figure.
    """
    return console.is_terminal and console.color_system is not None and not console.no_color


def say(console: Console, text: str, style: str = "") -> None:
    """Print prose wrapped at spaces: styled by rich on a terminal, as plain text elsewhere."""
    if boxed(console):
        console.print(Text(text, style=style))
    else:
        words = textwrap.wrap(text, console.width, break_long_words=False, break_on_hyphens=False)
        emit(console, words or [""])


def draw(console: Console, grid: Grid) -> None:
    """Print ``grid`` in the console's width: rich boxes on a terminal, else plain text."""
    rich = boxed(console)
    fitted = arrange(grid, BOXED if rich else PLAIN, console.width)
    if fitted is None:
        emit(console, record_lines(grid))
        return
    for k, part in enumerate(fitted):
        if k:
            emit(console, [""])
        if rich:
            console.print(rich_table(part))
        else:
            emit(console, plain_lines(part))


def rich_table(fitted: Fitted) -> Table:
    """Return a rich table whose columns have exactly the fitted widths.

    Data columns are right-aligned here, with spaces, because rich aligns
    only what it may also cut (``overflow="ignore"`` keeps a line whole).
    """
    grid, widths = fitted.grid, fitted.widths

    def column(text: str, width: int) -> dict[str, Any]:
        return {"header": text, "width": width, "no_wrap": True, "overflow": "ignore"}

    table = Table(box=box.HEAVY_HEAD, padding=(0, 1), expand=False)
    table.add_column(**column("\n".join(wrap(grid.corner, widths[0])), widths[0]))
    for header, w in zip(grid.headers, widths[1:], strict=True):
        table.add_column(**column("\n".join(line.rjust(w) for line in wrap(header, w)), w))
    for label, row in zip(grid.labels, grid.cells, strict=True):
        cells = [Text("\n".join(wrap(label, widths[0])))]
        for cell, w in zip(row, widths[1:], strict=True):
            text = Text()
            for k, line in enumerate(cell.lines):
                if k:
                    text.append("\n")
                text.append(line.rjust(w), style=TONES.get(cell.tone, "") if k == 0 else "dim")
            cells.append(text)
        table.add_row(*cells)
    return table


def markdown_table(grid: Grid) -> list[str]:
    """Return ``grid`` as a markdown table; a cell's lines join with spaces, best in bold."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    def cell_text(lines: tuple[str, ...], tone: str) -> str:
        parts = [esc(line) for line in lines]
        if parts and tone == "best":
            parts[0] = f"**{parts[0]}**"
        return " ".join(parts)

    out = [
        "| " + " | ".join(esc(h) for h in [grid.corner, *grid.headers]) + " |",
        "|:--" + "|--:" * len(grid.headers) + "|",
    ]
    for label, row in zip(grid.labels, grid.cells, strict=True):
        cells = [esc(label)] + [cell_text(c.lines, c.tone) for c in row]
        out.append("| " + " | ".join(cells) + " |")
    return out
