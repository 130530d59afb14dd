"""Weight trajectories: PCA without the n x n covariance, the drift mode and its models, and sweeps of a
layer's weights (000 Sec. 3.2 and Ch. 6).

- :func:`pca`: principal components of a recorded trajectory w(t), t = 0..T-1, in R^n (000 eqs. 3.3-3.5):
  variances sigma_i^2, components p_i and projections theta_i(t) = w(t) . p_i. When T <= n it diagonalises
  the T x T Gram matrix of the centred trajectory (built in column chunks), so the n x n covariance is never
  formed; when n < T it diagonalises the n x n covariance, which then is the smaller matrix.
- :func:`velocities`: v(t) = w(t+1) - w(t) (000 Sec. 7.1).
- fits with goodness of fit: :func:`linear_fit` (R^2), :func:`saturating_exponential_fit`
  (a + b exp(-t / tau)), :func:`quadratic_well_fit` (c + k (x - x0)^2 around the minimum);
- the drift models: :func:`drift_variance` (000 eq. 6.6), :func:`relaxation_path` (eq. 6.11),
  :func:`relaxation_variance` (eq. 6.12), :func:`drift_mode_variance` (eq. 6.13);
- :func:`accumulated_weights` (000 eq. 6.3), :func:`layer_logits` (many settings of one layer's weights,
  one pass over the data each) and :func:`log_mean_cross_entropy` (the loss without underflow when the
  network is very confident, for the loss scaling of 000 Sec. 6.5);
- :func:`overlap_matrix`: |a_i . b_j| between two sets of unit vectors (PCs against Hessian eigenvectors).

Conventions: averages over time are means over the T recorded rows, ``<X> = (1/T) sum_t X(t)``, so the
variance of theta_i(t) over the window equals sigma_i^2 exactly.

Used in chapters 2, 3 and 5.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

__all__ = ["PCAResult", "pca", "velocities", "linear_fit", "saturating_exponential_fit", "quadratic_well_fit",
           "drift_variance", "relaxation_path", "relaxation_variance", "drift_mode_variance",
           "crossover_fit", "scan_well", "accumulated_weights", "layer_logits", "log_mean_cross_entropy", "objective_along", "overlap_matrix",
           "log_log_slope", "power_law_fit"]


# ------------------------------------------------------------------------------------------------- PCA
@dataclass
class PCAResult:
    """Principal components of a trajectory (000 eqs. 3.3-3.5).

    Attributes:
        variances: (k,) sigma_i^2 in descending order (eigenvalues of the covariance, 1/T normalisation).
        components: (n, k) unit principal components p_i as columns.
        projections: (T, k) theta_i(t) = w(t) . p_i (not centred; their variance over t is sigma_i^2).
        mean: (n,) the time average <w>.
        total_variance: trace of the covariance (sum of all n variances).
        method: ``"gram"`` (T x T matrix) or ``"covariance"`` (n x n matrix).
    """
    variances: np.ndarray
    components: np.ndarray
    projections: np.ndarray
    mean: np.ndarray
    total_variance: float
    method: str

    @property
    def explained(self) -> np.ndarray:
        """Share of the total variance in each component."""
        return self.variances / self.total_variance if self.total_variance > 0 else np.zeros_like(self.variances)

    def __repr__(self) -> str:
        k = len(self.variances)
        head = ", ".join(f"{v:.3g}" for v in self.variances[:3])
        return (f"PCAResult(T={self.projections.shape[0]}, n={self.components.shape[0]}, k={k}, "
                f"variances=[{head}{', ...' if k > 3 else ''}], explained_1={self.explained[0]:.3f}, "
                f"method={self.method!r})")


def _check_trajectory(trajectory, what: str = "trajectory"):
    """A (T, n) float array or tensor, checked without copying it (a NumPy array stays a NumPy array)."""
    if isinstance(trajectory, (list, tuple)):
        trajectory = np.asarray(trajectory)
    if not isinstance(trajectory, (np.ndarray, tf.Tensor, tf.Variable)):
        raise TypeError(f"{what} must be an array of shape (T, n) (rows are time steps), got "
                        f"{type(trajectory).__name__}.")
    X = trajectory if isinstance(trajectory, np.ndarray) else tf.convert_to_tensor(trajectory)
    if len(X.shape) != 2:
        raise ValueError(f"{what} must have shape (T, n): one flattened weight vector per recorded step; got "
                         f"shape {tuple(X.shape)}. Flatten the weights of each step first.")
    T, n = int(X.shape[0]), int(X.shape[1])
    if T < 2 or n < 1:
        raise ValueError(f"{what} needs at least 2 time steps and 1 weight, got shape ({T}, {n}).")
    floating = X.dtype.kind == "f" if isinstance(X, np.ndarray) else X.dtype.is_floating
    if not floating:
        X = X.astype(np.float64) if isinstance(X, np.ndarray) else tf.cast(X, tf.float64)
    step = max(1, 2 ** 24 // max(T, 1))  # check finiteness in column blocks of ~16M entries
    for a in range(0, n, step):
        block = X[:, a:a + step]
        finite = np.all(np.isfinite(block)) if isinstance(X, np.ndarray) else bool(
            tf.reduce_all(tf.math.is_finite(block)))
        if not finite:
            raise ValueError(f"{what} contains NaN or inf: the recorded training run diverged; record a run "
                             "with a smaller learning rate.")
    return X


def _eigh_descending(M: tf.Tensor, k: int):
    """The k leading eigenpairs of a symmetric float64 matrix, on the matrix's device.

    On a CPU, LAPACK (through NumPy) is used: TensorFlow's CPU kernel is about 7 times slower for a
    2,550 x 2,550 matrix on 2 cores. On a GPU, ``tf.linalg.eigh`` (cuSOLVER) keeps the work there.
    """
    if "GPU" in (M.device or "").upper():
        evals, vecs = tf.linalg.eigh(M)
        return tf.reverse(evals, [0])[:k], tf.reverse(vecs, [1])[:, :k]
    evals, vecs = np.linalg.eigh(M.numpy())
    return tf.constant(evals[::-1][:k].copy()), tf.constant(vecs[:, ::-1][:, :k].copy())


def pca(trajectory, num_components: int | None = None, chunk_size: int = 16384) -> PCAResult:
    """PCA of a trajectory w(t) in R^n, t = 0..T-1, without forming the n x n covariance when T <= n.

    Sigma = <(w - <w>)(w - <w>)^T> (000 eq. 3.3), Sigma p_i = sigma_i^2 p_i (eq. 3.4), theta_i(t) = w(t) . p_i
    (eq. 3.5). With T <= n the nonzero spectrum is that of the Gram matrix G = X_c X_c^T / T (X_c the centred
    T x n trajectory), and p_i = X_c^T u_i / sqrt(T sigma_i^2); G is accumulated over column chunks in float64
    on the device, so the extra memory is O(T^2 + T * chunk_size + n * k). With n < T the n x n covariance is
    the smaller matrix and is diagonalised directly; then all n components form a basis of R^n.

    The sign of each component is fixed so that theta_i increases over the window (last minus first >= 0).

    Args:
        trajectory: (T, n) array or tensor, one flattened weight vector per row (any float dtype).
        num_components: k, the number of leading components returned (default: every component with a
            nonzero variance in the Gram case, min(T - 1, n); all n in the covariance case).
        chunk_size: columns per chunk when building the Gram matrix.
    Returns:
        :class:`PCAResult`. Components and projections are float64 NumPy arrays.
    Used in chapters 2, 3 and 5.
    """
    X = _check_trajectory(trajectory)
    T, n = int(X.shape[0]), int(X.shape[1])
    gram = T <= n
    k_max = min(T - 1, n) if gram else n
    if num_components is None:
        k = k_max
    elif isinstance(num_components, bool) or not isinstance(num_components, numbers.Integral) \
            or not 1 <= num_components <= k_max:
        raise ValueError(f"num_components must be an integer in [1, {k_max}] for a trajectory of {T} steps in "
                         f"R^{n} (a centred trajectory of T steps spans at most T - 1 directions); got "
                         f"{num_components!r}.")
    else:
        k = int(num_components)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    chunks = [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    # the mean and every product below go chunk by chunk: no float64 copy of the whole trajectory
    mean = tf.concat([tf.reduce_mean(tf.cast(X[:, a:b], tf.float64), axis=0) for a, b in chunks], axis=0)
    if gram:
        G = tf.zeros((T, T), tf.float64)
        for a, b in chunks:
            block = tf.cast(X[:, a:b], tf.float64) - mean[a:b]
            G += tf.matmul(block, block, transpose_b=True)
        G = 0.5 * (G + tf.transpose(G)) / T
        evals, U = _eigh_descending(G, k)
        scale = tf.sqrt(tf.maximum(evals, 0.0) * T)
        parts = []
        for a, b in chunks:
            block = tf.cast(X[:, a:b], tf.float64) - mean[a:b]
            parts.append(tf.matmul(block, U, transpose_a=True))
        P = tf.concat(parts, axis=0) / tf.where(scale > 0, scale, tf.ones_like(scale))
        total = tf.linalg.trace(G)
    else:
        Xc = tf.cast(tf.convert_to_tensor(X), tf.float64) - mean
        C = tf.matmul(Xc, Xc, transpose_a=True) / T
        C = 0.5 * (C + tf.transpose(C))
        evals, P = _eigh_descending(C, k)
        total = tf.linalg.trace(C)
    theta = tf.add_n([tf.matmul(tf.cast(X[:, a:b], tf.float64), P[a:b]) for a, b in chunks])
    flip = tf.where(theta[-1] - theta[0] < 0, tf.constant(-1.0, tf.float64), tf.constant(1.0, tf.float64))
    P, theta = P * flip, theta * flip
    return PCAResult(variances=np.maximum(evals.numpy(), 0.0), components=P.numpy(), projections=theta.numpy(),
                     mean=mean.numpy(), total_variance=float(total), method="gram" if gram else "covariance")


def velocities(trajectory) -> np.ndarray:
    """v(t) = w(t+1) - w(t), t = 0..T-2 (000 Sec. 7.1), from a (T, n) trajectory. Used in chapter 2."""
    X = _check_trajectory(trajectory)
    return np.asarray(X[1:] - X[:-1])


# ------------------------------------------------------------------------------------------------- fits
def _xy(x, y, what: str, minimum: int):
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{what}: x and y need the same length, got {x.size} and {y.size}.")
    if x.size < minimum:
        raise ValueError(f"{what} needs at least {minimum} points, got {x.size}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{what}: x and y must be finite (no NaN or inf).")
    return x, y


def _r2(y, fitted) -> float:
    ss_res = float(np.sum((y - fitted) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def linear_fit(x, y) -> dict:
    """Least-squares line y = slope * x + intercept with R^2, residual sum of squares and the slope's
    standard error. Used in chapter 2 (F-DRIFT, F-SCALE, F-RELAX)."""
    x, y = _xy(x, y, "linear_fit", 2)
    if np.ptp(x) == 0:
        raise ValueError("linear_fit: all x values are equal; a line through them is undefined.")
    A = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(A, y, rcond=None)
    fitted = slope * x + intercept
    rss = float(np.sum((y - fitted) ** 2))
    dof = max(x.size - 2, 1)
    se = math.sqrt(rss / dof / np.sum((x - x.mean()) ** 2))
    return {"slope": float(slope), "intercept": float(intercept), "r2": _r2(y, fitted), "rss": rss,
            "slope_se": se, "fitted": fitted}


def log_log_slope(x, y) -> dict:
    """The exponent of a power law y ~ x^slope: a line through (log x, log y), with its standard error.
    Used in chapter 2 (F-ETA2T2, F-SCALE)."""
    x, y = _xy(x, y, "log_log_slope", 2)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("log_log_slope needs positive x and y (it fits log y against log x).")
    return linear_fit(np.log(x), np.log(y))


def power_law_fit(y, **factors) -> dict:
    """Fit y = c * prod_k x_k^{a_k} by least squares in logarithms, with standard errors of the exponents.

    Args:
        y: (m,) positive values. factors: name -> (m,) positive values of each variable x_k.
    Returns:
        dict name -> exponent, ``"se_" + name`` -> its standard error, ``"log_c"``, ``"r2"``.
        Used in chapter 2 (F-ETA2T2: sigma_1^2 against eta and T).
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if not factors:
        raise ValueError("power_law_fit needs at least one factor, e.g. power_law_fit(y, eta=etas, T=windows).")
    X = [np.asarray(v, dtype=np.float64).reshape(-1) for v in factors.values()]
    if any(x.shape != y.shape for x in X):
        raise ValueError(f"every factor needs {y.size} values, one per entry of y.")
    if np.any(y <= 0) or any(np.any(x <= 0) for x in X):
        raise ValueError("power_law_fit needs positive y and factors (it fits logarithms).")
    if y.size <= len(X) + 1:
        raise ValueError(f"power_law_fit needs more than {len(X) + 1} points for {len(X)} exponents, got {y.size}.")
    A = np.stack([np.ones_like(y)] + [np.log(x) for x in X], axis=1)
    coef, *_ = np.linalg.lstsq(A, np.log(y), rcond=None)
    resid = np.log(y) - A @ coef
    cov = float(resid @ resid) / (y.size - A.shape[1]) * np.linalg.pinv(A.T @ A)
    out = {"log_c": float(coef[0]), "r2": _r2(np.log(y), A @ coef)}
    for i, name in enumerate(factors, start=1):
        out[name], out["se_" + name] = float(coef[i]), float(math.sqrt(max(cov[i, i], 0.0)))
    return out


def saturating_exponential_fit(t, y) -> dict:
    """Fit y = a + b exp(-t / tau) (the relaxation of 000 eq. 6.11) by least squares.

    tau is found by a bounded one-dimensional search on log tau (for fixed tau the model is linear in a
    and b), so the fit needs no starting guess and cannot wander off.

    Returns:
        dict with a, b, tau, rss, r2, fitted (the curve at t). Used in chapter 2 (F-RELAX).
    """
    from scipy.optimize import minimize_scalar

    t, y = _xy(t, y, "saturating_exponential_fit", 4)
    span = float(np.ptp(t))
    if span == 0:
        raise ValueError("saturating_exponential_fit: all t values are equal.")
    t0 = t - t.min()

    def solve(log_tau):
        A = np.stack([np.ones_like(t0), np.exp(-t0 / math.exp(log_tau))], axis=1)
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        return coef, float(np.sum((y - A @ coef) ** 2))

    lo, hi = math.log(span / 1000.0), math.log(span * 1000.0)
    grid = np.linspace(lo, hi, 61)
    best = grid[int(np.argmin([solve(g)[1] for g in grid]))]
    res = minimize_scalar(lambda g: solve(g)[1], bounds=(max(lo, best - 0.2), min(hi, best + 0.2)),
                          method="bounded", options={"xatol": 1e-6})
    log_tau = float(res.x) if res.fun <= solve(best)[1] else float(best)
    (a, b), rss = solve(log_tau)
    tau = math.exp(log_tau)
    b = b * math.exp(t.min() / tau)  # express b for exp(-t / tau) with the original t
    fitted = a + b * np.exp(-t / tau)
    return {"a": float(a), "b": float(b), "tau": tau, "rss": float(np.sum((y - fitted) ** 2)),
            "r2": _r2(y, fitted), "fitted": fitted}


def quadratic_well_fit(x, y) -> dict:
    """Fit y = c + k (x - x0)^2 (a parabola) and describe the well.

    Returns:
        dict with k (half the curvature), x0 (the minimum), c (the value there), r2, and ``width`` =
        sqrt(|c| / k), the distance from x0 at which the fitted loss has doubled (infinite if k <= 0: no well).
        Used in chapter 2 (F-WELL).
    """
    x, y = _xy(x, y, "quadratic_well_fit", 3)
    if np.unique(x).size < 3:
        raise ValueError("quadratic_well_fit needs at least 3 distinct x values.")
    c2, c1, c0 = np.polyfit(x, y, 2)
    fitted = np.polyval([c2, c1, c0], x)
    if c2 <= 0:
        return {"k": float(c2), "x0": float("nan"), "c": float("nan"), "r2": _r2(y, fitted),
                "width": float("inf"), "fitted": fitted}
    x0 = -c1 / (2 * c2)
    c = c0 - c1 ** 2 / (4 * c2)
    return {"k": float(c2), "x0": float(x0), "c": float(c), "r2": _r2(y, fitted),
            "width": float(math.sqrt(abs(c) / c2)), "fitted": fitted}


def crossover_fit(h, variances, num_candidates: int = 400) -> dict:
    """Fit the variance-flatness model of 000 eq. 3.9 and return its crossover.

    The model, in logarithms: log sigma_i^2 = c + alpha min(log h_i - log h_c, 0), i.e. a power law
    sigma^2 ~ h^alpha below the crossover h_c and a constant above it (eq. 3.9 has alpha = 1; alpha is left
    free so the crossover is not forced by a wrong slope). h_c is chosen among ``num_candidates`` values
    spread logarithmically over the range of h by least squares (for fixed h_c the model is linear in c
    and alpha). Pairs with h_i <= 0 are left out (a variance-flatness relation needs a well).

    Args:
        h: (m,) Hessian eigenvalues; variances: (m,) PC variances, paired by rank (both descending).
    Returns:
        dict with h_cross (the fitted crossover), alpha, c, rss, r2, used (number of pairs), n_above
        (pairs above h_cross). Used in chapter 2 (F-VARFLAT).
    """
    h, s2 = _xy(h, variances, "crossover_fit", 4)
    keep = (h > 0) & (s2 > 0)
    if keep.sum() < 4:
        raise ValueError("crossover_fit needs at least 4 pairs with positive h and variance.")
    lh, ls = np.log(h[keep]), np.log(s2[keep])
    best = None
    for lc in np.linspace(lh.min(), lh.max(), int(num_candidates)):
        x = np.minimum(lh - lc, 0.0)
        A = np.stack([np.ones_like(x), x], axis=1)
        coef, *_ = np.linalg.lstsq(A, ls, rcond=None)
        rss = float(np.sum((A @ coef - ls) ** 2))
        if best is None or rss < best[0]:
            best = (rss, lc, coef)
    rss, lc, (c, alpha) = best
    fitted = c + alpha * np.minimum(lh - lc, 0.0)
    return {"h_cross": float(np.exp(lc)), "alpha": float(alpha), "c": float(c), "rss": rss,
            "r2": _r2(ls, fitted), "used": int(keep.sum()), "n_above": int(np.sum(lh > lc))}


def scan_well(loss_of, extent: float, num: int = 41) -> dict:
    """Locate the well of a one-dimensional loss profile and fit a parabola near its bottom (F-WELL).

    A coarse scan of ``num`` points on [-extent, extent] finds the lowest point; a fine scan of ``num`` points
    then covers the stretch around it where the coarse profile stays below twice its minimum (one coarse step
    more on each side). The parabola of :func:`quadratic_well_fit` is fitted to the fine points below twice
    their minimum ("near the minimum": where the loss has at most doubled).

    Args:
        loss_of: function mapping an array of offsets (K,) to losses (K,) (one pass over the data per point).
        extent: half-width of the coarse scan (> 0).
    Returns:
        dict: ``coarse`` and ``fine`` (offsets, losses), ``fit`` (:func:`quadratic_well_fit` on the points used),
        ``used`` (their number), ``at_edge`` (the coarse minimum lies on the scan's edge: no well inside it).
        Used in chapter 2 (F-WELL).
    """
    if not callable(loss_of):
        raise TypeError("scan_well needs a function of the offsets returning the losses.")
    if not (isinstance(extent, numbers.Real) and math.isfinite(extent) and extent > 0):
        raise ValueError(f"extent must be a finite number > 0, got {extent!r}.")
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 5:
        raise ValueError(f"num must be an integer >= 5, got {num!r}.")
    xs = np.linspace(-extent, extent, int(num))
    ys = np.asarray(loss_of(xs), dtype=np.float64)
    if ys.shape != xs.shape or not np.all(np.isfinite(ys)):
        raise ValueError("loss_of must return one finite loss per offset.")
    i = int(np.argmin(ys))
    inside = np.flatnonzero(ys <= 2 * ys[i]) if ys[i] > 0 else np.array([i])
    lo_i, hi_i = i, i
    while lo_i - 1 in inside:
        lo_i -= 1
    while hi_i + 1 in inside:
        hi_i += 1
    step = xs[1] - xs[0]
    fine_x = np.linspace(xs[lo_i] - step, xs[hi_i] + step, int(num))
    fine_y = np.asarray(loss_of(fine_x), dtype=np.float64)
    use = fine_y <= 2 * fine_y.min() if fine_y.min() > 0 else np.ones_like(fine_y, bool)
    if use.sum() < 3:
        use = np.argsort(fine_y)[:5]
    fit = quadratic_well_fit(fine_x[use], fine_y[use])
    return {"coarse": (xs, ys), "fine": (fine_x, fine_y), "fit": fit, "used": int(np.size(fine_x[use])),
            "at_edge": i in (0, len(xs) - 1)}


# --------------------------------------------------------------------------------------- drift models
def _check_points(num_points) -> int:
    if isinstance(num_points, bool) or not isinstance(num_points, numbers.Integral) or num_points < 1:
        raise ValueError(f"the number of time points T must be a positive integer, got {num_points!r}.")
    return int(num_points)


def drift_variance(slope, num_points: int) -> float:
    """Variance over T points of an exactly linear theta(t) = a t + b: a^2 (T^2 - 1) / 12 (000 eq. 6.6).

    (000 writes the sums from t_0 to t_0 + T with a prefactor 1/T; with T points t = t_0..t_0 + T - 1 the
    sums give exactly this.) Used in chapter 2 (I-DRIFTVAR).
    """
    T = _check_points(num_points)
    return float(slope) ** 2 * (T ** 2 - 1) / 12.0


def relaxation_path(w0, mu, h, eta: float, weight_decay: float, t) -> np.ndarray:
    """The drift model of 000 Sec. 6.4: the projection w^_i(t) on a Hessian eigenvector (eq. 6.11).

    On L = L_min + (w - mu)^T H (w - mu) / 2 + lambda ||w||^2, averaged gradient flow with step eta gives
    dw^_i/dt = -eta [(h_i + 2 lambda) w^_i - h_i mu^_i], so w^_i(t) = b_i + (w^_i(0) - b_i) exp(-r_i t) with
    r_i = eta (h_i + 2 lambda) and b_i = mu^_i / (1 + 2 lambda / h_i). (000's eq. 6.11 prints the rate as
    eta (h_i + lambda); its eq. 6.12 and this derivation give h_i + 2 lambda.)

    Args:
        w0, mu, h: scalars or (m,) arrays (start, minimum and eigenvalue of each direction; h > 0).
        eta: step size (per unit of t). weight_decay: lambda >= 0. t: (T,) times.
    Returns:
        (T,) or (T, m) array. Used in chapter 2 (F-RELAX).
    """
    w0, mu, h = (np.asarray(a, dtype=np.float64) for a in (w0, mu, h))
    if np.any(h <= 0):
        raise ValueError("relaxation_path needs positive Hessian eigenvalues h (a well in every direction).")
    if not eta > 0 or weight_decay < 0:
        raise ValueError(f"need eta > 0 and weight_decay >= 0, got eta={eta!r}, weight_decay={weight_decay!r}.")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    rate = eta * (h + 2 * weight_decay)
    b = mu / (1 + 2 * weight_decay / h)
    return b + (w0 - b) * np.exp(-np.multiply.outer(t, rate))


def relaxation_variance(amplitude, rate, num_points: int) -> np.ndarray:
    """Variance over t = 0..T-1 of b + c exp(-r t), with c = w^_i(0) - b_i (000 eq. 6.12):

    sigma^2 = c^2 [ (1 - e^{-2rT}) / (T (1 - e^{-2r})) - ((1 - e^{-rT}) / (T (1 - e^{-r})))^2 ].

    For r -> 0 it tends to the linear drift's c^2 r^2 (T^2 - 1) / 12 (eq. 6.6); for r T >> 1 it falls like
    1/T: the relaxation's variance does not grow without bound. Used in chapter 2 (F-RELAX).
    """
    T = _check_points(num_points)
    c = np.asarray(amplitude, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    if np.any(r < 0):
        raise ValueError("relaxation_variance needs rates r >= 0.")

    with np.errstate(divide="ignore", invalid="ignore"):
        # sum_{t<T} e^{-x t} = expm1(-x T) / expm1(-x), stable for small x > 0
        s1 = np.expm1(-r * T) / np.expm1(-r)
        s2 = np.expm1(-2 * r * T) / np.expm1(-2 * r)
        exact = c ** 2 * (s2 / T - (s1 / T) ** 2)
    small = r * T < 1e-4  # there the two terms cancel to rounding; the series is exact to O((rT)^4)
    series = c ** 2 * r ** 2 * (T ** 2 - 1) / 12.0
    return np.where(small, series, exact)


def drift_mode_variance(coefficients, variances) -> float:
    """Variance of the drift along p_1 = sum_i d_i h_i: sum_i d_i^2 sigma_i^2 (000 eq. 6.13). Used in chapter 2."""
    d = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    s = np.asarray(variances, dtype=np.float64).reshape(-1)
    if d.shape != s.shape:
        raise ValueError(f"coefficients and variances need the same length, got {d.size} and {s.size}.")
    return float(np.sum(d ** 2 * s))


# ------------------------------------------------------------------------------- sweeps of a layer
def accumulated_weights(final_weights, components, counts: Sequence[int]) -> np.ndarray:
    """w_add,i = sum_{j <= i} theta_j(T) p_j with theta_j(T) = w(T) . p_j (000 eq. 6.3), for each i in counts.

    Args:
        final_weights: (n,) w(T). components: (n, k) orthonormal columns p_j. counts: the i values, 0..k.
    Returns:
        (len(counts), n) weight vectors (i = 0 is the zero vector). Used in chapter 2 (F-PCACC).
    """
    w = np.asarray(final_weights, dtype=np.float64).reshape(-1)
    P = np.asarray(components, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != w.size:
        raise ValueError(f"components must be (n, k) with n = len(final_weights) = {w.size}; got {P.shape}.")
    counts = [int(c) for c in counts]
    if any(c < 0 or c > P.shape[1] for c in counts):
        raise ValueError(f"counts must lie in [0, {P.shape[1]}] (the number of components), got {counts}.")
    theta = P.T @ w
    cumulative = np.cumsum(P * theta[None, :], axis=1)
    return np.stack([cumulative[:, c - 1] if c > 0 else np.zeros_like(w) for c in counts])


def layer_logits(model, variables, flat_weights, x, batch_size: int = 4096) -> np.ndarray:
    """The model's outputs on x for each of K settings of some of its variables (e.g. one layer's weights).

    The variables are overwritten by each row in turn inside one compiled function and restored at the end:
    a sweep over K settings costs K forward passes over x and no model rebuilds.

    Args:
        model: a Keras model. variables: the variables the rows fill (``params.select_variables(model, layer)``).
        flat_weights: (K, n) rows in the flat order of ``params.flatten``. x: inputs (N, ...).
    Returns:
        (K, N, C) float64 outputs. Used in chapter 2 (F-SCALE, F-WELL, F-PCACC).
    """
    from . import params

    variables = list(variables)
    if not variables:
        raise ValueError("layer_logits needs at least one variable (e.g. params.select_variables(model, 'dense_2')).")
    W = np.atleast_2d(np.asarray(flat_weights))
    n = params.num_params(variables)
    if W.ndim != 2 or W.shape[1] != n:
        raise ValueError(f"flat_weights must have shape (K, {n}) for these variables, got {W.shape}.")
    if not np.all(np.isfinite(W)):
        raise ValueError("flat_weights contain NaN or inf.")
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("layer_logits: x is empty; pass the inputs to evaluate on, e.g. ds.x_train.")
    tfv = [params.tf_variable(v) for v in variables]
    dtype = tfv[0].dtype
    original = params.get_flat(variables)
    xs = tf.constant(x, dtype=dtype)

    @tf.function(reduce_retracing=True)
    def run(row):
        params.set_flat(tfv, row)
        outs = [model(xs[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        return tf.concat(outs, axis=0)

    try:
        result = np.stack([run(tf.constant(row, dtype=dtype)).numpy().astype(np.float64) for row in W])
    finally:
        params.set_flat(variables, original)
    return result


def log_mean_cross_entropy(logits, labels) -> np.ndarray:
    """log of the mean softmax cross-entropy, computed without underflow for very confident networks.

    For each example l_i = log(1 + sum_{j != y} e^{z_j - z_y}) = softplus(s_i) with s_i = logsumexp_{j != y}
    (z_j - z_y); log l_i = log softplus(s_i), which is s_i + O(e^{s_i}) for s_i << 0, and
    log L = logsumexp_i(log l_i) - log N. Needed for 000 eq. 6.14, where L falls like e^{-alpha z}.

    Args:
        logits: (..., N, C). labels: (N,) integer classes.
    Returns:
        array of shape logits.shape[:-2]. Used in chapter 2 (F-SCALE).
    """
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if z.ndim < 2 or z.shape[-2] != y.size:
        raise ValueError(f"logits must be (..., N, C) with N = len(labels) = {y.size}; got {z.shape}.")
    if y.min() < 0 or y.max() >= z.shape[-1]:
        raise ValueError(f"labels must lie in [0, {z.shape[-1] - 1}], got values in [{y.min()}, {y.max()}].")
    zy = np.take_along_axis(z, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), axis=-1)
    mask = np.zeros(z.shape[-2:], bool)
    mask[np.arange(y.size), y] = True
    s = logsumexp(np.where(mask, -np.inf, z - zy), axis=-1)  # (..., N)
    # log softplus(s), with log softplus(s) = s + O(e^s) deep in the tail, where softplus underflows
    log_l = np.where(s < -30, s, np.log(np.logaddexp(0.0, np.maximum(s, -30.0))))
    return logsumexp(log_l, axis=-1) - math.log(y.size)


def objective_along(model, variables, x, y, direction, weight_decay: float = 0.0):
    """The training objective along a direction in one layer's weights, as a function of the offsets.

    Returns ``f(deltas) -> (K,)`` with f(delta) = L(w + delta d) + lambda ||w_all + delta d||^2 (000 eq. 3.6 with
    the weight-decay term of the objective SGD minimises; lambda = 0 gives the data loss alone), where w are the
    current values of ``variables``, d = ``direction`` and L the mean softmax cross-entropy on (x, y), computed
    from the logits without underflow. Each evaluation is one forward pass per offset (:func:`layer_logits`).
    With d = w, ``f(alpha - 1)`` is the loss of the layer scaled by alpha (000 Sec. 6.5).

    Used in chapter 2 (F-WELL, F-SCALE, the widget).
    """
    from . import params

    variables = list(variables)
    w = params.get_flat(variables).numpy().astype(np.float64)
    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    if d.size != w.size:
        raise ValueError(f"direction must have {w.size} entries (the selected variables), got {d.size}.")
    if not (isinstance(weight_decay, numbers.Real) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}.")
    others = sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables) - float(w @ w)

    def objective(deltas) -> np.ndarray:
        rows = w[None, :] + np.asarray(deltas, dtype=np.float64).reshape(-1)[:, None] * d[None, :]
        log_l = log_mean_cross_entropy(layer_logits(model, variables, rows, x), y)
        return np.exp(log_l) + weight_decay * (np.sum(rows ** 2, axis=1) + others)

    return objective


def overlap_matrix(A, B) -> np.ndarray:
    """|a_i . b_j| for the columns of A (n, k) and B (n, m), which should be unit vectors.

    Returns:
        (k, m) array in [0, 1]. Used in chapter 2 (PCs against Hessian eigenvectors, F-VELPCA).
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must be (n, k) and (n, m) with the same n, got {A.shape} and {B.shape}.")
    return np.abs(A.T @ B)
