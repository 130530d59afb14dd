"""Fisher information of parametric families given as TensorFlow log-densities, in both forms.

A family is a function ``log_prob(x, theta) -> (B, M)``: the log-probability (or log-density) of M
outcomes ``x`` (shape ``(M,) + event_shape``) under B parameter points ``theta`` (shape ``(B, n)``),
written with TensorFlow broadcasting, e.g. for the Gaussian family
``mu, sigma = theta[:, :1], theta[:, 1:]; -0.5 * ((x[None] - mu) / sigma) ** 2 - log(sigma) - ½ log 2π``.

The Fisher information (004 eq. 3.1.1 and eq. 3.2.14, proved equal in its appendix A.2)

    I_ij(θ) = E_x[∂_i ℓ ∂_j ℓ]   (score form)   =   −E_x[∂_i ∂_j ℓ]   (Hessian form),   ℓ = log p_θ(x),

is computed as a weighted sum over outcomes: exact sums over the whole support for discrete families,
quadrature nodes and weights for continuous ones (``E[A] ≈ Σ_m w_m p_θ(x_m) A(x_m)``), or Monte-Carlo
samples drawn from p_θ. Derivatives come from ``tf.GradientTape``; the result is differentiable in θ,
so :func:`fisher_metric` can be handed to :mod:`helpers.geometry` to get the curvature of a family.

For a network read as a statistical model, :math:`p_\\theta = e^{-\\ell}`, :func:`network_fisher_spectra` compares
the top eigenvalues and traces of its Hessian, true Fisher and empirical Fisher (the operators of
:mod:`helpers.operators`) at several weight settings.

Used in chapter 6 (and the spin models of :mod:`helpers.spin_models`).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from .geometry import pointwise_jacobian

__all__ = [
    "fisher_metric",
    "fisher_information",
    "fisher_information_sampled",
    "gauss_hermite_nodes",
    "gaussian_log_prob",
    "gaussian_fisher_closed_form",
    "gaussian_fisher_distance",
    "network_fisher_spectra",
    "NETWORK_MATRICES",
]

LogProb = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
FORMS = ("score", "hessian")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS} (E[∂ℓ ∂ℓ] or −E[∂²ℓ]); got {form!r}.")


def _as_outcomes(outcomes, quad_weights):
    if outcomes is None:
        raise ValueError("outcomes must be given: the whole support (discrete) or quadrature nodes (continuous).")
    x = tf.constant(np.asarray(outcomes, dtype=np.float64))
    if x.shape.rank == 0 or x.shape[0] < 1:
        raise ValueError(f"outcomes must have shape (M, ...) with M >= 1; got shape {tuple(x.shape)}.")
    w = None
    if quad_weights is not None:
        w_np = np.asarray(quad_weights, dtype=np.float64)
        if w_np.shape != (x.shape[0],):
            raise ValueError(
                f"quad_weights must have one weight per outcome, shape ({x.shape[0]},); got {w_np.shape}."
            )
        if np.any(w_np < 0) or not np.all(np.isfinite(w_np)):
            raise ValueError("quad_weights must be finite and non-negative.")
        w = tf.constant(w_np)
    return x, w


def _unit_tangent(theta: tf.Tensor, i: int) -> tf.Tensor:
    return tf.one_hot(tf.fill(tf.shape(theta)[:1], i), theta.shape[-1], dtype=tf.float64)


def _log_prob_and_derivatives(log_prob: LogProb, x: tf.Tensor, theta: tf.Tensor, second: bool):
    """log p (B, M), score (B, M, n) and, if ``second``, the Hessian (B, M, n, n) of log p in θ.

    Forward-mode directional derivatives along each coordinate (n passes, n² for the Hessian): every row b
    depends only on theta[b], so no (M × M) or (B × B) intermediate is ever formed. Outer gradient tapes
    record these computations, so the result can be differentiated again (for Christoffel symbols).
    """
    n = theta.shape[-1]
    cols, rows = [], []
    logp = None
    for i in range(n):
        with tf.autodiff.ForwardAccumulator(theta, _unit_tangent(theta, i)) as acc_i:
            if not second:
                logp = tf.cast(log_prob(x, theta), tf.float64)
                d_i = None
            else:
                d_js = []
                for j in range(n):
                    with tf.autodiff.ForwardAccumulator(theta, _unit_tangent(theta, j)) as acc_j:
                        logp = tf.cast(log_prob(x, theta), tf.float64)
                    d_js.append(acc_j.jvp(logp, unconnected_gradients=tf.UnconnectedGradients.ZERO))
        if not second:
            cols.append(acc_i.jvp(logp, unconnected_gradients=tf.UnconnectedGradients.ZERO))
        else:
            cols.append(d_js[i])
            rows.append(tf.stack(
                [acc_i.jvp(d_j, unconnected_gradients=tf.UnconnectedGradients.ZERO) for d_j in d_js], axis=-1
            ))
    score = tf.stack(cols, axis=-1)
    hess = tf.stack(rows, axis=-2) if second else None
    return logp, score, hess


def _fisher_core(log_prob: LogProb, x: tf.Tensor, w: tf.Tensor | None, theta: tf.Tensor, form: str):
    """Fisher information at theta (B, n) as a (B, n, n) tensor; also returns the total probability (B,).

    Score form: Σ_m p_m s_m s_mᵀ with forward-mode scores s. Hessian form: with θ' a copy of θ that only the
    log-likelihood sees, −Σ_m p_m(θ) ∂²ℓ_m(θ) = −∂_θ' [Σ_m p_m(θ) ∂ℓ_m(θ')] at θ' = θ, one batch Jacobian of
    an (B, n) array (no nested forward accumulators, which enclosing gradient tapes cannot differentiate).
    """
    if form == "score":
        logp, score, _ = _log_prob_and_derivatives(log_prob, x, theta, second=False)
        prob = tf.exp(logp)
    else:
        theta_ll = tf.identity(theta)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(theta_ll)
            _, score, _ = _log_prob_and_derivatives(log_prob, x, theta_ll, second=False)
            logp = tf.cast(log_prob(x, theta), tf.float64)
            prob = tf.exp(logp)
            weighted = prob if w is None else prob * w[None, :]
            mean_score = tf.einsum("bm,bmj->bj", weighted, score)
    if logp.shape.rank != 2 or logp.shape[0] != theta.shape[0] or logp.shape[1] != x.shape[0]:
        raise ValueError(
            f"log_prob(x, theta) must return shape (B, M) = ({theta.shape[0]}, {x.shape[0]}) for {x.shape[0]} "
            f"outcomes and {theta.shape[0]} parameter points; got {tuple(logp.shape)}."
        )
    if w is not None:
        prob = prob * w[None, :]
    total = tf.reduce_sum(prob, axis=1)
    if form == "score":
        info = tf.einsum("bm,bmi,bmj->bij", prob, score, score)
    else:
        info = -pointwise_jacobian(tape, mean_score, theta_ll)
        del tape
    return info, total


def fisher_metric(log_prob: LogProb, outcomes, quad_weights=None, form: str = "score") -> Callable:
    """The Fisher metric of a family as a metric function for :mod:`helpers.geometry`.

    Args:
        log_prob: ``log_prob(x, theta) -> (B, M)`` in TensorFlow ops, x (M, ...), theta (B, n).
        outcomes: the support (discrete) or quadrature nodes (continuous), shape (M, ...).
        quad_weights: None for exact sums over a discrete support, else quadrature weights (M,)
            such that ∫ A(x) p(x) dx ≈ Σ_m w_m p(x_m) A(x_m).
        form: ``"score"`` (E[∂ℓ ∂ℓ]) or ``"hessian"`` (−E[∂²ℓ]).
    Returns:
        a function theta (..., n) -> Fisher matrices (..., n, n), TensorFlow in and out (differentiable).
    Used in chapter 6.
    """
    if not callable(log_prob):
        raise TypeError("log_prob must be a function log_prob(x, theta) -> (B, M) log-probabilities.")
    _check_form(form)
    x, w = _as_outcomes(outcomes, quad_weights)

    def metric(theta):
        theta = tf.cast(tf.convert_to_tensor(theta), tf.float64)
        shape = tf.shape(theta)
        flat = tf.reshape(theta, (-1, theta.shape[-1]))
        info, _ = _fisher_core(log_prob, x, w, flat, form)
        return tf.reshape(info, tf.concat([shape, shape[-1:]], axis=0))

    return metric


def fisher_information(log_prob: LogProb, theta, outcomes, quad_weights=None, form: str = "score",
                       normalization_tol: float | None = 1e-8) -> np.ndarray:
    """Fisher information ``I_ij(θ)`` by exact sums (discrete) or quadrature (continuous), either form.

    ``I_ij = Σ_x p_θ(x) ∂_i log p_θ(x) ∂_j log p_θ(x)`` (score form, 004 eq. 3.1.1) or
    ``I_ij = −Σ_x p_θ(x) ∂_i ∂_j log p_θ(x)`` (Hessian form, 004 eq. 3.2.14); with quadrature the sums
    carry the weights w_m.

    Args:
        log_prob: ``log_prob(x, theta) -> (B, M)`` in TensorFlow ops.
        theta: parameter points, shape (n,) or (..., n).
        outcomes: the whole support (discrete) or quadrature nodes (continuous), shape (M, ...).
        quad_weights: None (discrete, exact sums) or quadrature weights of shape (M,).
        form: ``"score"`` or ``"hessian"``.
        normalization_tol: if not None, check |Σ p − 1| <= tol at every point, so a support that misses
            outcomes or a quadrature that does not cover the density is caught instead of silently biasing I.
    Returns:
        float64 array of shape (..., n, n).
    Used in chapter 6.
    """
    if not callable(log_prob):
        raise TypeError("log_prob must be a function log_prob(x, theta) -> (B, M) log-probabilities.")
    _check_form(form)
    x, w = _as_outcomes(outcomes, quad_weights)
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim == 0:
        raise ValueError("theta must have shape (n,) or (..., n); got a scalar. Pass e.g. [0.3].")
    batch_shape, n = th.shape[:-1], th.shape[-1]
    flat = tf.constant(th.reshape(-1, n))
    info, total = _fisher_core(log_prob, x, w, flat, form)
    total = total.numpy()
    if normalization_tol is not None and np.any(np.abs(total - 1.0) > normalization_tol):
        k = int(np.argmax(np.abs(total - 1.0)))
        raise ValueError(
            f"the probabilities sum to {total[k]:.10g}, not 1, at theta = {th.reshape(-1, n)[k]}: the outcomes do "
            "not cover the support (or the quadrature is too coarse, or log_prob is not normalised)."
        )
    return info.numpy().reshape(batch_shape + (n, n))


def fisher_information_sampled(log_prob: LogProb, sampler: Callable, theta, num_samples: int, seed: int,
                               form: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo Fisher information at one point: average of ∂ℓ ∂ℓᵀ (or −∂²ℓ) over samples x ~ p_θ.

    Args:
        log_prob: ``log_prob(x, theta) -> (B, M)``.
        sampler: ``sampler(theta (n,), num_samples, rng) -> x (num_samples, ...)`` drawing from p_θ
            (rng is a ``numpy.random.Generator``).
        theta: one parameter point, shape (n,).
        num_samples: number of samples (>= 2).
        seed: seed of the generator.
        form: ``"score"`` or ``"hessian"``.
    Returns:
        (estimate (n, n), standard error of each entry (n, n)).
    Used in chapter 6.
    """
    _check_form(form)
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim != 1:
        raise ValueError(f"theta must be one parameter point of shape (n,); got shape {th.shape}.")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2; got {num_samples!r}.")
    rng = np.random.default_rng(seed)
    x = tf.constant(np.asarray(sampler(th, int(num_samples), rng), dtype=np.float64))
    t = tf.constant(th[None, :])
    _, score, hess = _log_prob_and_derivatives(log_prob, x, t, second=(form == "hessian"))
    if form == "score":
        terms = tf.einsum("si,sj->sij", score[0], score[0])
    else:
        terms = -hess[0]  # (S, n, n)
    terms = terms.numpy()
    return terms.mean(axis=0), terms.std(axis=0, ddof=1) / np.sqrt(num_samples)


# ---------------------------------------------------------------- the Gaussian family (004 eq. 3.1.4-3.1.5)
def gaussian_log_prob(x, theta):
    """Log-density of N(μ, σ²) for outcomes x (M,) and parameters theta = (μ, σ), shape (B, 2) -> (B, M).

    Used in chapter 6.
    """
    mu, sigma = theta[:, :1], theta[:, 1:2]
    z = (x[None, :] - mu) / sigma
    return -0.5 * z**2 - tf.math.log(sigma) - 0.5 * np.log(2.0 * np.pi)


def gauss_hermite_nodes(num: int, center: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a fixed quadrature for ∫ A(x) p(x) dx with p roughly N(center, scale²).

    Returns x_m and w_m such that Σ_m w_m p(x_m) A(x_m) ≈ ∫ A p dx: the Gauss-Hermite rule for
    weight e^{−z²/2}, mapped to x = center + scale · z, with the Gaussian weight divided out so that the
    density p itself enters the sum. Exact for N(center, scale²) times a polynomial of degree < 2·num.

    Used in chapter 6.
    """
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer; got {num!r}.")
    if not scale > 0:
        raise ValueError(f"scale must be positive; got {scale!r}.")
    z, wz = np.polynomial.hermite_e.hermegauss(int(num))
    x = center + scale * z
    # ∫ A p dx = scale ∫ A(x(z)) p(x(z)) dz ≈ scale Σ wz e^{z²/2} A p
    w = scale * wz * np.exp(0.5 * z**2)
    return x, w


def gaussian_fisher_closed_form(sigma) -> np.ndarray:
    """Fisher information of N(μ, σ²) in (μ, σ): diag(1, 2) / σ² (004 eq. 3.1.5), shape (..., 2, 2).

    Used in chapter 6.
    """
    s = np.asarray(sigma, dtype=np.float64)
    out = np.zeros(s.shape + (2, 2))
    out[..., 0, 0] = 1.0 / s**2
    out[..., 1, 1] = 2.0 / s**2
    return out


def gaussian_fisher_distance(theta_a, theta_b) -> np.ndarray:
    """Fisher-Rao distance between N(μ_a, σ_a²) and N(μ_b, σ_b²).

    The metric diag(1, 2)/σ² is √2 times the Poincaré half-plane metric in (μ/√2, σ), so
    ``d = √2 arccosh(1 + ((μ_a − μ_b)²/2 + (σ_a − σ_b)²) / (2 σ_a σ_b))``.

    Args:
        theta_a, theta_b: (μ, σ) pairs, shape (..., 2).
    Returns:
        distances, shape (...).
    Used in chapter 6.
    """
    a, b = np.asarray(theta_a, dtype=np.float64), np.asarray(theta_b, dtype=np.float64)
    if a.shape[-1] != 2 or b.shape[-1] != 2:
        raise ValueError("theta_a and theta_b must have shape (..., 2) holding (mu, sigma).")
    if np.any(a[..., 1] <= 0) or np.any(b[..., 1] <= 0):
        raise ValueError("sigma must be positive in both points.")
    arg = 1.0 + ((a[..., 0] - b[..., 0]) ** 2 / 2.0 + (a[..., 1] - b[..., 1]) ** 2) / (2.0 * a[..., 1] * b[..., 1])
    return np.sqrt(2.0) * np.arccosh(arg)


#: the curvature matrices of a network that :func:`network_fisher_spectra` compares
NETWORK_MATRICES = ("hessian", "true", "empirical")


def _check_weights(model, weights) -> dict:
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError("weights must be a non-empty dict stage name -> weight list (model.get_weights() "
                        "format), e.g. {'init': w0, 'trained': w1}.")
    shapes = [np.shape(w) for w in model.get_weights()]
    out = {}
    for stage, w in weights.items():
        if not isinstance(stage, str) or not stage or "/" in stage:
            raise ValueError(f"stage names must be non-empty strings without '/', got {stage!r} (the "
                             "result keys are 'stage/matrix/top').")
        if not isinstance(w, (list, tuple)) or [np.shape(a) for a in w] != shapes:
            raise ValueError(f"weights[{stage!r}] must be a list of arrays of the model's weight shapes "
                             f"{shapes} (model.get_weights() of the same architecture).")
        out[stage] = list(w)
    return out


def _check_count(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}.")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least {minimum}{upper}, got {value}.")
    return int(value)


def network_fisher_spectra(model, loss_fn, data, weights: Mapping, top_k: int, trace_products: int,
                           matrices=NETWORK_MATRICES, lanczos_seed: int = 0, trace_seed: int = 0,
                           tol: float = 1e-8, likelihood: str = "categorical") -> dict[str, np.ndarray]:
    """Top eigenvalues and traces of a network's Hessian, true Fisher and empirical Fisher at several weights.

    For each stage (a set of weights) and each matrix: the ``top_k`` largest eigenvalues by the Lanczos method
    (:func:`helpers.eigensolvers.lanczos`, ``which="LA"``) and the trace by Hutch++
    (:func:`helpers.estimators.hutchpp_trace`), all on the same examples. The matrices
    (martens2020new; 004 Sec. 3.2.5) are ``"hessian"``, the Hessian of the mean loss
    (:func:`helpers.operators.hessian`); ``"true"``, :math:`\\frac1N\\sum_i \\mathbb{E}_{y\\sim p_\\theta(\\cdot|x_i)}
    [\\nabla\\ell\\,\\nabla\\ell^\\top]` with the model's labels (:func:`helpers.operators.fisher`, the Gauss-Newton
    form for ``likelihood``); ``"empirical"``, :math:`\\frac1N\\sum_i \\nabla\\ell_i\\nabla\\ell_i^\\top` with the
    data's labels. The same seeds are used at every stage, so the stages differ only by the weights.

    Args:
        model: a Keras model; its weights are set to each stage in turn and restored at the end.
        loss_fn: the per-example loss ``loss(y_true, y_pred) -> (N,)`` of the Hessian and the empirical Fisher.
        data: the examples ``(x, y)``, x (N, ...) and labels y (N,).
        weights: stage name -> weight list in ``model.get_weights()`` format, e.g.
            ``{"init": w0, "trained": w1}``.
        top_k: eigenvalues per matrix (1 <= top_k <= number of parameters).
        trace_products: the Hutch++ budget of matrix-vector products (>= 3).
        matrices: which of :data:`NETWORK_MATRICES` to compute.
        lanczos_seed, trace_seed: seeds of the Lanczos start vector and the Hutch++ probes.
        tol: the Lanczos convergence tolerance.
        likelihood: the true Fisher's output distribution, ``"categorical"`` (softmax; for cross-entropy) or
            ``"gaussian"``.
    Returns:
        dict with, for every stage s and matrix m, ``"s/m/top"`` (top_k,) in descending order and
        ``"s/m/trace"`` = [trace, its standard error]: a flat dict of arrays, ready for :func:`helpers.cache.cached`.
    Used in chapter 6.
    """
    from . import eigensolvers, estimators, operators

    if not (hasattr(model, "get_weights") and hasattr(model, "set_weights") and callable(model)):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (N,).")
    if not isinstance(data, (tuple, list)) or len(data) != 2 or len(data[0]) != len(data[1]):
        raise ValueError("data must be a pair (x, y) with one label per example.")
    stages = _check_weights(model, weights)
    if isinstance(matrices, str) or not matrices or set(matrices) - set(NETWORK_MATRICES) \
            or len(set(matrices)) != len(matrices):
        raise ValueError(f"matrices must be a non-empty list of distinct names from {NETWORK_MATRICES}, "
                         f"got {matrices!r}.")
    num_params = int(sum(np.size(w) for w in model.get_weights()))
    top_k = _check_count(top_k, "top_k", 1, num_params)
    trace_products = _check_count(trace_products, "trace_products", 3)
    entry_weights = model.get_weights()
    out = {}
    try:
        for stage, w in stages.items():
            model.set_weights(w)
            build = {"hessian": lambda: operators.hessian(model, loss_fn, data),
                     "true": lambda: operators.fisher(model, data, kind="true", likelihood=likelihood),
                     "empirical": lambda: operators.fisher(model, data, kind="empirical", loss_fn=loss_fn)}
            ops = {name: build[name]() for name in matrices}
            for name, op in ops.items():
                eig = eigensolvers.lanczos(op, top_k, which="LA", tol=tol, seed=lanczos_seed)
                tr = estimators.hutchpp_trace(op, trace_products, seed=trace_seed)
                out[f"{stage}/{name}/top"] = np.sort(eig.eigenvalues)[::-1]
                out[f"{stage}/{name}/trace"] = np.array([tr.value, tr.stderr])
    finally:
        model.set_weights(entry_weights)
    return out
