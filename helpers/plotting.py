"""One plotting style for the whole book, and small figure utilities.

Used by every chapter (``helpers.setup`` applies the style); the figure functions of chapters 1, 3 and 5.
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


def _axes_pair(axes, what: str):
    try:
        pair = list(axes)
    except TypeError:
        pair = []
    if len(pair) != 2 or not all(hasattr(ax, "plot") for ax in pair):
        raise TypeError(f"{what} draws on two Axes; pass a pair such as subplots(1, 2)[1], got {axes!r}.")
    return pair


def quadratic_paths(axes, paths, curvatures, styles=None, xlim=(-5.0, 5.0), ylim=(-2.5, 2.5),
                    loss_ylim=(1e-4, 1e3), title: str = "Paths"):
    """Optimiser paths on a two-dimensional quadratic L(w) = ½ Σ_i a_i w_i², and the loss along them.

    Args:
        axes: two Axes: the paths over the contour lines of L, and L(w_t) against the step t (log axis).
        paths: {label: (T + 1, 2) array of iterates w_0, ..., w_T}.
        curvatures: the two curvatures (a_1, a_2) of L.
        styles: optional {label: dict of ``plot`` keywords}, e.g. ``{"GD": {"color": "k", "ls": "--"}}``;
            unstyled paths take the colours of :data:`PALETTE` in turn.
        xlim, ylim: the window of the contour plot. loss_ylim: the range of the loss axis.
        title: the title of the path panel.
    Returns:
        the two Axes. Used in chapter 1 (the GD / SGD / momentum explorer).
    """
    import numpy as np

    ax, ax_loss = _axes_pair(axes, "quadratic_paths")
    a = np.asarray(curvatures, dtype=float)
    if a.shape != (2,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"curvatures must be two positive numbers (a_1, a_2), got {curvatures!r}.")
    if not paths:
        raise ValueError("paths is empty; pass {label: (T + 1, 2) array of iterates}.")
    styles = {} if styles is None else dict(styles)
    unknown = set(styles) - set(paths)
    if unknown:
        raise ValueError(f"styles names paths that are not drawn: {sorted(unknown)}; paths are {list(paths)}.")
    g1, g2 = np.meshgrid(np.linspace(*xlim, 200), np.linspace(*ylim, 200))
    ax.contour(g1, g2, 0.5 * (a[0] * g1**2 + a[1] * g2**2), levels=12, colors="0.75", linewidths=0.8)
    for i, (label, p) in enumerate(paths.items()):
        p = np.asarray(p, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"path {label!r} must be a (T + 1, 2) array of iterates, got shape {p.shape}.")
        kw = {"color": PALETTE[i % len(PALETTE)], "ls": "-", **styles.get(label, {})}
        ax.plot(p[:, 0], p[:, 1], ".", ms=3, lw=1.2, label=label, **kw)
        loss_path = 0.5 * (a * p**2).sum(axis=1) + 1e-12  # + 1e-12: the minimum stays on the log axis
        ax_loss.semilogy(loss_path, label=label, **kw)
    ax.set(xlim=xlim, ylim=ylim, xlabel="w₁", ylabel="w₂", title=title)
    ax_loss.set(xlabel="step", ylabel="loss L(w)", ylim=loss_ylim, title="Loss along the paths")
    ax.legend(fontsize=8, loc="lower right")
    return ax, ax_loss


def esd_with_mp_fit(ax, eigenvalues, ratio: float, bins: int = 40, title: str = "",
                    xlabel: str = "eigenvalue λ"):
    """A histogram of eigenvalues on a log density axis with the fitted Marchenko-Pastur density.

    Args:
        ax: the Axes. eigenvalues: (n,) eigenvalues of W W^T / N of a layer (``weight_spectra``).
        ratio: c = n / N of the layer. bins: histogram bins. title, xlabel: the labels.
    Returns:
        the :class:`helpers.random_matrix.MPFit` drawn. Used in chapter 3.
    """
    import numpy as np
    from matplotlib.ticker import NullFormatter

    from . import random_matrix as rmt

    ev = np.asarray(eigenvalues, dtype=float)
    if ev.ndim != 1 or ev.size < 2 or not np.all(np.isfinite(ev)):
        raise ValueError(f"eigenvalues must be a 1-D array of at least 2 finite values, got shape {ev.shape}.")
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    fit = rmt.mp_fit(ev, ratio)
    ax.hist(ev, bins=bins, density=True, color=PALETTE[0], alpha=0.6)
    x = np.linspace(fit.lower, fit.upper, 300)
    ax.plot(x, rmt.marchenko_pastur_pdf(x, ratio, fit.sigma2), color=PALETTE[3], lw=1.8)
    ax.set(xlabel=xlabel, ylabel="density", yscale="log", title=title)
    ax.yaxis.set_minor_formatter(NullFormatter())
    return fit


def penalty_strength_sweep(axes, results, strength: float, strengths, methods):
    """A sweep over the strength λ of continual-learning penalties: the curves at one λ, the best sums at all.

    Args:
        axes: two Axes: task-A and task-B test accuracy per epoch of task-B training at ``strength`` (one line
            style per method), and the best A + B sum over the epochs against λ (log axis), ``strength`` marked.
        results: {``f"{method}_{λ:g}_{task}"``: (epochs,) accuracies in [0, 1]}, tasks ``A`` and ``B``, NaN for
            a diverged run (drawn at zero), as :func:`helpers.forgetting.strength_sweep` returns.
        strength: the λ whose curves are drawn (one of ``strengths``). strengths: the λ of the sweep.
        methods: {method: label}, e.g. ``{"hessian": "L_cf", "sv": "L_sv"}`` (at most four).
    Returns:
        the two Axes. Used in chapter 5.
    """
    import numpy as np

    ax1, ax2 = _axes_pair(axes, "penalty_strength_sweep")
    lams = np.asarray(strengths, dtype=float)
    if lams.ndim != 1 or lams.size == 0 or np.any(lams <= 0):
        raise ValueError(f"strengths must be a non-empty list of positive λ, got {strengths!r}.")
    if strength not in list(lams):
        raise ValueError(f"strength {strength!r} is not in the sweep {list(strengths)}; pick one of them.")
    if not methods or len(methods) > 4:
        raise ValueError(f"methods must map 1-4 method names to labels, got {methods!r}.")
    missing = [f"{m}_{l:g}_{t}" for m in methods for l in lams for t in "AB" if f"{m}_{l:g}_{t}" not in results]
    if missing:
        raise ValueError(f"results lack {missing[:3]}...; pass the dict of forgetting.strength_sweep.")

    def acc(method, lam, task):
        return np.asarray(results[f"{method}_{lam:g}_{task}"], dtype=float)

    for (method, label), ls in zip(methods.items(), ("-", "--", ":", "-.")):
        for task, c in (("A", PALETTE[0]), ("B", PALETTE[1])):
            y = 100 * acc(method, strength, task)
            ax1.plot(np.arange(1, len(y) + 1), np.nan_to_num(y), ls, color=c, label=f"{label}, {task}")
    ax1.set(xlabel="epoch of task-B training", ylabel="test accuracy (%)", ylim=(-5, 105),
            title=f"λ = {strength:g}")
    ax1.legend(fontsize=8, loc="center right")
    for i, ((method, label), fmt) in enumerate(zip(methods.items(), ("o-", "s--", "^:", "D-."))):
        sums = [np.nan_to_num(100 * (acc(method, l, "A") + acc(method, l, "B"))).max() for l in lams]
        ax2.semilogx(lams, sums, fmt, color=PALETTE[2 + i], label=label)
    ax2.axvline(strength, color="0.5", lw=1)
    ax2.set(xlabel="strength λ", ylabel="best A + B (%)", title="Sum at the selected epoch")
    ax2.legend(fontsize=8, loc="lower left")
    return ax1, ax2


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
