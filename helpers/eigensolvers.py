"""Eigenvalues of curvature operators: Lanczos, power iteration with deflation, SciPy's eigsh, dense eigh,
and stochastic Lanczos quadrature (SLQ) for the spectral density.

All solvers take any :class:`helpers.operators.CurvatureOperator` (Hessian, Gauss-Newton, Fisher, a dense
matrix) and count the matrix-vector products they spend (``EigResult.num_products``, also added to
``op.num_products``). The iterative loops of :func:`lanczos`, :func:`power_iteration` and
:func:`slq_density` run inside TensorFlow graphs (``tf.while_loop``) on the operator's device, with no
NumPy round trip per iteration; NumPy appears only at the end (the small tridiagonal eigenproblem and the
returned arrays). Every random start vector comes from a seed.

Orderings: :func:`lanczos`, :func:`power_iteration` and :func:`eigsh` return the k wanted eigenpairs with
``"LA"`` (largest algebraic) in descending order, ``"SA"`` (smallest algebraic) ascending, ``"LM"``
(largest magnitude) by descending magnitude and ``"BE"`` (both ends: ceil(k/2) from the top, the rest from
the bottom) in descending order. :func:`dense_eigh` returns the full spectrum ascending, as ``numpy.linalg.eigh``.
An :class:`EigResult` unpacks as ``eigenvalues, eigenvectors = result``.

Used in chapters 2, 4 and 5 (identities I-LANCZOS, I-SLQ).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from .operators import CurvatureOperator

__all__ = ["EigResult", "Density", "NotConvergedWarning", "lanczos", "power_iteration", "eigsh", "dense_eigh", "slq_density",
           "lanczos_tridiagonal"]

_WHICH = ("LA", "SA", "LM", "BE")


class NotConvergedWarning(UserWarning):
    """Issued when a solver returns a result it could not verify (a residual above the tolerance, or a set
    of eigenvalues that may miss copies of a multiple eigenvalue). Filter it with ``warnings`` if intended."""


@dataclass
class EigResult:
    """Eigenpairs found by a solver.

    Attributes:
        eigenvalues: (k,) array (ordering: see the module docstring).
        eigenvectors: (P, k) array of unit columns.
        residuals: (k,) array of :math:`\\|A v_i - \\lambda_i v_i\\|_2`.
        num_products: matrix-vector products spent (including the residual check where one was needed).
        converged: (k,) boolean array: residual <= tol * (largest |eigenvalue| seen), the eigenvector is
            orthogonal to the others, and (where the multiplicity check ran) no eigenvalue found later
            belongs before it in the wanted order.
        num_iterations: iterations of the main loop (Lanczos steps, power iterations in total).
        which: the requested part of the spectrum.
        alphas, betas: Lanczos only: the tridiagonal matrix's diagonal (m,) and off-diagonal (m-1,).
        complete: Lanczos only: True when a deflated restart found no further wanted eigenvalue (the k values
            are the k wanted ones, multiplicities included), False when it kept finding new ones, None when
            not checked (``restarts=0``).
        notes: what the solver could not verify, in words ("" when everything was verified).
    Unpacks as ``eigenvalues, eigenvectors = result``. Used in chapters 2, 4 and 5.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    num_products: int
    converged: np.ndarray
    num_iterations: int = 0
    which: str = "LA"
    alphas: np.ndarray | None = field(default=None, repr=False)
    betas: np.ndarray | None = field(default=None, repr=False)
    complete: bool | None = None
    notes: str = ""

    def __iter__(self):
        return iter((self.eigenvalues, self.eigenvectors))

    @property
    def all_converged(self) -> bool:
        """Every pair converged and the set not known to be incomplete."""
        return bool(np.all(self.converged)) and self.complete is not False

    def __repr__(self) -> str:
        vals = np.array2string(np.asarray(self.eigenvalues), precision=6, separator=", ", threshold=12)
        k = len(np.atleast_1d(self.eigenvalues))
        status = "converged" if self.all_converged else "NOT CONVERGED"
        text = (f"EigResult({status}: {int(np.sum(self.converged))}/{k} pairs converged, which={self.which!r}, "
                f"eigenvalues={vals}, max residual={float(np.max(self.residuals)) if k else 0.0:.2e}, "
                f"complete={self.complete}, num_products={self.num_products}")
        return text + (f"; {self.notes})" if self.notes else ")")


def _warn_unconverged(result: "EigResult", solver: str) -> None:
    if not result.all_converged:
        bad = int(np.sum(~np.asarray(result.converged)))
        msg = f"{solver}: {bad} of {len(result.converged)} eigenpairs did not converge"
        if result.notes:
            msg += f" ({result.notes})"
        warnings.warn(msg + "; raise max_iter or tol, or see EigResult.residuals.", NotConvergedWarning,
                      stacklevel=3)


@dataclass
class Density:
    """A spectral density estimated by stochastic Lanczos quadrature.

    Attributes:
        grid: (G,) points t.
        density: (G,) Gaussian-smoothed density :math:`\\phi_\\sigma(t)` (integrates to about 1).
        nodes: (num_probes, m) Ritz values of each probe's Lanczos run (quadrature nodes).
        weights: (num_probes, m) quadrature weights (squared first components; each row sums to 1).
        sigma: the Gaussian width used.
        num_products: matrix-vector products spent.
        stderr: (G,) the spread across probes: the standard error of the mean of the per-probe densities
            :math:`\\phi^{(l)}_\\sigma(t)` (NaN for a single probe). ``density +- 2 stderr`` is a pointwise band.
    Used in chapter 4.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    num_products: int
    stderr: np.ndarray | None = None

    def __repr__(self) -> str:
        spread = (float(np.nanmax(self.stderr)) / max(float(np.max(self.density)), 1e-300)
                  if self.stderr is not None and np.any(np.isfinite(self.stderr)) else float("nan"))
        return (f"Density({len(self.grid)} grid points on [{self.grid[0]:.4g}, {self.grid[-1]:.4g}], "
                f"{self.nodes.shape[0]} probes x {self.nodes.shape[1]} steps, sigma={self.sigma:.3g}, "
                f"largest stderr / peak = {spread:.2g}, num_products={self.num_products})")


# ------------------------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------------------------

def _check_op(op):
    if not isinstance(op, CurvatureOperator):
        raise TypeError(f"Expected a helpers.operators.CurvatureOperator, got {type(op).__name__}; wrap an explicit "
                        "matrix with operators.DenseOperator(matrix).")


def _check_k(op, k, which):
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH} (largest, smallest, largest magnitude, both ends), "
                         f"got {which!r}.")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k > op.size:
        raise ValueError(f"k={k} is larger than the dimension P={op.size} of the operator; ask for at most {op.size} "
                         "eigenpairs.")


def _eff_tol(tol, dtype, size):
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}.")
    return max(float(tol), 10.0 * math.sqrt(size) * float(np.finfo(dtype.as_numpy_dtype).eps))


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted values of ascending theta, in the module's output order."""
    n = len(theta)
    if which == "LA":
        return np.arange(n - 1, n - 1 - k, -1)
    if which == "SA":
        return np.arange(k)
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:k]
    hi = (k + 1) // 2
    lo = k - hi
    return np.concatenate([np.arange(n - 1, n - 1 - hi, -1), np.arange(lo)[::-1]]).astype(int)


def _select_tf(theta, k: int, which: str):
    n = tf.shape(theta)[0]
    if which == "LA":
        return tf.range(n - 1, n - 1 - k, -1)
    if which == "SA":
        return tf.range(k)
    if which == "LM":
        return tf.argsort(-tf.abs(theta), stable=True)[:k]
    hi = (k + 1) // 2
    lo = k - hi
    return tf.concat([tf.range(n - 1, n - 1 - hi, -1), tf.range(lo)], axis=0)


def _tridiag(alpha, beta):
    """Dense symmetric tridiagonal matrix from alpha (n,) and beta (n-1,), in TensorFlow."""
    T = tf.linalg.diag(alpha)
    if beta.shape[0] is None or beta.shape[0] > 0:
        off = tf.pad(tf.linalg.diag(beta), [[0, 1], [1, 0]])
        T = T + off + tf.transpose(off)
    return T


# ------------------------------------------------------------------------------------------------------------
# Lanczos core (graph)
# ------------------------------------------------------------------------------------------------------------

def _orthogonalise(rows, w):
    """Remove from each row b of w (B, P) its components along the Lanczos vectors rows[b] (n, P); twice."""
    out = []
    for b, Q in enumerate(rows):
        v = w[b:b + 1]
        for _ in range(2):
            v = v - tf.matmul(tf.matmul(v, Q, transpose_b=True), Q)
        out.append(v)
    return tf.reshape(tf.concat(out, axis=0), w.shape)


def _build_lanczos(op: CurvatureOperator, m: int, k: int, which: str, check_every: int, batch: int):
    """A tf.function running m steps of Lanczos with full re-orthogonalisation on `batch` start vectors.

    Each start vector's Lanczos vectors live in one (m+1, P) variable on the device, read and written by
    row: step j gathers only the j+1 rows stored so far and scatters the new one. (Reading the whole
    variable and assigning a slice makes TensorFlow copy all of it at every step, m x P floats, because the
    read still holds the buffer; gathers and scatters put the variable in copy-on-read mode, where a gather
    copies only the rows it reads and a scatter writes in place.) With ``k > 0`` (single start vector) it
    stops early once the k wanted Ritz pairs have residual estimates beta_j |s_j| <= tol * max|theta|.
    """
    P, dtype = op.size, op.dtype
    eps = float(np.finfo(dtype.as_numpy_dtype).eps)
    basis = [tf.Variable(tf.zeros([m + 1, P], dtype), trainable=False, name=f"lanczos_basis_{b}")
             for b in range(batch)]

    def run(v0, seed, tol):
        product = op.prepare()  # the vector-independent part of a product, computed once for the whole loop
        q0 = v0 / tf.norm(v0, axis=1, keepdims=True)
        for b, Qb in enumerate(basis):
            Qb.assign(tf.zeros([m + 1, P], dtype))
            Qb.scatter_update(tf.IndexedSlices(q0[b:b + 1], tf.constant([0])))
        alpha = tf.zeros([m, batch], dtype)
        beta = tf.zeros([m, batch], dtype)
        anorm = tf.zeros([batch], dtype)

        def cond(j, alpha, beta, anorm, done):
            return tf.logical_and(j < m, tf.logical_not(done))

        def body(j, alpha, beta, anorm, done):
            rows = [Qb.sparse_read(tf.range(j + 1)) for Qb in basis]  # (j+1, P) each
            q = tf.reshape(tf.concat([Q[-1:] for Q in rows], axis=0), [batch, P])
            w = product(q)
            a = tf.reduce_sum(q * w, axis=1)
            w = _orthogonalise(rows, w)
            b = tf.norm(w, axis=1)
            anorm = tf.maximum(anorm, tf.abs(a) + b)
            # breakdown (an invariant subspace was found): continue with a fresh random direction, beta = 0
            broken = b <= 1e3 * eps * tf.maximum(anorm, tf.constant(1e-300, dtype))

            def restart():
                fresh = tf.random.stateless_normal([batch, P], seed=seed + tf.stack([0, tf.cast(j, tf.int64) + 1]),
                                                  dtype=dtype)
                fresh = _orthogonalise(rows, _orthogonalise(rows, fresh))
                fresh = fresh / tf.norm(fresh, axis=1, keepdims=True)
                safe = tf.where(broken, tf.ones_like(b), b)
                return tf.where(broken[:, None], fresh, w / safe[:, None])

            q_next = tf.cond(tf.reduce_any(broken), restart, lambda: w / b[:, None])
            b = tf.where(broken, tf.zeros_like(b), b)
            where = tf.reshape(j + 1, [1])
            writes = [Qb.scatter_update(tf.IndexedSlices(q_next[i:i + 1], where)) for i, Qb in enumerate(basis)]
            alpha = tf.tensor_scatter_nd_update(alpha, [[j]], a[None])
            beta = tf.tensor_scatter_nd_update(beta, [[j]], b[None])
            done = tf.constant(False)
            if k > 0:
                n = j + 1

                def converged():
                    a_ = alpha[:n, 0]
                    b_ = beta[:n - 1, 0]
                    theta, S = tf.linalg.eigh(_tridiag(a_, b_))
                    idx = _select_tf(theta, k, which)
                    res = tf.abs(beta[j, 0]) * tf.abs(tf.gather(S[n - 1], idx))
                    scale = tf.reduce_max(tf.abs(theta))
                    ok = tf.reduce_all(res <= tol * scale)
                    # never stop right after a breakdown: the restarted block has not been explored yet
                    return tf.logical_and(ok, tf.logical_not(broken[0]))

                check = tf.logical_and(n >= k, tf.logical_or(tf.equal(n % check_every, 0), tf.equal(n, m)))
                done = tf.cond(check, converged, lambda: tf.constant(False))
            with tf.control_dependencies(writes):  # the next step gathers the row written here
                j = tf.identity(j)
            return j + 1, alpha, beta, anorm, done

        j, alpha, beta, anorm, _ = tf.while_loop(
            cond, body, (tf.constant(0), alpha, beta, anorm, tf.constant(False)))
        return j, tf.stack([Qb.read_value() for Qb in basis]), alpha, beta

    return tf.function(run)


def _get_lanczos(op, m, k, which, check_every, batch):
    cache = op.__dict__.setdefault("_lanczos_cache", {})
    key = (m, k, which, check_every, batch)
    if key not in cache:
        cache[key] = _build_lanczos(op, m, k, which, check_every, batch)
    return cache[key]


def _start_vectors(op, batch, seed, distribution="gaussian", stream=0):
    shape = [batch, op.size]
    s = tf.constant([int(seed), int(stream)], tf.int64)
    if distribution == "gaussian":
        return tf.random.stateless_normal(shape, seed=s, dtype=op.dtype)
    if distribution == "rademacher":
        r = tf.random.stateless_uniform(shape, seed=s, minval=0, maxval=2, dtype=tf.int32)
        return tf.cast(2 * r - 1, op.dtype)
    raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}.")


def _restart_seed(seed, stream):
    """Seed pair of the fresh vectors drawn after a breakdown: [seed, 2^40 + 2^20 stream] (+ step in the loop),
    a stream disjoint from the start vectors' [seed, stream]."""
    return tf.constant([int(seed), (1 << 40) + (int(stream) << 20)], tf.int64)


def _start_vector(op, v0, seed, what: str) -> tf.Tensor:
    """The Lanczos start vector as a (1, P) tensor: random from ``seed`` when ``v0`` is None, else checked."""
    if v0 is None:
        return _start_vectors(op, 1, seed)
    v0 = op._as_tensor(v0, 1, what)[None]
    if float(tf.norm(v0)) == 0.0:
        raise ValueError("The start vector v0 is zero; pass a non-zero vector.")
    return v0


def lanczos_tridiagonal(op: CurvatureOperator, num_steps: int, v0=None, seed: int = 0):
    """Run ``num_steps`` Lanczos steps with full re-orthogonalisation from v0 (or a seeded Gaussian vector).

    Args:
        op: the operator (P, P).
        num_steps: m, 1 <= m <= P.
        v0: optional start vector (P,).
        seed: seed of the random start vector and of restarts after a breakdown.
    Returns:
        ``(alphas (m,), betas (m-1,), Q (m, P))`` as NumPy arrays: T = tridiag(betas, alphas, betas) and the
        orthonormal Lanczos vectors, with :math:`Q A Q^T = T` (lanczos1950iteration).
    Used in chapter 4 (the Lanczos algorithm and its loss of orthogonality).
    """
    _check_op(op)
    if not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= op.size:
        raise ValueError(f"num_steps must be an integer between 1 and P={op.size}, got {num_steps!r}.")
    v0 = _start_vector(op, v0, seed, "lanczos_tridiagonal v0")
    fn = _get_lanczos(op, int(num_steps), 0, "LA", 1, 1)
    j, Q, alpha, beta = fn(v0, _restart_seed(seed, 0), tf.constant(0.0, op.dtype))
    op.num_products += int(j)
    m = int(num_steps)
    return alpha.numpy()[:m, 0], beta.numpy()[:m - 1, 0], Q[0, :m].numpy()


class _Deflated(CurvatureOperator):
    """A + Y^T diag(d) Y for k stored rows Y (k, P): the found eigenvalues theta_i moved to a shift c
    (d_i = c - theta_i), used by the multiplicity check of :func:`lanczos`. Y and d are variables, so one
    traced Lanczos graph serves every call with the same k."""

    def __init__(self, op: CurvatureOperator, k: int):
        self.base = op
        self._Y = tf.Variable(tf.zeros([k, op.size], op.dtype), trainable=False)
        self._d = tf.Variable(tf.zeros([k], op.dtype), trainable=False)
        super().__init__(op.size, op.dtype)

    def _rows_product(self, V):
        return self.base.rows_product(V) + tf.matmul(tf.matmul(V, self._Y, transpose_b=True) * self._d[None, :],
                                                     self._Y)


def _lanczos_run(op, k, which, tol, m, check_every, v0, seed, stream):
    """One Lanczos run: (wanted Ritz values (k,), Ritz vectors (k, P) tensor, all Ritz values, steps, a, b)."""
    fn = _get_lanczos(op, m, int(k), which, int(check_every), 1)
    j, Q, alpha, beta = fn(v0, _restart_seed(seed, stream), tf.constant(tol, op.dtype))
    steps = int(j)
    a = alpha.numpy()[:steps, 0].astype(np.float64)
    b = beta.numpy()[:steps, 0].astype(np.float64)
    T = np.diag(a) + np.diag(b[:-1], 1) + np.diag(b[:-1], -1)
    theta, S = np.linalg.eigh(T)
    idx = _select(theta, k, which)
    Y = tf.matmul(tf.constant(S[:, idx].T, op.dtype), Q[0, :steps])  # (k, P) Ritz vectors
    return theta[idx], Y, theta, steps, a, b


def _residuals(op, vals, Y):
    AY = op.rows_product(Y)
    return tf.norm(AY - tf.constant(vals, op.dtype)[:, None] * Y, axis=1).numpy().astype(np.float64)


def _score(vals, which):
    """Smaller is more wanted (for the displacement test of the multiplicity check)."""
    return {"LA": -vals, "SA": vals, "LM": -np.abs(vals)}.get(which, None)


def lanczos(op: CurvatureOperator, k: int, which: str = "LA", tol: float = 1e-8, max_iter: int | None = None,
            seed: int = 0, check_every: int = 1, v0=None, restarts: int | None = None) -> EigResult:
    """k extreme eigenpairs by the Lanczos method with full re-orthogonalisation (lanczos1950iteration).

    Builds the Krylov basis :math:`q_{j+1}\\beta_j = Aq_j - \\alpha_j q_j - \\beta_{j-1}q_{j-1}`, re-orthogonalised
    against all previous vectors (twice) so that no spurious copies of converged eigenvalues appear (the
    instability 000 Sec. 5.4 and 003 discuss). After each step it diagonalises the tridiagonal
    :math:`T_j = S\\Theta S^T` and stops when the k wanted Ritz pairs have residual estimates
    :math:`|\\beta_j s_{j,i}| \\le \\mathrm{tol}\\cdot\\max_i|\\theta_i|`. Finally the true residuals
    :math:`\\|Av_i-\\theta_iv_i\\|` are computed with k more products (counted). A breakdown (an invariant
    subspace, e.g. for P small) continues from a fresh random vector.

    **Multiple eigenvalues.** A Krylov space grown from one vector holds one direction of each eigenspace, so
    a single run returns an eigenvalue of multiplicity 3 once and fills the other two places with the next
    eigenvalues: each pair is a genuine eigenpair with a small residual, but the set is not the k wanted
    eigenvalues. The check (``restarts`` >= 1): move the k found eigenvalues out of the wanted end
    (:math:`A' = A + Y^T\\mathrm{diag}(c-\\theta)Y`) and run Lanczos again from a fresh vector; an eigenvalue
    it finds that belongs among the k wanted (a missing copy) replaces the least wanted one, and the
    check repeats. ``complete`` is True when a round found nothing new; when the rounds run out while
    copies were still appearing, ``complete`` is False and the pairs that could still be displaced are
    flagged not converged. Ritz vectors that are not mutually orthogonal (a spurious copy) are also
    flagged not converged. A run over the whole space (k = P, or max_iter >= P) sees every copy and
    needs no check.

    Args:
        op: the operator (P, P), symmetric.
        k: number of eigenpairs, 1 <= k <= P.
        which: ``"LA"``, ``"SA"``, ``"LM"`` or ``"BE"`` (see the module docstring).
        tol: relative residual tolerance (raised to 10 sqrt(P) machine epsilons of the dtype if smaller:
            products are not more accurate than that).
        max_iter: maximal number of Lanczos steps per run (default min(P, max(10k + 60, 120))).
        seed: seed of the random start vector.
        check_every: test convergence every this many steps.
        v0: optional start vector (P,).
        restarts: rounds of the multiplicity check (each costs one more Lanczos run). Default (None): 1 for
            ``"SA"`` and ``"BE"`` (the bottom of a Hessian spectrum is a crowded bulk near zero, where
            repeated eigenvalues are common), 0 for ``"LA"`` and ``"LM"`` (separated outliers; ``complete``
            is then None: not checked).
    Returns:
        :class:`EigResult` with ``alphas``/``betas`` of the (first) tridiagonal matrix and ``complete``.
        Warns (:class:`NotConvergedWarning`) when a pair is not converged or the set is incomplete.
    Used in chapters 2, 4 and 5 (identity I-LANCZOS).
    """
    _check_op(op)
    _check_k(op, k, which)
    tol = _eff_tol(tol, op.dtype, op.size)
    P = op.size
    m = min(P, max(10 * k + 60, 120)) if max_iter is None else int(max_iter)
    if m < k:
        raise ValueError(f"max_iter={max_iter} is smaller than k={k}; Lanczos needs at least k steps.")
    m = min(m, P)
    if not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}.")
    if restarts is None:
        restarts = 1 if which in ("SA", "BE") else 0
    if not isinstance(restarts, (int, np.integer)) or isinstance(restarts, bool) or restarts < 0:
        raise ValueError(f"restarts must be an integer >= 0 (rounds of the multiplicity check), got {restarts!r}.")
    v0 = _start_vector(op, v0, seed, "lanczos v0")
    vals, Y, theta, steps, a, b = _lanczos_run(op, k, which, tol, m, check_every, v0, seed, 0)
    res = _residuals(op, vals, Y)
    total_steps, products = steps, steps + k
    scale = max(np.abs(theta).max(), np.finfo(np.float64).tiny)
    conv = res <= tol * scale
    complete, notes, new_mask = None, [], np.zeros(k, bool)
    if steps >= P:
        complete = True  # the Krylov spaces (with the restarts after breakdowns) span everything
    elif restarts > 0:
        lo, hi = float(theta.min()), float(theta.max())
        span = max(hi - lo, abs(hi), abs(lo), 1.0)
        shift = {"SA": hi + span, "LA": lo - span, "LM": 0.0, "BE": 0.5 * (lo + hi)}[which]
        cache = op.__dict__.setdefault("_deflation_cache", {})
        if k not in cache:
            cache[k] = _Deflated(op, k)
        defl = cache[k]
        complete = False
        for r in range(int(restarts)):
            defl._Y.assign(Y)
            # only converged pairs are moved: deflating an inaccurate vector would perturb A' by its residual
            defl._d.assign(tf.constant(np.where(conv, shift - vals, 0.0), op.dtype))
            start = _start_vectors(op, 1, seed, stream=1000 + r)
            nv, nY, _, nsteps, _, _ = _lanczos_run(defl, k, which, tol, m, check_every, start, seed, 1000 + r)
            total_steps += nsteps
            products += nsteps
            # Rayleigh-Ritz on the span of the pairs found so far and the restart's candidates: it resolves the
            # mixing inside a multiple eigenvalue's eigenspace; the products of the basis give the residuals
            Qb, _ = tf.linalg.qr(tf.transpose(tf.concat([Y, nY], axis=0)))  # (P, 2k) orthonormal
            AB = op.rows_product(tf.transpose(Qb))  # (2k, P)
            products += int(Qb.shape[1])
            H = tf.matmul(AB, Qb).numpy().astype(np.float64)
            th, Sb = np.linalg.eigh(0.5 * (H + H.T))
            pick = _select(th, k, which)
            Sp = tf.constant(Sb[:, pick].T, op.dtype)
            new_vals = th[pick]
            Y = tf.matmul(Sp, tf.transpose(Qb))
            new_res = tf.norm(tf.matmul(Sp, AB) - tf.constant(new_vals, op.dtype)[:, None] * Y,
                              axis=1).numpy().astype(np.float64)
            # a value that moved by more than its old residual (Weyl: |theta - lambda| <= residual) is a
            # different eigenvalue: a copy the single run had missed
            entered = np.abs(new_vals - vals) > res + 10 * tol * scale
            vals, res = new_vals, new_res
            conv = res <= tol * scale
            if not entered.any():
                complete = True
                break
            new_mask = entered
            notes.append(f"restart {r + 1} found {int(entered.sum())} further wanted eigenvalue(s)")
        if complete is False:
            score = _score(vals, which)
            if score is None:  # both ends: every pair could still be displaced
                displaced = np.ones(k, bool)
            else:
                displaced = score >= score[new_mask].min()
            conv = conv & ~displaced
            notes.append(f"copies of a multiple eigenvalue may still be missing after {restarts} restart(s); "
                         "raise restarts=")
    # spurious copies: Ritz vectors that are not orthogonal
    G = np.abs(tf.matmul(Y, Y, transpose_b=True).numpy().astype(np.float64) - np.eye(k))
    thr = 100 * math.sqrt(float(np.finfo(op.dtype.as_numpy_dtype).eps))
    bad = (G > thr).any(axis=1)
    if bad.any():
        conv = conv & ~bad
        notes.append(f"{int(bad.sum())} eigenvectors are not orthogonal to the others (largest overlap "
                     f"{G.max():.2g}): spurious copies")
    op.num_products += products
    result = EigResult(eigenvalues=vals, eigenvectors=Y.numpy().T, residuals=res, num_products=products,
                       converged=conv, num_iterations=total_steps, which=which, alphas=a, betas=b[:-1],
                       complete=complete, notes="; ".join(notes))
    _warn_unconverged(result, "lanczos")
    return result


# ------------------------------------------------------------------------------------------------------------
# Power iteration with deflation
# ------------------------------------------------------------------------------------------------------------

def _build_power(op: CurvatureOperator, max_iter: int):
    P, dtype = op.size, op.dtype

    def run(v0, U, tol):
        product = op.prepare()
        # U: (r, P) eigenvectors found so far (deflation by projection)
        def project(v):
            return v - tf.linalg.matvec(U, tf.linalg.matvec(U, v), transpose_a=True)

        v = project(v0)
        v = v / tf.norm(v)

        def cond(i, v, lam, lam_old, res, last_v):
            rel = tf.abs(lam - lam_old) / tf.maximum(tf.abs(lam), tf.constant(1e-300, dtype))
            return tf.logical_and(i < max_iter, tf.logical_or(i < 2, rel > tol))

        def body(i, v, lam, lam_old, res, last_v):
            w = product(v[None])[0]
            w = project(w)
            lam_new = tf.reduce_sum(v * w)
            res = tf.norm(w - lam_new * v)
            return i + 1, w / tf.norm(w), lam_new, lam, res, v

        zero = tf.constant(0.0, dtype)
        i, v, lam, _, res, last_v = tf.while_loop(
            cond, body, (tf.constant(0), v, zero, tf.constant(np.inf, dtype), tf.constant(np.inf, dtype), v))
        return i, lam, last_v, res

    return tf.function(run)


def power_iteration(op: CurvatureOperator, k: int = 1, tol: float = 1e-6, max_iter: int = 1000,
                    seed: int = 0) -> EigResult:
    """The k largest-magnitude eigenpairs by power iteration with deflation (the reference peers' method).

    For eigenpair i: :math:`v \\leftarrow (I - U U^T) A v/\\|\\cdot\\|` with U the eigenvectors already found
    (projection deflation, as PyHessian does, yao2020pyhessian), until the Rayleigh quotient
    :math:`\\lambda = v^TAv` changes by at most ``tol`` relatively between two iterations, or ``max_iter``
    iterations. Each iteration is one product; the residual of the returned pair costs nothing extra.
    Slow when eigenvalues are close (convergence ratio :math:`|\\lambda_{i+1}/\\lambda_i|`), which is why
    :func:`lanczos` is the book's default; kept to compare with it (benchmark).

    Args:
        op: the operator (P, P).
        k: number of eigenpairs, 1 <= k <= P.
        tol: relative change of the eigenvalue between iterations that stops the iteration.
        max_iter: iterations per eigenpair.
        seed: seed of the random start vectors.
    Returns:
        :class:`EigResult`, ordered by descending magnitude as found; ``converged`` says whether the
        eigenvalue criterion was met before ``max_iter``.
    Used in chapter 4 (comparison with Lanczos) and the benchmark.
    """
    _check_op(op)
    _check_k(op, k, "LM")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 2:
        raise ValueError(f"max_iter must be an integer >= 2, got {max_iter!r}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}.")
    cache = op.__dict__.setdefault("_power_cache", {})
    if max_iter not in cache:
        cache[max_iter] = _build_power(op, int(max_iter))
    fn = cache[max_iter]
    U = tf.zeros([0, op.size], op.dtype)
    vals, res, conv, total = [], [], [], 0
    for i in range(k):
        v0 = tf.random.stateless_normal([op.size], seed=tf.constant([int(seed), i + 1], tf.int64), dtype=op.dtype)
        it, lam, v, r = fn(v0, U, tf.constant(tol, op.dtype))
        it = int(it)
        total += it
        vals.append(float(lam))
        res.append(float(r))
        conv.append(it < max_iter)
        U = tf.concat([U, (v / tf.norm(v))[None]], axis=0)
    op.num_products += total
    result = EigResult(eigenvalues=np.array(vals), eigenvectors=U.numpy().T, residuals=np.array(res),
                       num_products=total, converged=np.array(conv), num_iterations=total, which="LM",
                       notes="" if all(conv) else f"max_iter={max_iter} reached before the eigenvalue settled")
    _warn_unconverged(result, "power_iteration")
    return result


# ------------------------------------------------------------------------------------------------------------
# SciPy bridge and dense eigh
# ------------------------------------------------------------------------------------------------------------

def eigsh(op: CurvatureOperator, k: int, which: str = "LA", tol: float = 1e-8, seed: int = 0,
          max_iter: int | None = None) -> EigResult:
    """k eigenpairs by ``scipy.sparse.linalg.eigsh`` (ARPACK's implicitly restarted Lanczos) on the operator.

    Products go through :meth:`CurvatureOperator.as_linear_operator` (a NumPy round trip each: this bridge is
    for comparison and convenience, :func:`lanczos` stays on the device). Residuals cost k more products.
    Args and returns as :func:`lanczos` (``which="BE"`` is ARPACK's both-ends mode).

    ARPACK has the same limitation as a single Lanczos run: it grows one Krylov space from one start vector,
    so an eigenvalue of multiplicity > 1 can be returned once, with the next eigenvalues filling the other
    places, every pair with a small residual and "converged". This bridge does not check multiplicities
    (``complete`` is None); use :func:`lanczos` with ``restarts >= 1`` for that. ``converged`` here means
    residual <= tol times the largest |eigenvalue| returned; a pair above it warns
    (:class:`NotConvergedWarning`).
    Used in chapter 4 and the benchmark.
    """
    from scipy.sparse.linalg import eigsh as _eigsh

    _check_op(op)
    _check_k(op, k, which)
    if k >= op.size:
        raise ValueError(f"ARPACK's eigsh needs k < P; k={k}, P={op.size}. Use dense_eigh or lanczos instead.")
    tol = _eff_tol(tol, op.dtype, op.size)
    start = op.num_products
    v0 = np.random.default_rng(seed).standard_normal(op.size).astype(op.dtype.as_numpy_dtype)
    w, V = _eigsh(op.as_linear_operator(), k=k, which=which, tol=tol, v0=v0, maxiter=max_iter)
    order = _select(np.sort(w), k, which)
    srt = np.argsort(w, kind="stable")
    w, V = w[srt][order], V[:, srt][:, order]
    iters = op.num_products - start
    AV = op.matmat(V).numpy()
    res = np.linalg.norm(AV - V * w[None, :], axis=0)
    scale = max(np.abs(w).max(), np.finfo(np.float64).tiny)
    result = EigResult(eigenvalues=w.astype(np.float64), eigenvectors=V, residuals=res.astype(np.float64),
                       num_products=iters + k, converged=res <= tol * scale, num_iterations=iters,
                       which=which, notes="multiplicities not checked (ARPACK)")
    _warn_unconverged(result, "eigsh")
    return result


def dense_eigh(op: CurvatureOperator, max_bytes: int = 2 * 1024**3, block_size: int | None = None,
               eigenvectors: bool = True) -> EigResult:
    """The full spectrum: materialise the operator in blocks (``to_dense``) and call ``numpy.linalg.eigh``.

    The dense matrix is symmetrised, :math:`(A + A^T)/2`, before diagonalising (rounding makes the
    materialised rows differ from the columns by a few ulps).

    Args:
        op: the operator (P, P).
        max_bytes: memory cap for the materialisation (see ``CurvatureOperator.to_dense``).
        block_size: columns per block (default from ``max_bytes``).
        eigenvectors: also return eigenvectors (P, P).
    Returns:
        :class:`EigResult` with all P eigenvalues ascending, residuals from the dense matrix.
    Used in chapters 2, 4 and 6 (dense spectra of small networks, the reference for I-LANCZOS and I-SLQ).
    """
    _check_op(op)
    A = op.to_dense(max_bytes=max_bytes, block_size=block_size)
    A = 0.5 * (A + A.T)
    if eigenvectors:
        w, V = np.linalg.eigh(A)
        res = np.linalg.norm(A @ V - V * w[None, :], axis=0)
    else:
        w, V = np.linalg.eigvalsh(A), None
        res = np.zeros_like(w)
    return EigResult(eigenvalues=w, eigenvectors=V, residuals=res, num_products=op.size,
                     converged=np.ones(op.size, bool), num_iterations=0, which="all")


# ------------------------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature
# ------------------------------------------------------------------------------------------------------------

def slq_nodes(op: CurvatureOperator, num_probes: int, num_steps: int, seed: int = 0,
              distribution: str = "rademacher", probes_per_batch: int | None = None):
    """Gauss quadrature nodes and weights of the spectral measure from Lanczos runs on random probes.

    For a unit probe v, m Lanczos steps give :math:`T = S\\Theta S^T`; :math:`v^Tg(A)v \\approx \\sum_j
    S_{1j}^2 g(\\theta_j)` (ubaru2017fast). Probes run together (batched products) in one graph loop.

    Args:
        op: the operator (P, P).
        num_probes: number of random probes.
        num_steps: Lanczos steps m per probe (capped at P).
        seed: seed of the probes.
        distribution: ``"rademacher"`` or ``"gaussian"``.
        probes_per_batch: probes run together (default: as many as fit in about 512 MiB).
    Returns:
        ``(nodes, weights, num_products)`` with nodes and weights of shape (num_probes, m).
    Used in chapter 4 (through :func:`slq_density`).
    """
    _check_op(op)
    for name, val in (("num_probes", num_probes), ("num_steps", num_steps)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}.")
    m = int(min(num_steps, op.size))
    if probes_per_batch is None:  # keep the batched basis (per x (m+1) x P) and the products under ~512 MiB
        budget = 512 * 1024**2
        per = min(num_probes, max(1, budget // ((m + 1) * op.size * op.dtype.size)), op.block_size(budget))
    else:
        per = int(probes_per_batch)
        if per < 1:
            raise ValueError(f"probes_per_batch must be a positive integer, got {probes_per_batch!r}.")
    nodes, weights, total = [], [], 0
    for start in range(0, num_probes, per):
        b = min(per, num_probes - start)
        V0 = _start_vectors(op, b, seed, distribution, stream=start + 1)
        fn = _get_lanczos(op, m, 0, "LA", 1, b)
        j, Q, alpha, beta = fn(V0, _restart_seed(seed, start + 1), tf.constant(0.0, op.dtype))
        total += int(j) * b
        a = tf.transpose(alpha[:m])  # (b, m)
        bb = tf.transpose(beta[:m - 1])
        T = tf.linalg.diag(a) + tf.pad(tf.linalg.diag(bb), [[0, 0], [0, 1], [1, 0]])
        T = T + tf.pad(tf.linalg.diag(bb), [[0, 0], [1, 0], [0, 1]])
        theta, S = tf.linalg.eigh(T)
        nodes.append(theta.numpy())
        weights.append((S[:, 0, :] ** 2).numpy())
    op.num_products += total
    return np.concatenate(nodes).astype(np.float64), np.concatenate(weights).astype(np.float64), total


def slq_density(op: CurvatureOperator, num_probes: int = 10, num_steps: int = 80, grid=None,
                sigma: float | None = None, seed: int = 0, distribution: str = "rademacher",
                grid_size: int = 512) -> Density:
    """Spectral density by stochastic Lanczos quadrature with Gaussian smoothing (003 Sec. 3; ubaru2017fast).

    :math:`\\phi_\\sigma(t) = \\frac{1}{n_v}\\sum_{l=1}^{n_v}\\sum_{j=1}^m (S^{(l)}_{1j})^2\\, g_\\sigma(t-\\theta^{(l)}_j)`
    with :math:`g_\\sigma` a unit-mass Gaussian of width sigma: the Gaussian-smoothed version of
    :math:`\\phi(t) = \\frac1P\\sum_i\\delta(t-\\lambda_i)` (003 Sec. 3, "Lanczos spectral density").

    Args:
        op: the operator (P, P).
        num_probes: number of random probe vectors :math:`n_v`.
        num_steps: Lanczos steps m per probe (capped at P).
        grid: points t (default: ``grid_size`` points spanning the nodes +- 5 sigma).
        sigma: Gaussian width (default 1% of the span of the nodes).
        seed: seed of the probes.
        distribution: ``"rademacher"`` or ``"gaussian"`` probes.
    Returns:
        :class:`Density` (grid, density, raw nodes and weights, sigma, num_products, and ``stderr``: the
        spread of the per-probe densities, standard error of their mean, pointwise).
    Used in chapter 4 (identity I-SLQ, layerwise spectra).
    """
    nodes, weights, total = slq_nodes(op, num_probes, num_steps, seed, distribution)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid_size))
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)
    if grid.size == 0:
        raise ValueError("grid is empty; pass at least one point.")
    diff = grid[:, None, None] - nodes[None]
    g = np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    per_probe = np.einsum("gpm,pm->pg", g, weights)  # (num_probes, G): each probe's smoothed density
    n = per_probe.shape[0]
    dens = per_probe.mean(axis=0)
    stderr = per_probe.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(dens, np.nan)
    return Density(grid=grid, density=dens, nodes=nodes, weights=weights, sigma=float(sigma), num_products=total,
                   stderr=stderr)
