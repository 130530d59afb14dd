"""Spectral densities and distances between spectra.

A spectrum is given either exactly (eigenvalues, equal weights) or as stochastic Lanczos quadrature nodes
with their weights; the functions below treat both the same way, as a discrete probability measure
``sum_i w_i delta(t - lambda_i)``.

- :func:`smoothed_density`: the Gaussian-smoothed density ``phi_sigma`` (003; 000 Fig. 7.15);
- :func:`wasserstein_distance`: Wasserstein-1 (earth mover's) distance between two spectra, optionally
  normalised (003 Fig. 3 compares layer and full-network spectra this way);
- :func:`jensen_shannon_distance`: Jensen-Shannon distance between two smoothed densities (003 Fig. 12);
- :func:`count_outliers`: eigenvalues above the first resolvable gap above the median (F-INIT);
- :func:`ratio_outliers`: outliers above the largest ratio of consecutive top eigenvalues, and the bulk
  edge (F-OUT, F-LAYEROUT);
- :func:`unfold_gaussian` and :func:`mean_spacing_ratio`: the whole-spectrum unfolding of 000 and the
  unfolding-free spacing-ratio statistic (F-NOTRANDOM diagnostics).

Used in chapter 4.
"""
from __future__ import annotations

import numpy as np

__all__ = ["smoothed_density", "plot_density", "wasserstein_distance", "jensen_shannon_distance", "count_outliers",
           "spectral_width", "ratio_outliers", "unfold_gaussian", "mean_spacing_ratio"]


def _measure(values, weights, name):
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name} is empty; pass at least one eigenvalue.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if weights is None:
        w = np.full(x.size, 1.0 / x.size)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != x.shape:
            raise ValueError(f"weights for {name} must have the same length as the values ({x.size}), got {w.size}.")
        if np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise ValueError(f"weights for {name} must be finite, non-negative and not all zero.")
        w = w / w.sum()
    return x, w


def spectral_width(values) -> float:
    """``max - min`` of a spectrum (the scale on which I-SLQ's 2% tolerance is measured)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("spectral_width of an empty spectrum is undefined.")
    return float(x.max() - x.min())


def smoothed_density(values, grid=None, sigma: float | None = None, weights=None,
                     num_points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed spectral density ``phi(t) = sum_i w_i exp(-(t - lambda_i)^2 / 2 sigma^2) / sqrt(2 pi) sigma``.

    Args:
        values: (n,) eigenvalues or quadrature nodes.
        grid: (g,) evaluation points; default ``num_points`` points over the spectrum +- 3 sigma.
        sigma: kernel width (> 0); default 1% of the spectral width (1e-3 if the width is zero).
        weights: (n,) non-negative weights (default equal); normalised to sum to one.
    Returns:
        (grid, density), each (g,). Used in chapter 4.
    """
    x, w = _measure(values, weights, "values")
    width = float(x.max() - x.min())
    if sigma is None:
        sigma = 0.01 * width if width > 0 else 1e-3
    if not np.isscalar(sigma) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
    if grid is None:
        if not isinstance(num_points, (int, np.integer)) or num_points < 2:
            raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}.")
        grid = np.linspace(x.min() - 3 * sigma, x.max() + 3 * sigma, int(num_points))
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)
    if grid.size < 2:
        raise ValueError("grid needs at least two points.")
    dens = np.zeros_like(grid)
    # chunk over eigenvalues so a dense spectrum of ~1e4 values and a 1e3 grid stay small in memory
    step = max(1, 2_000_000 // grid.size)
    for i in range(0, x.size, step):
        d = (grid[:, None] - x[None, i:i + step]) / sigma
        dens += np.exp(-0.5 * d * d) @ w[i:i + step]
    return grid, dens / (np.sqrt(2 * np.pi) * sigma)


def plot_density(ax, values, weights=None, sigma: float | None = None, num_points: int = 800,
                 floor: float = 1e-5, **line_kw):
    """Draw the smoothed spectral density of :func:`smoothed_density` on a logarithmic density axis.

    A log axis keeps single outlying eigenvalues visible next to the bulk; densities below ``floor`` are
    drawn at ``floor`` so that the empty gaps between outliers stay on the axis.

    Args:
        ax: a Matplotlib axes. values, weights, sigma, num_points: as :func:`smoothed_density`.
        floor: the smallest density drawn (> 0). line_kw: passed to ``ax.semilogy`` (label, color, ls, ...).
    Returns:
        The Matplotlib line. Used in chapter 4 (the full and the layerwise spectra).
    """
    if not hasattr(ax, "semilogy"):
        raise TypeError(f"ax must be a Matplotlib axes, got {type(ax).__name__}.")
    if not np.isscalar(floor) or not np.isfinite(floor) or floor <= 0:
        raise ValueError(f"floor must be a positive number (the density axis is logarithmic), got {floor!r}.")
    grid, dens = smoothed_density(values, sigma=sigma, weights=weights, num_points=num_points)
    (line,) = ax.semilogy(grid, np.maximum(dens, floor), **line_kw)
    return line


def wasserstein_distance(values_a, values_b, weights_a=None, weights_b=None, normalize: str | None = None) -> float:
    """Wasserstein-1 distance ``int |F_a(t) - F_b(t)| dt`` between two spectra (discrete measures).

    Args:
        values_a, values_b: eigenvalues (or SLQ nodes) of the two spectra.
        weights_a, weights_b: optional weights (SLQ quadrature weights); default equal.
        normalize: None (raw, in eigenvalue units); ``"width"``: divide by the spectral width of the union
            of both spectra; ``"scale"``: rescale each spectrum by its own largest ``|lambda|`` first (compares
            shapes only).
    Returns:
        the distance (float >= 0). Used in chapter 4 (I-SLQ, F-MIDDLE).
    """
    from scipy import stats

    xa, wa = _measure(values_a, weights_a, "values_a")
    xb, wb = _measure(values_b, weights_b, "values_b")
    if normalize == "scale":
        sa, sb = np.abs(xa).max(), np.abs(xb).max()
        xa = xa / sa if sa > 0 else xa
        xb = xb / sb if sb > 0 else xb
    d = float(stats.wasserstein_distance(xa, xb, wa, wb))
    if normalize == "width":
        width = max(xa.max(), xb.max()) - min(xa.min(), xb.min())
        d = d / width if width > 0 else 0.0
    elif normalize not in (None, "scale"):
        raise ValueError(f"normalize must be None, 'width' or 'scale', got {normalize!r}.")
    return d


def jensen_shannon_distance(density_a, density_b) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2, in [0, 1]) of two densities on one grid.

    Args:
        density_a, density_b: (g,) non-negative densities evaluated on the same grid (e.g. from
            :func:`smoothed_density` with a common ``grid``); each is normalised to sum to one.
    Returns:
        the distance; 0 for identical densities, 1 for disjoint supports. Used in chapter 4 (F-MIDDLE).
    """
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(density_a, dtype=np.float64).reshape(-1)
    q = np.asarray(density_b, dtype=np.float64).reshape(-1)
    if p.shape != q.shape:
        raise ValueError(f"both densities must be on the same grid; got lengths {p.size} and {q.size}.")
    for name, d in (("density_a", p), ("density_b", q)):
        if np.any(d < 0) or not np.all(np.isfinite(d)) or d.sum() <= 0:
            raise ValueError(f"{name} must be finite, non-negative and not all zero.")
    p, q = p / p.sum(), q / q.sum()
    # values that vanish when halved (subnormals) would make the mixture zero where p > 0: treat them as zero
    p[p < 1e-290] = 0.0
    q[q < 1e-290] = 0.0
    return float(jensenshannon(p, q, base=2))


def count_outliers(eigenvalues, sigma: float | None = None) -> int:
    """Number of eigenvalues separated from the bulk: those above the first resolvable gap above the median.

    In the Gaussian-smoothed density of width ``sigma`` two neighbouring eigenvalues appear as separate peaks
    exactly when they are more than ``2 sigma`` apart (a mixture of two equal Gaussians is bimodal iff the
    separation exceeds twice their width). Walking up the sorted spectrum from its median, the bulk ends at
    the first gap larger than ``2 sigma``; every eigenvalue above that gap is an outlier: it shows as its own
    spike (or a separate group of spikes) in the density plot.

    Args:
        eigenvalues: (n,) the spectrum (n >= 3).
        sigma: smoothing width; default 1% of the spectral width ``max - min`` (the plots' default).
    Returns:
        the number of outliers (0 if no gap above the median exceeds ``2 sigma``).
        Used in chapter 4 (F-OUT, F-INIT, F-LAYEROUT).
    """
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).reshape(-1))
    if x.size < 3:
        raise ValueError("count_outliers needs at least three eigenvalues.")
    if not np.all(np.isfinite(x)):
        raise ValueError("count_outliers: the eigenvalues contain NaN or infinite values.")
    if sigma is None:
        sigma = 0.01 * (x[-1] - x[0])
    if not np.isscalar(sigma) or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}.")
    start = x.size // 2
    gaps = np.diff(x[start:])
    big = np.nonzero(gaps > 2.0 * sigma)[0]
    if big.size == 0:
        return 0
    return int(x.size - (start + big[0] + 1))


def ratio_outliers(eigenvalues, max_outliers: int) -> tuple[int, float]:
    """Outliers above the largest ratio of consecutive eigenvalues among the top ``max_outliers + 1``.

    Sort the positive eigenvalues in decreasing order, ``lambda_1 >= lambda_2 >= ...``, and find the ``k`` in
    ``1 .. max_outliers`` with the largest ratio ``lambda_k / lambda_{k+1}`` (the largest gap on a
    logarithmic axis): the ``k`` eigenvalues above that gap are the outliers and the bulk edge is the
    geometric mean ``sqrt(lambda_k lambda_{k+1})``. Unlike the first gap above the median
    (:func:`count_outliers`), this does not count a bulk shoulder whose eigenvalues are spaced wider
    than the smoothing width, and it needs no smoothing width at all.

    Args:
        eigenvalues: (n,) the spectrum; it needs at least ``max_outliers + 1`` positive eigenvalues.
        max_outliers: how many outliers at most can be found (chapter 4 uses ``3 C`` for ``C`` classes).
    Returns:
        (number of outliers, bulk edge). Used in chapter 4 (F-OUT, F-INIT, F-LAYEROUT).
    """
    x = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("ratio_outliers: the eigenvalues contain NaN or infinite values.")
    if isinstance(max_outliers, bool) or not isinstance(max_outliers, (int, np.integer)) \
            or max_outliers < 1:
        raise ValueError(f"max_outliers must be a positive integer, got {max_outliers!r}.")
    top = np.sort(x[x > 0])[::-1][: max_outliers + 1]
    if top.size < max_outliers + 1:
        raise ValueError(f"ratio_outliers needs at least max_outliers + 1 = {max_outliers + 1} positive "
                         f"eigenvalues, got {top.size}; pass a smaller max_outliers.")
    k = int(np.argmax(top[:-1] / top[1:])) + 1
    return k, float(np.sqrt(top[k - 1] * top[k]))


def unfold_gaussian(eigenvalues, sigma: float = 1.0) -> np.ndarray:
    """Unfold a whole spectrum with a Gaussian kernel of width ``sigma`` (000 Sec. 7.5, Fig. 7.16).

    The smoothed counting function ``N(t) = sum_j Phi((t - lambda_j) / sigma)`` (``Phi`` the standard
    normal distribution function) replaces the staircase of eigenvalues below ``t``; the unfolded
    spectrum is ``xi_i = N(lambda_i)``. Near-degenerate eigenvalues are kept as they are.

    Args:
        eigenvalues: (n,) the spectrum (n >= 2), any order. sigma: kernel width (> 0), eigenvalue units.
    Returns:
        (n,) the unfolded values, in increasing order. Used in chapter 4 (F-NOTRANDOM).
    """
    from scipy.special import ndtr

    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).reshape(-1))
    if x.size < 2:
        raise ValueError("unfold_gaussian needs at least two eigenvalues.")
    if not np.all(np.isfinite(x)):
        raise ValueError("unfold_gaussian: the eigenvalues contain NaN or infinite values.")
    if not np.isscalar(sigma) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
    out = np.empty_like(x)
    step = max(1, 4_000_000 // x.size)  # chunks keep the (chunk, n) kernel matrix small
    for i in range(0, x.size, step):
        out[i:i + step] = ndtr((x[i:i + step, None] - x[None, :]) / sigma).sum(axis=1)
    return out


def mean_spacing_ratio(eigenvalues) -> float:
    """The mean ratio of consecutive spacings ``<r>``, ``r_i = min(s_i, s_{i+1}) / max(s_i, s_{i+1})``.

    ``<r>`` needs no unfolding (the local density cancels in the ratio); it is about 0.386 for
    uncorrelated (Poisson) levels and 0.531 for the GOE (Atas et al. 2013). Pairs of zero spacings are
    skipped.

    Args:
        eigenvalues: (n,) the spectrum (n >= 3), any order.
    Returns:
        ``<r>`` in [0, 1]. Used in chapter 4 (F-NOTRANDOM).
    """
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).reshape(-1))
    if x.size < 3:
        raise ValueError("mean_spacing_ratio needs at least three eigenvalues.")
    if not np.all(np.isfinite(x)):
        raise ValueError("mean_spacing_ratio: the eigenvalues contain NaN or infinite values.")
    s = np.diff(x)
    lo, hi = np.minimum(s[:-1], s[1:]), np.maximum(s[:-1], s[1:])
    keep = hi > 0
    if not np.any(keep):
        raise ValueError("mean_spacing_ratio: every spacing is zero (all eigenvalues are equal).")
    return float(np.mean(lo[keep] / hi[keep]))
