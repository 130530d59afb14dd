"""Exactly solvable finite spin models as exponential families, for the Fisher geometry of phase transitions.

Both models are written as Gibbs measures ``p(x|θ) = exp(θ₁ T₁(x) + θ₂ T₂(x)) / Z(θ)`` (004 eq. 3.4.1) in
the natural coordinates ``θ = (β, βh)`` with sufficient statistics ``T₁ = −E_int`` (minus the interaction
energy) and ``T₂ = M`` (the magnetisation). A microstate x enters only through (E_int, M), so each model is
a finite table of levels (E_int, M) with their exact degeneracies Ω, and

    log Z(θ) = logsumexp_levels( log Ω + θ₁ (−E_int) + θ₂ M ),   g_ij(θ) = ∂_i ∂_j log Z = Cov(T_i, T_j),

the Fisher metric (sufficiency: the levels carry all the information about θ the microstates do).

- Curie-Weiss (mean-field) model of N spins: ``E_int = −J M² / (2N)``, Ω(M) = C(N, (N+M)/2);
  critical temperature of the infinite system T_c = J.
- 2-D Ising model on an L × L periodic square lattice, ``E_int = −J Σ_<ij> s_i s_j``, Ω(E, M) exactly by a
  row transfer (L <= 7), checked against the enumeration of all 2^(L²) states (L <= 5); Onsager's
  T_c = 2J / ln(1 + √2) for the infinite lattice. At h = 0 Kaufman's closed form gives log Z exactly for any L,
  so the temperature responses (specific heat, Fisher information in T) of much larger lattices are exact too,
  and a spin-by-spin transfer of the moments of M gives the metric and its curvature at h = 0 for L <= 12.

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
    "ising2d_enumerated",
    "ising2d_log_partition_h0",
    "ising2d_response_h0",
    "FieldSeries",
    "ising2d_field_series",
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


def _check_ising_args(size, coupling, largest):
    if not isinstance(size, (int, np.integer)) or not 2 <= size <= largest:
        raise ValueError(f"size must be an integer L with 2 <= L <= {largest}; got {size!r}.")
    if not coupling > 0:
        raise ValueError(f"coupling J must be positive (ferromagnet); got {coupling!r}.")
    return int(size)


def _levels_from_counts(L: int, counts: np.ndarray, coupling: float) -> SpinLevels:
    """SpinLevels from a table counts[bond_sum + 2N, M + N] of exact degeneracies."""
    n = L * L
    b_idx, m_idx = np.nonzero(counts)
    bond_sum, mag = b_idx - 2 * n, m_idx - n
    deg = counts[b_idx, m_idx]
    energy = -coupling * bond_sum.astype(np.float64)
    return SpinLevels(f"2-D Ising {L}x{L}", energy, mag.astype(np.float64), np.log(deg), n,
                      float(coupling * ONSAGER_TC))


def ising2d_enumerated(size: int, coupling: float = 1.0) -> SpinLevels:
    """Levels of the 2-D Ising model on an L x L periodic lattice by visiting all 2^(L²) states (L <= 5).

    The slow, obvious reference that :func:`ising2d` (row transfer) is tested against. Used in the tests.
    """
    L = _check_ising_args(size, coupling, 5)
    n = L * L
    idx = np.arange(n).reshape(L, L)
    right, down, site = np.roll(idx, -1, axis=1).ravel(), np.roll(idx, -1, axis=0).ravel(), idx.ravel()
    counts = np.zeros((4 * n + 1, 2 * n + 1))
    chunk, bits = 1 << min(n, 20), np.arange(n, dtype=np.int64)
    for start in range(0, 1 << n, chunk):
        states = np.arange(start, min(start + chunk, 1 << n), dtype=np.int64)
        spins = ((states[:, None] >> bits[None, :]) & 1).astype(np.int8)  # (chunk, n) in {0, 1}
        unequal = (spins[:, site] != spins[:, right]).sum(1) + (spins[:, site] != spins[:, down]).sum(1)
        bond_sum = 2 * n - 2 * unequal  # Σ_bonds s_i s_j = (#bonds) − 2 (#unequal bonds)
        mag = 2 * spins.sum(1).astype(np.int64) - n
        np.add.at(counts, (bond_sum + 2 * n, mag + n), 1)
    return _levels_from_counts(L, counts, coupling)


def ising2d(size: int, coupling: float = 1.0) -> SpinLevels:
    """Levels (E_int, M) of the 2-D Ising model on an L x L periodic square lattice with exact degeneracies.

    Row transfer: with the first row r_0 fixed, a table of counts over (bond sum, M) is carried from row to row
    for every configuration a of the current row; the next row b adds its horizontal bonds, its magnetisation
    and the vertical bonds a . b = L − 2 popcount(a xor b), so one step is L + 1 matrix products with the 0/1
    matrices [popcount(a xor b) = k]; the last row closes the lattice against r_0. First rows related by a
    cyclic shift give the same table, so one representative per orbit is run and weighted by the orbit's size.
    The counts are integers below 2^53 for L <= 7 and therefore exact in float64.

    Args:
        size: L, 2 <= L <= 7 (L = 7: 2^49 states, a few seconds on 2 cores).
        coupling: J > 0.
    Returns:
        SpinLevels of the distinct (E_int, M) pairs with their exact degeneracies; tc_infinite = Onsager's.
    Used in chapter 6 (F-PHASE).
    """
    L = _check_ising_args(size, coupling, 7)
    n, S = L * L, 1 << L
    rows = np.arange(S)
    spins = 2 * ((rows[:, None] >> np.arange(L)[None, :]) & 1) - 1  # (S, L) in {-1, +1}
    h_bonds = (spins * np.roll(spins, -1, axis=1)).sum(1)  # horizontal bond sum of each row
    mags = spins.sum(1)
    unequal = np.array([[bin(a ^ b).count("1") for b in rows] for a in rows])
    adjacency = [(unequal == k).astype(np.float64) for k in range(L + 1)]  # vertical bonds L − 2k
    NB, NM = 4 * n + 1, 2 * n + 1
    total = np.zeros((NB, NM))

    def shifted(table, de):  # move a (..., NB, NM) table by de along the bond axis, no wrap-around
        out = np.zeros_like(table)
        if de >= 0:
            out[..., de:, :] = table[..., :NB - de, :]
        else:
            out[..., :de, :] = table[..., -de:, :]
        return out

    orbits: dict[int, int] = {}
    for r in rows:  # one first row per orbit of cyclic shifts
        rep = min(((int(r) >> s) | (int(r) << (L - s))) & (S - 1) for s in range(L))
        orbits[rep] = orbits.get(rep, 0) + 1
    for r0, weight in orbits.items():
        C = np.zeros((S, NB, NM))
        C[r0, 2 * n + h_bonds[r0], n + mags[r0]] = 1.0
        for _ in range(L - 1):
            flat = C.reshape(S, -1)
            D = sum(shifted((A @ flat).reshape(S, NB, NM), L - 2 * k) for k, A in enumerate(adjacency))
            C = np.zeros_like(D)
            for b in rows:  # row b adds its horizontal bonds and its magnetisation
                hb, mb = h_bonds[b], mags[b]
                src = D[b, max(0, -hb):NB - max(0, hb), max(0, -mb):NM - max(0, mb)]
                C[b, max(0, hb):max(0, hb) + src.shape[0], max(0, mb):max(0, mb) + src.shape[1]] = src
        for a in rows:  # close the lattice: vertical bonds between the last row and r_0
            total += weight * shifted(C[a], L - 2 * int(unequal[a, r0]))
    return _levels_from_counts(L, np.rint(total), coupling)


def ising2d_log_partition_h0(size: int, beta, coupling: float = 1.0) -> tf.Tensor:
    """Exact log Z(β) of the L x L periodic 2-D Ising model in zero field, by Kaufman's closed form.

    Kaufman (1949): Z = ½ (2 sinh 2K)^(L²/2) (Z₁ + Z₂ + Z₃ + Z₄) with K = βJ, where Z₁, Z₂ are the products
    over r = 0..L−1 of 2cosh(Lγ₂ᵣ₊₁/2) and 2sinh(Lγ₂ᵣ₊₁/2), Z₃, Z₄ the same over γ₂ᵣ, with
    cosh γₖ = cosh 2K coth 2K − cos(πk/L) and γ₀ = 2K + ln tanh K, which changes sign at Onsager's
    temperature (so Z₄ does; it is evaluated through 2 sinh, smooth there). The four products are summed in
    log space, so L in the hundreds is fine. Differentiable in β to any order (TensorFlow, float64); it agrees
    with the exact levels of :func:`ising2d` to rounding error (tests).

    Args:
        size: L >= 2.
        beta: inverse temperatures β > 0, any shape.
        coupling: J > 0.
    Returns:
        log Z with the shape of ``beta``.
    Used in chapter 6 (F-PHASE, the finite-size trend beyond L = 7).
    """
    L = _check_ising_args(size, coupling, 4096)
    b = tf.convert_to_tensor(beta, tf.float64)
    if bool(tf.reduce_any(b <= 0)):
        raise ValueError("beta must be positive (beta = 1/T with T > 0).")
    K = coupling * b[..., None]
    k = tf.constant(np.arange(1, 2 * L, dtype=np.float64))  # γ₀ apart: its acosh form has an
    gamma = tf.math.acosh(tf.cosh(2 * K) / tf.tanh(2 * K) - tf.cos(np.pi * k / L))  # infinite slope at T_c
    odd, even = gamma[..., 0::2], gamma[..., 1::2]  # γ₁, γ₃, ...; γ₂, γ₄, ...
    log_cosh = lambda x: tf.reduce_sum(L * x / 2 + tf.math.log1p(tf.exp(-L * x)), -1)  # log Π 2cosh(Lx/2)
    log_sinh = lambda x: tf.reduce_sum(L * x / 2 + tf.math.log(-tf.math.expm1(-L * x)), -1)
    a0 = L * (2 * K[..., 0] + tf.math.log(tf.tanh(K[..., 0]))) / 2  # L γ₀ / 2, of either sign
    l1, l2, l_even = log_cosh(odd), log_sinh(odd), log_sinh(even)
    l3 = log_cosh(even) + a0 + tf.math.softplus(-2 * a0)  # log 2cosh(a0) + ..., smooth through 0
    # the sum is exactly invariant to the shift, which therefore carries no gradient
    top = tf.stop_gradient(tf.reduce_max(tf.stack([l1, l2, l3, l_even + tf.abs(a0)]), 0))
    total = (tf.exp(l1 - top) + tf.exp(l2 - top) + tf.exp(l3 - top)
             + 2 * tf.sinh(a0) * tf.exp(l_even - top))
    return (np.log(0.5) + (L * L / 2) * tf.math.log(2 * tf.sinh(2 * K[..., 0])) + top
            + tf.math.log(total))


def ising2d_response_h0(size: int, temperature, coupling: float = 1.0) -> dict[str, np.ndarray]:
    """Exact specific heat and Fisher information in T of the L x L periodic Ising model at h = 0, any L.

    Var(E) = ∂²log Z/∂β² by automatic differentiation of :func:`ising2d_log_partition_h0`; then
    C = Var(E)/T² and I_TT = Var(E)/T⁴, as in :func:`moments` (k_B = 1).

    Args:
        size: L >= 2.
        temperature: T > 0, 1-D.
        coupling: J > 0.
    Returns:
        ``{"temperature", "heat_capacity", "fisher_temperature"}``, NumPy float64 arrays over T.
    Used in chapter 6.
    """
    T = np.atleast_1d(np.asarray(temperature, dtype=np.float64))
    if T.ndim != 1 or np.any(T <= 0):
        raise ValueError(f"temperature must be a 1-D array of positive values; got shape {T.shape}.")
    beta = tf.constant(1.0 / T)
    with tf.GradientTape() as outer:
        outer.watch(beta)
        with tf.GradientTape() as inner:
            inner.watch(beta)
            logz = ising2d_log_partition_h0(size, beta, coupling)
        energy = -inner.gradient(logz, beta)  # ⟨E⟩ = −∂ log Z / ∂β (each β is its own point)
    var_e = -outer.gradient(energy, beta).numpy()
    return {"temperature": T, "heat_capacity": var_e / T**2, "fisher_temperature": var_e / T**4}


@dataclass(frozen=True)
class FieldSeries:
    """A lattice's energy levels with the even moments of M in each: Z_k(E) = Σ_{states at E} M^k, k = 0, 2, 4.

    log Z(β, βh) = log Σ_E e^{−βE} (Z₀ + (βh)² Z₂/2 + (βh)⁴ Z₄/24) + O((βh)⁶): every derivative of order
    <= 5 in the field at h = 0 is exact, which is all that the metric and its scalar curvature there need.
    """

    name: str
    energy: np.ndarray  # (K,) interaction energy E_int of each level
    log_z0: np.ndarray  # (K,) log of the number of states at that energy
    m2: np.ndarray  # (K,) Z₂/Z₀: mean of M² over the states at that energy
    m4: np.ndarray  # (K,) Z₄/Z₀
    num_spins: int
    tc_infinite: float


def ising2d_field_series(size: int, coupling: float = 1.0) -> FieldSeries:
    """The 2-D Ising model's L x L periodic lattice as a :class:`FieldSeries` (exact at h = 0), for L <= 12.

    Spin-by-spin transfer: with the first row r₀ fixed, a table over (the last L spins placed, number of
    bonds so far whose spins agree) of Σ M^k, k <= 4, is carried site by site. Placing a spin s at column
    j bonds it to the spin it replaces in the window (the one above), to its left neighbour, to the row's
    first spin (last column) and to r₀ (last row); each group of windows with the same agreeing bonds is
    one strided view, moved by that count, and M^k becomes Σ_i C(k, i) s^(k−i) M^i. First rows related
    by a cyclic shift or a global flip give the same even moments, so one first row per orbit is run,
    weighted by the orbit's size; the odd moments vanish by the flip symmetry. On 2 cores L = 8 takes
    0.3 s, L = 10 about 10 s and L = 12 a few minutes; the result agrees with the levels of
    :func:`ising2d` to rounding error (tests).

    Args:
        size: L, 2 <= L <= 12.
        coupling: J > 0.
    Used in chapter 6 (F-PHASE on lattices beyond the level tables).
    """
    L = _check_ising_args(size, coupling, 12)
    n = L * L
    from math import comb

    k = np.arange(5)
    binom = np.array([[comb(a, b) for b in range(5)] for a in range(5)], dtype=np.float64)
    # (M + s)^k = Σ_i C(k, i) s^(k−i) M^i, as a matrix acting on the last axis
    lower = k[:, None] >= k[None, :]
    add_spin = {s: (binom * np.where(lower, float(s) ** np.abs(k[:, None] - k[None, :]), 0.0)).T for s in (-1, 1)}
    total = np.zeros((2 * n + 1, 5))  # index a: bond sum 2a − 2n (a bonds agree out of 2n)
    for r0, weight in _row_orbits(L).items():
        total += weight * _series_from_first_row(L, r0, add_spin)
    keep = total[:, 0] > 0.5
    bond = 2 * np.nonzero(keep)[0] - 2 * n
    z = total[keep]
    return FieldSeries(f"2-D Ising {L}x{L} (h = 0 series)", -coupling * bond.astype(np.float64),
                       np.log(z[:, 0]), z[:, 2] / z[:, 0], z[:, 4] / z[:, 0], n, float(coupling * ONSAGER_TC))


def _row_orbits(L: int) -> dict[int, int]:
    """One representative row per orbit of the cyclic shifts and the global flip, with the orbit's size."""
    full = (1 << L) - 1
    orbits: dict[int, int] = {}
    for r in range(1 << L):
        shifts = {((r >> t) | (r << (L - t))) & full for t in range(L)}
        orbit = shifts | {x ^ full for x in shifts}
        orbits.setdefault(min(orbit), len(orbit))
    return orbits


def _series_from_first_row(L: int, r0: int, add_spin: dict[int, np.ndarray]) -> np.ndarray:
    """Σ M^k (k <= 4) per number of agreeing bonds over the lattices whose first row is r0 (bit j = column j).

    ``add_spin[s]`` maps the moments M^k to (M + s)^k (a 5 x 5 matrix acting on the last axis).
    """
    k = np.arange(5)
    axis = lambda j: L - 1 - j  # the axis of column j's bit in the (2,) * L view of a window
    first = 2 * ((r0 >> np.arange(L)) & 1) - 1
    agree = int((first == np.roll(first, -1)).sum())
    table = np.zeros((2,) * L + (L + 1, 5))  # windows, agreeing bonds so far (of L), moment
    table[tuple((r0 >> j) & 1 for j in reversed(range(L))) + (agree,)] = float(first.sum()) ** k
    placed = L
    for i in range(1, L):
        for j in range(L):
            # the columns of the neighbours in the window besides the spin above: the left one and,
            # in the last column, the row's first spin (the same column twice when L = 2: two bonds)
            neighbours = ([j - 1] if j > 0 else []) + ([0] if j == L - 1 else [])
            sides = sorted({axis(c) for c in neighbours})
            fixed = [(first[j] + 1) // 2] if i == L - 1 else []  # the last row closes on r₀
            bonds = 1 + len(neighbours) + len(fixed)
            new = np.zeros((2,) * L + (placed + bonds + 1, 5))
            for s in (0, 1):
                for above in (0, 1):
                    for bits in np.ndindex(*(2,) * len(sides)):
                        src, dst = [slice(None)] * L, [slice(None)] * L
                        for a, bit in zip(sides, bits):
                            src[a] = dst[a] = bit
                        src[axis(j)], dst[axis(j)] = above, s
                        shift = (above == s) + sum(f == s for f in fixed) + sum(
                            bits[sides.index(axis(c))] == s for c in neighbours)
                        new[tuple(dst) + (slice(shift, shift + placed + 1),)] += table[tuple(src)]
                half = [slice(None)] * L
                half[axis(j)] = s
                new[tuple(half)] = new[tuple(half)] @ add_spin[2 * s - 1]
            table, placed = new, placed + bonds
    return table.reshape(1 << L, placed + 1, 5).sum(0)


def log_partition(levels: SpinLevels | FieldSeries, theta) -> tf.Tensor:
    """log Z(θ) for θ = (β, βh), shape (B, 2) -> (B,), in TensorFlow (differentiable to any order).

    For a :class:`FieldSeries` the field enters through its moments, so the value and its derivatives of
    order <= 5 in βh are exact at h = 0 only. Used in chapter 6.
    """
    t = tf.convert_to_tensor(theta, tf.float64)
    if isinstance(levels, FieldSeries):
        eta2 = t[:, 1:2] * t[:, 1:2]  # a product, not a power: smooth to every order at 0
        poly = 1.0 + eta2 * tf.constant(levels.m2)[None] / 2 + eta2 * eta2 * tf.constant(levels.m4)[None] / 24
        logw = (tf.constant(levels.log_z0)[None] - t[:, :1] * tf.constant(levels.energy)[None]
                + tf.math.log(poly))
        return tf.reduce_logsumexp(logw, axis=1)
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


def thermodynamic_metric(levels: SpinLevels | FieldSeries):
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
