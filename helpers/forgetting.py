"""Catastrophic forgetting: penalties and gradient constraints built from the state after a first task, and
the sequential-task protocol of 000 Sec. 7.7.

After training on task A the weights of the regularised layer(s) are :math:`\\bar\\mu_1`. Every method keeps
the weights :math:`w` close to :math:`\\bar\\mu_1` along a few directions :math:`u_i` with weights :math:`c_i`:

.. math::

    L(w) = \\lambda \\sum_i c_i \\big((w - \\bar\\mu_1)\\cdot u_i\\big)^2 ,

- L_cf, 000 eqs. 3.11 and 7.10: :math:`u_i = \\hat h_i`, the eigenvectors of the N_lim largest eigenvalues
  :math:`c_i = h_i` of the layer's Hessian on task A;
- L_sv, 000 eq. 7.11: :math:`u_i = \\tilde w_i/\\|\\tilde w_i\\|`, the flattened singular matrices
  :math:`\\tilde w_i = \\nu_i u_i v_i^T` of the N_out singular values outside the Marchenko-Pastur bulk,
  :math:`c_i = \\nu_i`; a bias has no singular values, so it gets the Hessian form with its own small Hessian;
- the PCA form, 000 eq. 3.10 (Feng and Tu): :math:`u_i = p_i`, the principal components of the task-A
  trajectory, :math:`c_i = 1/F_i^2` with the flatness :math:`F_i` of the loss along :math:`p_i`;
- EWC (Kirkpatrick et al.): :math:`\\frac\\lambda2\\sum_j F_{jj}(w_j - \\bar\\mu_{1,j})^2` with the diagonal of
  the Fisher information on task A.

The gradient constraint of 000 eq. 7.12 changes the update instead of the loss:
:math:`\\tilde v = v - \\gamma \\sum_i (c_i/c_1)(v\\cdot u_i)\\,u_i` with the same orthonormal directions
(:class:`GradientProjection`, the ``project_gradient`` hook of :mod:`helpers.training`).

Used in chapter 5.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from . import config, params

__all__ = ["Block", "QuadraticPenalty", "GradientProjection", "hessian_directions", "singular_directions",
           "flatness", "pca_directions", "fisher_diagonal", "kernel_matrix", "METHODS", "MethodSettings",
           "build_method", "TaskAState", "train_all_classes", "train_task_a", "train_task_b", "run_protocol",
           "best_epoch", "PENALTY_METHODS", "strength_sweep"]

#: the methods :func:`build_method` knows
METHODS = ("naive", "hessian", "sv", "pca", "ewc", "grad_hessian", "grad_sv")


# ------------------------------------------------------------------------------------------------ blocks
def _check_variables(variables, what: str) -> list:
    if isinstance(variables, (tf.Variable,)) or not isinstance(variables, (list, tuple)) or not variables:
        raise TypeError(f"{what}: variables must be a non-empty list of the model's variables, e.g. "
                        "params.select_variables(model, 'dense_2').")
    return [params.tf_variable(v) for v in variables]


@dataclass
class Block:
    """Directions of some variables along which a method holds the weights near ``mu``.

    Attributes:
        variables: the variables (their flat order is that of ``params.flatten``).
        mu: (n,) the weights after task A.
        directions: (n, k) unit columns u_i (orthonormal for the bases of this module), or None for a
            diagonal block (EWC), where ``coefficients`` has n entries, one per weight.
        coefficients: (k,) weights c_i in descending order (or (n,) for a diagonal block).
        label: what the block is (for tables).
    """
    variables: list
    mu: np.ndarray
    directions: np.ndarray | None
    coefficients: np.ndarray
    label: str = ""

    def __post_init__(self):
        self.variables = _check_variables(self.variables, "Block")
        n = params.num_params(self.variables)
        self.mu = np.asarray(self.mu, np.float64).reshape(-1)
        self.coefficients = np.asarray(self.coefficients, np.float64).reshape(-1)
        if self.mu.size != n:
            raise ValueError(f"Block: mu has {self.mu.size} entries but the variables hold {n} weights; pass the "
                             "flattened weights of the same variables after task A.")
        if not np.all(np.isfinite(self.coefficients)) or not np.all(np.isfinite(self.mu)):
            raise ValueError("Block: mu and the coefficients must be finite.")
        if self.directions is None:
            if self.coefficients.size != n:
                raise ValueError(f"Block: a diagonal block needs one coefficient per weight ({n}), got "
                                 f"{self.coefficients.size}.")
        else:
            U = np.asarray(self.directions, np.float64)
            if U.ndim == 1:
                U = U[:, None]
            if U.ndim != 2 or U.shape[0] != n:
                raise ValueError(f"Block: directions must have shape ({n}, k), one unit column per direction; got "
                                 f"{np.shape(self.directions)}.")
            if U.shape[1] != self.coefficients.size or U.shape[1] == 0:
                raise ValueError(f"Block: {U.shape[1]} directions but {self.coefficients.size} coefficients; pass "
                                 "one coefficient c_i per direction u_i (and at least one).")
            self.directions = U

    @property
    def num_directions(self) -> int:
        """How many directions the block constrains (every weight for a diagonal block)."""
        return int(self.coefficients.size)


class QuadraticPenalty:
    """``extra_loss`` for :func:`helpers.training.train_sgd`: ``strength * sum_i c_i ((w - mu) . u_i)^2`` summed
    over blocks (000 eqs. 3.10, 7.10, 7.11), or ``strength * sum_j c_j (w_j - mu_j)^2`` for a diagonal block.

    Args:
        blocks: list of :class:`Block`. strength: lambda >= 0 (EWC's lambda/2 is folded into its block).
        name: the method's name (used in messages).
    Used in chapter 5.
    """

    def __init__(self, blocks: Sequence[Block], strength: float, name: str = "penalty"):
        if not blocks or not all(isinstance(b, Block) for b in blocks):
            raise TypeError("QuadraticPenalty needs a non-empty list of helpers.forgetting.Block.")
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not math.isfinite(strength) \
                or strength < 0:
            raise ValueError(f"the regularisation strength lambda must be a finite number >= 0, got {strength!r}.")
        self.blocks, self.strength, self.name = list(blocks), float(strength), str(name)
        dtype = self.blocks[0].variables[0].dtype
        self._dtype = dtype
        self._mu = [tf.constant(b.mu, dtype) for b in self.blocks]
        self._c = [tf.constant(b.coefficients, dtype) for b in self.blocks]
        self._U = [None if b.directions is None else tf.constant(b.directions, dtype) for b in self.blocks]

    @property
    def num_directions(self) -> int:
        return sum(b.num_directions for b in self.blocks)

    def value(self) -> tf.Tensor:
        """The penalty at the current weights (a scalar tensor, differentiable)."""
        total = tf.zeros((), self._dtype)
        for b, mu, c, U in zip(self.blocks, self._mu, self._c, self._U):
            d = params.flatten(b.variables) - mu
            if U is None:
                total += tf.reduce_sum(c * tf.square(d))
            else:
                total += tf.reduce_sum(c * tf.square(tf.linalg.matvec(U, d, transpose_a=True)))
        return tf.cast(self.strength, self._dtype) * total

    def __call__(self, step, xb, yb):
        return self.value()


class GradientProjection:
    """The gradient constraint of 000 eq. 7.12 as the ``project_gradient`` hook of :mod:`helpers.training`.

    For each block with orthonormal directions u_i and coefficients c_1 >= c_2 >= ..., the gradient g of the
    block's variables becomes ``g - gamma * sum_i (c_i / c_1) (g . u_i) u_i``. With plain SGD the velocity
    is v = -eta g, so this is eq. 7.12 for v; with momentum every velocity is a sum of projected gradients,
    so it holds for v as well. gamma = 1 removes the update along u_1 entirely.

    Args:
        blocks: list of :class:`Block` with directions (not diagonal). gamma: constraint strength in [0, 1].
    Used in chapter 5.
    """

    def __init__(self, blocks: Sequence[Block], gamma: float, name: str = "projection"):
        if not blocks or not all(isinstance(b, Block) for b in blocks):
            raise TypeError("GradientProjection needs a non-empty list of helpers.forgetting.Block.")
        if any(b.directions is None for b in blocks):
            raise ValueError("GradientProjection needs blocks with directions; a diagonal (EWC) block has none.")
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0 <= gamma <= 1:
            raise ValueError(f"gamma (000 eq. 7.12) must be a number in [0, 1], got {gamma!r}.")
        for b in blocks:
            if b.coefficients[0] <= 0 or np.any(b.coefficients > b.coefficients[0] * (1 + 1e-12)):
                raise ValueError(f"GradientProjection: block {b.label!r} needs positive coefficients in descending "
                                 "order (the largest first), so that the ratios c_i / c_1 lie in (0, 1].")
        self.blocks, self.gamma, self.name = list(blocks), float(gamma), str(name)
        dtype = self.blocks[0].variables[0].dtype
        self._U = [tf.constant(b.directions, dtype) for b in self.blocks]
        self._r = [tf.constant(self.gamma * b.coefficients / b.coefficients[0], dtype) for b in self.blocks]

    @property
    def num_directions(self) -> int:
        return sum(b.num_directions for b in self.blocks)

    def __call__(self, grads, variables):
        grads = list(grads)
        index = {id(params.tf_variable(v)): i for i, v in enumerate(variables)}
        for b, U, r in zip(self.blocks, self._U, self._r):
            try:
                idx = [index[id(v)] for v in b.variables]
            except KeyError:
                raise ValueError(f"{self.name}: a variable of block {b.label!r} is not being trained; build the "
                                 "projection from the model's trainable variables.") from None
            g = params.flatten([grads[i] for i in idx])
            g = g - tf.linalg.matvec(U, r * tf.linalg.matvec(U, g, transpose_a=True))
            for i, part in zip(idx, params.unflatten(g, [grads[i] for i in idx])):
                grads[i] = part
        return grads


# -------------------------------------------------------------------------------------------------- bases
def kernel_matrix(kernel) -> np.ndarray:
    """A layer's kernel as a 2-D matrix whose row-major flattening is the kernel's own: a dense kernel
    (n_in, n_out) as it is, a convolution kernel (k_h, k_w, c_in, c_out) as (k_h k_w c_in, c_out). Used in
    chapter 5."""
    K = np.asarray(kernel, np.float64)
    if K.ndim < 2:
        raise ValueError(f"kernel_matrix needs a kernel of rank >= 2 (a bias has no singular values), got shape "
                         f"{K.shape}.")
    return K.reshape(-1, K.shape[-1])


def singular_directions(kernel, n_out: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Singular values and unit flattened singular matrices of a kernel (000 eqs. 7.4 and 7.11).

    ``W = sum_i nu_i u_i v_i^T``; ``w~_i = nu_i u_i v_i^T`` flattened row-major, divided by its norm nu_i.

    Args:
        kernel: a layer kernel (see :func:`kernel_matrix`).
        n_out: how many of the largest singular values to keep; None = those outside the Marchenko-Pastur
            bulk of ``W W^T / m`` (``random_matrix.mp_fit``), at least one.
    Returns:
        (nu (n_out,), directions (n_kernel, n_out), n_out).
    Used in chapter 5.
    """
    from . import random_matrix

    W = kernel_matrix(kernel)
    U, nu, Vt = np.linalg.svd(W, full_matrices=False)
    if n_out is None:
        n, m = W.shape
        gram = (nu ** 2) / max(n, m)
        fit = random_matrix.mp_fit(gram, min(n, m) / max(n, m))
        n_out = max(1, fit.num_outliers)
    elif isinstance(n_out, bool) or not isinstance(n_out, numbers.Integral) or not 1 <= n_out <= len(nu):
        raise ValueError(f"n_out must be an integer in [1, {len(nu)}] (the kernel's rank) or None for the MP "
                         f"outliers, got {n_out!r}.")
    n_out = int(n_out)
    mats = np.einsum("ir,rj->rij", U[:, :n_out], Vt[:n_out]).reshape(n_out, -1).T
    return nu[:n_out], mats, n_out


def hessian_directions(model, loss_fn, data, variables, k: int, max_dense: int = 4096, seed: int = 0):
    """The k largest eigenvalues and their unit eigenvectors of the Hessian restricted to ``variables``.

    Exact (``eigensolvers.dense_eigh``) when the block has at most ``max_dense`` weights, else Lanczos.

    Args:
        model, loss_fn, data: the network, its per-example loss and the task-A data (x, y).
        variables: the variables (a layer's kernel and bias, or only a bias). k: 1 <= k <= n.
    Returns:
        (h (k,) descending, vectors (n, k)). Used in chapter 5.
    """
    from . import eigensolvers, operators

    variables = _check_variables(variables, "hessian_directions")
    n = params.num_params(variables)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the number of weights), got {k!r}.")
    # the same weights, data and loss give the same eigenpairs: keep the last few (several methods and a
    # strength sweep start from one task-A state)
    import hashlib
    x, y = np.asarray(data[0]), np.asarray(data[1])
    key = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in
                                  [params.get_flat(model.trainable_variables).numpy(),
                                   params.get_flat(variables).numpy(), x, y])
                         + repr((id(loss_fn), int(k), n, max_dense, seed)).encode()).hexdigest()
    if key in _EIG_MEMO:
        h, V = _EIG_MEMO[key]
        return h.copy(), V.copy()
    op = operators.hessian(model, loss_fn, (x, y), variables=list(variables), check=False)
    if n <= max_dense:
        res = eigensolvers.dense_eigh(op)
        h, V = res.eigenvalues[::-1][:k].copy(), res.eigenvectors[:, ::-1][:, :k].copy()
    else:
        res = eigensolvers.lanczos(op, int(k), which="LA", seed=seed)
        order = np.argsort(res.eigenvalues)[::-1]
        h, V = res.eigenvalues[order], res.eigenvectors[:, order]
    if len(_EIG_MEMO) >= 8:
        _EIG_MEMO.pop(next(iter(_EIG_MEMO)))
    _EIG_MEMO[key] = (h, V)
    return h.copy(), V.copy()


_EIG_MEMO: dict = {}


def flatness(loss_of: Callable, num_directions: int, factor: float = 2.0, start: float = 1e-3,
             stop: float = 10.0, num: int = 25) -> np.ndarray:
    """The flatness F_i of Feng and Tu: the width of the interval around the current weights, along direction
    i, on which the loss stays below ``factor`` times its value there.

    Each side is scanned on a geometric grid of offsets from ``start`` to ``stop`` and the crossing is
    interpolated linearly; a side that never crosses counts as ``stop`` (a very flat direction).

    Args:
        loss_of: ``loss_of(index, offsets) -> losses`` for arrays of direction indices and signed offsets of
            equal length (all directions are asked for in one call, so the caller can batch them); offset 0 is
            the current weights.
        num_directions: how many directions.
    Returns:
        (num_directions,) widths F_i > 0. Used in chapter 5 (000 eq. 3.10).
    """
    if not callable(loss_of):
        raise TypeError("flatness needs loss_of(index, offsets) -> losses.")
    if not (isinstance(factor, numbers.Real) and factor > 1):
        raise ValueError(f"factor must be a number > 1 (the loss threshold relative to its value), got {factor!r}.")
    if not 0 < start < stop:
        raise ValueError(f"the scan needs 0 < start < stop, got start={start!r}, stop={stop!r}.")
    k, num = int(num_directions), int(num)
    grid = np.geomspace(start, stop, num)
    offsets = np.concatenate([[0.0], grid, -grid])
    idx = np.repeat(np.arange(k), offsets.size)
    losses = np.asarray(loss_of(idx, np.tile(offsets, k)), np.float64)
    if losses.shape != idx.shape:
        raise ValueError("loss_of must return one loss per (index, offset) pair.")
    losses = losses.reshape(k, offsets.size)
    if not np.all(np.isfinite(losses[:, 0])):
        raise ValueError("loss_of must be finite at offset 0 (the current weights).")
    widths = np.empty(k)
    for i in range(k):
        level = factor * losses[i, 0]
        width = 0.0
        for side in (losses[i, 1:num + 1], losses[i, num + 1:]):
            side = np.where(np.isfinite(side), side, np.inf)
            above = np.flatnonzero(side >= level)
            if above.size == 0:
                width += stop
                continue
            j = above[0]
            x0, y0 = (0.0, losses[i, 0]) if j == 0 else (grid[j - 1], side[j - 1])
            x1, y1 = grid[j], side[j]
            width += x0 + (x1 - x0) * (level - y0) / (y1 - y0) if np.isfinite(y1) and y1 > y0 else x1
        widths[i] = width
    return widths


def pca_directions(trajectory, k: int):
    """The k leading principal components of a recorded task-A trajectory (000 eqs. 3.3-3.5, via
    ``trajectories.pca``). Returns (variances (k,), components (n, k)). Used in chapter 5."""
    from . import trajectories

    res = trajectories.pca(trajectory, num_components=k)
    return res.variances, res.components


def fisher_diagonal(model, x, variables, max_exact: int = 4096, num_probes: int = 200, seed: int = 0):
    """The diagonal of the true Fisher information of the softmax model on inputs x, restricted to
    ``variables`` (EWC's F_jj). Exact (``estimators.exact_diagonal``) up to ``max_exact`` weights, else
    Hutchinson's estimate. Returns (n,). Used in chapter 5."""
    from . import estimators, operators

    variables = _check_variables(variables, "fisher_diagonal")
    op = operators.fisher(model, (np.asarray(x), None), kind="true", variables=list(variables), check=False)
    if op.size <= max_exact:
        return estimators.exact_diagonal(op)
    return np.maximum(estimators.hutchinson_diagonal(op, num_probes=num_probes, seed=seed).value, 0.0)


# -------------------------------------------------------------------------------------------------- methods
@dataclass
class MethodSettings:
    """The knobs of the methods (000 Sec. 7.7).

    Attributes:
        strength: lambda of the loss-based methods (000: 1000). gamma: strength of eq. 7.12 in [0, 1].
        hessian_fraction: N_lim as a fraction of a layer's weights for L_cf, the PCA form and eq. 7.12 in the
            Hessian basis. n_lim_max: an upper bound on N_lim (Lanczos cost on large layers).
        bias_fraction: share of a bias's Hessian eigenvalues kept by the singular-value methods (000: 20%).
        n_out: singular values kept per kernel (000: 5); None = the MP outliers.
        flatness_factor: threshold of :func:`flatness`. max_dense: largest block diagonalised densely.
    """
    strength: float = 1000.0
    gamma: float = 1.0
    hessian_fraction: float = 0.2
    n_lim_max: int = 2000
    bias_fraction: float = 0.2
    n_out: int | None = None
    flatness_factor: float = 2.0
    max_dense: int = 4096

    def __post_init__(self):
        for name in ("hessian_fraction", "bias_fraction"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not 0 < v <= 1:
                raise ValueError(f"{name} must be a fraction in (0, 1], got {v!r}.")


def _count(fraction: float, n: int, cap: int) -> int:
    return int(max(1, min(cap, n, math.ceil(fraction * n))))


def _positive(h, V):
    """Keep the eigenpairs with h_i > 0: a penalty h_i theta_i^2 with h_i <= 0 would not hold anything."""
    keep = h > 0
    return h[keep], V[:, keep]


def _layer_blocks(kind, model, loss_fn, task_a, layers, s: MethodSettings, trajectories=None) -> list[Block]:
    x, y = task_a
    blocks = []
    for layer in layers:
        vs = params.select_variables(model, layer)
        n = params.num_params(vs)
        mu = params.get_flat(vs).numpy()
        if kind == "hessian":
            h, V = _positive(*hessian_directions(model, loss_fn, (x, y), vs,
                                                 _count(s.hessian_fraction, n, s.n_lim_max), s.max_dense))
            if h.size:
                blocks.append(Block(vs, mu, V, h, f"{layer}: Hessian"))
        elif kind == "sv":
            kernels = [v for v in vs if len(v.shape) >= 2]
            for v in vs:
                mu_v = params.get_flat([v]).numpy()
                if len(v.shape) >= 2:
                    nu, D, _ = singular_directions(v.numpy(), s.n_out)
                    blocks.append(Block([v], mu_v, D, nu, f"{layer}: singular values"))
                else:
                    k = _count(s.bias_fraction, int(np.prod(v.shape)), s.n_lim_max)
                    h, V = _positive(*hessian_directions(model, loss_fn, (x, y), [v], k, s.max_dense))
                    if h.size:
                        blocks.append(Block([v], mu_v, V, h, f"{layer}: bias Hessian"))
            if not kernels:
                raise ValueError(f"layer {layer!r} has no kernel, so the singular-value method does not apply.")
        elif kind == "pca":
            if trajectories is None or layer not in trajectories:
                raise ValueError(f"the PCA method needs the recorded task-A trajectory of layer {layer!r}.")
            traj = np.asarray(trajectories[layer], np.float64)
            k = min(_count(s.hessian_fraction, n, s.n_lim_max), len(traj) - 1)
            _, P = pca_directions(traj, k)
            w0 = params.get_flat(vs).numpy()

            def loss_of(index, offsets, P=P, w0=w0, vs=vs):
                from .trajectories import layer_logits
                rows = w0[None] + offsets[:, None] * P[:, index].T
                z = layer_logits(model, vs, rows, x)
                per = loss_fn(tf.constant(np.tile(y, len(rows))), tf.constant(z.reshape(-1, z.shape[-1])))
                return tf.reduce_mean(tf.reshape(per, (len(rows), -1)), axis=1).numpy()

            F = flatness(loss_of, k, s.flatness_factor, num=12)
            # eq. 3.10's constant: for a quadratic well L0 + h d^2 / 2 the width at factor * L0 gives
            # 1 / F^2 = h / (8 (factor - 1) L0), so this scale puts c_i on the Hessian form's scale (c_i = h_i)
            L0 = float(loss_of(np.zeros(1, int), np.zeros(1))[0])
            c = 8 * (s.flatness_factor - 1) * L0 / F ** 2
            order = np.argsort(-c, kind="stable")
            blocks.append(Block(vs, mu, P[:, order], c[order], f"{layer}: principal components"))
        elif kind == "ewc":
            blocks.append(Block(vs, mu, None, 0.5 * fisher_diagonal(model, x, vs, s.max_dense),
                                f"{layer}: Fisher diagonal"))
        else:  # pragma: no cover - guarded by build_method
            raise ValueError(kind)
    return blocks


def build_method(name: str, model, loss_fn, task_a, layers: Sequence[str], settings: MethodSettings | None = None,
                 trajectories: Mapping | None = None) -> dict:
    """The ``train_sgd`` arguments of a forgetting method, built from the model as it is after task A.

    Args:
        name: one of :data:`METHODS`: ``naive`` (nothing), ``hessian`` (L_cf, eq. 7.10), ``sv`` (L_sv,
            eq. 7.11, biases through their Hessian), ``pca`` (eq. 3.10), ``ewc`` (Kirkpatrick et al.),
            ``grad_hessian`` and ``grad_sv`` (eq. 7.12 in the two bases).
        model: the network after task A (mu_1 = its current weights). loss_fn: per-example loss.
        task_a: (x, y) training data of task A. layers: the regularised layers' names.
        settings: :class:`MethodSettings`. trajectories: {layer: (T, n) task-A trajectory} for ``pca``.
    Returns:
        dict with ``extra_loss`` and ``project_gradient`` (None where unused) and ``num_directions``.
    Used in chapter 5.
    """
    if name not in METHODS:
        raise ValueError(f"unknown forgetting method {name!r}; choose one of {METHODS}.")
    s = MethodSettings() if settings is None else settings
    if not isinstance(s, MethodSettings):
        raise TypeError("settings must be a helpers.forgetting.MethodSettings.")
    if isinstance(layers, str) or not layers:
        raise TypeError("layers must be a non-empty list of layer names, e.g. ['dense_2'].")
    if not (isinstance(task_a, (tuple, list)) and len(task_a) == 2):
        raise TypeError("task_a must be the (x, y) training data of task A.")
    out = {"extra_loss": None, "project_gradient": None, "num_directions": 0, "blocks": []}
    if name == "naive":
        return out
    kind = name[5:] if name.startswith("grad_") else name
    blocks = _layer_blocks(kind, model, loss_fn, task_a, list(layers), s, trajectories)
    if not blocks:
        raise ValueError(f"method {name!r}: no direction of {list(layers)} has a positive coefficient to protect.")
    out["blocks"] = blocks
    if name.startswith("grad_"):
        out["project_gradient"] = GradientProjection(blocks, s.gamma, name)
    else:
        out["extra_loss"] = QuadraticPenalty(blocks, s.strength, name)
    out["num_directions"] = sum(b.num_directions for b in blocks)
    return out


# ------------------------------------------------------------------------------------------------- protocol
def best_epoch(acc_a, acc_b) -> int:
    """Index of the epoch with the highest sum of the two task accuracies (000 Sec. 7.7; ties: the first).
    Note: 000 selects on test accuracies, so the selected figure is optimistic. Used in chapter 5."""
    a, b = np.asarray(acc_a, np.float64), np.asarray(acc_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("best_epoch needs two equally long 1-D arrays of per-epoch accuracies.")
    return int(np.argmax(a + b))


def _set_trainable(model, layers):
    names = set(layers)
    known = {layer.name for layer in model.layers if layer.weights}
    unknown = names - known
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)}; the model's weight layers are {sorted(known)}.")
    for layer in model.layers:
        if layer.weights:
            layer.trainable = layer.name in names


def train_all_classes(model, data, epochs: int, batch_size: int, lr, momentum: float = 0.0,
                      weight_decay: float = 0.0, seed: int = 0, loss_fn=None) -> dict:
    """Step 1 of 000 Sec. 7.7: train the whole network on all classes. Returns the history. Used in chapter 5."""
    from . import losses, training

    loss_fn = losses.cross_entropy if loss_fn is None else loss_fn
    _set_trainable(model, [layer.name for layer in model.layers if layer.weights])
    return training.train_sgd(model, loss_fn, data, epochs, batch_size, lr, momentum=momentum,
                              weight_decay=weight_decay, seed=seed, eval_data=data)


@dataclass
class TaskAState:
    """The network after task A: weights, trajectories of the regularised layers, final learning rate."""
    weights: list
    layers: list
    trajectories: dict
    final_lr: float
    epochs: int
    train_acc: float
    history: dict = field(default_factory=dict)


def train_task_a(model, task_a, layers: Sequence[str], fresh_model, max_epochs: int, batch_size: int,
                 lr, momentum: float = 0.0, weight_decay: float = 0.0, window_steps: int = 0, seed: int = 0,
                 loss_fn=None) -> TaskAState:
    """Steps 2-3 of 000 Sec. 7.7: reinitialise ``layers`` (from ``fresh_model``, a newly initialised copy of the
    architecture), train only them on task A until full training accuracy (at most ``max_epochs``), then
    ``window_steps`` more steps recorded at every step (the trajectory for the PCA form). Returns a
    :class:`TaskAState`. Used in chapter 5."""
    from . import losses, training

    loss_fn = losses.cross_entropy if loss_fn is None else loss_fn
    layers = list(layers)
    _set_trainable(model, layers)
    for layer in layers:
        model.get_layer(layer).set_weights(fresh_model.get_layer(layer).get_weights())
    schedule = lr if callable(lr) else training.constant(lr)
    hist = training.train_sgd(model, loss_fn, task_a, max_epochs, batch_size, schedule, momentum=momentum,
                              weight_decay=weight_decay, seed=seed,
                              on_epoch_end=lambda e, m, h: h["acc"][-1] >= 1.0)
    epochs = len(hist["epoch"])
    final_lr = float(schedule(epochs - 1))
    trajectories = {}
    if window_steps:
        n = len(task_a[0])
        per_epoch = -(-n // batch_size)
        h2 = training.train_sgd(model, loss_fn, task_a, -(-int(window_steps) // per_epoch), batch_size, final_lr,
                                momentum=momentum, weight_decay=weight_decay, seed=seed + 1,
                                record={"layers": layers, "every": "step"})
        trajectories = {k: v[-(int(window_steps) + 1):] for k, v in h2["weights"].items()}
    _, acc = training.evaluate(model, loss_fn, *task_a)
    return TaskAState(weights=model.get_weights(), layers=layers, trajectories=trajectories, final_lr=final_lr,
                      epochs=epochs, train_acc=acc, history=hist)


def train_task_b(model, state: TaskAState, method: str, task_a_train, tests: Mapping[str, tuple], task_b_train,
                 epochs: int, batch_size: int, lr_fraction: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, settings: MethodSettings | None = None, seed: int = 0, lr=None,
                 loss_fn=None) -> dict:
    """Steps 4-5 of 000 Sec. 7.7: from the task-A state, build ``method``'s penalty or projection and train the
    regularised layers on task B for ``epochs`` epochs at ``lr_fraction`` times the final task-A learning rate
    (or at ``lr`` when given), evaluating every test set of ``tests`` ({"A": (x, y), "B": (x, y)}) after every
    epoch.

    Returns:
        dict with ``acc_<name>`` (epochs,) per test set, ``lr``, ``num_directions``, ``best`` (the epoch index
        with the highest sum of accuracies, 000's selection, which looks at test data) and ``last``.
    Raises:
        TrainingDiverged: the loss became non-finite; the message names the method, the epoch and the step.
    Used in chapter 5.
    """
    from . import losses, training

    loss_fn = losses.cross_entropy if loss_fn is None else loss_fn
    if not isinstance(lr_fraction, numbers.Real) or not 0 < lr_fraction <= 1:
        raise ValueError(f"lr_fraction must be in (0, 1] (000: 0.01), got {lr_fraction!r}.")
    model.set_weights(state.weights)
    _set_trainable(model, state.layers)
    spec = build_method(method, model, loss_fn, task_a_train, state.layers, settings, state.trajectories)
    eta = float(lr) if lr is not None else lr_fraction * state.final_lr
    accs = {name: [] for name in tests}

    def after_epoch(epoch, m, history):
        for name, (x, y) in tests.items():
            accs[name].append(training.evaluate(m, loss_fn, x, y)[1])
        return False

    try:
        training.train_sgd(model, loss_fn, task_b_train, epochs, batch_size, eta, momentum=momentum,
                           weight_decay=weight_decay, seed=seed, extra_loss=spec["extra_loss"],
                           project_gradient=spec["project_gradient"], on_epoch_end=after_epoch)
    except training.TrainingDiverged as exc:
        raise training.TrainingDiverged(f"method {method!r} (learning rate {eta:g}) diverged: {exc}") from None
    out = {f"acc_{k}": np.asarray(v) for k, v in accs.items()}
    out.update(lr=eta, num_directions=spec["num_directions"])
    if "A" in tests and "B" in tests:
        out["best"] = best_epoch(out["acc_A"], out["acc_B"])
        out["last"] = len(out["acc_A"]) - 1
    return out


#: the methods whose penalty has a strength lambda (the gradient constraints use gamma instead)
PENALTY_METHODS = ("hessian", "sv", "pca", "ewc")


def strength_sweep(model, state: TaskAState, methods: Sequence[str], strengths: Sequence[float], task_a_train,
                   tests: Mapping[str, tuple], task_b_train, epochs: int, batch_size: int,
                   lr_fraction: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                   settings: MethodSettings | None = None, seed: int = 0, loss_fn=None) -> dict:
    """Train on task B from the same task-A state for every penalty ``method`` and strength lambda of a grid.

    Each run is :func:`train_task_b` with ``settings`` but ``strength = lambda``; a run that diverges (its loss
    becomes non-finite, typically when lambda times the penalty's largest curvature exceeds what the learning
    rate tolerates) is kept as NaN accuracies instead of stopping the sweep.

    Args:
        model, state: the network and its :class:`TaskAState` (the start of every run).
        methods: loss-based methods of :data:`PENALTY_METHODS`, e.g. ``["hessian", "sv"]``.
        strengths: the grid of lambda, e.g. ``[10, 100, 1000, 10000]``.
        task_a_train, tests, task_b_train, epochs, batch_size, lr_fraction, momentum, weight_decay, seed, loss_fn:
            as for :func:`train_task_b` (every run uses the same ``seed``).
        settings: :class:`MethodSettings` for everything but the strength (default: its defaults).
    Returns:
        {``f"{method}_{lambda:g}_{name}"``: (epochs,) test accuracies} for every test set ``name`` of ``tests``;
        all NaN for a diverged run. Used in chapter 5 (drawn by :func:`helpers.plotting.penalty_strength_sweep`).
    """
    import dataclasses

    from . import training

    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in PENALTY_METHODS]
    if not methods or bad:
        raise ValueError(f"strength_sweep needs methods with a penalty strength, some of {PENALTY_METHODS}; "
                         f"got {methods!r} (the gradient constraints are tuned by gamma, naive has no knob).")
    lams = list(strengths)
    if not lams or any(not isinstance(l, numbers.Real) or not math.isfinite(l) or l <= 0 for l in lams):
        raise ValueError(f"strengths must be a non-empty list of positive numbers, got {strengths!r}.")
    s = MethodSettings() if settings is None else settings
    if not isinstance(s, MethodSettings):
        raise TypeError("settings must be a helpers.forgetting.MethodSettings.")
    out = {}
    for method in methods:
        for lam in lams:
            try:
                r = train_task_b(model, state, method, task_a_train, tests, task_b_train, epochs, batch_size,
                                 lr_fraction, momentum, weight_decay, dataclasses.replace(s, strength=lam),
                                 seed=seed, loss_fn=loss_fn)
                accs = {name: r[f"acc_{name}"] for name in tests}
            except training.TrainingDiverged:
                accs = {name: np.full(epochs, np.nan) for name in tests}
            out.update({f"{method}_{lam:g}_{name}": acc for name, acc in accs.items()})
    return out


def run_protocol(build: Callable[[int], object], data, layer_sets: Mapping[str, tuple], cfg: Mapping, seed: int,
                 settings: MethodSettings | None = None, verbose: bool = False) -> dict:
    """000 Sec. 7.7 in one call, for one seed: train ``build(seed)`` on all classes of ``data``; then for each
    layer set, reinitialise its layers and train them on task A (classes ``0..cfg['first_classes']-1``) to full
    training accuracy; then, for each method, train on task B from that state and record both test
    accuracies per epoch. The method ``joint`` instead trains the reinitialised layers on both tasks at once
    (the upper bound).

    Args:
        build: ``seed -> model``. data: a :class:`helpers.data.Dataset`.
        layer_sets: {set name: (list of layer names, list of methods)}, e.g.
            ``{"one": (["dense_2"], ["naive", "sv"]), "all": (["dense_1", "dense_2"], ["naive"])}``.
        cfg: ``base_epochs``, ``epochs_a`` (the maximum), ``epochs_b``, ``batch_size``, ``lr_base``, ``lr_a``,
            ``lr_decay`` (per-epoch factor of both schedules; 1 = constant), ``momentum``, ``weight_decay``,
            ``window_steps``, ``lr_fraction``, ``first_classes``.
        seed: the run's seed (derive it with ``helpers.seed(...)``).
    Returns:
        dict of NumPy arrays keyed ``<set>/<method>_acc_A``, ``<set>/<method>_acc_B`` (epochs_b,),
        ``<set>/<method>_directions``, ``<set>/after_A_acc_A``, ``<set>/after_A_acc_B``, ``<set>/epochs_a``,
        ``<set>/lr_b`` and the task-A weights ``<set>/stateA_000...``.
    Used in chapter 5.
    """
    from . import data as data_mod, training

    a, b = data_mod.split_tasks(data, cfg["first_classes"])
    decay = float(cfg.get("lr_decay", 1.0))
    model = build(seed)
    train_all_classes(model, data, cfg["base_epochs"], cfg["batch_size"],
                      training.exponential_decay(cfg["lr_base"], decay), cfg["momentum"], cfg["weight_decay"],
                      seed=config.seed("ch5-base", seed))
    base = model.get_weights()
    out = {"base_acc_A": training.evaluate(model, _ce(), *a.test)[1],
           "base_acc_B": training.evaluate(model, _ce(), *b.test)[1]}
    tests = {"A": a.test, "B": b.test}
    lr_a = training.exponential_decay(cfg["lr_a"], decay)
    for set_name, (layers, methods) in layer_sets.items():
        model.set_weights(base)
        state = train_task_a(model, a.train, layers, build(seed + 1), cfg["epochs_a"], cfg["batch_size"], lr_a,
                             cfg["momentum"], cfg["weight_decay"], cfg["window_steps"],
                             seed=config.seed("ch5-task-a", seed))
        p = f"{set_name}/"
        out[p + "after_A_acc_A"] = training.evaluate(model, _ce(), *a.test)[1]
        out[p + "after_A_acc_B"] = training.evaluate(model, _ce(), *b.test)[1]
        out[p + "after_A_train_acc"] = state.train_acc
        out[p + "epochs_a"], out[p + "lr_b"] = state.epochs, cfg["lr_fraction"] * state.final_lr
        out.update({f"{p}stateA_{i:03d}": np.asarray(w) for i, w in enumerate(state.weights)})
        for method in methods:
            if method == "joint":
                model.set_weights(base)
                joint = train_task_a(model, data.train, layers, build(seed + 1), cfg["epochs_a"],
                                     cfg["batch_size"], lr_a, cfg["momentum"], cfg["weight_decay"], 0,
                                     seed=config.seed("ch5-joint", seed))
                out[p + "joint_acc_A"] = np.array([training.evaluate(model, _ce(), *a.test)[1]])
                out[p + "joint_acc_B"] = np.array([training.evaluate(model, _ce(), *b.test)[1]])
                out[p + "joint_directions"], out[p + "joint_epochs"] = 0, joint.epochs
                continue
            r = train_task_b(model, state, method, a.train, tests, b.train, cfg["epochs_b"], cfg["batch_size"],
                             cfg["lr_fraction"], cfg["momentum"], cfg["weight_decay"], settings,
                             seed=config.seed("ch5-task-b", seed))
            out[p + f"{method}_acc_A"], out[p + f"{method}_acc_B"] = r["acc_A"], r["acc_B"]
            out[p + f"{method}_directions"] = r["num_directions"]
            if verbose:
                i = r["best"]
                print(f"{set_name} {method}: best epoch {i + 1}: A {r['acc_A'][i]:.3f}, B {r['acc_B'][i]:.3f}; "
                      f"last: A {r['acc_A'][-1]:.3f}, B {r['acc_B'][-1]:.3f}")
    return out


def _ce():
    from . import losses
    return losses.cross_entropy
