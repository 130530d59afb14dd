"""Spectra of weight matrices: per-layer empirical spectral densities, the Meng-Yao distance to the
Marchenko-Pastur law and its early-stopping criterion, the LT / BT / HT / RC classification of a spectrum,
weight-matrix quality metrics, removing the MP bulk from a layer, and the singular matrices of 000 eq. 6.1.

Conventions (002, "A spectral criterion"; 000 Ch. 4):

- A layer's matrix: a dense kernel ``(n_in, n_out)`` as it is; a convolution kernel ``(k_h, k_w, c_in, c_out)``
  reshaped with its first two and its last two dimensions together, ``(k_h k_w, c_in c_out)`` (000 Sec. 7.3:
  this gives the largest number of singular values).
- The matrix is oriented ``n x N`` with ``n <= N``; its spectrum is the ``n`` eigenvalues of ``W W^T / N``,
  i.e. ``nu_i^2 / N`` for the singular values ``nu_i`` (002 rescales W by ``1/sqrt(N)``). With entries of
  variance ``sigma^2`` these follow ``MP_{c, sigma^2}``, ``c = n / N`` (:mod:`helpers.random_matrix`).

Numerical module: imports nothing of the book's plumbing; works on NumPy arrays in float64 (and reads or
writes Keras weights at the edges). Used in chapter 3 (and chapter 5 for the singular matrices).
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from . import random_matrix as rmt

__all__ = [
    "layer_matrix", "matrix_spectrum", "LayerSpectrum", "layer_spectrum", "model_spectra", "spectra_table",
    "MengYao", "meng_yao_statistic", "spectral_threshold", "SpectralCriterion", "train_with_spectral_criterion",
    "classify_spectrum",
    "Classification", "power_law_alpha", "quality_metrics", "remove_bulk", "singular_matrices",
    "singular_matrix_pc_overlaps", "SPECTRUM_CLASSES",
]

def _single_threaded(fn):
    """Run a small dense decomposition with one BLAS thread: on shared cores OpenBLAS's threads spin and make
    a 256 x 512 SVD fifty times slower than one thread does."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits

            guard = threadpool_limits(1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            guard = contextlib.nullcontext()
        with guard:
            return fn(*args, **kwargs)
    return wrapper


#: the spectrum types of 002: light tail (MP), bulk transition, heavy tail, rank collapse
SPECTRUM_CLASSES = ("LT", "BT", "HT", "RC")


# --------------------------------------------------------------------------------------------- matrices
def layer_matrix(kernel) -> np.ndarray:
    """The 2-D matrix of a layer's kernel: dense as it is, convolutions reshaped as 000 Sec. 7.3.

    Args:
        kernel: (n_in, n_out) dense kernel or (k_h, k_w, c_in, c_out) Keras convolution kernel.
    Returns:
        float64 matrix (n_in, n_out), or (k_h * k_w, c_in * c_out) for a convolution. Used in chapter 3.
    """
    W = np.asarray(kernel, dtype=np.float64)
    if W.ndim == 2:
        return W
    if W.ndim == 4:
        kh, kw, cin, cout = W.shape
        return W.reshape(kh * kw, cin * cout)
    raise ValueError(f"layer_matrix takes a dense kernel (2-D) or a convolution kernel (4-D), got shape {W.shape}.")


def _oriented(matrix) -> np.ndarray:
    W = np.asarray(matrix, dtype=np.float64)
    if W.ndim != 2 or min(W.shape) < 2:
        raise ValueError(f"a weight matrix must be 2-D with both dimensions >= 2, got shape {W.shape}.")
    if not np.all(np.isfinite(W)):
        raise ValueError("the weight matrix contains NaN or infinite entries.")
    return W if W.shape[0] <= W.shape[1] else W.T


@_single_threaded
def matrix_spectrum(matrix) -> tuple[np.ndarray, np.ndarray, float]:
    """Singular values and the 002 spectrum of a weight matrix.

    Args:
        matrix: (a, b) matrix (oriented internally as n x N, n = min(a, b)).
    Returns:
        (singular values (n,) descending, eigenvalues of W W^T / N (n,) ascending, ratio c = n / N).
    Used in chapter 3.
    """
    W = _oriented(matrix)
    n, N = W.shape
    nu = np.linalg.svd(W, compute_uv=False)
    return nu, np.sort(nu ** 2 / N), n / N


# ------------------------------------------------------------------------------------ Meng-Yao statistic
@dataclass
class MengYao:
    """002's distance of a spectrum from the MP law fitted to its extremes.

    Attributes: s_hat (the L1 distance), scaled (``s_hat n^{1/3} / sqrt(log n)``), n, bins M, the extremes
    a_hat, b_hat and the MP parameters c_hat, sigma2_hat they imply.
    """
    s_hat: float
    scaled: float
    n: int
    bins: int
    a_hat: float
    b_hat: float
    c_hat: float
    sigma2_hat: float


def spectral_threshold(n: int, C: float = 0.4) -> float:
    """002's threshold ``s* = C sqrt(log n) / n^{1/3}`` (C in [0.4, 0.6] recommended). Used in chapter 3."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n (the number of eigenvalues) must be an integer >= 2, got {n!r}.")
    if not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a positive number (002 recommends 0.4-0.6), got {C!r}.")
    return float(C * math.sqrt(math.log(n)) / n ** (1.0 / 3.0))


def meng_yao_statistic(eigenvalues, nodes: int = 48) -> MengYao:
    """The statistic ŝ_n of 002: L1 distance between a histogram of the spectrum and the MP density.

    With ``X_(1) <= ... <= X_(n)`` the eigenvalues, ``a_hat = X_(1)`` and ``b_hat = X_(n)`` estimate the MP edges
    ``a = sigma^2 (1 - sqrt c)^2`` and ``b = sigma^2 (1 + sqrt c)^2``, which gives
    ``sigma_hat = (sqrt(a_hat) + sqrt(b_hat)) / 2`` and ``sqrt(c_hat) = (sqrt(b_hat) - sqrt(a_hat)) /
    (sqrt(b_hat) + sqrt(a_hat))``. The histogram ``p_M`` has ``M = 2 floor(n^{1/3})`` equal bins on
    ``[a_hat, b_hat]``, and ``s_hat = int_{a_hat}^{b_hat} |p_M(x) - p_{c_hat, sigma2_hat}(x)| dx`` (computed bin by
    bin by Gauss-Legendre quadrature after the substitution ``x = a + (b - a)(1 - cos t) / 2`` on the whole
    interval, which removes the square-root edges).

    Args:
        eigenvalues: (n,) non-negative eigenvalues of ``W W^T`` (any scale), n >= 8, not all equal.
        nodes: quadrature nodes per bin.
    Returns:
        :class:`MengYao`. Used in chapter 3 (I-NULLSTAT, F-DIFFICULTY, F-EARLYSTOP).
    """
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    if x.size < 8:
        raise ValueError(f"meng_yao_statistic needs at least 8 eigenvalues, got {x.size}.")
    if not np.all(np.isfinite(x)) or x[0] < 0:
        raise ValueError("meng_yao_statistic needs finite, non-negative eigenvalues (of a Gram matrix W W^T).")
    n = x.size
    a, b = float(x[0]), float(x[-1])
    if b <= a:
        raise ValueError("meng_yao_statistic: all eigenvalues are equal; there is no spectrum to compare.")
    sa, sb = math.sqrt(a), math.sqrt(b)
    sigma = 0.5 * (sa + sb)
    sqrt_c = (sb - sa) / (sb + sa)
    c, sigma2 = sqrt_c ** 2, sigma ** 2
    M = 2 * int(math.floor(n ** (1.0 / 3.0) + 1e-12))
    edges = np.linspace(a, b, M + 1)
    counts = np.histogram(x, bins=edges)[0]  # numpy's last bin is closed, so X_(n) is counted
    heights = counts * M / (n * (b - a))
    # quadrature in t in [0, pi], x(t) = a + (b - a)(1 - cos t)/2: the MP density times dx/dt is smooth
    t_edges = np.arccos(np.clip(1.0 - 2.0 * (edges - a) / (b - a), -1.0, 1.0))
    g, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = t_edges[:-1, None], t_edges[1:, None]
    tt = lo + 0.5 * (g[None, :] + 1.0) * (hi - lo)
    xs = a + 0.5 * (b - a) * (1.0 - np.cos(tt))
    dxdt = 0.5 * (b - a) * np.sin(tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        dens = np.sqrt(np.clip((b - xs) * (xs - a), 0.0, None)) / (2.0 * math.pi * c * sigma2 * xs)
    dens = np.nan_to_num(dens, nan=0.0, posinf=0.0)
    integrand = np.abs(heights[:, None] - dens) * dxdt
    s_hat = float(np.sum(0.5 * (hi - lo)[:, 0] * (integrand @ w)))
    scaled = s_hat * n ** (1.0 / 3.0) / math.sqrt(math.log(n))
    return MengYao(s_hat, float(scaled), n, M, a, b, float(c), float(sigma2))


# ----------------------------------------------------------------------------------------- per layer
@dataclass
class LayerSpectrum:
    """The spectrum of one weight layer (002's convention, module docstring).

    Attributes: name, kernel shape, matrix shape (n, N), ratio c = n/N, singular values (descending),
    eigenvalues ``nu^2 / N`` (ascending), the MP fit of :func:`helpers.random_matrix.mp_fit` (bulk edges,
    outliers above the upper edge) and the Meng-Yao statistic (None for fewer than 8 eigenvalues).
    """
    name: str
    kernel_shape: tuple
    matrix_shape: tuple
    ratio: float
    singular_values: np.ndarray
    eigenvalues: np.ndarray
    mp: rmt.MPFit
    meng_yao: MengYao | None
    extra: dict = field(default_factory=dict)

    @property
    def outliers(self) -> np.ndarray:
        """Eigenvalues above the fitted MP upper edge (descending)."""
        return np.sort(self.eigenvalues[self.eigenvalues > self.mp.upper])[::-1]


def layer_spectrum(kernel, name: str = "layer") -> LayerSpectrum:
    """The :class:`LayerSpectrum` of a dense or convolution kernel. Used in chapter 3."""
    W = layer_matrix(kernel)
    nu, ev, ratio = matrix_spectrum(W)
    o = _oriented(W)
    my = meng_yao_statistic(ev) if ev.size >= 8 and ev[-1] > ev[0] else None  # too few values for 002's histogram
    return LayerSpectrum(name, tuple(np.shape(kernel)), tuple(o.shape), ratio, nu, ev, rmt.mp_fit(ev, ratio), my)


def _kernel_layers(model):
    out = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) in (2, 4):
            out.append(layer)
    return out


def model_spectra(model, layers: Sequence[str] | None = None) -> dict[str, LayerSpectrum]:
    """The spectrum of every weight layer (dense and convolution kernels) of a Keras model, in one call.

    Args:
        model: a Keras model. layers: names to keep (default: every layer with a 2-D or 4-D kernel).
    Returns:
        {layer name: :class:`LayerSpectrum`}, input to output. Used in chapter 3.
    """
    found = _kernel_layers(model)
    if not found:
        raise ValueError("model_spectra: the model has no dense or convolution layer with a kernel.")
    names = [l.name for l in found]
    if layers is not None:
        unknown = set(layers) - set(names)
        if unknown:
            raise ValueError(f"unknown weight layers {sorted(unknown)}; the model's weight layers are {names}.")
    return {l.name: layer_spectrum(l.kernel.numpy(), l.name) for l in found if layers is None or l.name in layers}


def spectra_table(spectra: Mapping[str, LayerSpectrum], C: float = 0.4) -> tuple[list[str], list[list[str]]]:
    """Header and rows describing each layer: shape, aspect ratio, bulk edges, outliers, ŝ_n, class.

    Pass them to ``helpers.plotting.show_table``. Used in chapter 3.
    """
    header = ["layer", "kernel", "matrix n×N", "c = n/N", "MP σ²", "bulk [λ₋, λ₊]", "outliers", "largest λ",
              "ŝₙ n^⅓/√log n", "class"]
    rows = []
    for s in spectra.values():
        small = s.meng_yao is None
        cls = "–" if small else classify_spectrum(s.eigenvalues, C=C, ratio=s.ratio).label
        rows.append([s.name, "×".join(map(str, s.kernel_shape)), f"{s.matrix_shape[0]}×{s.matrix_shape[1]}",
                     f"{s.ratio:.3f}", f"{s.mp.sigma2:.3g}", f"[{s.mp.lower:.3g}, {s.mp.upper:.3g}]",
                     str(s.mp.num_outliers), f"{s.eigenvalues[-1]:.3g}",
                     "–" if small else f"{s.meng_yao.scaled:.3f}", cls])
    return header, rows


# ---------------------------------------------------------------------------------------- the criterion
class SpectralCriterion:
    """002's spectral early-stopping criterion as an ``on_epoch_end`` hook of :func:`helpers.training.train_sgd`.

    After every epoch it computes ŝ_n of each watched layer; the criterion *fires* for a layer and a constant
    C at the first epoch where ``ŝ_n > s* = C sqrt(log n) / n^{1/3}`` (002: stop training there). By default
    the hook only records (training runs to the end, so the accuracy at the firing epoch can be compared
    with the final one); ``stop_layer`` and ``stop_C`` make it stop training when that layer fires at that C.

    Args:
        layers: names of the watched layers (dense or convolution).
        C: constants to evaluate (default 0.4 and 0.6, the ends of 002's range).
        stop_layer, stop_C: optional; return True (stop) when ``stop_layer`` fires at ``stop_C``.
    Attributes after training: ``epochs`` (list), ``s_hat[layer]`` (list per epoch), ``scaled[layer]``,
    ``n[layer]``, and :meth:`fired` / :meth:`as_arrays`.
    Used in chapter 3 (F-EARLYSTOP).
    """

    def __init__(self, layers: Sequence[str] | str, C: Sequence[float] = (0.4, 0.6), stop_layer: str | None = None,
                 stop_C: float | None = None):
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError("SpectralCriterion needs at least one layer name to watch.")
        self.C = tuple(float(c) for c in C)
        if not self.C or any(not np.isfinite(c) or c <= 0 for c in self.C):
            raise ValueError(f"C must be positive constants such as (0.4, 0.6), got {C!r}.")
        if (stop_layer is None) != (stop_C is None):
            raise ValueError("give both stop_layer and stop_C to stop training, or neither to only record.")
        if stop_layer is not None and stop_layer not in self.layers:
            raise ValueError(f"stop_layer {stop_layer!r} is not among the watched layers {self.layers}.")
        self.stop_layer, self.stop_C = stop_layer, stop_C
        self.epochs: list[int] = []
        self.s_hat = {l: [] for l in self.layers}
        self.scaled = {l: [] for l in self.layers}
        self.n: dict[str, int] = {}

    def threshold(self, layer: str, C: float) -> float:
        return spectral_threshold(self.n[layer], C)

    def observe(self, epoch: int, model) -> None:
        """Compute ŝ_n of every watched layer of ``model`` and file it under ``epoch``."""
        by_name = {l.name: l for l in _kernel_layers(model)}
        missing = [l for l in self.layers if l not in by_name]
        if missing:
            raise ValueError(f"SpectralCriterion: the model has no weight layers {missing}; it has {list(by_name)}.")
        self.epochs.append(int(epoch))
        for name in self.layers:
            _, ev, _ = matrix_spectrum(layer_matrix(by_name[name].kernel.numpy()))
            my = meng_yao_statistic(ev)
            self.n[name] = my.n
            self.s_hat[name].append(my.s_hat)
            self.scaled[name].append(my.scaled)

    def __call__(self, epoch: int, model, history=None) -> bool:
        self.observe(epoch, model)
        if self.stop_layer is None:
            return False
        return self.s_hat[self.stop_layer][-1] > self.threshold(self.stop_layer, self.stop_C)

    def fired(self, layer: str, C: float, after: int = 1) -> int | None:
        """The first observed epoch >= ``after`` where ``ŝ_n > s*(C)`` for ``layer``, or None."""
        if layer not in self.s_hat:
            raise ValueError(f"layer {layer!r} is not watched; watched: {self.layers}.")
        if not self.epochs:
            return None
        s_star = self.threshold(layer, C)
        for e, s in zip(self.epochs, self.s_hat[layer]):
            if e >= after and s > s_star:
                return e
        return None

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Everything recorded, as arrays (for the result cache)."""
        out = {"crit_epochs": np.asarray(self.epochs)}
        for l in self.layers:
            out[f"crit_s_{l}"] = np.asarray(self.s_hat[l])
            out[f"crit_n_{l}"] = np.asarray(self.n.get(l, 0))
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], layers: Sequence[str], C=(0.4, 0.6)):
        """Rebuild a recorded criterion from :meth:`as_arrays`."""
        crit = cls(layers, C)
        crit.epochs = [int(e) for e in np.asarray(arrays["crit_epochs"])]
        for l in crit.layers:
            crit.s_hat[l] = [float(s) for s in np.asarray(arrays[f"crit_s_{l}"])]
            crit.n[l] = int(arrays[f"crit_n_{l}"])
            crit.scaled[l] = [s * crit.n[l] ** (1 / 3) / math.sqrt(math.log(crit.n[l])) for s in crit.s_hat[l]]
        return crit


# -------------------------------------------------------------------------------------- tails and metrics
def train_with_spectral_criterion(model, data, layers: Sequence[str] | str, epochs: int, batch_size: int, lr,
                                  C: Sequence[float] = (0.4, 0.6), seed: int = 0, loss_fn=None,
                                  eval_data=None) -> dict:
    """Train ``model`` with SGD while :class:`SpectralCriterion` watches ``layers``; return everything recorded.

    002's experiment for any network: the criterion is observed before the first epoch (epoch 0) and after
    every epoch, training runs to the end (it only records), and the final spectrum of every watched layer is
    kept, so the firing epochs and the final spectral types can be read off afterwards.

    Args:
        model: a Keras model whose ``layers`` have dense (2-D) or convolution (4-D) kernels.
        data: a :class:`helpers.data.Dataset` or ``(x, y)``, trained on.
        eval_data: evaluated after every epoch (default ``data``: a Dataset's test split).
        layers: names of the watched layers, e.g. ``["dense_2", "dense_3"]``.
        epochs, batch_size, lr: as for :func:`helpers.training.train_sgd` (lr a rate or a schedule).
        C: the constants of the criterion (002's range is 0.4-0.6). seed: the SGD seed.
        loss_fn: per-example loss (default :func:`helpers.losses.cross_entropy`).
    Returns:
        dict of arrays: ``acc`` and ``test_acc`` per epoch, :meth:`SpectralCriterion.as_arrays` (rebuild the
        criterion with :meth:`SpectralCriterion.from_arrays`), and per watched layer ``ev_<layer>`` (the final
        eigenvalues of W W^T / N, ascending) and ``ratio_<layer>`` (c = n / N).
    Used in chapter 3.
    """
    from . import losses, training

    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"layers must be a non-empty list of layer names such as ['dense_2'], got {layers!r}.")
    by_name = {l.name: l for l in _kernel_layers(model)} if hasattr(model, "layers") else None
    if by_name is None:
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"the model has no dense or convolution layers {missing}; "
                         f"its weight layers are {list(by_name)}.")
    crit = SpectralCriterion(list(names), C)
    crit.observe(0, model)
    hist = training.train_sgd(model, losses.cross_entropy if loss_fn is None else loss_fn, data,
                              epochs=epochs, batch_size=batch_size, lr=lr,
                              eval_data=data if eval_data is None else eval_data,
                              on_epoch_end=crit, seed=seed)
    out = {"test_acc": hist["test_acc"], "acc": hist["acc"], **crit.as_arrays()}
    for name in crit.layers:
        _, out[f"ev_{name}"], out[f"ratio_{name}"] = matrix_spectrum(layer_matrix(by_name[name].kernel.numpy()))
    return out


def power_law_alpha(eigenvalues, min_tail: int = 10) -> dict:
    """Power-law exponent α of the upper tail of a spectrum, ``p(λ) ~ λ^{-α}`` for ``λ >= x_min``.

    Maximum likelihood ``α = 1 + k / Σ log(λ_i / x_min)`` over the ``k`` values above ``x_min``, with ``x_min``
    the candidate minimising the Kolmogorov-Smirnov distance between the tail and the fitted law (Clauset,
    Shalizi and Newman; :func:`helpers.random_matrix.power_law_tail_fit`). Standard error ``(α - 1)/sqrt(k)``.

    Returns:
        dict alpha, alpha_se, xmin, num_tail, ks_distance. Used in chapter 3.
    """
    fit = rmt.power_law_tail_fit(eigenvalues, min_tail=min_tail)
    return {"alpha": fit.alpha, "alpha_se": (fit.alpha - 1.0) / math.sqrt(fit.num_tail), "xmin": fit.xmin,
            "num_tail": fit.num_tail, "ks_distance": fit.ks_distance}


def quality_metrics(matrix, min_tail: int = 10) -> dict:
    """Weight-matrix quality metrics in the style of Martin and Mahoney's ``weightwatcher``.

    For the singular values ``nu_i`` of the matrix and the eigenvalues ``λ_i = nu_i^2`` of ``W^T W``:

    - ``alpha``: power-law exponent of the ESD's tail (:func:`power_law_alpha`, on ``λ``);
    - ``alpha_weighted``: ``α̂ = α log10 λ_max``;
    - ``stable_rank``: ``||W||_F^2 / ||W||_2^2 = Σ λ_i / λ_max`` (between 1 and rank(W));
    - ``mp_soft_rank``: ``λ_+ / λ_max`` with ``λ_+`` the upper edge of the fitted MP bulk (1 when nothing
      sticks out of the bulk, small when a large spike dominates);
    - ``num_spikes``: eigenvalues above the MP upper edge (:func:`helpers.random_matrix.mp_fit`);
    - ``lambda_max``, ``n``, ``ratio``.

    The ratios do not depend on the normalisation of λ; the MP fit uses ``nu^2 / N`` as elsewhere.
    Used in chapter 3.
    """
    nu, ev, ratio = matrix_spectrum(matrix)
    N = max(np.shape(matrix))
    lam = np.sort(nu ** 2)
    fit = rmt.mp_fit(ev, ratio)
    pl = power_law_alpha(lam, min_tail=min_tail)
    lmax = float(lam[-1])
    return {"alpha": pl["alpha"], "alpha_se": pl["alpha_se"], "alpha_weighted": pl["alpha"] * math.log10(lmax),
            "stable_rank": float(lam.sum() / lmax), "mp_soft_rank": float(fit.upper * N / lmax),
            "num_spikes": int(fit.num_outliers), "lambda_max": lmax, "n": int(lam.size), "ratio": float(ratio)}


@dataclass
class Classification:
    """A spectrum's type with the quantities the rule used."""
    label: str
    scaled: float
    scaled_bulk: float
    C: float
    alpha: float
    num_spikes: int
    collapsed_fraction: float


def classify_spectrum(eigenvalues, C: float = 0.4, alpha_heavy: float = 4.0, collapse_ratio: float = 1e-4,
                      ratio: float | None = None, min_tail: int | None = None) -> Classification:
    """Classify a spectrum (eigenvalues of ``W W^T``) as LT, BT, HT or RC (002's types), by a fixed rule.

    With ``scaled(X) = ŝ_n n^{1/3} / sqrt(log n)`` of 002 for a set of eigenvalues X, the MP fit of
    :func:`helpers.random_matrix.mp_fit` (its upper edge ``λ_+``; the *spikes* are the eigenvalues above it,
    the *bulk* those below) and the power-law exponent α of the upper tail (:func:`power_law_alpha`, with a
    tail of at least ``max(10, n // 10)`` eigenvalues), the rule is, in this order:

    1. **RC** (rank collapse) if more than half of the eigenvalues are below ``collapse_ratio * λ_max``
       (singular values below 1% of the largest at the default): the matrix has lost most of its rank.
    2. **LT** (light tail, MP law) if 002's criterion does not fire on the whole spectrum:
       ``scaled(all) <= C``.
    3. **HT** (heavy tail) if the departure is in the bulk itself and has a power-law tail:
       ``scaled(bulk) > C`` and ``α < alpha_heavy`` (4 by default: Martin and Mahoney's heavy-tailed phases
       have α between 2 and 4, or below 2).
    4. **BT** (bulk transition) otherwise: the spectrum has left the MP law through spikes that moved away
       from an MP bulk, or through a deformed bulk without a power-law tail.

    Args:
        eigenvalues: (n,) non-negative eigenvalues (any scale). C: 002's constant. alpha_heavy,
            collapse_ratio: the thresholds above. ratio: the matrix's c = n/N for the MP fit (default: the
            c_hat of the Meng-Yao fit to the extremes). min_tail: smallest tail of the power-law fit.
    Returns:
        :class:`Classification`. Used in chapter 3 (F-PHASES and the per-layer tables).
    """
    ev = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    if ev.size < 8 or not np.all(np.isfinite(ev)) or ev[0] < -1e-12 * max(1.0, abs(ev[-1])):
        raise ValueError("classify_spectrum needs at least 8 finite, non-negative eigenvalues of W W^T.")
    ev = np.clip(ev, 0.0, None)
    if ev[-1] <= 0:
        raise ValueError("classify_spectrum: every eigenvalue is zero.")
    collapsed = float(np.mean(ev < collapse_ratio * ev[-1]))
    positive = ev[ev > 0]

    def scaled_of(x):
        return meng_yao_statistic(x).scaled if x.size >= 8 and x[-1] > x[0] else float("inf")

    scaled = scaled_of(positive)
    c = (meng_yao_statistic(positive).c_hat if positive.size >= 8 else 1.0) if ratio is None else float(ratio)
    fit = rmt.mp_fit(positive, max(c, 1e-6)) if positive.size >= 2 else None
    spikes = fit.num_outliers if fit is not None else 0
    bulk = positive[positive <= fit.upper] if fit is not None else positive
    scaled_bulk = scaled_of(bulk)
    tail = max(10, positive.size // 10) if min_tail is None else int(min_tail)
    try:
        alpha = power_law_alpha(positive, min_tail=min(tail, max(2, positive.size // 2)))["alpha"]
    except ValueError:
        alpha = float("nan")
    if collapsed > 0.5:
        label = "RC"
    elif scaled <= C:
        label = "LT"
    elif scaled_bulk > C and np.isfinite(alpha) and alpha < alpha_heavy:
        label = "HT"
    else:
        label = "BT"
    return Classification(label, float(scaled), float(scaled_bulk), float(C), float(alpha), int(spikes), collapsed)


# ---------------------------------------------------------------------------------------- model surgery
def _find_layer(model, name: str):
    layers = {l.name: l for l in _kernel_layers(model)}
    if name not in layers:
        raise ValueError(f"no dense or convolution layer {name!r}; the model's weight layers are {list(layers)}.")
    return layers[name]


@_single_threaded
def remove_bulk(model, layer: str, edge: float | None = None):
    """A copy of ``model`` in which the singular values of one layer that lie inside the MP bulk are zero.

    The layer's matrix (convolutions reshaped as :func:`layer_matrix`) is decomposed ``W = U diag(nu) V^T``;
    every ``nu_i`` with ``nu_i^2 / N <= λ_+`` (the upper edge of the fitted MP bulk, or ``edge``) is set to
    zero and the kernel rebuilt (000 Sec. 4, citing Staats, Thamm and Rosenow: only the outliers are kept).

    Args:
        model: a Keras model (not modified). layer: the layer name. edge: override of ``λ_+``.
    Returns:
        (edited model, number of singular values kept). Used in chapter 3 (F-BULK).
    """
    import keras

    target = _find_layer(model, layer)
    kernel = target.kernel.numpy()
    W = layer_matrix(kernel)
    nu, ev, ratio = matrix_spectrum(W)
    N = max(W.shape)
    upper = rmt.mp_fit(ev, ratio).upper if edge is None else float(edge)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    keep = s ** 2 / N > upper
    W_new = (U[:, keep] * s[keep]) @ Vt[keep]
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    _find_layer(clone, layer).kernel.assign(W_new.reshape(kernel.shape).astype(kernel.dtype))
    return clone, int(keep.sum())


@_single_threaded
def singular_matrices(kernel) -> tuple[np.ndarray, np.ndarray]:
    """The singular matrices ``W_i = U Σ_i V^T``, ``Σ_i = diag(0, .., nu_i, .., 0)`` of 000 eq. 6.1, flattened.

    They sum to the matrix. For a convolution the matrix of :func:`layer_matrix` is decomposed and each W_i
    is reshaped back to the kernel's shape before flattening, so the vectors live in the same coordinates as
    the flattened kernel (and as a recorded trajectory of it).

    Args:
        kernel: dense (n_in, n_out) or convolution kernel.
    Returns:
        (singular values (r,) descending, flattened W_i (r, kernel.size)). Used in chapters 3 and 5.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    W = layer_matrix(kernel)
    U, nu, Vt = np.linalg.svd(W, full_matrices=False)
    mats = nu[:, None, None] * np.einsum("ir,rj->rij", U, Vt)
    return nu, mats.reshape(len(nu), -1)


def singular_matrix_pc_overlaps(kernel, components) -> tuple[np.ndarray, np.ndarray]:
    """000 eq. 6.2: ``S_ij = |p_i . w_j| / ||w_j||`` for principal components p_i and singular matrices w_j.

    Args:
        kernel: the layer's kernel (dense or convolution).
        components: (m, k) PCs as columns (``helpers.trajectories.pca(...).components``). If the trajectory
            held the kernel and then the bias (m > kernel.size), the singular matrices are padded with zeros
            on the bias entries, i.e. only the first ``kernel.size`` rows enter the product.
    Returns:
        (singular values (r,), S (k, r)). Used in chapter 3 (F-SVPC).
    """
    nu, mats = singular_matrices(kernel)
    P = np.asarray(components, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] < mats.shape[1]:
        raise ValueError(f"components must be (m, k) with m >= {mats.shape[1]} (the kernel's entries), got {P.shape}.")
    norms = np.linalg.norm(mats, axis=1)
    norms[norms == 0] = np.inf
    return nu, np.abs(P[: mats.shape[1]].T @ mats.T) / norms[None, :]
