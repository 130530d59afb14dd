"""Riemannian geometry of a metric given as a function, by automatic differentiation.

A metric is a TensorFlow function ``metric_fn(theta) -> g`` that maps coordinates of shape ``(..., n)``
to symmetric positive-definite matrices of shape ``(..., n, n)``, one per point, in float64. Every
routine here is vectorised over the leading batch dimensions: a whole grid of points costs one call.
Derivatives of the metric come from ``tf.GradientTape`` (first derivatives for the Christoffel symbols,
second derivatives for the Riemann tensor), never from finite differences.

Conventions (``book/notation.md``; 004 Sec. 3.3, with its index slip in eq. 3.2.15 corrected):

- Christoffel symbols ``Γ^i_kl = ½ g^im (∂_k g_ml + ∂_l g_mk − ∂_m g_kl)``, array index ``[i, k, l]``;
- Riemann tensor ``R^i_jkl = ∂_k Γ^i_lj − ∂_l Γ^i_kj + Γ^i_km Γ^m_lj − Γ^i_lm Γ^m_kj``, index ``[i, j, k, l]``;
- Ricci tensor ``R_jl = R^i_jil``, Ricci scalar ``R = g^jl R_jl`` (a sphere of radius r has R = 2/r²).

Results are returned as NumPy float64 arrays (they feed plots and assertions). Used in chapters 6 and 8.
"""
from __future__ import annotations

import weakref
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

__all__ = [
    "christoffel",
    "riemann",
    "ricci_tensor",
    "ricci_scalar",
    "curvature",
    "geodesic",
    "geodesic_between",
    "geodesic_distance",
    "GeodesicPath",
    "curve_length",
    "geodesic_circle",
    "plot_geodesic_circle",
    "check_metric",
    "pointwise_jacobian",
]

MetricFn = Callable[[tf.Tensor], tf.Tensor]

#: a metric whose smallest eigenvalue is at most this times its largest (condition number above 1e14) is
#: refused as ill-conditioned: in float64 (machine epsilon 2.2e-16) its inverse would carry relative errors
#: of order one percent or more.
ILL_CONDITIONED = 1e-14


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _as_points(theta, name: str = "theta") -> tuple[tf.Tensor, tuple[int, ...], int]:
    """Convert ``theta`` (..., n) to a float64 tensor of shape (B, n); return it, the batch shape and n."""
    try:
        arr = np.asarray(theta, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be an array of coordinates of shape (..., n) convertible to float64; "
            f"got {type(theta).__name__}."
        ) from None
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (..., n) with n >= 1 coordinates; got a scalar.")
    n = arr.shape[-1]
    if n < 1:
        raise ValueError(f"{name} must have at least one coordinate in its last axis; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr.reshape(-1, n)).all(axis=-1))[0, 0]
        raise ValueError(f"{name} has a non-finite coordinate at point {bad}: {arr.reshape(-1, n)[bad]}.")
    batch_shape = arr.shape[:-1]
    return tf.constant(arr.reshape(-1, n)), tuple(batch_shape), int(n)


def _check_callable(metric_fn) -> None:
    if not callable(metric_fn):
        raise TypeError(
            "metric_fn must be a function mapping coordinates (..., n) to metric matrices (..., n, n); "
            f"got {type(metric_fn).__name__}."
        )


def _call_metric(metric_fn: MetricFn, theta: tf.Tensor, n: int) -> tf.Tensor:
    g = metric_fn(theta)
    g = tf.convert_to_tensor(g)
    if g.dtype != tf.float64:
        g = tf.cast(g, tf.float64)
    expected = (theta.shape[0], n, n)
    if tuple(g.shape) != expected:
        raise ValueError(
            f"metric_fn must return one n x n matrix per point: for {theta.shape[0]} points with n = {n} "
            f"coordinates the shape should be {expected}, but it is {tuple(g.shape)}."
        )
    return g


def _describe_point(flat_index: int, batch_shape: tuple[int, ...], theta_flat: np.ndarray) -> str:
    idx = np.unravel_index(flat_index, batch_shape) if batch_shape else ()
    coords = np.array2string(theta_flat[flat_index], precision=6, separator=", ")
    where = f"index {tuple(int(i) for i in idx)}" if batch_shape else "the given point"
    return f"{where}, theta = {coords}"


def _validate_metric(g: np.ndarray, theta_flat: np.ndarray, batch_shape: tuple[int, ...],
                     sym_rtol: float = 1e-8) -> None:
    """Raise ValueError naming the first point where g is not finite, not symmetric or not positive definite."""
    finite = np.isfinite(g).all(axis=(-1, -2))
    if not finite.all():
        k = int(np.argmin(finite))
        raise ValueError(
            f"the metric is not finite at {_describe_point(k, batch_shape, theta_flat)}: "
            f"g = {np.array2string(g[k], precision=6)}. Evaluate it only inside its domain."
        )
    scale = np.maximum(np.abs(g).max(axis=(-1, -2)), 1e-300)
    asym = np.abs(g - np.swapaxes(g, -1, -2)).max(axis=(-1, -2)) / scale
    if np.any(asym > sym_rtol):
        k = int(np.argmax(asym > sym_rtol))
        raise ValueError(
            f"the metric is not symmetric at {_describe_point(k, batch_shape, theta_flat)}: "
            f"relative asymmetry {asym[k]:.3g} (tolerance {sym_rtol:g}); g = {np.array2string(g[k], precision=6)}."
        )
    sym = 0.5 * (g + np.swapaxes(g, -1, -2))
    lam = np.linalg.eigvalsh(sym)
    lam_min, lam_max = lam[..., 0], lam[..., -1]
    bad = lam_min <= 0
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ValueError(
            f"the metric is not positive definite at {_describe_point(k, batch_shape, theta_flat)}: "
            f"smallest eigenvalue {lam_min[k]:.3g}; g = {np.array2string(g[k], precision=6)}. "
            "A Riemannian metric needs g positive definite at every point."
        )
    ill = lam_min <= ILL_CONDITIONED * np.maximum(lam_max, 1e-300)
    if np.any(ill):
        k = int(np.argmax(ill))
        raise ValueError(
            f"the metric is ill-conditioned at {_describe_point(k, batch_shape, theta_flat)}: positive definite, "
            f"but its condition number {lam_max[k] / lam_min[k]:.3g} exceeds 1/{ILL_CONDITIONED:g} (eigenvalues "
            f"{lam_min[k]:.3g} to {lam_max[k]:.3g}), so its inverse and the Christoffel symbols would be "
            "dominated by rounding. Rescale the coordinates or evaluate away from this point."
        )


def check_metric(metric_fn: MetricFn, theta) -> np.ndarray:
    """Evaluate a metric on points and check it is finite, symmetric and positive definite everywhere.

    A metric that is positive definite but whose condition number exceeds ``1 / ILL_CONDITIONED`` (1e14)
    is refused as *ill-conditioned* (a different message from "not positive definite").

    Args:
        metric_fn: function (..., n) -> (..., n, n) in TensorFlow ops.
        theta: points, shape (..., n).
    Returns:
        g as a NumPy float64 array of shape (..., n, n).
    Raises:
        ValueError naming the first offending point (its batch index and coordinates).
    Used in chapters 6 and 8.
    """
    _check_callable(metric_fn)
    th, batch_shape, n = _as_points(theta)
    g = _call_metric(metric_fn, th, n).numpy()
    _validate_metric(g, th.numpy(), batch_shape)
    return g.reshape(batch_shape + (n, n))


# --------------------------------------------------------------------------------------------------
# the TensorFlow core (flat batch (B, n); no NumPy, so it runs inside tf.function and on a GPU)
# --------------------------------------------------------------------------------------------------
def pointwise_jacobian(tape: tf.GradientTape, target: tf.Tensor, source: tf.Tensor,
                       symmetric_last_two: bool = False) -> tf.Tensor:
    """Jacobian d target[b, ...] / d source[b, :] of a *pointwise* map, shape target.shape + (n,).

    Row b of ``target`` must depend only on row b of ``source`` (the metric functions of this module do), so
    the gradient of the sum over the batch of one entry gives that entry's derivative at every point at once.
    One backward pass per entry of ``target[0]`` (halved with ``symmetric_last_two`` for entries symmetric
    in their last two indices, like g_ij or Γ^i_kl). This avoids the vectorising (pfor) machinery of
    ``batch_jacobian``, whose tracing cost explodes when Jacobians are nested three or four deep; for the
    few coordinates of chapters 6 and 8 it is much faster.

    Args:
        tape: a persistent ``tf.GradientTape`` that recorded ``target`` from ``source``.
        target: tensor (B, *S); source: tensor (B, n).
        symmetric_last_two: target[..., a, b] == target[..., b, a]; compute a <= b only.
    Returns:
        tensor (B, *S, n).
    Used in chapters 6 and 8 (through the curvature routines).
    """
    shape = target.shape[1:]
    idx_list = list(np.ndindex(*shape)) if len(shape) else [()]
    wanted = [idx for idx in idx_list if not (symmetric_last_two and len(idx) >= 2 and idx[-2] > idx[-1])]
    with tape:  # record the slicing and summing too (re-entering a persistent tape)
        sums = [tf.reduce_sum(target[(slice(None),) + tuple(idx)]) for idx in wanted]
    cols = {
        idx: tape.gradient(total, source, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        for idx, total in zip(wanted, sums)
    }
    ordered = []
    for idx in idx_list:
        if symmetric_last_two and len(idx) >= 2 and idx[-2] > idx[-1]:
            idx = idx[:-2] + (idx[-1], idx[-2])
        ordered.append(cols[idx])
    stacked = tf.stack(ordered, axis=1)  # (B, prod(S), n)
    return tf.reshape(stacked, tf.concat([tf.shape(target), tf.shape(source)[-1:]], axis=0))


def _christoffel_from(g: tf.Tensor, dg: tf.Tensor) -> tf.Tensor:
    """Γ^i_kl from g (B,n,n) and dg[b, i, j, k] = ∂_k g_ij (B,n,n,n)."""
    # Christoffel symbols of the first kind Γ_mkl = ½ (∂_k g_ml + ∂_l g_mk − ∂_m g_kl)
    first = 0.5 * (
        tf.einsum("bmlk->bmkl", dg) + tf.einsum("bmkl->bmkl", dg) - tf.einsum("bklm->bmkl", dg)
    )
    ginv = tf.linalg.inv(g)
    return tf.einsum("bim,bmkl->bikl", ginv, first)


def _christoffel_core(metric_fn: MetricFn, theta: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(g, Γ) at a flat batch of points theta (B, n)."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(theta)
        g = tf.cast(metric_fn(theta), tf.float64)
    dg = pointwise_jacobian(tape, g, theta, symmetric_last_two=True)
    del tape
    return g, _christoffel_from(g, dg)


def _riemann_core(metric_fn: MetricFn, theta: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(g, Γ, Riemann) at a flat batch of points theta (B, n)."""
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(theta)
        g, gamma = _christoffel_core(metric_fn, theta)
    # dgamma[b, i, k, l, m] = ∂_m Γ^i_kl (Γ^i_kl is symmetric in k, l)
    dgamma = pointwise_jacobian(outer, gamma, theta, symmetric_last_two=True)
    del outer
    # R^i_jkl = ∂_k Γ^i_lj − ∂_l Γ^i_kj + Γ^i_km Γ^m_lj − Γ^i_lm Γ^m_kj
    d_term = tf.einsum("biljk->bijkl", dgamma) - tf.einsum("bikjl->bijkl", dgamma)
    q_term = tf.einsum("bikm,bmlj->bijkl", gamma, gamma) - tf.einsum("bilm,bmkj->bijkl", gamma, gamma)
    return g, gamma, d_term + q_term


def _ricci_from(g: tf.Tensor, riem: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    ric = tf.einsum("bijil->bjl", riem)
    scalar = tf.einsum("bjl,bjl->b", tf.linalg.inv(g), ric)
    return ric, scalar


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def _prepare(metric_fn, theta):
    _check_callable(metric_fn)
    return _as_points(theta)


def _run_checked(core, metric_fn, th, batch_shape, n):
    """Run a core routine, then validate the metric it evaluated (one metric evaluation in all).

    If the core fails (e.g. a singular metric cannot be inverted), evaluate and validate the metric on its
    own so the error names the offending point.
    """
    try:
        out = core(metric_fn, th)
    except (tf.errors.InvalidArgumentError, ValueError):
        _validate_metric(_call_metric(metric_fn, th, n).numpy(), th.numpy(), batch_shape)
        raise
    g = out[0]
    if tuple(g.shape) != (th.shape[0], n, n):
        raise ValueError(
            f"metric_fn must return one n x n matrix per point: for {th.shape[0]} points with n = {n} "
            f"coordinates the shape should be {(th.shape[0], n, n)}, but it is {tuple(g.shape)}."
        )
    _validate_metric(g.numpy(), th.numpy(), batch_shape)
    return out


def christoffel(metric_fn: MetricFn, theta) -> np.ndarray:
    """Christoffel symbols of the second kind of a metric, by automatic differentiation.

    ``Γ^i_kl = ½ g^im (∂_k g_ml + ∂_l g_mk − ∂_m g_kl)`` (004 eq. 3.2.15 with its indices corrected).

    Args:
        metric_fn: function (..., n) -> (..., n, n) written in TensorFlow ops (differentiable).
        theta: points, array of shape (..., n).
    Returns:
        float64 array of shape (..., n, n, n), entry [..., i, k, l] = Γ^i_kl.
    Raises:
        ValueError if theta has a bad shape or the metric is not symmetric positive definite at a point
        (the message names the first such point); TypeError if metric_fn is not callable.
    Used in chapters 6 and 8.
    """
    th, batch_shape, n = _prepare(metric_fn, theta)
    _, gamma = _run_checked(_christoffel_core, metric_fn, th, batch_shape, n)
    return gamma.numpy().reshape(batch_shape + (n, n, n))


def riemann(metric_fn: MetricFn, theta) -> np.ndarray:
    """Riemann curvature tensor ``R^i_jkl = ∂_k Γ^i_lj − ∂_l Γ^i_kj + Γ^i_km Γ^m_lj − Γ^i_lm Γ^m_kj``.

    Second derivatives of the metric come from nested gradient tapes.

    Args:
        metric_fn: function (..., n) -> (..., n, n) in TensorFlow ops (twice differentiable).
        theta: points, shape (..., n).
    Returns:
        float64 array of shape (..., n, n, n, n), entry [..., i, j, k, l] = R^i_jkl.
    Used in chapters 6 and 8.
    """
    th, batch_shape, n = _prepare(metric_fn, theta)
    _, _, riem = _run_checked(_riemann_core, metric_fn, th, batch_shape, n)
    return riem.numpy().reshape(batch_shape + (n,) * 4)


def ricci_tensor(metric_fn: MetricFn, theta) -> np.ndarray:
    """Ricci tensor ``R_jl = R^i_jil`` (contraction of the Riemann tensor's first and third index).

    Args:
        metric_fn: function (..., n) -> (..., n, n); theta: points (..., n).
    Returns:
        float64 array of shape (..., n, n).
    Used in chapter 6.
    """
    th, batch_shape, n = _prepare(metric_fn, theta)
    g, _, riem = _run_checked(_riemann_core, metric_fn, th, batch_shape, n)
    ric, _ = _ricci_from(g, riem)
    return ric.numpy().reshape(batch_shape + (n, n))


def ricci_scalar(metric_fn: MetricFn, theta) -> np.ndarray:
    """Ricci (scalar) curvature ``R = g^jl R_jl``; +2/r² on a sphere of radius r, −2 on the Poincaré half-plane.

    Args:
        metric_fn: function (..., n) -> (..., n, n); theta: points (..., n).
    Returns:
        float64 array of shape (...) (a float64 0-d array for a single point of shape (n,)).
    Used in chapters 6 and 8.
    """
    th, batch_shape, n = _prepare(metric_fn, theta)
    g, _, riem = _run_checked(_riemann_core, metric_fn, th, batch_shape, n)
    _, scalar = _ricci_from(g, riem)
    return scalar.numpy().reshape(batch_shape)


def curvature(metric_fn: MetricFn, theta) -> dict[str, np.ndarray]:
    """Everything at once (one pass of the tapes): metric, Christoffel, Riemann, Ricci tensor and scalar.

    Args:
        metric_fn: function (..., n) -> (..., n, n); theta: points (..., n).
    Returns:
        dict with ``metric`` (..., n, n), ``christoffel`` (..., n, n, n), ``riemann`` (..., n, n, n, n),
        ``ricci_tensor`` (..., n, n) and ``ricci_scalar`` (...).
    Used in chapters 6 and 8.
    """
    th, batch_shape, n = _prepare(metric_fn, theta)
    g, gamma, riem = _run_checked(_riemann_core, metric_fn, th, batch_shape, n)
    ric, scalar = _ricci_from(g, riem)
    return {
        "metric": g.numpy().reshape(batch_shape + (n, n)),
        "christoffel": gamma.numpy().reshape(batch_shape + (n,) * 3),
        "riemann": riem.numpy().reshape(batch_shape + (n,) * 4),
        "ricci_tensor": ric.numpy().reshape(batch_shape + (n, n)),
        "ricci_scalar": scalar.numpy().reshape(batch_shape),
    }


_INTEGRATORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _geodesic_integrator(metric_fn: MetricFn, num_steps: int, n: int):
    """A compiled RK4 integrator for one metric and step count, traced once and reused across calls."""
    try:
        per_metric = _INTEGRATORS.setdefault(metric_fn, {})
    except TypeError:  # not weak-referenceable: compile without caching
        per_metric = {}
    key = (num_steps, n)
    if key in per_metric:
        return per_metric[key]

    def accel(x, v):
        _, gamma = _christoffel_core(metric_fn, x)
        return -tf.einsum("bikl,bk,bl->bi", gamma, v, v)

    spec = tf.TensorSpec([None, n], tf.float64)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([], tf.float64)])
    def integrate(x, v, h):
        out = tf.TensorArray(tf.float64, size=num_steps + 1)
        out = out.write(0, x)
        for j in tf.range(num_steps):
            k1x, k1v = v, accel(x, v)
            k2x, k2v = v + 0.5 * h * k1v, accel(x + 0.5 * h * k1x, v + 0.5 * h * k1v)
            k3x, k3v = v + 0.5 * h * k2v, accel(x + 0.5 * h * k2x, v + 0.5 * h * k2v)
            k4x, k4v = v + h * k3v, accel(x + h * k3x, v + h * k3v)
            x = x + h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x)
            v = v + h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v)
            out = out.write(j + 1, x)
        return out.stack()

    per_metric[key] = integrate
    return integrate


def geodesic(metric_fn: MetricFn, theta0, velocity0, t_max: float, num_steps: int = 200) -> np.ndarray:
    """Integrate the geodesic equation ``θ̈^i = −Γ^i_kl θ̇^k θ̇^l`` with the classical Runge-Kutta method.

    The integration runs as one compiled TensorFlow loop. Several geodesics can be integrated at once by
    giving ``theta0`` and ``velocity0`` leading batch dimensions (same shape).

    Args:
        metric_fn: function (..., n) -> (..., n, n) in TensorFlow ops.
        theta0: starting point, shape (n,) or (..., n).
        velocity0: initial velocity dθ/dt, same shape as theta0.
        t_max: final parameter time (> 0); the geodesic has constant speed, so its length is
            t_max · sqrt(v0ᵀ g(θ0) v0).
        num_steps: number of RK4 steps (>= 1).
    Returns:
        float64 array of shape (num_steps + 1, ..., n): the points θ(t_j), t_j = j · t_max / num_steps.
    Raises:
        ValueError for bad shapes or steps, a metric that is not positive definite at the start, or a path
        that leaves the metric's domain (the message names the step and point).
    Used in chapter 6.
    """
    _check_callable(metric_fn)
    th0, batch_shape, n = _as_points(theta0, "theta0")
    v0, v_batch, v_n = _as_points(velocity0, "velocity0")
    if (v_batch, v_n) != (batch_shape, n):
        raise ValueError(
            f"velocity0 must have the same shape as theta0 {batch_shape + (n,)}; got {v_batch + (v_n,)}."
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
    try:
        t_max = float(t_max)
    except (TypeError, ValueError):
        raise TypeError(f"t_max must be a positive number; got {t_max!r}.") from None
    if not np.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"t_max must be a positive finite number; got {t_max}.")
    g0 = _call_metric(metric_fn, th0, n)
    _validate_metric(g0.numpy(), th0.numpy(), batch_shape)

    h = tf.constant(t_max / int(num_steps), tf.float64)
    integrate = _geodesic_integrator(metric_fn, int(num_steps), n)
    try:
        path = integrate(th0, v0, h).numpy()  # (num_steps + 1, B, n)
    except tf.errors.InvalidArgumentError:
        # the metric became singular inside the compiled loop (no inverse): find the step eagerly
        path = _integrate_until_failure(metric_fn, th0, v0, h, int(num_steps))
    finite = np.isfinite(path).all(axis=-1)
    if finite.all():  # also check that every point stays where the metric is positive definite
        g_path = _call_metric(metric_fn, tf.constant(path.reshape(-1, n)), n).numpy()
        ok = np.isfinite(g_path).all(axis=(-1, -2))
        sym = 0.5 * (g_path + np.swapaxes(g_path, -1, -2))
        ok[ok] = np.linalg.eigvalsh(sym[ok])[..., 0] > 0
        finite = ok.reshape(finite.shape)
    if not finite.all():
        step, k = (int(i) for i in np.argwhere(~finite)[0])
        point = path[step, k]
        where = (f"point {np.array2string(point, precision=6)}" if np.isfinite(point).all() else
                 f"the step from point {np.array2string(path[step - 1, k], precision=6)} needed the metric "
                 "where it cannot be inverted")
        raise ValueError(
            f"the geodesic from {_describe_point(k, batch_shape, th0.numpy())} left the metric's domain "
            f"at step {step} of {num_steps} ({where}; the point or its metric is not finite or not positive "
            "definite); shorten t_max, take more steps or start elsewhere."
        )
    return path.reshape((int(num_steps) + 1,) + batch_shape + (n,))


def _integrate_until_failure(metric_fn, x, v, h, num_steps) -> np.ndarray:
    """The same RK4 steps, eagerly; the points from the first step whose update fails are NaN."""
    def accel(x, v):
        _, gamma = _christoffel_core(metric_fn, x)
        return -tf.einsum("bikl,bk,bl->bi", gamma, v, v)

    out = np.full((num_steps + 1,) + tuple(x.shape), np.nan)
    out[0] = x.numpy()
    for j in range(num_steps):
        try:
            k1x, k1v = v, accel(x, v)
            k2x, k2v = v + 0.5 * h * k1v, accel(x + 0.5 * h * k1x, v + 0.5 * h * k1v)
            k3x, k3v = v + 0.5 * h * k2v, accel(x + 0.5 * h * k2x, v + 0.5 * h * k2v)
            k4x, k4v = v + h * k3v, accel(x + h * k3x, v + h * k3v)
        except tf.errors.InvalidArgumentError:  # step j + 1 needs the metric where it cannot be inverted
            return out
        x = x + h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x)
        v = v + h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v)
        out[j + 1] = x.numpy()
    return out


@dataclass
class GeodesicPath:
    """A geodesic between two points found by shooting.

    Attributes: path (num_steps + 1, n) points θ(t_j), t in [0, 1]; velocity (n,) the initial velocity;
    length (the geodesic distance along this path, sqrt(v0ᵀ g(θ_a) v0) for constant speed); endpoint_error
    (|θ(1) − θ_b|); iterations (Newton steps); converged (endpoint_error <= tol).
    """
    path: np.ndarray
    velocity: np.ndarray
    length: float
    endpoint_error: float
    iterations: int
    converged: bool


def geodesic_between(metric_fn: MetricFn, theta_a, theta_b, num_steps: int = 200, tol: float = 1e-9,
                     max_iter: int = 30, velocity0=None) -> GeodesicPath:
    """The geodesic from θ_a to θ_b by shooting: Newton's method on the initial velocity v of the geodesic
    equation so that θ(1; v) = θ_b.

    Each Newton step integrates the geodesic (:func:`geodesic`, RK4, t in [0, 1]) and its n neighbours
    θ(1; v + ε e_i) for a forward-difference Jacobian ∂θ(1)/∂v; a step that leaves the metric's domain or
    does not reduce the endpoint error is halved (at most 20 times). The start is v = θ_b − θ_a (the
    straight line) unless ``velocity0`` is given. Shooting finds *a* geodesic: on a manifold with
    conjugate points (the sphere's antipodes) it need not be the shortest one.

    Args:
        metric_fn: function (..., n) -> (..., n, n). theta_a, theta_b: points (n,).
        num_steps: RK4 steps per integration. tol: endpoint error that counts as converged.
        max_iter: Newton steps. velocity0: optional initial guess (n,).
    Returns:
        :class:`GeodesicPath`; warns when the endpoint error stays above ``tol``.
    Used in chapter 6 (geodesic distances between models).
    """
    _check_callable(metric_fn)
    a, sa, n = _as_points(theta_a, "theta_a")
    b, sb, nb = _as_points(theta_b, "theta_b")
    if sa or sb or n != nb:
        raise ValueError(f"theta_a and theta_b must be single points of the same dimension, shape (n,); got "
                         f"{sa + (n,)} and {sb + (nb,)}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}.")
    a, b = a.numpy()[0], b.numpy()[0]
    v = (b - a) if velocity0 is None else np.asarray(velocity0, dtype=np.float64).reshape(n)
    check_metric(metric_fn, np.stack([a, b]))

    def shoot(vel):
        return geodesic(metric_fn, a, vel, 1.0, num_steps)

    path = shoot(v)
    err = np.linalg.norm(path[-1] - b)
    it = 0
    while err > tol and it < max_iter:
        it += 1
        eps = 1e-7 * max(1.0, np.linalg.norm(v))
        batch = geodesic(metric_fn, np.tile(a, (n, 1)), v[None, :] + eps * np.eye(n), 1.0, num_steps)[-1]
        J = (batch - path[-1][None, :]).T / eps  # column i: d theta(1) / d v_i
        step = np.linalg.lstsq(J, b - path[-1], rcond=None)[0]
        scale = 1.0
        for _ in range(20):
            try:
                trial = shoot(v + scale * step)
                trial_err = np.linalg.norm(trial[-1] - b)
            except ValueError:
                trial_err = np.inf
            if trial_err < err:
                break
            scale *= 0.5
        else:
            break
        v, path, err = v + scale * step, trial, trial_err
    g_a = check_metric(metric_fn, a)
    length = float(np.sqrt(v @ g_a @ v))
    result = GeodesicPath(path=path, velocity=v, length=length, endpoint_error=float(err), iterations=it,
                          converged=bool(err <= tol))
    if not result.converged:
        warnings.warn(f"geodesic_between: shooting stopped {err:.3g} away from theta_b after {it} Newton steps "
                      f"(tol {tol:g}); try more steps, a better velocity0, or closer points.", stacklevel=2)
    return result


def geodesic_distance(metric_fn: MetricFn, theta_a, theta_b, num_steps: int = 200, tol: float = 1e-9,
                      max_iter: int = 30) -> float:
    """The length of the geodesic from θ_a to θ_b found by :func:`geodesic_between` (shooting).

    Equal to the Riemannian distance when that geodesic is the shortest (always for points close enough;
    e.g. on the sphere, not past the antipode). Raises ValueError when shooting does not converge.
    Used in chapter 6.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = geodesic_between(metric_fn, theta_a, theta_b, num_steps=num_steps, tol=tol, max_iter=max_iter)
    if not res.converged:
        raise ValueError(f"geodesic_distance: shooting did not reach theta_b (endpoint error "
                         f"{res.endpoint_error:.3g} > tol {tol:g}); pass more num_steps/max_iter or check that a "
                         "geodesic joins the points inside the metric's domain.")
    return res.length


def curve_length(metric_fn: MetricFn, path, extrapolate: bool = False) -> float:
    """Length ``∫ sqrt(θ̇ᵀ g(θ) θ̇) dt`` of a curve given by its points, by the midpoint rule.

    Each segment contributes sqrt(Δθᵀ g(θ_mid) Δθ) with θ_mid the segment's midpoint; the error falls as
    the square of the segment length. With ``extrapolate=True`` (points equally spaced in the curve
    parameter, an even number of segments) the Richardson combination (4 L_h − L_2h) / 3 of the sums over
    all points and over every second point cancels that leading error.

    Args:
        metric_fn: function (..., n) -> (..., n, n).
        path: points of the curve in order, shape (m + 1, n) with m >= 1.
        extrapolate: apply Richardson extrapolation (needs m even).
    Returns:
        the length (a Python float).
    Used in chapter 6.
    """
    _check_callable(metric_fn)
    try:
        arr = np.asarray(path, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("path must be an array of points of shape (m + 1, n).") from None
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"path must have shape (m + 1, n) with at least two points; got shape {arr.shape}.")
    if extrapolate and (arr.shape[0] - 1) % 2:
        raise ValueError(
            f"extrapolate=True needs an even number of segments; the path has {arr.shape[0] - 1}."
        )

    def chord_sum(points: np.ndarray) -> float:
        mid = 0.5 * (points[1:] + points[:-1])
        delta = points[1:] - points[:-1]
        g = check_metric(metric_fn, mid)
        seg = np.einsum("bi,bij,bj->b", delta, g, delta)
        return float(np.sum(np.sqrt(np.maximum(seg, 0.0))))

    fine = chord_sum(arr)
    if not extrapolate:
        return fine
    return (4.0 * fine - chord_sum(arr[::2])) / 3.0


def geodesic_circle(metric_fn: MetricFn, center, radius: float, num_directions: int = 48,
                    num_steps: int = 100) -> np.ndarray:
    """Unit-speed geodesics leaving ``center`` in evenly spaced directions, up to a geodesic distance ``radius``.

    The direction of angle φ_k = 2πk/K is the unit vector (cos φ_k, sin φ_k) of an orthonormal frame of the
    metric at the centre: with the Cholesky factor g(θ_0) = L Lᵀ, the initial velocity is v_k = L⁻ᵀ(cos φ_k,
    sin φ_k), so v_kᵀ g(θ_0) v_k = 1 (for a diagonal g, v_k = (cos φ_k / √g_11, sin φ_k / √g_22)). Integrated
    to parameter time ``radius`` (:func:`geodesic`), the end points lie on the *geodesic circle* of that
    radius, as long as no two geodesics cross before it.

    Args:
        metric_fn: a metric of a two-dimensional space, function (..., 2) -> (..., 2, 2) in TensorFlow ops.
        center: the starting point, shape (2,).
        radius: the geodesic distance travelled (> 0).
        num_directions: how many directions K (>= 3).
        num_steps: Runge-Kutta steps per geodesic (>= 1).
    Returns:
        float64 array (num_steps + 1, K, 2): the points of geodesic k at times t_j = j · radius / num_steps;
        ``paths[-1]`` are the K points of the circle.
    Raises:
        ValueError for a centre that is not one 2-D point, a radius that is not positive, fewer than 3
        directions, or a metric that is not positive definite at the centre (or along the way, see
        :func:`geodesic`).
    Used in chapter 6 (widget: geodesics on the Gaussian manifold).
    """
    _check_callable(metric_fn)
    c = np.asarray(center, dtype=np.float64)
    if c.shape != (2,):
        raise ValueError(f"center must be one point of a 2-D space, shape (2,); got shape {c.shape}. "
                         "Geodesic circles are drawn in two dimensions only.")
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        raise TypeError(f"radius must be a positive number; got {radius!r}.") from None
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive finite geodesic distance; got {radius}.")
    if isinstance(num_directions, bool) or not isinstance(num_directions, (int, np.integer)) \
            or num_directions < 3:
        raise ValueError(f"num_directions must be an integer >= 3 (a circle needs three points); "
                         f"got {num_directions!r}.")
    g0 = check_metric(metric_fn, c)
    angles = np.linspace(0, 2 * np.pi, int(num_directions), endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], -1)  # (K, 2), orthonormal frame coordinates
    chol = np.linalg.cholesky(0.5 * (g0 + g0.T))
    velocities = np.linalg.solve(chol.T, unit.T).T  # v_k = L^{-T} u_k, so v_k^T g v_k = 1
    starts = np.tile(c, (len(angles), 1))
    return geodesic(metric_fn, starts, velocities, t_max=radius, num_steps=num_steps)


def plot_geodesic_circle(ax, metric_fn: MetricFn, center, radius: float, num_directions: int = 48,
                         draw_every: int = 3, num_steps: int = 100, xlabel: str = r"$\theta_1$",
                         ylabel: str = r"$\theta_2$", title: str | None = None) -> np.ndarray:
    """Draw the geodesics of :func:`geodesic_circle` from ``center`` and the geodesic circle through their ends.

    Every ``draw_every``-th geodesic is drawn as a thin line (colour C0 of the book's cycle), the circle through
    all ``num_directions`` end points as a thick closed line (C3, labelled with the radius), the centre as a
    black dot; the axes get labels, a title (default: the centre) and a legend.

    Args:
        ax: a matplotlib Axes.
        metric_fn, center, radius, num_directions, num_steps: as :func:`geodesic_circle`.
        draw_every: draw geodesics 0, k, 2k, ... (>= 1; 1 draws all).
        xlabel, ylabel: the coordinate names with units, if any.
        title: the panel title (None: "geodesics from <center>").
    Returns:
        the paths (num_steps + 1, num_directions, 2), as :func:`geodesic_circle`.
    Used in chapter 6 (widget: geodesics on the Gaussian manifold).
    """
    if not hasattr(ax, "plot") or not hasattr(ax, "set"):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}.")
    if isinstance(draw_every, bool) or not isinstance(draw_every, (int, np.integer)) or draw_every < 1:
        raise ValueError(f"draw_every must be a positive integer (1 draws every geodesic); got {draw_every!r}.")
    paths = geodesic_circle(metric_fn, center, radius, num_directions, num_steps)
    for k in range(0, paths.shape[1], int(draw_every)):
        ax.plot(paths[:, k, 0], paths[:, k, 1], color="C0", lw=1)
    ends = np.vstack([paths[-1], paths[-1][:1]])  # closed
    ax.plot(ends[:, 0], ends[:, 1], color="C3", lw=2, label=f"geodesic circle, radius {radius}")
    ax.plot(*np.asarray(center, dtype=np.float64), "ko")
    ax.set(xlabel=xlabel, ylabel=ylabel,
           title=title if title is not None else f"geodesics from {tuple(np.asarray(center).tolist())}")
    ax.legend(loc="upper right")
    return paths
