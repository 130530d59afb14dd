"""Parameters as flat vectors: choose a set of variables (all trainable ones, a layer, a list of layers),
flatten them into one vector of length P and write such a vector back.

Every curvature operator of ``helpers.operators`` acts on these flat vectors; the ordering is the order
of ``select_variables`` (the model's own order of trainable variables), each variable flattened in
row-major (C) order. Works with Keras 3 variables and with plain ``tf.Variable`` objects.

Used in chapters 2, 4, 5, 6 and 7.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf


def tf_variable(variable) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras 3 variable (or the variable itself when it already is one).

    TensorFlow's tapes and forward accumulators track the underlying resource variable, so every helper
    that differentiates with respect to Keras weights goes through this function.
    Used in chapters 4 and 7 (through the operators).
    """
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "_value", None)
    if isinstance(inner, tf.Variable):
        return inner
    inner = getattr(variable, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(f"{variable!r} is neither a tf.Variable nor a Keras variable backed by one; pass the "
                    "entries of model.trainable_variables.")


def _layers_with_weights(model) -> list:
    found = []

    def visit(layer):
        for sub in getattr(layer, "layers", []) or []:
            if sub.trainable_weights:
                found.append(sub)
            visit(sub)

    visit(model)
    return found


def layer_names(model) -> list[str]:
    """Names of the model's layers that own trainable weights, in model order (nested models included).

    Used in chapter 4 (layerwise Hessians).
    """
    return [layer.name for layer in _layers_with_weights(model)]


def select_variables(model, layers: str | Sequence[str] | None = None) -> list:
    """The trainable variables of a model, of one layer, or of a list of layers.

    Args:
        model: a Keras model.
        layers: ``None`` for all trainable variables (in ``model.trainable_variables`` order), a layer
            name, or a list of layer names (their variables in the order the names are given).
    Returns:
        a list of the (Keras) variables.
    Raises:
        ValueError: a name that is not a layer with trainable weights (the message lists the valid
            names), or an empty selection.

    Used in chapters 2, 4 and 5 (003's layerwise Hessian restricts an operator to one layer).
    """
    if not hasattr(model, "trainable_variables"):
        raise TypeError(f"select_variables expects a Keras model, got {type(model).__name__}.")
    if layers is None:
        variables = list(model.trainable_variables)
        if not variables:
            raise ValueError("The model has no trainable variables; build it (call it once) first.")
        return variables
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers=[] selects nothing; pass None for all variables or at least one layer name.")
    by_name = {layer.name: layer for layer in _layers_with_weights(model)}
    variables = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"Layer names must be strings, got {name!r}.")
        if name not in by_name:
            raise ValueError(f"The model has no layer with trainable weights named {name!r}; "
                             f"valid names are {sorted(by_name)}.")
        for v in by_name[name].trainable_variables:
            if not any(v is w for w in variables):
                variables.append(v)
    return variables


def num_params(variables: Iterable) -> int:
    """Total number of scalars P in a list of variables or tensors. Used in chapters 1 and 4."""
    return int(sum(int(np.prod(v.shape)) for v in variables))


def flatten(tensors: Iterable) -> tf.Tensor:
    """Concatenate tensors (or variables) into one flat vector of shape (P,), each in row-major order.

    Used in chapters 2, 4 and 5.
    """
    parts = [tf.reshape(tf.convert_to_tensor(t), [-1]) for t in tensors]
    if not parts:
        raise ValueError("flatten() got no tensors; pass a non-empty list.")
    return tf.concat(parts, axis=0)


def unflatten(vec, variables: Sequence) -> list[tf.Tensor]:
    """Split a flat vector (P,) into tensors shaped like ``variables`` (the inverse of ``flatten``).

    Args:
        vec: array or tensor of shape (P,) with P = ``num_params(variables)``.
        variables: the variables (or tensors) giving the shapes.
    Returns:
        a list of tensors, one per variable.
    Used in chapters 2, 4 and 5.
    """
    vec = tf.convert_to_tensor(vec)
    shapes = [tuple(int(d) for d in v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    if vec.shape.rank != 1 or int(vec.shape[0]) != sum(sizes):
        raise ValueError(f"unflatten() needs a vector of shape ({sum(sizes)},) for these variables, "
                         f"got shape {tuple(vec.shape)}.")
    return [tf.reshape(p, s) for p, s in zip(tf.split(vec, sizes), shapes)]


def get_flat(variables: Sequence) -> tf.Tensor:
    """The current values of ``variables`` as one flat vector (P,). Used in chapters 2, 4 and 5."""
    return flatten([tf.convert_to_tensor(v) for v in variables])


def set_flat(variables: Sequence, vec) -> None:
    """Assign a flat vector (P,) to ``variables`` (cast to each variable's dtype). Used in chapters 2, 4, 5."""
    for v, part in zip(variables, unflatten(vec, variables)):
        v.assign(tf.cast(part, v.dtype))
