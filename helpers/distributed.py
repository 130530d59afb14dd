"""Curvature products over data shards on several devices (the replicas of a ``tf.distribute`` strategy).

When the data outgrow one device, split them into one shard per replica, build the operator of each shard
on its replica's device (its data live there), and average: for a mean loss over N examples split into
shards of N_r examples, every curvature matrix of :mod:`helpers.operators` is the weighted mean

.. math:: A = \\sum_r \\frac{N_r}{N} A_r,

so a product is the weighted sum of the shards' products, each computed where its shard lives.
:class:`ShardedOperator` is that sum in the common operator interface, so Lanczos, SLQ and the trace
estimators run on it unchanged; :func:`sharded` builds it from an operator factory and a strategy
(``tf.distribute.MirroredStrategy`` on several GPUs; on a CPU machine, split the CPU into logical devices
with ``tf.config.set_logical_device_configuration`` before TensorFlow initialises).

Used by :func:`helpers.layerwise.curvature_report` (``strategy=``) and in the page "Use it on your own model".
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from .operators import CurvatureOperator

__all__ = ["ShardedOperator", "sharded", "strategy_devices"]


class ShardedOperator(CurvatureOperator):
    """:math:`\\sum_r w_r A_r` for operators A_r (same P and dtype), each applied on its own device.

    Args:
        shards: the per-shard operators. weights: their weights w_r (for shard means: N_r / N).
        devices: one device name per shard (the product of shard r runs under ``tf.device(devices[r])``).
    """

    def __init__(self, shards: Sequence[CurvatureOperator], weights: Sequence[float], devices: Sequence[str]):
        shards = list(shards)
        if not shards or not all(isinstance(s, CurvatureOperator) for s in shards):
            raise TypeError("ShardedOperator needs a non-empty list of helpers.operators.CurvatureOperator.")
        if len(weights) != len(shards) or len(devices) != len(shards):
            raise ValueError(f"ShardedOperator needs one weight and one device per shard; got {len(shards)} shards, "
                             f"{len(weights)} weights and {len(devices)} devices.")
        sizes, dtypes = {s.size for s in shards}, {s.dtype for s in shards}
        if len(sizes) != 1 or len(dtypes) != 1:
            raise ValueError(f"The shards' operators differ in dimension {sorted(sizes)} or dtype "
                             f"{sorted(d.name for d in dtypes)}; build them from the same model and variables.")
        w = [float(x) for x in weights]
        if not all(np.isfinite(w)):
            raise ValueError(f"weights must be finite numbers, got {weights!r}.")
        self.shards, self.weights, self.devices = shards, w, [str(d) for d in devices]
        self.num_examples = int(sum(getattr(s, "num_examples", 0) for s in shards))
        super().__init__(sizes.pop(), dtypes.pop())

    def _rows_product(self, V):
        total = None
        for op, w, device in zip(self.shards, self.weights, self.devices):
            with tf.device(device):
                part = tf.constant(w, self.dtype) * op.rows_product(V)
            total = part if total is None else total + part
        return total

    def __repr__(self) -> str:
        return f"ShardedOperator(P={self.size}, {len(self.shards)} shards on {', '.join(self.devices)})"


def strategy_devices(strategy) -> list[str]:
    """The device of every replica of a ``tf.distribute`` strategy (``strategy.extended.worker_devices``)."""
    devices = getattr(getattr(strategy, "extended", None), "worker_devices", None)
    if not devices:
        raise TypeError(f"strategy must be a tf.distribute strategy (e.g. tf.distribute.MirroredStrategy), got "
                        f"{type(strategy).__name__}.")
    return [str(d) for d in devices]


def sharded(factory: Callable, data, strategy=None, devices: Sequence[str] | None = None) -> ShardedOperator:
    """An operator averaged over data shards, one per replica of ``strategy`` (or per device of ``devices``).

    The examples are split into contiguous shards of sizes differing by at most one (``numpy.array_split``);
    shard r's operator ``factory((x_r, y_r))`` is built under ``tf.device`` of replica r (so its data are
    copied there once) and weighted by N_r / N. For the mean-loss operators of :mod:`helpers.operators` the
    result equals the one-device operator on all the data up to the order of floating-point summation.

    Args:
        factory: ``factory(data) -> CurvatureOperator``, e.g.
            ``lambda d: operators.hessian(model, loss, d)``.
        data: ``(x, y)``, a ``helpers.data.Dataset`` or a finite ``tf.data.Dataset``.
        strategy: a ``tf.distribute`` strategy; or ``devices``: a list of device names.
    Returns:
        :class:`ShardedOperator`.
    """
    from .layerwise import _as_arrays

    if (strategy is None) == (devices is None):
        raise ValueError("Pass exactly one of strategy= (a tf.distribute strategy) and devices= (device names).")
    devices = strategy_devices(strategy) if strategy is not None else [str(d) for d in devices]
    if not devices:
        raise ValueError("devices= is empty; pass at least one device name.")
    if not callable(factory):
        raise TypeError("factory must be a function data -> CurvatureOperator.")
    x, y = _as_arrays(data)
    n = len(x)
    if n < len(devices):
        raise ValueError(f"{n} examples cannot be split over {len(devices)} devices; pass at least one example "
                         "per replica.")
    parts = np.array_split(np.arange(n), len(devices))
    shards, weights = [], []
    for idx, device in zip(parts, devices):
        with tf.device(device):
            shards.append(factory((x[idx], y[idx])))
        weights.append(len(idx) / n)
    return ShardedOperator(shards, weights, devices)
