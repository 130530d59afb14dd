"""The Hessian trace regulariser (HTR) of 003: penalise ``gamma * sum_l tr(Hess_l)`` during training.

003 eq. 5 trains on ``L(theta) + gamma * sum_l Tr(Hess_l)``, the sum running over the chosen layers (all of
them, or the "middle" layers between 1/4 and 3/4 of the depth). The sum of the traces of the diagonal
blocks is the trace of the Hessian restricted to the union of those layers' parameters, so one Hutchinson
estimate over the concatenated parameters gives it:

    tr(H_S) = E_v[ v^T H_S v ],  v Rademacher (or Gaussian) on the selected parameters S,

with ``H_S v`` a double-backward Hessian-vector product on the current mini-batch. The estimate is a
differentiable function of the weights (third derivatives of the loss), so the training tape sees it.
To save time 003 applies the term only every ``f_r`` steps (the update frequency; 003 Table 1 used
``f_r = 50``); on the other steps the penalty is zero and costs nothing.

Plugs into ``helpers.training.train_sgd(..., extra_loss=HessianTraceRegularizer(...))``.

Used in chapter 4 (F-HTR).
"""
from __future__ import annotations

import numbers
from typing import Sequence

import tensorflow as tf

from . import params

__all__ = ["hutchinson_quadratic", "hessian_trace_penalty", "HessianTraceRegularizer", "middle_layers"]


def _mean_loss(model, loss_fn, x, y):
    out = model(x, training=True)
    per_example = loss_fn(y, out)
    return tf.reduce_mean(per_example)


def hutchinson_quadratic(model, loss_fn, x, y, variables: Sequence, probes: Sequence[Sequence[tf.Tensor]]):
    """Average of ``v^T H v`` over given probes ``v`` (each a list of tensors shaped like ``variables``).

    ``H`` is the Hessian of the mean loss on ``(x, y)`` with respect to ``variables``; each product is a
    double-backward HVP (000 Listing 5.1), and the probes share one forward and one first backward pass.
    The result is differentiable with respect to the weights.

    Args:
        model: a Keras model producing what ``loss_fn`` expects. loss_fn: per-example loss ``(y, out) -> (B,)``.
        x, y: a mini-batch. variables: the variables of the selected layers.
        probes: a non-empty list of probes; probe ``k`` is a list of tensors, one per variable.
    Returns:
        scalar tensor ``mean_k v_k^T H v_k``. Used in chapter 4.
    """
    if not probes:
        raise ValueError("hutchinson_quadratic needs at least one probe vector.")
    tvars = [params.tf_variable(v) for v in variables]
    for probe in probes:
        if len(probe) != len(tvars):
            raise ValueError(f"each probe needs one tensor per variable ({len(tvars)}), got {len(probe)}.")
    # one forward pass and one first backward pass serve every probe: H v_k = d(g . v_k)/dw
    with tf.GradientTape(persistent=len(probes) > 1, watch_accessed_variables=False) as outer:
        outer.watch(tvars)
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(tvars)
            loss = _mean_loss(model, loss_fn, x, y)
        grads = inner.gradient(loss, tvars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gvs = [tf.add_n([tf.reduce_sum(g * tf.cast(p, g.dtype)) for g, p in zip(grads, probe)])
               for probe in probes]
    total = tf.zeros((), dtype=tvars[0].dtype)
    for gv, probe in zip(gvs, probes):
        hv = outer.gradient(gv, tvars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        total += tf.add_n([tf.reduce_sum(h * tf.cast(p, h.dtype)) for h, p in zip(hv, probe)])
    del outer
    return total / len(probes)


def _probes(variables, num_probes: int, seed, distribution: str):
    """Random probes (list of lists of tensors); ``seed`` is a shape-(2,) int tensor for stateless RNG."""
    out = []
    for k in range(num_probes):
        probe = []
        for j, v in enumerate(variables):
            s = tf.stack([tf.cast(seed[0], tf.int64), tf.cast(seed[1], tf.int64) * 1000 + 97 * k + j])
            if distribution == "rademacher":
                r = tf.random.stateless_uniform(v.shape, seed=s, minval=0, maxval=2, dtype=tf.int32)
                probe.append(tf.cast(2 * r - 1, v.dtype))
            else:
                probe.append(tf.random.stateless_normal(v.shape, seed=s, dtype=v.dtype))
        out.append(probe)
    return out


def hessian_trace_penalty(model, loss_fn, x, y, variables: Sequence, num_probes: int = 1, seed=(0, 0),
                          distribution: str = "rademacher"):
    """Hutchinson estimate of ``tr(H_S)``, the Hessian trace over the selected ``variables`` (003 Algorithm 1).

    Unbiased: ``E[v^T H v] = tr(H)`` for Rademacher or standard Gaussian ``v``; differentiable in the weights.

    Args:
        model, loss_fn, x, y: as :func:`hutchinson_quadratic`.
        variables: the selected variables (e.g. ``params.select_variables(model, ["conv_2", "dense_1"])``).
        num_probes: number of probe vectors averaged (>= 1).
        seed: two integers (or a (2,) int tensor) for the stateless random probes.
        distribution: ``"rademacher"`` (default) or ``"gaussian"``.
    Returns:
        scalar tensor. Used in chapter 4.
    """
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}.")
    if not isinstance(num_probes, numbers.Integral) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}.")
    variables = list(variables)
    if not variables:
        raise ValueError("hessian_trace_penalty needs at least one variable.")
    seed = tf.convert_to_tensor(seed)
    tvars = [params.tf_variable(v) for v in variables]
    return hutchinson_quadratic(model, loss_fn, x, y, variables, _probes(tvars, num_probes, seed, distribution))


def middle_layers(layer_names: Sequence[str]) -> list[str]:
    """The "middle layers" of 003: those between 1/4 and 3/4 of the depth (inclusive of the quarter points).

    Args:
        layer_names: the weight layers in order, input to output (``models.weight_layers(model)``).
    Returns:
        the names of layers with index ``i`` (0-based, depth L) such that ``L/4 <= i + 1/2 <= 3L/4``
        (at least one layer). Used in chapter 4.
    """
    names = list(layer_names)
    if not names:
        raise ValueError("middle_layers needs the list of weight layers, input to output.")
    L = len(names)
    chosen = [n for i, n in enumerate(names) if L / 4 <= i + 0.5 <= 3 * L / 4]
    return chosen or [names[L // 2]]


class HessianTraceRegularizer:
    """``extra_loss`` for ``training.train_sgd``: ``gamma * tr(H_S)`` on the current batch every ``every`` steps.

    003 eq. 5 with the update frequency ``f_r`` (``every``): on step ``t`` with ``t % every == 0`` the
    Hutchinson estimate of the selected layers' Hessian trace on the mini-batch, times ``gamma``, is added to
    the loss (so its gradient, a third-derivative term, enters the update); on other steps nothing is added.

    Args:
        model: the Keras model being trained. loss_fn: per-example loss ``(y, out) -> (B,)``.
        gamma: penalty weight (>= 0; 003 found about 1e-2 best).
        layers: None (all weight layers) or a list of layer names (e.g. :func:`middle_layers`).
        every: the update frequency f_r (>= 1).
        num_probes: Hutchinson probes per application. seed: int for the probes.
    Attributes:
        gamma, every, seed: settable between runs (another positive gamma, another f_r, another seed)
            without retracing the training graph that ``train_sgd`` keeps with the model.
        num_applied: how many times the term was evaluated (Python-side count of eager calls).
    Used in chapter 4 (F-HTR).
    """

    def __init__(self, model, loss_fn, gamma: float, layers: str | Sequence[str] | None = None, every: int = 50,
                 num_probes: int = 1, seed: int = 0, distribution: str = "rademacher"):
        if not callable(loss_fn):
            raise TypeError("loss_fn must be a per-example loss function (y_true, y_pred) -> (batch,).")
        if not isinstance(gamma, numbers.Real) or gamma < 0 or gamma != gamma:
            raise ValueError(f"gamma must be a non-negative number, got {gamma!r}.")
        if distribution not in ("rademacher", "gaussian"):
            raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}.")
        if not isinstance(num_probes, numbers.Integral) or num_probes < 1:
            raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}.")
        self.model, self.loss_fn = model, loss_fn
        self.layers, self.num_probes = layers, int(num_probes)
        self.distribution = distribution
        # gamma, f_r and the seed are read from variables inside the training graph, so a regulariser reused
        # for another run (another seed, gamma or f_r) keeps the graph train_sgd compiled for it.
        self._every_var = tf.Variable(1, dtype=tf.int64, trainable=False)
        self.every = every
        self._gamma, self._gamma_var = float(gamma), tf.Variable(float(gamma), dtype=tf.float64, trainable=False)
        self._seed_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.seed = seed
        self.variables = params.select_variables(model, layers)
        self.num_applied = 0

    @property
    def gamma(self) -> float:
        return self._gamma

    @gamma.setter
    def gamma(self, value):
        if not isinstance(value, numbers.Real) or not value > 0 or value == float("inf"):
            raise ValueError(f"gamma can be changed to another positive number, got {value!r}; a regulariser "
                             "built with gamma > 0 keeps its penalty in the graph (use gamma=0 at construction "
                             "for none).")
        if self._gamma == 0.0:
            raise ValueError("this regulariser was built with gamma = 0 (no penalty in the graph); build a new "
                             "one with gamma > 0.")
        self._gamma = float(value)
        self._gamma_var.assign(self._gamma)

    @property
    def every(self) -> int:
        return self._every

    @every.setter
    def every(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"every (the update frequency f_r) must be a positive integer, got {value!r}.")
        self._every = int(value)
        self._every_var.assign(self._every)

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"seed must be a non-negative integer, got {value!r}.")
        self._seed = int(value)
        self._seed_var.assign(self._seed)

    def penalty(self, step, xb, yb):
        """``gamma * tr(H_S)`` on this batch (always evaluated)."""
        self.num_applied += 1
        seed = tf.stack([tf.identity(self._seed_var), tf.cast(step, tf.int64)])
        tr = hessian_trace_penalty(self.model, self.loss_fn, xb, yb, self.variables, self.num_probes, seed,
                                   self.distribution)
        return tf.cast(self._gamma_var, tr.dtype) * tr

    def __call__(self, step, xb, yb):
        dtype = params.tf_variable(self.variables[0]).dtype
        if self.gamma == 0.0:
            return tf.zeros((), dtype)
        if isinstance(step, numbers.Integral):
            return self.penalty(step, xb, yb) if step % self.every == 0 else tf.zeros((), dtype)
        step = tf.convert_to_tensor(step)
        return tf.cond(tf.equal(tf.math.floormod(tf.cast(step, tf.int64), self._every_var), 0),
                       lambda: self.penalty(step, xb, yb), lambda: tf.zeros((), dtype))
