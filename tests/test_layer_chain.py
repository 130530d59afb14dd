"""helpers.layer_chain (the written-out Hessian product, ``method="layer_chain"``) against the dense float64
Hessian from the Jacobian of the gradient, and the models it must refuse."""
import helpers  # noqa: F401  (first: quiets TensorFlow before it is imported)
import numpy as np
import pytest
import keras

from helpers import eigensolvers, layer_chain, operators
from test_operators import ce, dense_hessian, rel, sq

N, C = 11, 3
F64 = "float64"


def conv_chain(seed=0):
    """Every written-out stage: strided and same/valid convolutions, windows that do and do not divide the map,
    the five activations, Activation/ReLU layers, dropout, flatten, reshape."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((7, 7, 2), dtype=F64)
    h = L.Conv2D(3, 3, padding="same", activation="tanh", dtype=F64, name="c1")(inp)
    h = L.MaxPooling2D(2, padding="same", dtype=F64)(h)  # 7 -> 4: the last window is padded
    h = L.Conv2D(4, 2, strides=2, activation="relu", dtype=F64, name="c2")(h)
    h = L.Reshape((2, 8), dtype=F64)(h)
    h = L.Flatten(dtype=F64)(h)
    h = L.Dropout(0.3, dtype=F64)(h)
    h = L.Dense(5, activation="sigmoid", dtype=F64, name="d1")(h)
    h = L.Dense(4, activation="softplus", use_bias=False, dtype=F64, name="d2")(h)
    h = L.Activation("tanh", dtype=F64)(h)
    out = L.Dense(C, dtype=F64, name="out")(h)
    return keras.Model(inp, out)


def pool_chain(seed=0):
    """ReLU before valid pools whose windows do not divide the map (5 -> 1 with windows of 3), as a Sequential."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((5, 5, 1), dtype=F64), L.Conv2D(2, 2, padding="same", dtype=F64),
                             L.ReLU(dtype=F64), L.MaxPooling2D(3, dtype=F64), L.Flatten(dtype=F64),
                             L.Dense(C, dtype=F64)])


def first_conv(padding, kernel, seed=0):
    """A first convolution on three channels, which runs as a matrix product with the data's windows: strided,
    valid (7 -> 3) or same with uneven padding (7 -> 4)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((7, 7, 3), dtype=F64),
                             L.Conv2D(2, kernel, strides=2, padding=padding, activation="tanh", dtype=F64),
                             L.Flatten(dtype=F64), L.Dense(C, dtype=F64)])


def same_pool3(seed=0):
    """A SAME pool of windows of 3 on a 7 x 7 map: padded by one row and column on each side."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((7, 7, 1), dtype=F64), L.Conv2D(2, 2, padding="same", dtype=F64),
                             L.ReLU(dtype=F64), L.MaxPooling2D(3, padding="same", dtype=F64),
                             L.Flatten(dtype=F64), L.Dense(C, dtype=F64)])


def pooled_linear(seed=0):
    """A first convolution with no activation before its pooling (read at the maxima only, on one channel)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((6, 6, 1), dtype=F64), L.Conv2D(3, 3, padding="same", dtype=F64),
                             L.MaxPooling2D(2, dtype=F64), L.Flatten(dtype=F64), L.Dense(C, dtype=F64)])


def data(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N,) + shape), rng.integers(0, C, N)


def assert_unshared_blocks(m, loss, x, y, ref, variables=None):
    """A block of three vectors through ``tf.vectorized_map`` with the shared tensors switched off."""
    plain = operators.hessian(m, loss, (x, y), variables=variables)
    plain.reuse_max_bytes = 0
    V = np.random.default_rng(3).normal(size=(plain.size, 3))
    assert rel(plain.matmat(V).numpy(), ref @ V) < 1e-10 and plain.reuse_bytes == 0


@pytest.mark.parametrize("build,shape", [(conv_chain, (7, 7, 2)), (pool_chain, (5, 5, 1)),
                                         (lambda: first_conv("valid", 3), (7, 7, 3)),
                                         (lambda: first_conv("same", 2), (7, 7, 3)),
                                         (pooled_linear, (6, 6, 1))])
@pytest.mark.parametrize("loss", [ce, sq])
def test_layer_chain_product_is_the_hessian(build, shape, loss):
    m = build()
    x, y = data(shape)
    ref = dense_hessian(m, loss, x, y)
    op = operators.hessian(m, loss, (x, y), batch_size=4)  # "auto"; batches of 4, 4 and a remainder of 3
    assert op.method == "layer_chain", op.method_info
    assert rel(op.to_dense(block_size=5), ref) < 1e-10  # identity I-HVP
    v = np.random.default_rng(2).normal(size=op.size)
    assert rel(op.matvec(v).numpy(), ref @ v) < 1e-10  # "auto": a lone product runs double backward
    chain = operators.hessian(m, loss, (x, y), batch_size=4, method="layer_chain")
    assert rel(chain.matvec(v).numpy(), ref @ v) < 1e-10  # the written-out sweeps for a lone product
    # the shared-tensor loop of the eigensolvers: Lanczos eigenvalues of the exact matrix
    one = operators.hessian(m, loss, (x, y))
    assert one._reuse_plan() is not None, one.reuse_info
    top = eigensolvers.lanczos(one, k=3, seed=0).eigenvalues
    assert np.allclose(np.sort(top)[::-1], np.sort(np.linalg.eigvalsh(ref))[::-1][:3], rtol=1e-8, atol=1e-10)
    # blocks of vectors without shared tensors: tf.vectorized_map over the products
    assert_unshared_blocks(m, loss, x, y, ref)


def test_layer_chain_blocks_and_weight_decay():
    m = conv_chain()
    x, y = data((7, 7, 2))
    for names in (["c1"], ["d1", "c2"], ["out"]):
        vs = [v for n in names for v in m.get_layer(n).trainable_variables]
        ref = dense_hessian(m, ce, x, y, variables=vs)
        op = operators.hessian(m, ce, (x, y), variables=names, weight_decay=0.05, method="layer_chain")
        assert rel(op.to_dense(), ref + 0.1 * np.eye(len(ref))) < 1e-10  # identity I-WD on a block


def test_auto_falls_back_and_layer_chain_refuses():
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((4,), dtype=F64)
    h = L.Dense(5, activation="elu", dtype=F64)(inp)
    elu = keras.Model(inp, L.Dense(C, dtype=F64)(h))
    inp2 = keras.Input((4,), dtype=F64)
    h2 = L.Dense(4, activation="tanh", dtype=F64)(inp2)
    res = keras.Model(inp2, L.Dense(C, dtype=F64)(L.Add(dtype=F64)([h2, inp2])))
    shared_layer = L.Dense(4, activation="tanh", dtype=F64)
    inp3 = keras.Input((4,), dtype=F64)
    twice = keras.Model(inp3, L.Dense(C, dtype=F64)(shared_layer(shared_layer(inp3))))
    x, y = data((4,))
    for model, why in ((elu, "elu"), (res, "Add"), (twice, "does not reproduce")):
        op = operators.hessian(model, ce, (x, y))
        assert op.method == "double_backward" and why in op.method_info
        assert rel(op.to_dense(), dense_hessian(model, ce, x, y)) < 1e-10
        with pytest.raises(ValueError, match=why):
            operators.hessian(model, ce, (x, y), method="layer_chain")
    # a chain whose products reach no convolution: "auto" keeps double backward, as fast there
    dense = keras.Model(inp2, L.Dense(C, dtype=F64)(h2))
    for model, names, shape in ((dense, None, (4,)), (conv_chain(), ["d1", "out"], (7, 7, 2))):
        op = operators.hessian(model, ce, data(shape), variables=names)
        assert op.method == "double_backward" and "no convolution" in op.method_info
    with pytest.raises(layer_chain.Unsupported, match="overlapping"):
        layer_chain.plan(keras.Sequential([keras.Input((4, 4, 1)), L.MaxPooling2D(2, strides=1), L.Flatten(),
                                           L.Dense(2)]))
    with pytest.raises(ValueError, match="method must be one of"):
        operators.hessian(elu, ce, (x, y), method="structured")


def test_convolutions_without_the_window_product(monkeypatch):
    """The plain convolution path for inputs that do not depend on v (inputs with many channels), and with it
    the poolings' own tangent and adjoint: padded SAME pools after tanh and a ReLU, a cropped VALID pool after a
    ReLU (whose bias product sums the pooled map), in the shared loop and vectorised without shared tensors."""
    monkeypatch.setattr(layer_chain, "PATCH_MAX_CHANNELS", 0)
    for build, shape, blocks in ((conv_chain, (7, 7, 2), (None, ["c2", "out"])), (pool_chain, (5, 5, 1), (None,)),
                                  (same_pool3, (7, 7, 1), (None,))):
        m = build()
        x, y = data(shape)
        for names in blocks:
            vs = None if names is None else [v for n in names for v in m.get_layer(n).trainable_variables]
            ref = dense_hessian(m, ce, x, y, variables=vs)
            op = operators.hessian(m, ce, (x, y), variables=names)
            assert op.method == "layer_chain"
            assert rel(op.to_dense(), ref) < 1e-10
            assert_unshared_blocks(m, ce, x, y, ref, variables=names)


def test_auto_writes_out_shared_and_blocked_products_only(monkeypatch):
    """"auto" runs the written-out sweeps where they pay off (a loop sharing their saved tensors, a block of
    vectors) and double backward for a product that shares nothing."""
    calls = []
    written_out = layer_chain.hessian_product
    monkeypatch.setattr(layer_chain, "hessian_product", lambda *a: calls.append(1) or written_out(*a))
    m = pool_chain()
    x, y = data((5, 5, 1))
    ref = dense_hessian(m, ce, x, y)
    op = operators.hessian(m, ce, (x, y))
    assert op.method == "layer_chain" and "double_backward" in op.method_info
    v = np.random.default_rng(2).normal(size=op.size)
    assert rel(op.matvec(v).numpy(), ref @ v) < 1e-10 and not calls
    top = eigensolvers.lanczos(op, k=2, seed=0).eigenvalues
    assert np.allclose(np.sort(top)[::-1], np.sort(np.linalg.eigvalsh(ref))[::-1][:2], rtol=1e-8) and calls
    calls.clear()
    assert_unshared_blocks(m, ce, x, y, ref)
    assert calls
