"""Random-matrix tools: Marchenko-Pastur law, unfolding and level spacings, Wigner surmise, Porter-Thomas,
inverse participation ratio and a power-law tail fit.

These are the null models against which the book compares trained weight matrices (chapter 3) and Hessian
spectra and eigenvectors (chapter 4). Everything here works on NumPy arrays of eigenvalues, singular values
or eigenvectors (the statistics are edge computations, not TensorFlow graphs) in float64.

Conventions:

- Marchenko-Pastur: for an ``n x m`` matrix ``X`` with i.i.d. entries of variance ``sigma2`` the eigenvalues
  of ``X X^T / m`` follow, as ``n, m -> inf`` with ``ratio = n / m`` fixed, the density
  ``rho(x) = sqrt((x_+ - x)(x - x_-)) / (2 pi sigma2 ratio x)`` on ``[x_-, x_+]``,
  ``x_pm = sigma2 (1 pm sqrt(ratio))^2`` (for ``ratio > 1`` a mass ``1 - 1/ratio`` sits at zero).
- Spacings are of *unfolded* spectra: the smooth part of the counting function is removed so the mean
  spacing is one (000 Sec. 4, Fig. 7.16).
- The Porter-Thomas law (000 eq. 7.7): the components ``v_i`` of a random unit vector of length ``N`` are
  approximately ``N(0, 1/N)``, so ``N v_i^2`` follows chi-square with one degree of freedom.

The Meng-Yao spectral criterion of chapter 3 builds on :func:`marchenko_pastur_cdf` and
:func:`mp_ks_distance` (a KS distance between an empirical spectrum and the MP law).

Used in chapters 3 and 4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "mp_edges", "marchenko_pastur_pdf", "marchenko_pastur_cdf", "mp_fit", "MPFit", "mp_ks_distance",
    "empirical_spectral_density", "unfold", "level_spacings", "wigner_surmise", "wigner_surmise_pdf",
    "wigner_surmise_cdf", "spacing_ks_test", "porter_thomas_test", "inverse_participation_ratio",
    "power_law_tail_fit", "PowerLawFit", "goe_matrix", "brody_levels", "KSResult", "wishart_eigenvalues",
]


@dataclass
class KSResult:
    """A Kolmogorov-Smirnov test: statistic (sup distance of the CDFs), p-value and sample size."""
    statistic: float
    pvalue: float
    n: int


# ----------------------------------------------------------------------------------------------- helpers
def _as_1d(values, name: str, min_size: int = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        a = a.reshape(-1) if a.ndim == 0 else a
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}; pass e.g. the eigenvalues as a vector.")
    if a.size < min_size:
        raise ValueError(f"{name} needs at least {min_size} values, got {a.size}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; remove them before calling.")
    return a


def _check_ratio(ratio) -> float:
    if not np.isscalar(ratio) or not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio (n/m, the aspect ratio) must be a positive number, got {ratio!r}.")
    return float(ratio)


def _check_sigma2(sigma2) -> float:
    if not np.isscalar(sigma2) or not np.isfinite(sigma2) or sigma2 <= 0:
        raise ValueError(f"sigma2 (the entry variance) must be a positive number, got {sigma2!r}.")
    return float(sigma2)


# ------------------------------------------------------------------------------------- Marchenko-Pastur
def mp_edges(ratio: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Edges ``(x_-, x_+) = sigma2 (1 -+ sqrt(ratio))^2`` of the Marchenko-Pastur bulk.

    Args:
        ratio: aspect ratio ``n / m`` of the ``n x m`` matrix (eigenvalues of ``X X^T / m``).
        sigma2: variance of the entries.
    Returns:
        (lower, upper) edges. Used in chapters 3 and 4.
    """
    ratio, sigma2 = _check_ratio(ratio), _check_sigma2(sigma2)
    r = np.sqrt(ratio)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


def marchenko_pastur_pdf(x, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Marchenko-Pastur density ``sqrt((x_+ - x)(x - x_-)) / (2 pi sigma2 ratio x)`` (000 Sec. 3.4).

    Args:
        x: points (any shape).
        ratio: ``n / m``; for ``ratio > 1`` only the continuous part is returned (it integrates to
            ``1 / ratio``; the rest is an atom at zero).
        sigma2: variance of the entries.
    Returns:
        the density at ``x`` (zero outside the bulk). Used in chapters 3 and 4.
    """
    ratio, sigma2 = _check_ratio(ratio), _check_sigma2(sigma2)
    x = np.asarray(x, dtype=np.float64)
    lo, hi = mp_edges(ratio, sigma2)
    inside = (x > lo) & (x < hi) & (x > 0)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = np.sqrt((hi - xi) * (xi - lo)) / (2.0 * np.pi * sigma2 * ratio * xi)
    return out


def marchenko_pastur_cdf(x, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Cumulative distribution of the Marchenko-Pastur law (including the atom at 0 when ``ratio > 1``).

    Computed by Gauss-Legendre quadrature of :func:`marchenko_pastur_pdf` after the substitution
    ``x = x_- + (x_+ - x_-)(1 - cos t) / 2``, which removes the square-root endpoint singularities.

    Args:
        x: points (any shape). ratio, sigma2: as :func:`marchenko_pastur_pdf`.
    Returns:
        F(x) in [0, 1]. Used in chapters 3 and 4.
    """
    ratio, sigma2 = _check_ratio(ratio), _check_sigma2(sigma2)
    x = np.asarray(x, dtype=np.float64)
    lo, hi = mp_edges(ratio, sigma2)
    atom = max(0.0, 1.0 - 1.0 / ratio)
    # t in [0, pi] maps to [lo, hi]; integrate rho(x(t)) x'(t) dt from 0 to t(x)
    t = np.arccos(np.clip(1.0 - 2.0 * (np.clip(x, lo, hi) - lo) / (hi - lo), -1.0, 1.0))
    nodes, weights = np.polynomial.legendre.leggauss(64)
    # integral over [0, t]: map nodes from [-1, 1] to [0, t]
    tt = 0.5 * (nodes[None, :] + 1.0) * t.reshape(-1, 1)
    xs = lo + 0.5 * (hi - lo) * (1.0 - np.cos(tt))
    dx = 0.5 * (hi - lo) * np.sin(tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = np.sqrt(np.clip((hi - xs) * (xs - lo), 0, None)) / (2 * np.pi * sigma2 * ratio * xs) * dx
    integrand = np.nan_to_num(integrand)
    cont = 0.5 * t.reshape(-1) * (integrand @ weights)
    cdf = atom * (x.reshape(-1) >= 0) + cont
    return np.clip(cdf, 0.0, 1.0).reshape(x.shape)


def mp_ks_distance(eigenvalues, ratio: float, sigma2: float = 1.0) -> float:
    """Kolmogorov-Smirnov distance ``sup |F_emp - F_MP|`` between a spectrum and the MP law.

    Args:
        eigenvalues: (n,) eigenvalues of ``X X^T / m`` (or squared singular values divided by ``m``).
        ratio, sigma2: MP parameters.
    Returns:
        the KS distance in [0, 1]. Used in chapter 3 (I-MP).
    """
    ev = np.sort(_as_1d(eigenvalues, "eigenvalues"))
    n = ev.size
    F = marchenko_pastur_cdf(ev, ratio, sigma2)
    upper = np.arange(1, n + 1) / n - F
    lower = F - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


@dataclass
class MPFit:
    """A Marchenko-Pastur fit: entry variance, bulk edges, how many eigenvalues lie above the bulk."""
    sigma2: float
    lower: float
    upper: float
    num_outliers: int
    ks_distance: float


def mp_fit(eigenvalues, ratio: float, max_iter: int = 100, tol: float = 1e-10) -> MPFit:
    """Fit the MP bulk to a spectrum that may contain outliers above it.

    The MP law has mean ``sigma2``; the fit iterates ``sigma2 <- mean of the eigenvalues below the upper
    edge x_+(sigma2)`` (the outliers above the edge are excluded) until it stops changing, which makes it
    robust to a few large outliers.

    Args:
        eigenvalues: (n,) non-negative eigenvalues of ``W W^T / m`` for an ``n x m`` weight matrix.
        ratio: ``n / m`` (use ``min(n, m) / max(n, m)`` with the smaller Gram matrix).
    Returns:
        :class:`MPFit` (sigma2, edges, number of outliers above ``x_+``, KS distance of the bulk).
        Used in chapter 3.
    """
    ev = _as_1d(eigenvalues, "eigenvalues", min_size=2)
    if np.any(ev < -1e-12 * max(1.0, np.abs(ev).max())):
        raise ValueError("mp_fit needs non-negative eigenvalues (of a Gram matrix W W^T / m).")
    ratio = _check_ratio(ratio)
    sigma2 = float(np.mean(ev))
    if sigma2 <= 0:
        raise ValueError("mp_fit: all eigenvalues are zero; there is no bulk to fit.")
    for _ in range(max_iter):
        _, hi = mp_edges(ratio, sigma2)
        bulk = ev[ev <= hi]
        new = float(np.mean(bulk)) if bulk.size else sigma2
        if abs(new - sigma2) <= tol * sigma2:
            sigma2 = new
            break
        sigma2 = new
    lo, hi = mp_edges(ratio, sigma2)
    bulk = ev[ev <= hi]
    return MPFit(sigma2=sigma2, lower=lo, upper=hi, num_outliers=int(np.sum(ev > hi)),
                 ks_distance=mp_ks_distance(bulk, ratio, sigma2) if bulk.size else 1.0)


# --------------------------------------------------------------------------------- spectral densities
def empirical_spectral_density(eigenvalues, grid=None, sigma: float | None = None, weights=None,
                               num_points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed empirical spectral density ``phi(t) = sum_i w_i N(t; lambda_i, sigma^2)``.

    This is the density of 000 Fig. 7.15 and of 003 (``phi_sigma``), for an exact spectrum (weights
    ``1/n``) or for Lanczos nodes with their quadrature weights.

    Args:
        eigenvalues: (n,) eigenvalues or quadrature nodes.
        grid: (g,) points at which to evaluate; default ``num_points`` points spanning the spectrum
            plus 3 sigma on each side.
        sigma: kernel width; default 1% of the spectral width (or 1e-3 for a degenerate spectrum).
        weights: (n,) non-negative weights (default ``1/n``); they are normalised to sum to one.
    Returns:
        (grid, density), each (g,); the density integrates to about one over the grid. Used in chapter 4.
    """
    from .spectra import smoothed_density

    return smoothed_density(eigenvalues, grid=grid, sigma=sigma, weights=weights, num_points=num_points)


# ------------------------------------------------------------------------------ unfolding and spacings
def unfold(eigenvalues, method: str = "polynomial", degree: int = 9, smoothing: float | None = None,
           trim: float = 0.0, window: int | None = None) -> np.ndarray:
    """Unfold a spectrum: map each eigenvalue through a smooth fit of the counting function ``N(lambda)``.

    ``N(lambda)`` counts eigenvalues ``<= lambda``; its smooth part ``N_s`` (a polynomial of ``degree`` in a
    rescaled variable, or a smoothing spline) carries the density, its fluctuations carry the correlations.
    The unfolded values ``N_s(lambda_i)`` have mean spacing one, so spacings of different spectra compare.

    Args:
        eigenvalues: (n,) eigenvalues (any order; sorted internally), n >= degree + 2.
        method: ``"polynomial"`` (least-squares Chebyshev polynomial, default), ``"spline"`` (scipy
            ``UnivariateSpline`` with smoothing ``smoothing``, default ``n``) or ``"local"`` (each spacing
            divided by the mean of the ``2 window + 1`` spacings around it: follows a density that varies
            over orders of magnitude, as a Hessian spectrum does).
        degree: polynomial degree (or spline degree <= 5 for ``"spline"``; default 3 then).
        trim: fraction of eigenvalues dropped at each end before returning (edge effects), in [0, 0.5).
        window: half-width of the local average for ``"local"`` (default 10).
    Returns:
        (n') unfolded, sorted values. Used in chapters 3 and 4.
    """
    ev = np.sort(_as_1d(eigenvalues, "eigenvalues", min_size=4))
    if not (0.0 <= trim < 0.5):
        raise ValueError(f"trim must be a fraction in [0, 0.5), got {trim!r}.")
    n = ev.size
    counts = np.arange(1, n + 1, dtype=np.float64)
    span = ev[-1] - ev[0]
    if span <= 0:
        raise ValueError("unfold: all eigenvalues are equal; there is no spectrum to unfold.")
    z = 2.0 * (ev - ev[0]) / span - 1.0
    if method == "polynomial":
        if not isinstance(degree, (int, np.integer)) or degree < 1:
            raise ValueError(f"degree must be a positive integer, got {degree!r}.")
        if n < degree + 2:
            raise ValueError(f"unfold with degree {degree} needs at least {degree + 2} eigenvalues, got {n}.")
        poly = np.polynomial.Chebyshev.fit(z, counts, degree)
        smooth = poly(z)
    elif method == "local":
        # local unfolding: each spacing divided by the mean of its 2*window+1 neighbours (the local density)
        from scipy.ndimage import uniform_filter1d

        k = 10 if window is None else int(window)
        if k < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}.")
        gaps = np.diff(ev)
        local = uniform_filter1d(gaps, 2 * k + 1, mode="nearest")
        if np.any(local <= 0):
            raise ValueError("unfold(method='local'): a run of identical eigenvalues has zero local spacing; "
                             "remove exactly degenerate eigenvalues (e.g. a null space) first.")
        smooth = np.concatenate([[0.0], np.cumsum(gaps / local)])
    elif method == "spline":
        from scipy.interpolate import UnivariateSpline

        k = 3 if degree > 5 else int(degree)
        zz, idx = np.unique(z, return_index=True)
        spl = UnivariateSpline(zz, counts[idx], k=k, s=float(n) if smoothing is None else float(smoothing))
        smooth = spl(z)
    else:
        raise ValueError(f"unknown unfolding method {method!r}; use 'polynomial', 'spline' or 'local'.")
    cut = int(np.floor(trim * n))
    return np.sort(smooth[cut:n - cut] if cut else smooth)


def level_spacings(eigenvalues, unfolded: bool = False, normalize: bool = True, **unfold_kw) -> np.ndarray:
    """Nearest-neighbour spacings ``s_i = e_{i+1} - e_i`` of an (unfolded) spectrum, mean one.

    Args:
        eigenvalues: (n,) eigenvalues.
        unfolded: True if ``eigenvalues`` are already unfolded; otherwise :func:`unfold` is applied with
            ``unfold_kw``.
        normalize: divide by the mean spacing (default True).
    Returns:
        (n'-1,) spacings. Used in chapters 3 and 4.
    """
    e = np.sort(_as_1d(eigenvalues, "eigenvalues", min_size=3)) if unfolded else unfold(eigenvalues, **unfold_kw)
    s = np.diff(e)
    if normalize:
        m = s.mean()
        if m <= 0:
            raise ValueError("level_spacings: the mean spacing is not positive (unfolding failed?).")
        s = s / m
    return s


def wigner_surmise_pdf(s, beta: int = 1) -> np.ndarray:
    """Wigner surmise for nearest-neighbour spacings (mean one) of the Gaussian ensembles.

    ``beta = 1`` (GOE, real symmetric): ``p(s) = (pi s / 2) exp(-pi s^2 / 4)``; ``beta = 2`` (GUE):
    ``p(s) = (32 s^2 / pi^2) exp(-4 s^2 / pi)``. Used in chapters 3 and 4.
    """
    s = np.asarray(s, dtype=np.float64)
    if beta == 1:
        return np.where(s >= 0, 0.5 * np.pi * s * np.exp(-0.25 * np.pi * s ** 2), 0.0)
    if beta == 2:
        return np.where(s >= 0, 32.0 / np.pi ** 2 * s ** 2 * np.exp(-4.0 * s ** 2 / np.pi), 0.0)
    raise ValueError(f"beta must be 1 (GOE) or 2 (GUE), got {beta!r}.")


#: the contract name: the Wigner-surmise density
wigner_surmise = wigner_surmise_pdf


def wigner_surmise_cdf(s, beta: int = 1) -> np.ndarray:
    """Cumulative distribution of the Wigner surmise (GOE: ``1 - exp(-pi s^2 / 4)``). Used in chapters 3, 4."""
    from scipy.special import erf

    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, None)
    if beta == 1:
        return 1.0 - np.exp(-0.25 * np.pi * s ** 2)
    if beta == 2:
        a = 2.0 / np.sqrt(np.pi)
        return erf(a * s) - (2.0 * a * s / np.sqrt(np.pi)) * np.exp(-(a * s) ** 2)
    raise ValueError(f"beta must be 1 (GOE) or 2 (GUE), got {beta!r}.")


def spacing_ks_test(spacings, beta: int = 1) -> KSResult:
    """Kolmogorov-Smirnov test of mean-one spacings against the Wigner surmise.

    Args:
        spacings: (k,) spacings from :func:`level_spacings` (k >= 5).
        beta: 1 (GOE, real symmetric matrices such as a Hessian) or 2.
    Returns:
        :class:`KSResult`; a small p-value rejects the surmise. Used in chapters 3 (I-WIGNER, F-WIGNERW)
        and 4 (F-NOTRANDOM).
    """
    from scipy import stats

    s = _as_1d(spacings, "spacings", min_size=5)
    if np.any(s < 0):
        raise ValueError("spacings must be non-negative (differences of a sorted spectrum).")
    res = stats.kstest(s, lambda x: wigner_surmise_cdf(x, beta))
    return KSResult(float(res.statistic), float(res.pvalue), int(s.size))


# ------------------------------------------------------------------------------------------ eigenvectors
def porter_thomas_test(vectors) -> KSResult | list[KSResult]:
    """Porter-Thomas test of eigenvector components (000 eq. 7.7).

    For a random unit vector of length ``N`` the values ``N v_i^2`` follow chi-square with one degree of
    freedom (equivalently ``sqrt(N) v_i`` is standard normal, the erf form of 000 eq. 7.7). The test is a
    Kolmogorov-Smirnov test of ``N v_i^2 / ||v||^2`` against chi-square(1).

    Args:
        vectors: (N,) one vector, or (N, k) k vectors as columns (N >= 5).
    Returns:
        one :class:`KSResult`, or a list of k. Used in chapter 4 (F-NOTRANDOM).
    """
    from scipy import special, stats

    V = np.asarray(vectors, dtype=np.float64)
    single = V.ndim == 1
    if single:
        V = V[:, None]
    if V.ndim != 2 or V.shape[0] < 5:
        raise ValueError(f"porter_thomas_test takes a vector (N,) or columns (N, k) with N >= 5; got shape {V.shape}.")
    if not np.all(np.isfinite(V)):
        raise ValueError("porter_thomas_test: the vectors contain NaN or infinite values.")
    norms = np.sum(V ** 2, axis=0)
    if np.any(norms == 0):
        raise ValueError("porter_thomas_test: a zero vector has no direction to test.")
    N = V.shape[0]
    # the one-sample two-sided KS test of every column at once (what stats.kstest does column by column):
    # D = max_i max(i/N - F(x_(i)), F(x_(i)) - (i-1)/N) over the sorted values, p from the exact law of D
    # chi-square(1) CDF of N v^2 = erf(sqrt(N v^2 / 2)): 20x faster than stats.chi2.cdf, equal to 1e-14
    cdf = special.erf(np.sqrt(np.sort(N * V ** 2 / norms, axis=0) / 2.0))
    i = np.arange(1, N + 1, dtype=np.float64)[:, None]
    D = np.maximum(np.max(i / N - cdf, axis=0), np.max(cdf - (i - 1) / N, axis=0))
    p = np.clip(stats.kstwo.sf(D, N), 0.0, 1.0)
    out = [KSResult(float(d), float(q), N) for d, q in zip(D, p)]
    return out[0] if single else out


def inverse_participation_ratio(vectors) -> np.ndarray | float:
    """Inverse participation ratio ``ipr(v) = sum_j v_j^4 / (sum_j v_j^2)^2`` (000 Sec. 7.6, Fig. 7.21).

    ``1/N`` for a vector spread evenly over N components (delocalised), 1 for a single component
    (localised); about ``3/N`` for a random Gaussian vector.

    Args:
        vectors: (N,) or (N, k) columns.
    Returns:
        a float, or (k,) array. Used in chapter 4.
    """
    V = np.asarray(vectors, dtype=np.float64)
    single = V.ndim == 1
    if single:
        V = V[:, None]
    if V.ndim != 2 or V.shape[0] < 1:
        raise ValueError(f"inverse_participation_ratio takes (N,) or (N, k); got shape {V.shape}.")
    sq = np.sum(V ** 2, axis=0)
    if np.any(sq == 0):
        raise ValueError("inverse_participation_ratio: a zero vector has no participation ratio.")
    ipr = np.sum(V ** 4, axis=0) / sq ** 2
    return float(ipr[0]) if single else ipr


# ------------------------------------------------------------------------------------------------ tails
@dataclass
class PowerLawFit:
    """A power-law tail ``p(x) ~ x^(-alpha)`` for ``x >= xmin``: exponent, threshold, tail size, KS distance."""
    alpha: float
    xmin: float
    num_tail: int
    ks_distance: float


def power_law_tail_fit(values, xmin: float | None = None, min_tail: int = 10) -> PowerLawFit:
    """Maximum-likelihood power-law tail (Clauset, Shalizi, Newman): ``alpha = 1 + k / sum log(x_i / xmin)``.

    With ``xmin=None`` the threshold is the candidate value minimising the KS distance between the tail and
    the fitted law (the usual choice; Martin & Mahoney fit weight spectra this way).

    Args:
        values: (n,) positive values (e.g. eigenvalues of ``W^T W``).
        xmin: fixed threshold, or None to choose it.
        min_tail: smallest tail considered when choosing ``xmin``.
    Returns:
        :class:`PowerLawFit`. Used in chapter 3.
    """
    x = np.sort(_as_1d(values, "values", min_size=2))
    x = x[x > 0]
    if x.size < 2:
        raise ValueError("power_law_tail_fit needs at least two positive values.")

    def fit(xm):
        tail = x[x >= xm]
        k = tail.size
        logs = np.log(tail / xm).sum()
        if k < 2 or logs <= 0:
            return None
        alpha = 1.0 + k / logs
        emp = np.arange(1, k + 1) / k
        model = 1.0 - (tail / xm) ** (1.0 - alpha)
        ks = float(np.max(np.abs(emp - model)))
        return PowerLawFit(float(alpha), float(xm), int(k), ks)

    if xmin is not None:
        if not np.isfinite(xmin) or xmin <= 0:
            raise ValueError(f"xmin must be positive, got {xmin!r}.")
        res = fit(float(xmin))
        if res is None:
            raise ValueError(f"fewer than two values lie above xmin={xmin}.")
        return res
    candidates = np.unique(x[: max(1, x.size - min_tail + 1)])
    best = None
    for xm in candidates:
        res = fit(xm)
        if res is not None and (best is None or res.ks_distance < best.ks_distance):
            best = res
    if best is None:
        raise ValueError("power_law_tail_fit could not fit any tail; pass more (distinct, positive) values.")
    return best


# --------------------------------------------------------------------------------------------- controls
def goe_matrix(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A sample of the Gaussian orthogonal ensemble: ``(A + A^T) / sqrt(2)`` with ``A`` i.i.d. ``N(0, scale^2)``.

    The random control for the level-spacing and eigenvector tests (chapter 4, F-NOTRANDOM).
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}.")
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=scale, size=(n, n))
    return (a + a.T) / np.sqrt(2.0)


def brody_levels(q: float, n: int, seed: int = 0) -> np.ndarray:
    """A spectrum of ``n`` levels whose spacings follow the Brody law, a bridge from Poisson to Wigner.

    The Brody density ``p(s) = (q + 1) b s^q exp(-b s^(q+1))`` with ``b = Γ((q + 2)/(q + 1))^(q+1)`` has mean
    one; ``q = 0`` is the Poisson law ``e^{-s}`` of uncorrelated levels, ``q = 1`` the Wigner surmise. Spacings
    are drawn by inverting the distribution function and summed. A test's power against a law part-way
    between the two is its rejection rate on such spectra (chapter 4, F-NOTRANDOM).

    Args:
        q: Brody parameter, 0 <= q <= 1.
        n: number of levels, an integer >= 2.
        seed: seed of the random generator.
    Returns:
        (n,) increasing levels, mean spacing about one.
    """
    from math import gamma

    if not isinstance(q, (int, float, np.floating, np.integer)) or not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"q must be a number in [0, 1] (0: Poisson, 1: Wigner surmise), got {q!r}.")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}.")
    q = float(q)
    b = gamma((q + 2.0) / (q + 1.0)) ** (q + 1.0)
    u = np.random.default_rng(seed).uniform(size=int(n))
    return np.cumsum((-np.log1p(-u) / b) ** (1.0 / (q + 1.0)))


def wishart_eigenvalues(n: int, N: int, seed: int = 0, sigma2: float = 1.0) -> np.ndarray:
    """Eigenvalues of ``X X^T / N`` for an ``n x N`` matrix of i.i.d. ``N(0, sigma2)`` entries, in O(n^2) time.

    Uses the bidiagonal model of Dumitriu and Edelman (beta = 1): ``X X^T`` has the same eigenvalue law as
    ``B B^T`` with ``B`` lower bidiagonal, diagonal ``chi_N, chi_{N-1}, ..., chi_{N-n+1}`` and subdiagonal
    ``chi_{n-1}, ..., chi_1``; ``B B^T`` is tridiagonal. The exact null sample for the MP law without
    forming an ``n x N`` matrix.

    Args:
        n, N: the matrix shape, ``2 <= n <= N``. seed: random seed. sigma2: entry variance.
    Returns:
        (n,) ascending eigenvalues. Used in chapter 3 (I-NULLSTAT).
    """
    from scipy.linalg import eigvalsh_tridiagonal

    if not all(isinstance(v, (int, np.integer)) for v in (n, N)) or not 2 <= n <= N:
        raise ValueError(f"wishart_eigenvalues needs integers 2 <= n <= N, got n={n!r}, N={N!r}.")
    sigma2 = _check_sigma2(sigma2)
    rng = np.random.default_rng(seed)
    a = np.sqrt(rng.chisquare(np.arange(N, N - n, -1, dtype=np.float64)))
    b = np.sqrt(rng.chisquare(np.arange(n - 1, 0, -1, dtype=np.float64)))
    diag = a ** 2 + np.r_[0.0, b ** 2]
    off = a[:-1] * b
    return np.sort(eigvalsh_tridiagonal(diag, off)) * sigma2 / N
