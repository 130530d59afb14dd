"""Randomised estimators of the trace and the diagonal of a curvature operator.

- :func:`hutchinson_trace`: :math:`\\mathrm{tr}A \\approx \\frac1n\\sum_l v_l^TAv_l` with Rademacher or Gaussian
  probes (hutchinson1989stochastic; 003 Sec. 4 uses it for the Hessian trace and its regulariser);
- :func:`hutchpp_trace`: Hutch++ (meyer2021hutchpp): the trace of a low-rank sketch exactly plus Hutchinson on
  the rest, error O(1/m) instead of O(1/sqrt(m)) for m products on matrices with decaying spectra;
- :func:`hutchinson_diagonal`: :math:`\\mathrm{diag}A \\approx \\frac1n\\sum_l v_l\\odot Av_l` (Bekas et al.);
- :func:`exact_diagonal`, :func:`exact_trace`: the same from P products with unit vectors (for small P and tests).

Probes are drawn in blocks inside a TensorFlow graph loop on the operator's device (stateless random numbers
from ``seed``), products are batched (``op.rows_product``), and every estimate reports its standard error
and the products spent.

Used in chapters 4 (identity I-TRACE, the evolution of the trace, HTR) and 6.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .operators import CurvatureOperator

__all__ = ["TraceEstimate", "DiagonalEstimate", "hutchinson_trace", "hutchpp_trace", "hutchinson_diagonal",
           "exact_diagonal", "exact_trace"]


@dataclass
class TraceEstimate:
    """A trace estimate: ``value``, its standard error ``stderr``, ``num_products`` and the per-probe
    ``samples`` (Hutchinson: :math:`v_l^TAv_l`; Hutch++: those of the deflated remainder). Used in chapter 4."""

    value: float
    stderr: float
    num_products: int
    samples: np.ndarray | None = None

    def __float__(self) -> float:
        return float(self.value)

    @property
    def relative_stderr(self) -> float:
        """stderr / |value| (inf for a zero estimate with a non-zero error)."""
        return float(self.stderr / abs(self.value)) if self.value else (0.0 if self.stderr == 0 else float("inf"))

    def __repr__(self) -> str:
        return (f"TraceEstimate({self.value:.6g} +- {self.stderr:.2g} (standard error), "
                f"num_products={self.num_products})")


@dataclass
class DiagonalEstimate:
    """A diagonal estimate: ``value`` (P,), per-entry ``stderr`` (P,), ``num_products``. Used in chapter 4."""

    value: np.ndarray
    stderr: np.ndarray
    num_products: int


def _check(op, n, name):
    if not isinstance(op, CurvatureOperator):
        raise TypeError(f"Expected a helpers.operators.CurvatureOperator, got {type(op).__name__}; wrap an explicit "
                        "matrix with operators.DenseOperator(matrix).")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}.")


def _probes(shape, seed, distribution, dtype):
    if distribution == "rademacher":
        r = tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=2, dtype=tf.int32)
        return tf.cast(2 * r - 1, dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)


def _check_dist(distribution):
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}.")


def _build_probe_loop(op: CurvatureOperator, n_blocks: int, block: int, distribution: str, deflate: bool):
    """tf.function: quadratic forms v^T A v and sums of v*Av, (v*Av)^2 and v*v over n_blocks blocks of probes.

    With ``deflate`` the probes are projected, v <- (I - Q Q^T) v, before the product (Hutch++).
    """
    P, dtype = op.size, op.dtype

    def run(seed, Q, offset):
        product = op.prepare()

        def body(i, quad, diag_sum, diag_sq, norm_sum):
            V = _probes([block, P], tf.stack([seed, tf.cast(i + offset, tf.int64)]), distribution, dtype)
            if deflate:
                V = V - tf.matmul(tf.matmul(V, Q), Q, transpose_b=True)
            AV = product(V)
            prod = V * AV
            quad = tf.tensor_scatter_nd_update(quad, [[i]], tf.reduce_sum(prod, axis=1)[None])
            return (i + 1, quad, diag_sum + tf.reduce_sum(prod, 0), diag_sq + tf.reduce_sum(prod ** 2, 0),
                    norm_sum + tf.reduce_sum(V * V, 0))

        zeros = tf.zeros([P], dtype)
        _, quad, dsum, dsq, nsum = tf.while_loop(
            lambda i, *_: i < n_blocks, body,
            (tf.constant(0), tf.zeros([n_blocks, block], dtype), zeros, zeros, zeros))
        return tf.reshape(quad, [-1]), dsum, dsq, nsum

    return tf.function(run)


def _run_probes(op, num_probes, block, distribution, seed, Q=None):
    """All probes: full blocks in one graph loop, the remainder in a second one. Adds to op.num_products."""
    cache = op.__dict__.setdefault("_probe_cache", {})
    Q = tf.zeros([op.size, 0], op.dtype) if Q is None else Q
    deflate = int(Q.shape[1]) > 0
    n_full, rem = divmod(int(num_probes), block)
    parts = []
    for n_blocks, size, offset in ((n_full, block, 0), (1 if rem else 0, rem, n_full)):
        if n_blocks == 0:
            continue
        key = (n_blocks, size, distribution, deflate)
        if key not in cache:
            cache[key] = _build_probe_loop(op, n_blocks, size, distribution, deflate)
        parts.append(cache[key](tf.constant(int(seed), tf.int64), Q, tf.constant(offset)))
    op.num_products += int(num_probes)
    quad = np.concatenate([p[0].numpy() for p in parts]).astype(np.float64)
    dsum, dsq, nsum = (sum(p[i].numpy().astype(np.float64) for p in parts) for i in (1, 2, 3))
    return quad, dsum, dsq, nsum


def _block(op, num_probes, block_size):
    if block_size is None:
        block_size = 16
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
    return int(min(block_size, num_probes))


def hutchinson_trace(op: CurvatureOperator, num_probes: int = 100, distribution: str = "rademacher",
                     seed: int = 0, block_size: int | None = None) -> TraceEstimate:
    """Hutchinson's trace estimator :math:`\\mathrm{tr}A \\approx \\frac1n\\sum_{l=1}^n v_l^TAv_l`.

    Probes have :math:`E[vv^T] = I`: Rademacher (entries +-1, variance :math:`2\\sum_{i\\ne j}A_{ij}^2`) or
    standard Gaussian (variance :math:`2\\|A\\|_F^2`) (hutchinson1989stochastic; 003 Sec. 4, Algorithm 1).

    Args:
        op: the operator (P, P).
        num_probes: n >= 1 (the standard error needs n >= 2; it is NaN for n = 1).
        distribution: ``"rademacher"`` or ``"gaussian"``.
        seed: seed of the probes.
        block_size: probes per batched product (default 16).
    Returns:
        :class:`TraceEstimate` with the sample standard error :math:`s/\\sqrt n`.
    Used in chapter 4 (identity I-TRACE, the trace during training).
    """
    _check(op, num_probes, "num_probes")
    _check_dist(distribution)
    block = _block(op, num_probes, block_size)
    q, _, _, _ = _run_probes(op, num_probes, block, distribution, seed)
    se = q.std(ddof=1) / math.sqrt(len(q)) if len(q) > 1 else float("nan")
    return TraceEstimate(value=float(q.mean()), stderr=float(se), num_products=int(num_probes), samples=q)


def hutchpp_trace(op: CurvatureOperator, num_products: int = 99, distribution: str = "rademacher",
                  seed: int = 0, block_size: int | None = None) -> TraceEstimate:
    """Hutch++ trace estimator with a budget of ``num_products`` matrix-vector products (meyer2021hutchpp).

    With s = floor(m/3): sketch :math:`Q = \\mathrm{orth}(AS)` for s random columns S (s products), take
    :math:`\\mathrm{tr}(Q^TAQ)` exactly (s products), and estimate the trace of the deflated remainder
    :math:`(I-QQ^T)A(I-QQ^T)` by Hutchinson with the remaining m - 2s probes. The standard error is that of
    the Hutchinson part.

    Args:
        op: the operator (P, P).
        num_products: total budget m >= 3.
        distribution, seed, block_size: as :func:`hutchinson_trace`.
    Returns:
        :class:`TraceEstimate` (``num_products`` = m).
    Used in chapter 4 (identity I-TRACE: Hutch++ with half the products).
    """
    _check(op, num_products, "num_products")
    _check_dist(distribution)
    if num_products < 3:
        raise ValueError(f"Hutch++ needs a budget of at least 3 products, got {num_products}.")
    s = num_products // 3
    g = num_products - 2 * s
    S = _probes([s, op.size], tf.constant([int(seed), -1], tf.int64), distribution, op.dtype)
    Y = op.rows_product(S)  # (s, P)
    Q, _ = tf.linalg.qr(tf.transpose(Y))  # (P, s)
    AQ = op.rows_product(tf.transpose(Q))
    exact = float(tf.reduce_sum(tf.transpose(Q) * AQ))
    block = _block(op, g, block_size)
    op.num_products += 2 * s
    q, _, _, _ = _run_probes(op, g, block, distribution, seed, Q)
    se = q.std(ddof=1) / math.sqrt(len(q)) if len(q) > 1 else float("nan")
    return TraceEstimate(value=exact + float(q.mean()), stderr=float(se), num_products=int(num_products), samples=q)


def hutchinson_diagonal(op: CurvatureOperator, num_probes: int = 100, distribution: str = "rademacher",
                        seed: int = 0, block_size: int | None = None) -> DiagonalEstimate:
    """Estimate of the diagonal, :math:`\\mathrm{diag}A \\approx \\sum_l v_l\\odot Av_l \\,/\\, \\sum_l v_l\\odot v_l`.

    For Rademacher probes the denominator is n exactly (the estimator of Bekas, Kokiopoulou and Saad;
    unbiased); for Gaussian probes it is the ratio estimator. The standard error per entry is computed from
    the spread of :math:`v_l\\odot Av_l` over probes.

    Args: as :func:`hutchinson_trace`.
    Returns:
        :class:`DiagonalEstimate` (value (P,), stderr (P,), num_products).
    Used in chapter 4 (diagonal curvature per parameter).
    """
    _check(op, num_probes, "num_probes")
    _check_dist(distribution)
    block = _block(op, num_probes, block_size)
    _, dsum, dsq, nsum = _run_probes(op, num_probes, block, distribution, seed)
    n = num_probes
    value = dsum / nsum
    mean = dsum / n
    var = np.maximum(dsq / n - mean ** 2, 0.0) * n / max(n - 1, 1)
    se = np.sqrt(var / n) if n > 1 else np.full_like(value, np.nan)
    return DiagonalEstimate(value=value, stderr=se, num_products=int(num_probes))


def exact_diagonal(op: CurvatureOperator, max_bytes: int = 512 * 1024**2, block_size: int | None = None) -> np.ndarray:
    """The exact diagonal (P,) from products with blocks of unit vectors (P products, no P x P storage).

    Used in chapter 4 and the tests (reference for :func:`hutchinson_diagonal`).
    """
    if not isinstance(op, CurvatureOperator):
        raise TypeError(f"Expected a helpers.operators.CurvatureOperator, got {type(op).__name__}.")
    b = op.block_size(max_bytes) if block_size is None else int(block_size)
    out = np.empty(op.size, dtype=np.float64)
    for start in range(0, op.size, b):
        stop = min(op.size, start + b)
        eye = tf.one_hot(tf.range(start, stop), op.size, dtype=op.dtype)
        rows = op.rows_product(eye)
        out[start:stop] = tf.linalg.diag_part(rows[:, start:stop]).numpy()
        op.num_products += stop - start
    return out


def exact_trace(op: CurvatureOperator, max_bytes: int = 512 * 1024**2) -> float:
    """The exact trace from P products with unit vectors. Used in chapter 4 and the benchmark."""
    return float(exact_diagonal(op, max_bytes).sum())
