"""Exactly solvable finite spin models as exponential families, for the Fisher geometry of phase transitions.

Both models are written as Gibbs measures ``p(x|θ) = exp(θ₁ T₁(x) + θ₂ T₂(x)) / Z(θ)`` (004 eq. 3.4.1) in
the natural coordinates ``θ = (β, βh)`` with sufficient statistics ``T₁ = −E_int`` (minus the interaction
energy) and ``T₂ = M`` (the magnetisation). A microstate x enters only through (E_int, M), so each model is
a finite table of levels (E_int, M) with their exact degeneracies Ω, and

    log Z(θ) = logsumexp_levels( log Ω + θ₁ (−E_int) + θ₂ M ),   g_ij(θ) = ∂_i ∂_j log Z = Cov(T_i, T_j),

the Fisher metric (sufficiency: the levels carry all the information about θ the microstates do).

- Curie-Weiss (mean-field) model of N spins: ``E_int = −J M² / (2N)``, Ω(M) = C(N, (N+M)/2);
  critical temperature of the infinite system T_c = J.
- 2-D Ising model on an L × L periodic square lattice, ``E_int = −J Σ_<ij> s_i s_j``, Ω(E, M) by exact
  enumeration of the 2^(L²) states (L <= 5); Onsager's T_c = 2J / ln(1 + √2) for the infinite lattice.

Used in chapter 6 (F-PHASE).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy.special import gammaln

from .geometry import pointwise_jacobian

__all__ = [
    "SpinLevels",
    "curie_weiss",
    "ising2d",
    "log_partition",
    "log_prob_levels",
    "thermodynamic_metric",
    "moments",
    "ONSAGER_TC",
]

ONSAGER_TC = 2.0 / np.log(1.0 + np.sqrt(2.0))  # in units of J / k_B


@dataclass(frozen=True)
class SpinLevels:
    """Levels (E_int, M) of a finite spin model with their log-degeneracies; N spins; exact T_c of the infinite system."""

    name: str
    energy: np.ndarray  # (K,) interaction energy E_int of each level
    magnetization: np.ndarray  # (K,) total magnetisation M
    log_degeneracy: np.ndarray  # (K,) log Ω
    num_spins: int
    tc_infinite: float

    def stats(self) -> np.ndarray:
        """Sufficient statistics (−E_int, M), shape (K, 2)."""
        return np.stack([-self.energy, self.magnetization], axis=-1)


def curie_weiss(num_spins: int, coupling: float = 1.0) -> SpinLevels:
    """Levels of the Curie-Weiss model of N spins, H = −J M²/(2N) − h M, M ∈ {−N, −N+2, ..., N}.

    Args:
        num_spins: N >= 2.
        coupling: J > 0.
    Returns:
        SpinLevels with N+1 levels and log-degeneracies log C(N, (N+M)/2); tc_infinite = J.
    Used in chapter 6.
    """
    if not isinstance(num_spins, (int, np.integer)) or num_spins < 2:
        raise ValueError(f"num_spins must be an integer >= 2; got {num_spins!r}.")
    if not coupling > 0:
        raise ValueError(f"coupling J must be positive (ferromagnet); got {coupling!r}.")
    n = int(num_spins)
    k = np.arange(n + 1)  # number of up spins
    m = (2 * k - n).astype(np.float64)
    log_deg = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    energy = -coupling * m**2 / (2.0 * n)
    return SpinLevels(f"Curie-Weiss N={n}", energy, m, log_deg, n, float(coupling))


def ising2d(size: int, coupling: float = 1.0) -> SpinLevels:
    """Levels of the 2-D Ising model on an L × L periodic square lattice by exact enumeration.

    Every one of the 2^(L²) configurations is visited (in chunks) and counted by its (E_int, M).

    Args:
        size: L, 2 <= L <= 5 (L = 5 visits 33.5 million states: a few seconds).
        coupling: J > 0.
    Returns:
        SpinLevels of the distinct (E_int, M) pairs with their exact degeneracies; tc_infinite = Onsager's.
    Used in chapter 6.
    """
    if not isinstance(size, (int, np.integer)) or not 2 <= size <= 5:
        raise ValueError(f"size must be an integer L with 2 <= L <= 5 (2^(L²) states are enumerated); got {size!r}.")
    if not coupling > 0:
        raise ValueError(f"coupling J must be positive (ferromagnet); got {coupling!r}.")
    L = int(size)
    n = L * L
    idx = np.arange(n).reshape(L, L)
    right = np.roll(idx, -1, axis=1).ravel()
    down = np.roll(idx, -1, axis=0).ravel()
    site = idx.ravel()
    # bond sum = Σ_bonds s_i s_j = (#bonds) − 2 (#unequal bonds); M = 2 (#up) − n
    counts: dict[tuple[int, int], int] = {}
    chunk = 1 << min(n, 20)
    bits = np.arange(n, dtype=np.int64)
    for start in range(0, 1 << n, chunk):
        states = np.arange(start, min(start + chunk, 1 << n), dtype=np.int64)
        spins = ((states[:, None] >> bits[None, :]) & 1).astype(np.int8)  # (chunk, n) in {0, 1}
        unequal = (spins[:, site] != spins[:, right]).sum(1) + (spins[:, site] != spins[:, down]).sum(1)
        bond_sum = 2 * n - 2 * unequal
        mag = 2 * spins.sum(1).astype(np.int64) - n
        key = (bond_sum + 2 * n) * (2 * n + 1) + (mag + n)
        uniq, cnt = np.unique(key, return_counts=True)
        for u, c in zip(uniq.tolist(), cnt.tolist()):
            counts[u] = counts.get(u, 0) + c
    keys = np.array(sorted(counts))
    deg = np.array([counts[k] for k in keys], dtype=np.float64)
    bond_sum = keys // (2 * n + 1) - 2 * n
    mag = keys % (2 * n + 1) - n
    energy = -coupling * bond_sum.astype(np.float64)
    return SpinLevels(f"2-D Ising {L}x{L}", energy, mag.astype(np.float64), np.log(deg), n, float(coupling * ONSAGER_TC))


def log_partition(levels: SpinLevels, theta) -> tf.Tensor:
    """log Z(θ) for θ = (β, βh), shape (B, 2) -> (B,), in TensorFlow (differentiable to any order).

    Used in chapter 6.
    """
    t = tf.convert_to_tensor(theta, tf.float64)
    stats = tf.constant(levels.stats())
    logw = tf.constant(levels.log_degeneracy)[None, :] + tf.einsum("bi,ki->bk", t, stats)
    return tf.reduce_logsumexp(logw, axis=1)


def log_prob_levels(levels: SpinLevels):
    """The family as ``log_prob(level_index, theta) -> (B, K)`` for :mod:`helpers.information` (levels as outcomes).

    Used in chapter 6.
    """
    stats = tf.constant(levels.stats())
    log_deg = tf.constant(levels.log_degeneracy)

    def log_prob(x, theta):
        idx = tf.cast(x, tf.int32)
        s = tf.gather(stats, idx)
        logw = tf.gather(log_deg, idx)[None, :] + tf.einsum("bi,ki->bk", theta, s)
        return logw - tf.reduce_logsumexp(
            log_deg[None, :] + tf.einsum("bi,ki->bk", theta, stats), axis=1, keepdims=True
        )

    return log_prob


def thermodynamic_metric(levels: SpinLevels):
    """The Fisher (thermodynamic) metric g_ij = ∂_i ∂_j log Z in θ = (β, βh), as a metric function.

    Returns:
        ``metric(theta (..., 2)) -> (..., 2, 2)`` in TensorFlow ops, ready for :mod:`helpers.geometry`.
    Used in chapter 6.
    """

    def metric(theta):
        theta = tf.cast(tf.convert_to_tensor(theta), tf.float64)
        shape = tf.shape(theta)
        flat = tf.reshape(theta, (-1, 2))
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(flat)
            with tf.GradientTape() as inner:
                inner.watch(flat)
                logz = log_partition(levels, flat)
            grad = inner.gradient(logz, flat)
        hess = pointwise_jacobian(outer, grad, flat)
        del outer
        return tf.reshape(hess, tf.concat([shape, [2]], axis=0))

    return metric


def moments(levels: SpinLevels, temperature, field: float = 0.0) -> dict[str, np.ndarray]:
    """Exact thermal averages at temperatures T (k_B = 1) and field h, in NumPy float64.

    Returns a dict of arrays over T: ``energy`` ⟨E⟩ (total, with −hM), ``heat_capacity`` C = Var(E)/T²,
    ``m_abs`` ⟨|M|⟩/N, ``susceptibility`` χ = N (⟨m²⟩ − ⟨|m|⟩²)/T (m = M/N; the finite-size
    susceptibility of the order parameter |m|), ``fisher_beta`` Var(E) (the Fisher information in β) and
    ``fisher_temperature`` Var(E)/T⁴ (the Fisher information in T at fixed h).
    Used in chapter 6.
    """
    T = np.atleast_1d(np.asarray(temperature, dtype=np.float64))
    if np.any(T <= 0):
        raise ValueError("temperatures must be positive.")
    beta = 1.0 / T[:, None]
    e_tot = levels.energy[None, :] - field * levels.magnetization[None, :]
    logw = levels.log_degeneracy[None, :] - beta * e_tot
    logw -= logw.max(axis=1, keepdims=True)
    p = np.exp(logw)
    p /= p.sum(axis=1, keepdims=True)
    e1 = (p * e_tot).sum(1)
    var_e = (p * (e_tot - e1[:, None]) ** 2).sum(1)
    m = levels.magnetization[None, :] / levels.num_spins
    m_abs = (p * np.abs(m)).sum(1)
    m2 = (p * m**2).sum(1)
    n = levels.num_spins
    return {
        "temperature": T,
        "energy": e1,
        "heat_capacity": var_e / T**2,
        "m_abs": m_abs,
        "susceptibility": n * (m2 - m_abs**2) / T,
        "fisher_beta": var_e,
        "fisher_temperature": var_e / T**4,
    }
