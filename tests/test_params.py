"""helpers.params: selecting variables, flat vectors and back, error paths."""
import helpers  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import params


def _model():
    inp = keras.Input((4,), dtype="float64")
    h = keras.layers.Dense(3, activation="tanh", dtype="float64", name="hidden")(inp)
    out = keras.layers.Dense(2, dtype="float64", name="head")(h)
    return keras.Model(inp, out)


def test_select_all_and_layers():
    m = _model()
    assert len(params.select_variables(m)) == 4
    head = params.select_variables(m, "head")
    assert [tuple(v.shape) for v in head] == [(3, 2), (2,)]
    both = params.select_variables(m, ["head", "hidden"])
    assert [tuple(v.shape) for v in both] == [(3, 2), (2,), (4, 3), (3,)]
    assert params.num_params(params.select_variables(m)) == 4 * 3 + 3 + 3 * 2 + 2
    assert params.layer_names(m) == ["hidden", "head"]


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match="no layer .*'nope'.*head.*hidden"):
        params.select_variables(_model(), "nope")
    with pytest.raises(ValueError, match="selects nothing"):
        params.select_variables(_model(), [])
    with pytest.raises(TypeError):
        params.select_variables("not a model")


def test_flatten_roundtrip_and_set_flat():
    m = _model()
    vs = params.select_variables(m)
    flat = params.get_flat(vs)
    assert flat.shape == (params.num_params(vs),)
    parts = params.unflatten(flat, vs)
    for p, v in zip(parts, vs):
        np.testing.assert_array_equal(p.numpy(), v.numpy())
    new = np.arange(flat.shape[0], dtype=np.float64)
    params.set_flat(vs, new)
    np.testing.assert_array_equal(params.get_flat(vs).numpy(), new)
    np.testing.assert_array_equal(vs[0].numpy().reshape(-1), new[:12])  # row-major order


def test_unflatten_wrong_length():
    vs = params.select_variables(_model())
    with pytest.raises(ValueError, match="shape \\(23,\\)"):
        params.unflatten(np.zeros(5), vs)
    with pytest.raises(ValueError):
        params.flatten([])


def test_tf_variable():
    m = _model()
    v = params.tf_variable(m.trainable_variables[0])
    assert isinstance(v, tf.Variable)
    plain = tf.Variable(1.0)
    assert params.tf_variable(plain) is plain
    with pytest.raises(TypeError):
        params.tf_variable(np.zeros(3))
