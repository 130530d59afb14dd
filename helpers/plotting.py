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
