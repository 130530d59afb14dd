"""One plotting style for the whole book, and small figure utilities.

Used by every chapter (``helpers.setup`` applies the style).
"""
from __future__ import annotations

import matplotlib

BOOK_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.framealpha": 0.85,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
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


def subplots(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.3, **kw):
    """``plt.subplots`` with a per-panel size, so multi-panel figures stay readable."""
    import matplotlib.pyplot as plt

    if nrows < 1 or ncols < 1:
        raise ValueError(f"subplots needs at least one row and column, got {nrows}x{ncols}.")
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


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
