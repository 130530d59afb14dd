"""One plotting style for the whole book, and small figure utilities.

Used by every chapter (``helpers.setup`` applies the style).
"""
from __future__ import annotations

import matplotlib

#: the width of the book's text column, in inches: (6.7 + 2 x 0.05 padding) x 110 dpi = 748 px, inside the
#: content column of the HTML theme at a 1400 px window (about 750-800 px), so a figure is shown at its natural
#: size and a 9 pt tick label stays 14 px high on the page.
TEXT_WIDTH = 6.7
#: the most panels one row of a figure may hold (two is the norm, three for small multiples)
MAX_COLUMNS = 3
#: a panel is never drawn lower than this (inches): below it the axis labels crowd the data
MIN_PANEL_HEIGHT = 2.3

BOOK_STYLE = {
    "figure.figsize": (TEXT_WIDTH, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "figure.titlesize": 11,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.85,
    "legend.loc": "best",
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "image.cmap": "viridis",
    "figure.constrained_layout.use": True,
}

#: a colour per class / curve, colour-blind safe (Okabe-Ito)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def use_book_style() -> None:
    """Apply the book's matplotlib style (labels readable in the rendered HTML)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(BOOK_STYLE)
    plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=PALETTE)


def figure_size(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.3) -> tuple[float, float]:
    """The figure size (inches) of ``nrows`` x ``ncols`` panels of ``width`` x ``height``, fitted to the text column.

    A row wider than :data:`TEXT_WIDTH` is scaled down to it (the panel height by the same factor, but not
    below :data:`MIN_PANEL_HEIGHT`), so the page never shrinks the image and its fonts.
    """
    if nrows < 1 or ncols < 1:
        raise ValueError(f"a figure needs at least one row and column, got {nrows}x{ncols}.")
    if ncols > MAX_COLUMNS:
        raise ValueError(f"{ncols} panels in a row are unreadable in the text column; use at most "
                         f"{MAX_COLUMNS} columns and more rows (e.g. {-(-ncols // 2)}x2).")
    if width <= 0 or height <= 0:
        raise ValueError(f"panel width and height must be positive, got {width} x {height} inches.")
    scale = min(1.0, TEXT_WIDTH / (width * ncols))
    panel_height = max(height * scale, min(height, MIN_PANEL_HEIGHT))
    return width * ncols * scale, panel_height * nrows


def subplots(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.3, **kw):
    """``plt.subplots`` with a per-panel size, fitted to the text column (:func:`figure_size`).

    Used by every chapter and by ``helpers.widgets``.
    """
    import matplotlib.pyplot as plt

    if nrows < 1 or ncols < 1:
        raise ValueError(f"subplots needs at least one row and column, got {nrows}x{ncols}.")
    return plt.subplots(nrows, ncols, figsize=figure_size(nrows, ncols, width, height), **kw)


def heatmap(ax, values, colorbar: str | None = None, **kw):
    """Draw a matrix on ``ax`` with ``imshow`` and no grid lines over it; returns the image.

    ``colorbar``: a label for a colour bar beside the axes (none when ``None``). Used in chapters 2, 3 and 5.
    """
    import numpy as np

    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D array, got shape {values.shape}.")
    kw.setdefault("origin", "lower")
    image = ax.imshow(values, **kw)
    ax.grid(False)
    if colorbar is not None:
        ax.figure.colorbar(image, ax=ax, label=colorbar, shrink=0.9)
    return image


class _Table:
    """A table that renders as HTML in the built book and as Markdown in plain notebook front ends."""

    def __init__(self, header: list, rows: list):
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in r] for r in rows]

    def _repr_markdown_(self) -> str:
        out = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def show_table(header, rows):
    """Display a table (a header list and a list of rows): HTML in the built book, Markdown elsewhere.

    Myst-NB renders Markdown outputs as CommonMark, which has no tables; the HTML form avoids that.
    Used in chapter 1 and by ``helpers.findings.table``.
    """
    if not header or any(len(r) != len(header) for r in rows):
        raise ValueError("show_table needs a non-empty header and rows of the same length as the header.")
    table = _Table(list(header), [list(r) for r in rows])
    try:
        from IPython.display import display

        display(table)
    except ImportError:  # pragma: no cover
        print(table._repr_markdown_())
    return table
