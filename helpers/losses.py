"""Per-example loss functions: softmax cross-entropy, MSE, and the Lp-norm and mean-power losses of 004.

Every loss has the signature ``loss(y_true, y_pred) -> tf.Tensor`` of shape ``(batch,)``: one value per
example, never reduced. Training and the curvature operators take the mean themselves, so the mean loss
is :math:`L(w) = \\frac1N \\sum_i \\ell(f(x_i; w), y_i)` (004 eq. 2.3.2).

``y_pred`` holds the network's outputs, shape ``(batch, C)`` (logits for the cross-entropy; the models of
:mod:`helpers.models` never apply a softmax). ``y_true`` is either integer class labels of shape
``(batch,)`` or targets of the same shape as ``y_pred`` (for instance one-hot vectors). The regression-type
losses turn integer labels into one-hot targets, as 004 Sec. 2.3.1 does for MNIST. A network with a single
output (``C = 1``, 004 Sec. 5.2) takes real targets of shape ``(batch,)`` or ``(batch, 1)``; for it the
cross-entropy is the binary one with :math:`p = \\sigma(f)`.

All functions work in float32 and float64 (the dtype of ``y_pred``).

Used in chapters 1 (all losses), 4, 5 (cross-entropy), 7 and 8 (Lp-norm, mean-power, cross-entropy).
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import tensorflow as tf

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

__all__ = ["cross_entropy", "mse", "lp_norm", "mean_power", "get", "targets_like"]


def _as_pred(y_pred) -> tf.Tensor:
    y_pred = tf.convert_to_tensor(y_pred)
    if not y_pred.dtype.is_floating:
        raise TypeError(f"y_pred must be a floating-point tensor (float32 or float64), got {y_pred.dtype.name}.")
    if y_pred.shape.rank == 1:  # a single-output network returning shape (batch,)
        y_pred = y_pred[:, None]
    if y_pred.shape.rank != 2:
        raise ValueError(f"y_pred must have shape (batch, C) or (batch,), got shape {y_pred.shape}.")
    return y_pred


def _is_labels(y_true: tf.Tensor, y_pred: tf.Tensor) -> bool:
    """Integer class labels (batch,) as opposed to targets shaped like the outputs."""
    num_outputs = y_pred.shape[-1]
    if y_true.shape.rank == 2:
        return False
    if y_true.shape.rank != 1:
        raise ValueError(f"y_true must have shape (batch,) (labels) or (batch, C) (targets), got {y_true.shape}.")
    return num_outputs is None or num_outputs > 1


def check_labels(labels, num_outputs: int, what: str = "labels") -> None:
    """Refuse class labels that these losses would silently misread.

    With C > 1 outputs, labels of shape (N,) must be finite whole numbers in [0, C): ``tf.one_hot`` turns an
    out-of-range label (7 or -1 with 3 classes) into an all-zero target, whose loss is 0, and NaN labels into
    garbage, so every result computed from them would be wrong without any error. Targets of shape (N, C)
    and single-output networks (real targets) are not checked. Used by ``operators`` and ``training``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or num_outputs < 2 or y.size == 0:
        return
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{what}: labels must be integer class labels, got dtype {y.dtype}.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{what}: the labels contain NaN or inf; pass integer class labels in [0, {num_outputs - 1}].")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(f"{what}: the labels are not whole numbers; pass integer class labels of shape (N,) or "
                         "targets of shape (N, C).")
    if y.min() < 0 or y.max() >= num_outputs:
        raise ValueError(f"{what}: labels must lie in [0, {num_outputs - 1}] for a network with {num_outputs} "
                         f"outputs; got values in [{y.min():g}, {y.max():g}]. Check the labels or the number of "
                         "outputs of the last layer.")


def targets_like(y_true, y_pred) -> tf.Tensor:
    """Targets of the same shape and dtype as ``y_pred``: one-hot vectors for integer labels.

    Args:
        y_true: labels ``(batch,)`` (integers, or floats holding integers) or targets ``(batch, C)``;
            for a single-output network, real targets ``(batch,)``.
        y_pred: outputs ``(batch, C)``.
    Returns:
        tensor ``(batch, C)`` in the dtype of ``y_pred``.
    """
    y_pred = _as_pred(y_pred)
    y_true = tf.convert_to_tensor(y_true)
    if _is_labels(y_true, y_pred):
        labels = tf.cast(y_true, tf.int32)
        return tf.one_hot(labels, depth=tf.shape(y_pred)[-1], dtype=y_pred.dtype)
    if y_true.shape.rank == 1:
        y_true = y_true[:, None]
    y_true = tf.cast(y_true, y_pred.dtype)
    if y_true.shape[-1] is not None and y_pred.shape[-1] is not None and y_true.shape[-1] != y_pred.shape[-1]:
        raise ValueError(
            f"targets have {y_true.shape[-1]} columns but the network has {y_pred.shape[-1]} outputs; pass integer "
            "labels of shape (batch,) or targets of shape (batch, C).")
    return y_true


def cross_entropy(y_true, logits) -> tf.Tensor:
    """Softmax cross-entropy per example, computed stably from logits (000 eq. 2.3, 004 eq. 5.1.7).

    :math:`\\ell = -\\sum_j z_j \\log \\sigma_j(f)` with the softmax :math:`\\sigma_j(f) = e^{f_j}/\\sum_k e^{f_k}`
    (000 eq. 2.2). With a single output (C = 1) it is the binary cross-entropy with :math:`p = \\sigma(f)`,
    the logistic sigmoid: :math:`\\ell = -z \\log p - (1 - z) \\log(1 - p)`.

    Args:
        y_true: integer labels ``(batch,)`` or target probabilities ``(batch, C)`` (one-hot or soft).
        logits: network outputs ``(batch, C)``, before any softmax.
    Returns:
        tensor ``(batch,)``.
    Used in chapters 1, 2, 3, 4, 5, 7, 8.
    """
    logits = _as_pred(logits)
    targets = targets_like(y_true, logits)
    if logits.shape[-1] == 1:
        per = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
        return per[:, 0]
    # -sum_j z_j (f_j - logsumexp(f)): stable for large logits and exact for soft targets
    log_probs = logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    return -tf.reduce_sum(targets * log_probs, axis=-1)


def mse(y_true, outputs) -> tf.Tensor:
    """Mean squared error per example: :math:`\\ell = \\frac1C \\sum_j (f_j - y_j)^2`.

    Integer labels become one-hot targets. It equals ``mean_power(2)`` (004 eq. 5.1.6 with n = 2); 004 eq.
    2.3.5 uses the sum over outputs instead, which is C times this.

    Args:
        y_true: integer labels ``(batch,)`` or targets ``(batch, C)``.
        outputs: network outputs ``(batch, C)``.
    Returns:
        tensor ``(batch,)``.
    Used in chapter 1.
    """
    outputs = _as_pred(outputs)
    diff = outputs - targets_like(y_true, outputs)
    return tf.reduce_mean(tf.square(diff), axis=-1)


def lp_norm(p: float) -> LossFn:
    """The Lp-norm loss of 004 eq. 5.1.5: :math:`\\ell = (\\sum_{j=1}^{C} |f_j - y_j|^p)^{1/p}`.

    Args:
        p: the order, a real number >= 1 (004 uses p = 2, 4, 6).
    Returns:
        a loss function ``loss(y_true, outputs) -> (batch,)``; integer labels become one-hot targets. Its
        gradient is finite everywhere (zero where the residual is exactly zero).
    Used in chapters 1, 7, 8.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"lp_norm(p) needs a real order p >= 1, got {p!r}.")
    p = float(p)
    if not p >= 1.0 or p == float("inf"):
        raise ValueError(f"lp_norm(p) needs a finite order p >= 1 (a norm), got p = {p}.")

    def loss(y_true, outputs):
        outputs = _as_pred(outputs)
        diff = outputs - targets_like(y_true, outputs)
        powered = tf.reduce_sum(tf.pow(tf.abs(diff), p), axis=-1)
        positive = powered > 0
        safe = tf.where(positive, powered, tf.ones_like(powered))  # no infinite gradient at a zero residual
        return tf.where(positive, tf.pow(safe, 1.0 / p), tf.zeros_like(powered))

    loss.__name__ = f"lp_norm_{p:g}"
    loss.__doc__ = f"L{p:g}-norm loss (004 eq. 5.1.5), per example."
    return loss


def mean_power(n: int) -> LossFn:
    """The mean-power loss of order n of 004 eq. 5.1.6: :math:`\\ell = \\frac1C \\sum_{j=1}^{C} (f_j - y_j)^n`.

    Args:
        n: an even integer >= 2 (004 uses n = 2, 4, 6). Odd orders are refused: the loss would be unbounded
            below.
    Returns:
        a loss function ``loss(y_true, outputs) -> (batch,)``; integer labels become one-hot targets.
    Used in chapters 1, 7, 8.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"mean_power(n) needs an even integer order n >= 2, got {n!r}.")
    n = int(n)
    if n < 2 or n % 2:
        raise ValueError(f"mean_power(n) needs an even order n >= 2 (an odd order is unbounded below), got n = {n}.")

    def loss(y_true, outputs):
        outputs = _as_pred(outputs)
        diff = outputs - targets_like(y_true, outputs)
        return tf.reduce_mean(tf.pow(diff, n), axis=-1)

    loss.__name__ = f"mean_power_{n}"
    loss.__doc__ = f"Mean-power loss of order {n} (004 eq. 5.1.6), per example."
    return loss


def get(name: str, order: float | None = None) -> LossFn:
    """A loss by name: ``"cross_entropy"``, ``"mse"``, ``"lp_norm"`` (needs ``order``), ``"mean_power"``
    (needs ``order``); the short forms ``"l2"``, ``"l4"``, ``"mp2"``, ``"mp6"`` ... are accepted too.

    Used in chapters 7 and 8, which loop over losses.
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__}.")
    key = name.strip().lower()
    if key in ("cross_entropy", "ce", "crossentropy"):
        return cross_entropy
    if key == "mse":
        return mse
    if key == "lp_norm":
        if order is None:
            raise ValueError("get('lp_norm') needs order=p, e.g. get('lp_norm', order=2).")
        return lp_norm(order)
    if key == "mean_power":
        if order is None:
            raise ValueError("get('mean_power') needs order=n, e.g. get('mean_power', order=2).")
        if isinstance(order, float) and order.is_integer():
            order = int(order)
        return mean_power(order)
    if key.startswith("mp") and key[2:].isdigit():
        return mean_power(int(key[2:]))
    if key.startswith("l") and key[1:].isdigit():
        return lp_norm(int(key[1:]))
    raise ValueError(f"unknown loss {name!r}; use 'cross_entropy', 'mse', 'lp_norm', 'mean_power', 'l2', 'mp2', ...")
