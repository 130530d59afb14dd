"""The two-parameter sigmoid neuron of 004 Sec. 5.2: losses, Fisher metric, NTK trace, GD path, grids.

The network is f_θ(x) = σ(5 θ·x) with θ = (θ₁, θ₂), no bias, on points x = (x, y) of the unit square.
With two parameters every geometric quantity can be evaluated on a whole grid of θ. Everything here is
float64 TensorFlow, vectorised over any leading batch shape of θ (a grid is one call, not a loop), and
written with numerically stable forms (σ(±u), softplus) so no value is lost to overflow or log(0).

Notation: z_i = 5 θ·x_i is the logit of example i, s_i = 2y_i − 1 ∈ {−1, +1} its sign label and
u_i = s_i z_i its margin; p_i = σ(u_i), q_i = σ(−u_i) = 1 − p_i (q_i is the distance |f_i − y_i|).

Losses (004 eqs. 5.1.5-5.1.7 with one output, N_O = 1), all per example:

- ``"mean_power2"``: ℓ = (f − y)² = q²  (mean-power loss of order n = 2);
- ``"l2_norm"``:     ℓ = |f − y| = q     (L_p-norm loss with p = 2: the norm, not its square);
- ``"cross_entropy"``: ℓ = −y log f − (1 − y) log(1 − f) = softplus(−u)  (binary cross-entropy; the
  softmax of 004 eq. 5.1.7 over a single output is the constant 1, so the loss the sigmoid output
  actually needs is the binary one).

Fisher metric (004 eqs. 3.2.11, 3.3.1 with p_θ = e^{−ℓ}; Sec. 3.2.5): the empirical Fisher of the data,
I_ab(θ) = (1/N) Σ_i ∂_a ℓ_i ∂_b ℓ_i = (1/N) Σ_i w_i x_ia x_ib with w_i = (5 ∂ℓ_i/∂z_i)².
NTK trace: tr Λ = Σ_i |∇_θ f_i|² = Σ_i 25 (p_i q_i)² |x_i|² (sum over examples, as in 004 Sec. 4.2).

Used in chapter 8.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

DTYPE = tf.float64
#: the steepness factor of 004 eq. 5.2.1
SCALE = 5.0
LOSSES = ("mean_power2", "l2_norm", "cross_entropy")
LOSS_LABELS = {"mean_power2": "mean-power (n = 2)", "l2_norm": "L2-norm", "cross_entropy": "cross-entropy"}


# ----------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------
def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; pass one of {LOSSES}.")
    return loss


def _as_data(x, y):
    """Validate the data set: x (N, 2) inputs, y (N,) labels in {0, 1}; returns float64 tensors."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2) (the two inputs of the neuron), got {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError("the data set is empty; pass at least one example.")
    y = y.reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels; pass one label per row of x.")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels y must be 0 or 1 (the neuron has one sigmoid output).")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values.")
    return tf.constant(x, DTYPE), tf.constant(y, DTYPE)


def _as_theta(theta) -> tf.Tensor:
    theta = tf.convert_to_tensor(theta, dtype=DTYPE) if not isinstance(theta, tf.Tensor) else tf.cast(theta, DTYPE)
    if theta.shape.rank is None or theta.shape.rank < 1 or theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape (..., 2) (the two weights θ₁, θ₂), got {theta.shape}.")
    return theta


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def label_above_diagonal(x) -> np.ndarray:
    """Labels of 004 Sec. 5.2.2: 1 where the second coordinate exceeds the first (y > x), else 0.

    Args: x (N, 2). Returns: (N,) float64 in {0, 1}. Used in chapter 8.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2), got {x.shape}.")
    return (x[:, 1] > x[:, 0]).astype(np.float64)


# ----------------------------------------------------------------------------------------------------
# model and losses (all stable: only σ(±u) and softplus, never log σ)
# ----------------------------------------------------------------------------------------------------
def logits(theta, x) -> tf.Tensor:
    """z = 5 θ·x for every θ of a batch and every example: (..., 2), (N, 2) -> (..., N). Chapter 8."""
    theta = _as_theta(theta)
    x = tf.convert_to_tensor(x, DTYPE)
    return SCALE * tf.einsum("...k,nk->...n", theta, x)


def outputs(theta, x) -> tf.Tensor:
    """Network outputs f = σ(5 θ·x) (004 eq. 5.2.1): (..., 2), (N, 2) -> (..., N). Chapter 8."""
    return _sigmoid_pair(logits(theta, x))[0]


@tf.custom_gradient
def _sigmoid_pair(u):
    """(σ(u), σ(−u)) with derivatives ±σ(u)σ(−u) built from both, so every order of automatic
    differentiation keeps full relative precision (TensorFlow's own σ' = σ(1 − σ) loses it where σ ≈ 1)."""
    p, q = tf.math.sigmoid(u), tf.math.sigmoid(-u)

    def grad(dp, dq):
        return (dp - dq) * p * q

    return (p, q), grad


def _margins(theta, x, y):
    s = 2.0 * y - 1.0
    u = s * logits(theta, x)
    p, q = _sigmoid_pair(u)
    return s, u, p, q


def _loss_from_margin(loss: str, u, q):
    if loss == "mean_power2":
        return q * q
    if loss == "l2_norm":
        return q
    return tf.math.softplus(-u)


def per_example_loss(loss: str, theta, x, y) -> tf.Tensor:
    """Per-example loss ℓ_i(θ) for every θ of a batch (004 eqs. 5.1.5-5.1.7, one output).

    Args:
        loss: one of ``LOSSES``.
        theta: (..., 2) weights; x: (N, 2) inputs; y: (N,) labels in {0, 1}.
    Returns:
        (..., N) float64, finite for every finite θ. Used in chapter 8.
    """
    _check_loss(loss)
    x, y = _as_data(x, y)
    _, u, _, q = _margins(theta, x, y)
    return _loss_from_margin(loss, u, q)


def mean_loss(loss: str, theta, x, y) -> tf.Tensor:
    """Training loss L(θ) = (1/N) Σ_i ℓ_i(θ) (004 eq. 2.3.2): (..., 2) -> (...). Used in chapter 8."""
    return tf.reduce_mean(per_example_loss(loss, theta, x, y), axis=-1)


def _weight_and_derivatives(loss: str, s, p, q):
    """w = (5 ∂ℓ/∂z)², dw/dz, d²w/dz² in terms of the margin quantities (closed forms, all stable).

    With ∂ℓ/∂z = −2 s p q² (mean-power 2), −s p q (L2-norm), −s q (cross-entropy).
    """
    c = SCALE * SCALE
    # products, not powers: tf.pow is a general (exp-log) kernel, about 30 times slower on (grid, N) arrays
    pq = p * q
    if loss == "mean_power2":
        b = q - 2.0 * p
        w = 4.0 * c * (pq * q) * (pq * q)
        w1 = 2.0 * s * w * b
        w2 = 2.0 * w * (2.0 * b * b - 3.0 * pq)
    elif loss == "l2_norm":
        b = q - p
        w = c * pq * pq
        w1 = 2.0 * s * w * b
        w2 = 4.0 * w * (b * b - pq)
    else:
        w = c * q * q
        w1 = -2.0 * s * w * p
        w2 = 2.0 * w * p * (2.0 * p - q)
    return w, w1, w2


def dloss_dlogit(loss: str, theta, x, y) -> tf.Tensor:
    """∂ℓ_i/∂z_i for every θ and example, closed form: (..., 2) -> (..., N). Used in chapter 8."""
    _check_loss(loss)
    x, y = _as_data(x, y)
    s, _, p, q = _margins(theta, x, y)
    if loss == "mean_power2":
        return -2.0 * s * p * q * q
    if loss == "l2_norm":
        return -s * p * q
    return -s * q


def dloss_doutput(loss: str, theta, x, y) -> tf.Tensor:
    """∂ℓ_i/∂f_i, the loss factor of 004 eq. 5.1.2: 2(f − y), sign(f − y), (f − y)/(f(1 − f)).

    Returns (..., N); for cross-entropy it is −s/σ(u), large (but finite in float64 for |u| < 700) where
    an example is badly misclassified. Used in chapter 8.
    """
    _check_loss(loss)
    x, y = _as_data(x, y)
    s, _, p, q = _margins(theta, x, y)
    if loss == "mean_power2":
        return -2.0 * s * q
    if loss == "l2_norm":
        return -s * tf.ones_like(q)
    return -s / p


# ----------------------------------------------------------------------------------------------------
# Fisher metric, its derivatives, NTK trace
# ----------------------------------------------------------------------------------------------------
def fisher_metric(loss: str, theta, x, y) -> tf.Tensor:
    """Empirical Fisher metric I(θ) = (1/N) Σ_i ∇ℓ_i ∇ℓ_iᵀ (004 eqs. 3.2.11, 3.3.1, p_θ = e^{−ℓ}).

    Args:
        loss: one of ``LOSSES``; theta (..., 2); x (N, 2); y (N,).
    Returns:
        (..., 2, 2) symmetric positive semi-definite float64. Used in chapter 8.
    """
    return fisher_metric_and_derivatives(loss, theta, x, y, order=0)[0]


def fisher_metric_and_derivatives(loss: str, theta, x, y, order: int = 2):
    """I(θ) with its first and second θ-derivatives in closed form (for the Brioschi formula).

    Since I_ab = (1/N) Σ_i w(z_i) x_ia x_ib with z_i = 5 θ·x_i,
    ∂_c I_ab = (5/N) Σ_i w'(z_i) x_ia x_ib x_ic and ∂_c ∂_d I_ab = (25/N) Σ_i w''(z_i) x_ia x_ib x_ic x_id.

    Args:
        loss, theta (..., 2), x (N, 2), y (N,); order: 0, 1 or 2 derivatives.
    Returns:
        tuple (g (..., 2, 2), dg (..., 2, 2, 2) indexed [a, b, c] = ∂_c g_ab,
        d2g (..., 2, 2, 2, 2) indexed [a, b, c, d] = ∂_c ∂_d g_ab), truncated to ``order + 1`` entries.
    Used in chapter 8.
    """
    _check_loss(loss)
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2 (number of derivatives), got {order!r}.")
    x, y = _as_data(x, y)
    s, _, p, q = _margins(theta, x, y)
    w, w1, w2 = _weight_and_derivatives(loss, s, p, q)
    n = tf.cast(tf.shape(x)[0], DTYPE)
    # moments of the inputs as (N, 2^k) matrices, so each sum over examples is one matrix product and no
    # (batch, N, 2^k) intermediate is ever formed
    x2 = tf.reshape(x[:, :, None] * x[:, None, :], (-1, 4))
    lead = tf.shape(w)[:-1]
    g = tf.reshape(tf.tensordot(w, x2, axes=1) / n, tf.concat([lead, [2, 2]], 0))
    out = [g]
    if order >= 1:
        x3 = tf.reshape(x2[:, :, None] * x[:, None, :], (-1, 8))
        out.append(tf.reshape(SCALE * tf.tensordot(w1, x3, axes=1) / n, tf.concat([lead, [2, 2, 2]], 0)))
    if order >= 2:
        x4 = tf.reshape(x2[:, :, None] * x2[:, None, :], (-1, 16))
        out.append(tf.reshape(SCALE**2 * tf.tensordot(w2, x4, axes=1) / n, tf.concat([lead, [2, 2, 2, 2]], 0)))
    return tuple(out)


def metric_fn(loss: str, x, y):
    """The Fisher metric as a function θ (..., 2) -> (..., 2, 2), for ``helpers.geometry``. Chapter 8."""
    _check_loss(loss)
    xt, yt = _as_data(x, y)

    def g(theta):
        return fisher_metric(loss, theta, xt, yt)

    return g


def fisher_trace(loss: str, theta, x, y) -> tf.Tensor:
    """tr I(θ) = (1/N) Σ_i |∇ℓ_i|² (004 eq. 5.1.3): (..., 2) -> (...). Used in chapter 8."""
    _check_loss(loss)
    x, y = _as_data(x, y)
    s, _, p, q = _margins(theta, x, y)
    w = _weight_and_derivatives(loss, s, p, q)[0]
    return tf.reduce_mean(w * tf.reduce_sum(x * x, axis=-1), axis=-1)


def ntk_trace(theta, x) -> tf.Tensor:
    """tr Λ(θ) = Σ_i |∇_θ f_i|² = Σ_i 25 σ(z_i)² σ(−z_i)² |x_i|² (004 eq. 4.2.1, summed over examples).

    Args: theta (..., 2), x (N, 2). Returns (...). Used in chapter 8.
    """
    theta = _as_theta(theta)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, 2) with N >= 1, got {x.shape}.")
    x = tf.constant(x, DTYPE)
    p, q = _sigmoid_pair(logits(theta, x))
    pq = p * q
    return tf.reduce_sum(SCALE * SCALE * (pq * pq) * tf.reduce_sum(x * x, axis=-1), axis=-1)


def _chain_rule_jacobian(elementwise, theta, x) -> tf.Tensor:
    """∂h_i/∂θ for h_i = elementwise(z)_i with z_i = 5 θ·x_i: (B, 2) -> (B, N, 2), by the chain rule.

    h_i depends on θ only through its own logit z_i, so the reverse-mode gradient of Σ_i h_i with respect to
    z is the diagonal ∂h_i/∂z_i, one backward pass for the whole batch; ∂z_i/∂θ = 5 x_i is exact. This is
    what ``batch_jacobian`` computes, without its (B, N, N) intermediate (24 GB at B = 3000, N = 1000).
    """
    with tf.GradientTape() as tape:
        z = logits(theta, x)
        tape.watch(z)
        h = elementwise(z)
    dh_dz = tape.gradient(h, z)  # (B, N)
    return SCALE * dh_dz[..., None] * x[None, :, :]


def per_example_gradients(loss: str, theta, x, y) -> tf.Tensor:
    """∇_θ ℓ_i by automatic differentiation, for a batch of θ: (B, 2) -> (B, N, 2).

    The derivative ∂ℓ_i/∂z_i comes from TensorFlow's reverse mode through the loss as written (not the closed
    forms of :func:`dloss_dlogit`), then the chain rule through z_i = 5 θ·x_i. An independent route to the
    Fisher metric (``einsum('bni,bnj->bij', G, G) / N``), used to check the closed forms. Used in chapter 8.
    """
    _check_loss(loss)
    x, y = _as_data(x, y)
    theta = _as_theta(theta)
    if theta.shape.rank != 2:
        raise ValueError(f"per_example_gradients takes a flat batch of θ with shape (B, 2), got {theta.shape}.")
    s = 2.0 * y - 1.0

    def ell(z):
        u = s * z
        return _loss_from_margin(loss, u, _sigmoid_pair(u)[1])

    return _chain_rule_jacobian(ell, theta, x)


def output_jacobian(theta, x) -> tf.Tensor:
    """∇_θ f_i by automatic differentiation (chain rule through z_i, see :func:`per_example_gradients`):
    (B, 2) -> (B, N, 2), the rows of the NTK's feature map. Chapter 8."""
    theta = _as_theta(theta)
    if theta.shape.rank != 2:
        raise ValueError(f"output_jacobian takes a flat batch of θ with shape (B, 2), got {theta.shape}.")
    x = tf.constant(np.asarray(x, dtype=np.float64), DTYPE)
    return _chain_rule_jacobian(lambda z: _sigmoid_pair(z)[0], theta, x)


# ----------------------------------------------------------------------------------------------------
# curvature: the independent 2-D route (Brioschi)
# ----------------------------------------------------------------------------------------------------
def brioschi_gaussian_curvature(g, dg, d2g) -> tf.Tensor:
    """Gaussian curvature K of a 2-D metric from its first and second derivatives (Brioschi formula).

    With E = g₁₁, F = g₁₂, G = g₂₂ and subscripts u = θ₁, v = θ₂ for derivatives,
    K = (det M₁ − det M₂) / (EG − F²)², where
    M₁ = [[−E_vv/2 + F_uv − G_uu/2, E_u/2, F_u − E_v/2], [F_v − G_u/2, E, F], [G_v/2, F, G]] and
    M₂ = [[0, E_v/2, G_u/2], [E_v/2, E, F], [G_u/2, F, G]]. The Ricci scalar of a surface is R = 2K.
    The metric is divided by its trace first (K scales as 1/c when g → c g), so tiny or huge metrics do not
    under- or overflow in (EG − F²)².

    Args:
        g (..., 2, 2), dg (..., 2, 2, 2) [a, b, c] = ∂_c g_ab, d2g (..., 2, 2, 2, 2) [a, b, c, d] = ∂_c ∂_d g_ab.
    Returns:
        K with shape (...). Used in chapter 8 (identity I-2D).
    """
    g = tf.convert_to_tensor(g, DTYPE)
    dg = tf.convert_to_tensor(dg, DTYPE)
    d2g = tf.convert_to_tensor(d2g, DTYPE)
    if g.shape[-2:] != (2, 2) or dg.shape[-3:] != (2, 2, 2) or d2g.shape[-4:] != (2, 2, 2, 2):
        raise ValueError("Brioschi's formula is for 2-D metrics: pass g (..., 2, 2), dg (..., 2, 2, 2), "
                         f"d2g (..., 2, 2, 2, 2); got {g.shape}, {dg.shape}, {d2g.shape}.")
    c = g[..., 0, 0] + g[..., 1, 1]
    g = g / c[..., None, None]
    dg = dg / c[..., None, None, None]
    d2g = d2g / c[..., None, None, None, None]
    E, F, G = g[..., 0, 0], g[..., 0, 1], g[..., 1, 1]
    Eu, Ev = dg[..., 0, 0, 0], dg[..., 0, 0, 1]
    Fu, Fv = dg[..., 0, 1, 0], dg[..., 0, 1, 1]
    Gu, Gv = dg[..., 1, 1, 0], dg[..., 1, 1, 1]
    Evv, Fuv, Guu = d2g[..., 0, 0, 1, 1], d2g[..., 0, 1, 0, 1], d2g[..., 1, 1, 0, 0]

    def det3(m):
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))

    m1 = [[-0.5 * Evv + Fuv - 0.5 * Guu, 0.5 * Eu, Fu - 0.5 * Ev], [Fv - 0.5 * Gu, E, F], [0.5 * Gv, F, G]]
    zero = tf.zeros_like(E)
    m2 = [[zero, 0.5 * Ev, 0.5 * Gu], [0.5 * Ev, E, F], [0.5 * Gu, F, G]]
    K = (det3(m1) - det3(m2)) / (E * G - F * F) ** 2
    return K / c


def _inverse_sqrt(g):
    """g^{-1/2} of a batch of symmetric positive-definite matrices (..., n, n), by eigendecomposition."""
    lam, vec = tf.linalg.eigh(0.5 * (g + tf.linalg.matrix_transpose(g)))
    return tf.einsum("...ik,...k,...jk->...ij", vec, 1.0 / tf.sqrt(lam), vec)


def ricci_scalar_brioschi(loss: str, theta, x, y, orthonormal: bool = True) -> tf.Tensor:
    """Ricci scalar R = 2K of the Fisher metric via Brioschi with closed-form derivatives: (..., 2) -> (...).

    Independent of ``helpers.geometry`` (no Christoffel symbols, no automatic differentiation). With
    ``orthonormal`` (default) the metric and its derivatives are first written in the linear coordinates
    φ = A⁻¹(θ − θ₀), A = I(θ₀)^{-1/2}, in which the metric is the identity at the point: R is a scalar, so
    it does not change, but no step divides by a nearly singular matrix.
    Used in chapter 8.
    """
    g, dg, d2g = fisher_metric_and_derivatives(loss, theta, x, y, order=2)
    if orthonormal:
        A = _inverse_sqrt(g)
        g = tf.einsum("...ka,...kl,...lb->...ab", A, g, A)
        dg = tf.einsum("...ka,...lb,...mc,...klm->...abc", A, A, A, dg)
        d2g = tf.einsum("...ka,...lb,...mc,...nd,...klmn->...abcd", A, A, A, A, d2g)
    return 2.0 * brioschi_gaussian_curvature(g, dg, d2g)


class _QuietTensorFlow:
    """Silence TensorFlow's Python logger (e.g. retracing notices of vectorised Jacobians) for a block."""

    def __enter__(self):
        self.logger = tf.get_logger()
        self.level = self.logger.level
        self.logger.setLevel("ERROR")

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
        return False


def in_orthonormal_coordinates(ricci_fn):
    """Wrap a curvature routine so it evaluates each point in coordinates orthonormal at that point.

    For each point θ₀ of the batch, θ = θ₀ + A φ with A = g(θ₀)^{-1/2}, so the metric in φ is
    g̃(φ) = Aᵀ g(θ₀ + Aφ) A with g̃(0) = identity; ``ricci_fn`` is called at φ = 0. A scalar such as the Ricci
    scalar is the same in every coordinate system, but the float64 arithmetic no longer inverts an
    ill-conditioned g (in the raw coordinates R loses up to ~cond(g)·1e-12 of relative accuracy).

    Args:
        ricci_fn: function (metric_fn, theta (B, n)) -> (B,), such as ``helpers.geometry.ricci_scalar``.
    Returns:
        a function with the same signature. Used in chapter 8.
    """
    if not callable(ricci_fn):
        raise TypeError("in_orthonormal_coordinates wraps a function (metric_fn, theta) -> values.")

    def wrapped(metric_fn, theta):
        th0 = tf.constant(np.asarray(theta, dtype=np.float64))
        if th0.shape.rank != 2:
            raise ValueError(f"theta must be a flat batch (B, n), got shape {th0.shape}.")
        A = _inverse_sqrt(tf.cast(metric_fn(th0), DTYPE))

        def local_metric(phi):
            g = metric_fn(th0 + tf.einsum("bij,bj->bi", A, phi))
            return tf.einsum("bki,bkl,blj->bij", A, g, A)

        with _QuietTensorFlow():
            return ricci_fn(local_metric, np.zeros(th0.shape, dtype=np.float64))

    return wrapped


# ----------------------------------------------------------------------------------------------------
# training and grids
# ----------------------------------------------------------------------------------------------------
@tf.function(reduce_retracing=True)
def _gd_loop(loss, x, y, theta, eta, n_steps):
    """The GD loop of :func:`gradient_descent` as one graph (traced once per loss)."""
    path = tf.TensorArray(DTYPE, size=n_steps + 1)
    path = path.write(0, theta)
    s = 2.0 * y - 1.0

    def body(t, theta, path):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            u = s * SCALE * tf.linalg.matvec(x, theta)
            value = tf.reduce_mean(_loss_from_margin(loss, u, _sigmoid_pair(u)[1]))
        theta = theta - eta * tape.gradient(value, theta)
        return t + 1, theta, path.write(t + 1, theta)

    _, theta, path = tf.while_loop(lambda t, *_: t < n_steps, body, (tf.constant(0), theta, path))
    return path.stack()


def gradient_descent(loss: str, x, y, theta0=(0.5, 0.5), learning_rate: float = 1.0, steps: int = 1000):
    """Full-batch gradient descent θ ← θ − η ∇L(θ) (004 eq. 2.3.6), inside one TensorFlow graph.

    Args:
        loss: one of ``LOSSES``; x (N, 2), y (N,); theta0: start (004 uses (0.5, 0.5));
        learning_rate: η > 0; steps: number of updates ≥ 1.
    Returns:
        np.ndarray (steps + 1, 2): the path, starting at theta0. Used in chapter 8.
    """
    _check_loss(loss)
    xt, yt = _as_data(x, y)
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")
    theta0 = np.asarray(theta0, dtype=np.float64)
    if theta0.shape != (2,):
        raise ValueError(f"theta0 must be two numbers (θ₁, θ₂), got shape {theta0.shape}.")
    eta = tf.constant(float(learning_rate), DTYPE)
    path = _gd_loop(loss, xt, yt, tf.constant(theta0, DTYPE), eta, tf.constant(int(steps)))
    path = path.numpy()
    if not np.all(np.isfinite(path)):
        raise FloatingPointError("gradient descent produced non-finite parameters; lower the learning rate.")
    return path


def theta_grid(theta1_range, theta2_range, num: int | tuple[int, int]):
    """A regular grid of θ: returns (t1 (n1,), t2 (n2,), theta (n2, n1, 2)) with theta[j, i] = (t1[i], t2[j]).

    Rows run along θ₂, columns along θ₁, so ``imshow(..., origin="lower")`` draws θ₁ horizontally.
    Used in chapter 8.
    """
    n1, n2 = (num, num) if np.isscalar(num) else num
    if int(n1) < 2 or int(n2) < 2:
        raise ValueError(f"a grid needs at least 2 points per axis, got {num!r}.")
    for r in (theta1_range, theta2_range):
        if len(r) != 2 or not r[0] < r[1]:
            raise ValueError(f"ranges are (low, high) with low < high, got {r!r}.")
    t1 = np.linspace(theta1_range[0], theta1_range[1], int(n1))
    t2 = np.linspace(theta2_range[0], theta2_range[1], int(n2))
    theta = np.stack(np.meshgrid(t1, t2, indexing="xy"), axis=-1)
    return t1, t2, theta


def surfaces(loss: str, theta, x, y, ricci_fn=None, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Every quantity of chapter 8 at every θ of a batch, evaluated in vectorised chunks.

    Args:
        loss: one of ``LOSSES``; theta (..., 2) (a grid or a path); x (N, 2); y (N,).
        ricci_fn: function (metric_fn, theta (B, 2)) -> R (B,) such as ``helpers.geometry.ricci_scalar``;
            None uses the Brioschi route.
        chunk: how many θ per call (bounds memory at about 40·chunk·N bytes).
    Returns:
        dict of float64 arrays with θ's batch shape: ``loss``, ``I11``, ``I12``, ``I22``, ``trI``,
        ``trNTK``, ``R`` (and ``R_brioschi`` when a ``ricci_fn`` is given). Used in chapter 8.
    """
    _check_loss(loss)
    xt, yt = _as_data(x, y)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim < 1 or theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape (..., 2), got {theta.shape}.")
    if chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}.")
    batch_shape = theta.shape[:-1]
    flat = theta.reshape(-1, 2)
    gfun = metric_fn(loss, xt, yt)
    parts: dict[str, list] = {}
    for start in range(0, flat.shape[0], chunk):
        th = tf.constant(flat[start:start + chunk], DTYPE)
        g = fisher_metric(loss, th, xt, yt)
        r_b = ricci_scalar_brioschi(loss, th, xt, yt)
        vals = {"loss": mean_loss(loss, th, xt, yt), "I11": g[:, 0, 0], "I12": g[:, 0, 1], "I22": g[:, 1, 1],
                "trI": g[:, 0, 0] + g[:, 1, 1], "trNTK": ntk_trace(th, xt)}
        if ricci_fn is None:
            vals["R"] = r_b
        else:
            with _QuietTensorFlow():
                vals["R"] = ricci_fn(gfun, th)
            vals["R_brioschi"] = r_b
        for k, v in vals.items():
            parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    return {k: np.concatenate(v).reshape(batch_shape) for k, v in parts.items()}


def classified_correctly(theta, x, y) -> np.ndarray:
    """Whether each example is on the right side of the boundary θ·x = 0: (2,), (N, 2), (N,) -> (N,) bool.

    Used in chapter 8 (finding F-CLASSIFY).
    """
    xt, yt = _as_data(x, y)
    z = logits(np.asarray(theta, dtype=np.float64).reshape(2), xt).numpy()
    return np.where(yt.numpy() == 1, z > 0, z < 0)


# ----------------------------------------------------------------------------------------------------
# measurements on profiles (findings F-VALLEY and F-NARROW)
# ----------------------------------------------------------------------------------------------------
def valley_width(s, v, flank: float = 0.5, search=None):
    """Width at half depth of the valley of a 1-D profile v(s) around its minimum.

    The floor is min v; the rim is the median of v over the flanks, the points with |s − centre| ≥
    ``flank`` × half the window (centre = the window's midpoint); the half-depth level is (floor + rim)/2,
    and the width is the length of the connected run of samples around the minimum where v ≤ level.

    Args:
        s: (M,) increasing sample positions (M ≥ 5); v: (M,) finite values; flank: in (0, 1).
        search: optional (low, high): look for the floor only there (e.g. "around the path").
    Returns:
        dict with ``width``, ``s_min`` (position of the floor), ``floor``, ``rim``, ``level``. The width is
        NaN when the rim is not above the floor (no valley). Used in chapter 8 (finding F-NARROW).
    """
    s = np.asarray(s, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if s.ndim != 1 or s.shape != v.shape or s.size < 5:
        raise ValueError(f"s and v must be 1-D of the same length >= 5, got {s.shape} and {v.shape}.")
    if not np.all(np.diff(s) > 0):
        raise ValueError("s must be strictly increasing.")
    if not np.all(np.isfinite(v)):
        raise ValueError("v contains NaN or infinite values; a valley width needs a finite profile.")
    if not 0 < flank < 1:
        raise ValueError(f"flank must lie in (0, 1), got {flank!r}.")
    centre, half = 0.5 * (s[0] + s[-1]), 0.5 * (s[-1] - s[0])
    if search is None:
        k = int(np.argmin(v))
    else:
        inside = np.flatnonzero((s >= search[0]) & (s <= search[1]))
        if inside.size == 0:
            raise ValueError(f"no sample of s lies in the search window {search!r}.")
        k = int(inside[np.argmin(v[inside])])
    floor = v[k]
    rim = float(np.median(v[np.abs(s - centre) >= flank * half]))
    level = 0.5 * (floor + rim)
    if not rim > floor:
        return {"width": float("nan"), "s_min": float(s[k]), "floor": float(floor), "rim": rim, "level": level}
    lo = k
    while lo > 0 and v[lo - 1] <= level:
        lo -= 1
    hi = k
    while hi < s.size - 1 and v[hi + 1] <= level:
        hi += 1
    # interpolate the crossings linearly between samples for a width finer than the sampling step
    left = s[lo] if lo == 0 else s[lo - 1] + (level - v[lo - 1]) * (s[lo] - s[lo - 1]) / (v[lo] - v[lo - 1])
    right = s[hi] if hi == s.size - 1 else s[hi] + (level - v[hi]) * (s[hi + 1] - s[hi]) / (v[hi + 1] - v[hi])
    return {"width": float(right - left), "s_min": float(s[k]), "floor": float(floor), "rim": rim,
            "level": float(level)}


def cross_section(centre, direction, half_width: float, num: int = 801):
    """Points θ = centre + s·n on a line through ``centre`` along the unit vector n ∝ ``direction``.

    Returns (s (num,), theta (num, 2)). Used in chapter 8 for profiles across the path.
    """
    centre = np.asarray(centre, dtype=np.float64).reshape(-1)
    n = np.asarray(direction, dtype=np.float64).reshape(-1)
    if centre.shape != (2,) or n.shape != (2,) or not np.linalg.norm(n) > 0:
        raise ValueError("centre and direction must be two numbers each, direction non-zero.")
    if not half_width > 0 or num < 5:
        raise ValueError(f"need half_width > 0 and num >= 5, got {half_width!r}, {num!r}.")
    s = np.linspace(-half_width, half_width, int(num))
    return s, centre[None, :] + s[:, None] * (n / np.linalg.norm(n))[None, :]


def valley_floor(loss: str, x, y, theta2_values, theta1_range=(-20.0, 10.0), num: int = 3001) -> np.ndarray:
    """For each horizontal line θ₂ = c, the θ₁ that minimises the training loss (one vectorised call per line,
    so memory stays at num·N values however many lines are asked for).

    Args:
        loss, x (N, 2), y (N,); theta2_values: (M,) the lines; theta1_range, num: where and how finely to search.
    Returns:
        (M,) the minimising θ₁ per line. Used in chapter 8 (finding F-VALLEY).
    """
    c = np.asarray(theta2_values, dtype=np.float64).reshape(-1)
    t1 = np.linspace(theta1_range[0], theta1_range[1], int(num))
    if c.size == 0 or not theta1_range[0] < theta1_range[1] or num < 3:
        raise ValueError("give at least one θ₂ value, a range (low, high) with low < high and num >= 3.")
    xt, yt = _as_data(x, y)
    lines = (np.column_stack([t1, np.full_like(t1, v)]) for v in c)
    return np.array([t1[np.argmin(mean_loss(loss, line, xt, yt).numpy())] for line in lines])


def path_cross_section(loss: str, path, fraction: float, x, y, half_width: float = 5.0, num: int = 1001,
                       lookback: int = 50) -> dict:
    """The loss and R valleys on the line across a GD path, with their widths at half depth (F-NARROW).

    The line runs through the path point at ``fraction`` of the training, perpendicular to the direction of
    the last ``lookback`` steps, for s in [−half_width, half_width]. The loss valley is measured with
    :func:`valley_width`; the R valley (R from the Brioschi route) likewise, with its floor searched inside
    the loss valley's half-depth interval, i.e. around the path. When the loss profile has no valley there
    is no interval to search and the R width is NaN as well.

    Args:
        loss; path (T, 2); fraction in (0, 1]; x (N, 2); y (N,); half_width, num: the line.
    Returns:
        dict with ``s`` (num,), ``S`` (the :func:`surfaces` on the line), ``wl`` and ``wr`` (the
        :func:`valley_width` results of loss and R), ``ratio`` (R width / loss width, NaN without both
        valleys) and ``prominence`` ((rim − floor)/|rim| of the R valley, a diagnostic). Used in chapter 8.
    """
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2 or path.shape[0] < 2:
        raise ValueError(f"path must have shape (T, 2) with T >= 2, got {path.shape}.")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}.")
    k = int(round(fraction * (len(path) - 1)))
    tangent = path[k] - path[max(k - int(lookback), 0)]
    s, line = cross_section(path[k], [tangent[1], -tangent[0]], half_width, num)
    S = surfaces(loss, line, x, y)
    wl = valley_width(s, S["loss"])
    if np.isnan(wl["width"]):
        nan = float("nan")
        wr = {"width": nan, "s_min": nan, "floor": nan, "rim": nan, "level": nan}
    else:
        wr = valley_width(s, S["R"], search=(wl["s_min"] - wl["width"] / 2, wl["s_min"] + wl["width"] / 2))
    return {"fraction": float(fraction), "s": s, "S": S, "wl": wl, "wr": wr,
            "ratio": wr["width"] / wl["width"], "prominence": (wr["rim"] - wr["floor"]) / abs(wr["rim"])}


def largest_width_ratio(ratios) -> float:
    """The largest R/loss width ratio over cross-sections; NaN when any section has no valley to measure.

    F-NARROW holds when this is below 1. NaN propagates (``np.max``, unlike Python's ``max``, which skips a
    NaN unless it comes first), so a cross-section without a valley makes the finding *not reproduced*
    instead of being left out. Used in chapter 8.
    """
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("pass at least one width ratio.")
    return float(np.max(r))


def metric_ellipse(g, centre, size: float = 1.0, num: int = 100) -> np.ndarray:
    """Points of the ellipse {centre + v : vᵀ g v = const}, scaled so its longest semi-axis is ``size``.

    Its orientation and axis ratio are the metric's: long where moving θ changes the model little.
    Returns (num, 2). Used in chapter 8 (widget).
    """
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (2, 2):
        raise ValueError(f"g must be one 2 x 2 metric, got shape {g.shape}.")
    lam, vec = np.linalg.eigh(0.5 * (g + g.T))
    if not lam[0] > 0:
        raise ValueError("the metric must be positive definite to draw its ellipse.")
    axes = 1.0 / np.sqrt(lam)
    axes = size * axes / axes.max()
    t = np.linspace(0, 2 * np.pi, int(num))
    return np.asarray(centre, dtype=np.float64)[None, :] + (vec @ (axes[:, None] * np.stack([np.cos(t), np.sin(t)]))).T


def plot_surface(ax, t1, t2, Z, scale: str = "log", path=None, title: str = "", label: str = "",
                 clip: float = 99.5, linthresh: float = 1.0):
    """Draw a grid surface Z[j, i] at (t1[i], t2[j]) with a colour bar and, optionally, a GD path on top.

    Args:
        ax: matplotlib Axes; t1 (n1,), t2 (n2,), Z (n2, n1) finite values.
        scale: ``"log"`` (positive values spanning decades) or ``"symlog"`` (signed values, e.g. the
            curvature R; diverging colours centred on 0, linear within ±``linthresh``).
        path: optional (T, 2) path drawn as a white line with a dark edge, start ○ and end ★.
        clip: the colour scale saturates beyond this percentile of |Z| (no value is hidden, extremes
            share the end colour).
    Returns:
        the QuadMesh. Used in chapter 8.
    """
    import matplotlib.colors as mcolors
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape != (len(t2), len(t1)):
        raise ValueError(f"Z must have shape (len(t2), len(t1)) = {(len(t2), len(t1))}, got {Z.shape}.")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z has non-finite values; every surface of chapter 8 must be finite (I-FINITE).")
    if scale == "log":
        if not np.all(Z > 0):
            raise ValueError("scale='log' needs positive values; use scale='symlog' for signed ones.")
        norm = mcolors.LogNorm(vmin=Z.min(), vmax=np.percentile(Z, clip) if clip < 100 else Z.max())
        cmap = "viridis"
    elif scale == "symlog":
        top = max(np.percentile(np.abs(Z), clip), 10 * linthresh)
        norm = mcolors.SymLogNorm(linthresh=linthresh, vmin=-top, vmax=top, base=10)
        cmap = "RdBu_r"
    else:
        raise ValueError(f"scale must be 'log' or 'symlog', got {scale!r}.")
    mesh = ax.pcolormesh(t1, t2, Z, norm=norm, cmap=cmap, shading="auto", rasterized=True)
    cb = plt.colorbar(mesh, ax=ax, pad=0.02)
    cb.set_label(label)
    if path is not None:
        path = np.asarray(path)
        stroke = [pe.Stroke(linewidth=3.2, foreground="black"), pe.Normal()]
        ax.plot(path[:, 0], path[:, 1], color="white", lw=1.6, path_effects=stroke)
        ax.plot(*path[0], "o", ms=6, mfc="white", mec="black")
        ax.plot(*path[-1], "*", ms=11, mfc="white", mec="black")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.grid(False)
    return mesh


def finding_measurements(loss: str, x, y, learning_rate: float, steps: int, path_samples: int = 601,
                         fractions=(0.25, 0.5, 0.75, 1.0), half_width: float = 5.0, section_points: int = 1001,
                         theta2_lines=np.linspace(1.0, 10.0, 19)) -> dict:
    """Chapter 8's four findings measured for one loss and one data set, with the Brioschi route for R.

    Trains GD from (0.5, 0.5) and returns: ``misclassified`` (F-CLASSIFY); ``valley_angle`` (largest angle in
    degrees between (−1, 1) and the loss minimiser on each line θ₂ = c, F-VALLEY); ``max_R``, ``rho`` (Spearman
    correlation of step and R over the first half) and ``drop`` (R(T/2) − R(0)) (F-RNEG); ``width_ratio``
    (largest R/loss width at half depth over the cross-sections) and ``prominence`` (smallest R-valley
    prominence) (F-NARROW). The definitions are those stated in chapter 8.
    Used in chapter 8 (robustness of the verdicts across data samples).
    """
    from scipy.stats import spearmanr

    path = gradient_descent(loss, x, y, (0.5, 0.5), learning_rate, steps)
    cs = np.asarray(theta2_lines, dtype=np.float64)
    t1 = valley_floor(loss, x, y, cs)
    idx = np.unique(np.linspace(0, steps, path_samples).round().astype(int))
    R = ricci_scalar_brioschi(loss, path[idx], x, y).numpy()
    first = idx <= idx[-1] // 2
    sections = [path_cross_section(loss, path, frac, x, y, half_width, section_points) for frac in fractions]
    return {"misclassified": int(np.sum(~classified_correctly(path[-1], x, y))),
            "valley_angle": float(np.degrees(np.abs(np.arctan2(cs, t1) - 0.75 * np.pi)).max()),
            "max_R": float(R.max()), "rho": float(spearmanr(idx[first], R[first]).correlation),
            "drop": float(R[first][-1] - R[0]),
            "width_ratio": largest_width_ratio([c["ratio"] for c in sections]),
            "prominence": float(np.min([c["prominence"] for c in sections]))}


# ----------------------------------------------------------------------------------------------------
# the direction of a trained neuron (finding F-CLASSIFY)
# ----------------------------------------------------------------------------------------------------
def separating_directions(x, y, num: int = 2001) -> dict:
    """The directions of θ (angles in degrees) whose boundary θ·x = 0 classifies every example correctly.

    For a neuron without bias and data in the first quadrant the set is an interval of angles: an example of
    label 1 at polar angle α needs the angle of θ below α + 90°, one of label 0 needs it above α + 90°, so the
    interval is (max over label 0 of α + 90°, min over label 1 of α + 90°). The maximum-margin direction
    (largest smallest distance of an example to the boundary) is found on ``num`` angles inside it.

    Args:
        x: (N, 2) inputs with positive coordinates; y: (N,) labels 0/1, both classes present; num >= 3.
    Returns:
        dict with ``low``, ``high`` (the interval, NaN when empty), ``max_margin`` (angle) and ``margin``
        (its smallest distance to the boundary; NaN when the interval is empty). Used in chapter 8.
    """
    xt, yt = _as_data(x, y)
    xn, yn = xt.numpy(), yt.numpy()
    if not np.all(xn > 0):
        raise ValueError("separating_directions needs inputs with positive coordinates (the unit square).")
    if not (np.any(yn == 1) and np.any(yn == 0)):
        raise ValueError("both labels must occur in y to speak of a separating direction.")
    if int(num) < 3:
        raise ValueError(f"num must be at least 3, got {num!r}.")
    alpha = np.degrees(np.arctan2(xn[:, 1], xn[:, 0]))
    low, high = alpha[yn == 0].max() + 90.0, alpha[yn == 1].min() + 90.0
    nan = float("nan")
    if not low < high:
        return {"low": nan, "high": nan, "max_margin": nan, "margin": nan}
    phi = np.linspace(low, high, int(num))
    d = np.stack([np.cos(np.radians(phi)), np.sin(np.radians(phi))], -1)
    margins = np.min((2.0 * yn - 1.0)[None, :] * (d @ xn.T), axis=1)
    k = int(np.argmax(margins))
    return {"low": float(low), "high": float(high), "max_margin": float(phi[k]), "margin": float(margins[k])}


def classification_diagnostics(theta, x, y) -> dict:
    """How a trained θ classifies the data, and how far its direction is from the diagonal's.

    Args:
        theta: (2,) parameters; x (N, 2); y (N,).
    Returns:
        dict with ``misclassified`` (count), ``smallest_margin`` (the smallest signed distance
        s_i θ·x_i / |θ| of an example to the boundary; negative when some example is on the wrong side),
        ``direction`` (angle of θ minus 135°, in degrees; 0 puts the boundary on the diagonal y = x) and
        ``norm`` (|θ|). Used in chapter 8 (finding F-CLASSIFY).
    """
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.shape != (2,) or not np.all(np.isfinite(th)) or not np.linalg.norm(th) > 0:
        raise ValueError(f"theta must be two finite numbers, not both zero; got {theta!r}.")
    xt, yt = _as_data(x, y)
    signed = (2.0 * yt.numpy() - 1.0) * (xt.numpy() @ th) / np.linalg.norm(th)
    return {"misclassified": int(np.sum(~classified_correctly(th, xt, yt))),
            "smallest_margin": float(signed.min()),
            "direction": float(np.degrees(np.arctan2(th[1], th[0])) - 135.0),
            "norm": float(np.linalg.norm(th))}


# ----------------------------------------------------------------------------------------------------
# the widget of chapter 8: one point θ of the plane
# ----------------------------------------------------------------------------------------------------
def output_on_unit_square(theta, num: int = 101):
    """The network output f_θ on a num x num grid of the unit square.

    Args:
        theta: (2,) parameters; num >= 2 grid points per axis.
    Returns:
        (u (num,), out (num, num)) with out[j, i] = f_θ(u[i], u[j]). Used in chapter 8 (widget).
    """
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.shape != (2,) or not np.all(np.isfinite(th)):
        raise ValueError(f"theta must be two finite numbers (θ₁, θ₂), got {theta!r}.")
    if not (isinstance(num, (int, np.integer)) and num >= 2):
        raise ValueError(f"num must be an integer >= 2, got {num!r}.")
    u = np.linspace(0.0, 1.0, int(num))
    grid = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2)
    return u, outputs(th, grid).numpy().reshape(int(num), int(num))


def draw_output_panel(ax, theta, x, y, num: int = 101, palette=("#0072B2", "#E69F00")) -> int:
    """Draw f_θ over the unit square (grey), its decision boundary (black), the data, and ring in red the
    examples on the wrong side. Returns the number of misclassified examples. Used in chapter 8 (widget).
    """
    u, out = output_on_unit_square(theta, num)
    xt, yt = _as_data(x, y)
    xn, yn = xt.numpy(), yt.numpy()
    ax.imshow(out, origin="lower", extent=(0, 1, 0, 1), cmap="Greys", vmin=-0.3, vmax=1.6)
    if out.min() < 0.5 < out.max():
        ax.contour(u, u, out, levels=[0.5], colors="k", linewidths=1.5)
    ok = classified_correctly(theta, xt, yt)
    for label in (0, 1):
        ax.scatter(*xn[yn == label].T, s=4, color=palette[label], edgecolors="k", linewidths=0.3)
    ax.scatter(*xn[~ok].T, s=60, facecolors="none", edgecolors="red", linewidths=1.2)
    wrong = int((~ok).sum())
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=f"output, {wrong} misclassified", aspect="equal")
    ax.grid(False)
    return wrong


def draw_point(axes, loss: str, theta, x, y, t1, t2, loss_grid, R_grid, path=None,
               ellipse_size: float = 1.5, palette=("#0072B2", "#E69F00")) -> dict:
    """Chapter 8's widget row for one θ: output and boundary, loss surface with the metric ellipse, R surface.

    Args:
        axes: three matplotlib Axes.
        loss: one of ``LOSSES``.
        theta: (2,) the point.
        x, y: the data, (N, 2) and (N,).
        t1, t2, loss_grid, R_grid: the grid axes (n1,) and (n2,) and the surfaces (n2, n1) of
            :func:`surfaces` on :func:`theta_grid`.
        path: optional (T, 2) GD path drawn on both surfaces.
        ellipse_size: the longest semi-axis of the metric ellipse, in θ units.
        palette: the two colours of the classes.
    Returns:
        dict with ``misclassified``, ``loss`` and ``R`` at θ. Used in chapter 8 (widget).
    """
    _check_loss(loss)
    if len(axes) != 3:
        raise ValueError(f"draw_point draws on three Axes, got {len(axes)}.")
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.shape != (2,) or not np.all(np.isfinite(th)):
        raise ValueError(f"theta must be two finite numbers (θ₁, θ₂), got {theta!r}.")
    wrong = draw_output_panel(axes[0], th, x, y, palette=palette)
    value = float(mean_loss(loss, th, x, y))
    r = float(ricci_scalar_brioschi(loss, th, x, y))
    plot_surface(axes[1], t1, t2, loss_grid, "log", path=path, title=f"L = {value:.3g}", label="$L$",
                 clip=100)
    ell = metric_ellipse(fisher_metric(loss, th, x, y).numpy(), th, size=ellipse_size)
    axes[1].plot(ell[:, 0], ell[:, 1], color="red", lw=2)
    plot_surface(axes[2], t1, t2, R_grid, "symlog", path=path, title=f"R = {r:.3g}", label="$R$")
    for ax in axes[1:]:
        ax.plot(*th, "P", color="red", ms=9, mec="white")
    return {"misclassified": wrong, "loss": value, "R": r}
