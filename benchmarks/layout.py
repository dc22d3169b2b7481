"""Fitting a table of figures into a width without ever cutting a figure.

A ``Grid`` is a table before it is drawn: a label column, data columns,
and cells of one or more short lines (a figure, and its ratio under it).
Cell lines are never wrapped, cut or ellipsized: a data column is always
as wide as its widest line. Only words may move: headers and labels wrap
at spaces and after hyphens (``chain 1 (ms)`` becomes ``chain 1`` over
``(ms)``), never inside a word.

``arrange`` picks the first layout that fits the width:

1. the grid as built (metrics as rows, drivers as columns), its prose
   wrapped as little as needed;
2. transposed (drivers as rows), when the grid allows it;
3. split into several tables of fewer columns, each repeating the labels
   (in whichever orientation needs fewer tables);
4. none: the caller prints ``record_lines``, one figure per line under
   its row label, which only a very narrow terminal needs.

A ``Style`` holds the width the drawing adds around cells, so the same
fitting serves the boxed tables of a terminal and the plain text of a
pipe. ``plain_lines`` draws the plain text itself.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence

#: Placeholder of a cell without a figure.
MISSING = "—"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell: a figure and what goes under it, each on its own line.

    Attributes:
        lines: e.g. ``("5.74", "×6.13")``; empty for an empty cell.
        tone: ``best`` (the best figure of its row), ``good`` or ``bad``
            (a change for the better or worse), ``dim`` (a placeholder such
            as ``—``), or empty.
    """

    lines: tuple[str, ...] = ()
    tone: str = ""

    @property
    def width(self) -> int:
        """Width of the widest line."""
        return max((len(line) for line in self.lines), default=0)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A table before layout.

    Attributes:
        corner: header of the label column (``metric``).
        headers: headers of the data columns (drivers).
        labels: row labels (``chain 1 (ms)``).
        cells: ``cells[row][column]``.
        corner_transposed: header of the label column once transposed.
        transposable: whether rows and columns may swap.
    """

    corner: str
    headers: list[str]
    labels: list[str]
    cells: list[list[Cell]]
    corner_transposed: str = ""
    transposable: bool = True

    def transpose(self) -> Grid:
        """Return the grid with rows and columns swapped."""
        return Grid(
            corner=self.corner_transposed,
            headers=list(self.labels),
            labels=list(self.headers),
            cells=[[row[j] for row in self.cells] for j in range(len(self.headers))],
            corner_transposed=self.corner,
            transposable=self.transposable,
        )

    def take(self, columns: Sequence[int]) -> Grid:
        """Return the grid with only the data columns at ``columns``."""
        return dataclasses.replace(
            self,
            headers=[self.headers[j] for j in columns],
            cells=[[row[j] for j in columns] for row in self.cells],
        )


@dataclasses.dataclass(frozen=True)
class Style:
    """The width a drawing adds to the cells' own.

    Attributes:
        sep: between two columns.
        edges: left of the first column and right of the last, together.
        gutter: added to each data column, right of every line (``*``
            marks the best figure there in plain text).
    """

    sep: int
    edges: int = 0
    gutter: int = 0

    def total(self, widths: Sequence[int]) -> int:
        """Width of a table whose columns (label column first) have ``widths``."""
        return sum(widths) + self.sep * (len(widths) - 1) + self.edges


#: Plain text: two spaces between columns, a one-character gutter for ``*``.
PLAIN = Style(sep=2, gutter=1)
#: rich's default box: ``│ `` at each edge, `` │ `` between columns.
BOXED = Style(sep=3, edges=4)


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A grid with the width of each column, label column first (gutter included)."""

    grid: Grid
    widths: list[int]


def wrap(text: str, width: int) -> list[str]:
    """Break prose at spaces and after hyphens to ``width``; a longer word stays whole."""
    return textwrap.wrap(text, max(width, 1), break_long_words=False) or [""]


def _narrowest(text: str) -> int:
    """Width of the longest piece ``wrap`` cannot break."""
    return max(len(piece) for piece in wrap(text, 1))


def fit(grid: Grid, style: Style, width: int) -> Fitted | None:
    """Give every column a width so the table fits ``width``, or None when it cannot.

    Columns start at the width their longest label or header needs on one
    line; while the table is too wide, the widest column that still can
    gives up one character (its prose wraps). No column gets narrower than
    its widest cell line or its longest word.
    """
    g = style.gutter
    cell_need = [
        max((row[j].width for row in grid.cells), default=0) + g for j in range(len(grid.headers))
    ]
    widest = [
        max([len(grid.corner), *(len(label) for label in grid.labels)]),
        *(max(len(h) + g, need) for h, need in zip(grid.headers, cell_need, strict=True)),
    ]
    least = [
        max([_narrowest(grid.corner), *(_narrowest(label) for label in grid.labels)]),
        *(max(_narrowest(h) + g, need) for h, need in zip(grid.headers, cell_need, strict=True)),
    ]
    if style.total(least) > width:
        return None
    widths = list(widest)
    while style.total(widths) > width:
        i = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
    # Wrapping may leave a column wider than the lines it ended up with.
    widths[0] = max(
        len(line) for text in [grid.corner, *grid.labels] for line in wrap(text, widths[0])
    )
    for j, h in enumerate(grid.headers, start=1):
        head = max(len(line) for line in wrap(h, widths[j] - g)) + g
        widths[j] = max(cell_need[j - 1], head)
    return Fitted(grid, widths)


def _split(grid: Grid, style: Style, width: int) -> list[Fitted] | None:
    """Cut the data columns, left to right, into the fewest tables that each fit."""
    chunks: list[Fitted] = []
    current: list[int] = []
    last: Fitted | None = None
    for j in range(len(grid.headers)):
        trial = fit(grid.take([*current, j]), style, width)
        if trial is not None:
            current.append(j)
            last = trial
            continue
        if last is None:
            return None  # one column alone does not fit
        chunks.append(last)
        current, last = [j], fit(grid.take([j]), style, width)
        if last is None:
            return None
    if last is not None:
        chunks.append(last)
    return chunks


def arrange(grid: Grid, style: Style, width: int) -> list[Fitted] | None:
    """Lay ``grid`` out in ``width``: one table or several, or None (print records).

    See the module's docstring for the order in which layouts are tried.
    """
    shapes = [grid, grid.transpose()] if grid.transposable and grid.headers else [grid]
    for shape in shapes:
        one = fit(shape, style, width)
        if one is not None:
            return [one]
    options = [chunks for shape in shapes if (chunks := _split(shape, style, width))]
    return min(options, key=len) if options else None


def plain_lines(fitted: Fitted, style: Style = PLAIN) -> list[str]:
    """Draw a fitted grid as plain text: headers, a rule of dashes, then rows.

    The label column is left-aligned, data columns right-aligned; the best
    figure of a row gets ``*`` in the gutter right of it.
    """
    grid, widths = fitted.grid, fitted.widths
    gap = " " * style.sep

    def block(texts: list[list[str]], right: list[bool]) -> list[str]:
        height = max(len(t) for t in texts)
        out = []
        for k in range(height):
            parts = []
            for lines, w, r in zip(texts, widths, right, strict=True):
                text = lines[k] if k < len(lines) else ""
                parts.append(text.rjust(w) if r else text.ljust(w))
            out.append(gap.join(parts).rstrip())
        return out

    right = [False] + [True] * len(grid.headers)
    head = [wrap(grid.corner, widths[0])] + [
        [line + " " * style.gutter for line in wrap(h, w - style.gutter)]
        for h, w in zip(grid.headers, widths[1:], strict=True)
    ]
    lines = block(head, right)
    lines.append(gap.join("-" * w for w in widths))
    for label, row in zip(grid.labels, grid.cells, strict=True):
        texts = [wrap(label, widths[0])]
        for cell in row:
            marks = ["*" if cell.tone == "best" and k == 0 else " " for k in range(len(cell.lines))]
            texts.append(
                [line + m[: style.gutter] for line, m in zip(cell.lines, marks, strict=True)]
            )
        lines += block(texts, right)
    return lines


def record_lines(grid: Grid) -> list[str]:
    """One figure per line under its row label: the layout for very narrow terminals."""
    width = max((len(h) for h in grid.headers), default=0)
    out: list[str] = []
    for label, row in zip(grid.labels, grid.cells, strict=True):
        out.append(label)
        for header, cell in zip(grid.headers, row, strict=True):
            mark = " *" if cell.tone == "best" else ""
            out.append(f"  {header.ljust(width)}  {'  '.join(cell.lines)}{mark}".rstrip())
    return out


def fact_lines(facts: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Key and value lines (``kernel  6.1``), values wrapped at spaces to ``width``.

    When the keys leave less than 20 columns, each value goes under its key.
    """
    keyw = max((len(k) for k, _ in facts), default=0)
    room = width - keyw - 2
    out: list[str] = []
    for key, value in facts:
        if room < 20:
            out.append(key)
            out += ["  " + line for line in _words(value, width - 2)]
            continue
        lines = _words(value, room)
        out.append(f"{key.ljust(keyw)}  {lines[0]}".rstrip())
        out += [" " * (keyw + 2) + line for line in lines[1:]]
    return out


def _words(text: str, width: int) -> list[str]:
    """Break a value at spaces only (paths and versions keep their hyphens)."""
    return textwrap.wrap(text, max(width, 1), break_long_words=False, break_on_hyphens=False) or [
        ""
    ]
