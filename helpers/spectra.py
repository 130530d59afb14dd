"""Spectral densities and distances between spectra.

A spectrum is given either exactly (eigenvalues, equal weights) or as stochastic Lanczos quadrature nodes
with their weights; the functions below treat both the same way, as a discrete probability measure
``sum_i w_i delta(t - lambda_i)``.

- :func:`smoothed_density`: the Gaussian-smoothed density ``phi_sigma`` (003; 000 Fig. 7.15);
- :func:`wasserstein_distance`: Wasserstein-1 (earth mover's) distance between two spectra, optionally
  normalised (003 Fig. 3 compares layer and full-network spectra this way);
- :func:`jensen_shannon_distance`: Jensen-Shannon distance between two smoothed densities (003 Fig. 12);
- :func:`count_outliers`: how many eigenvalues stand apart from the bulk (F-OUT, F-LAYEROUT).

Used in chapter 4.
"""
from __future__ import annotations

import numpy as np

__all__ = ["smoothed_density", "wasserstein_distance", "jensen_shannon_distance", "count_outliers",
           "spectral_width"]


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
