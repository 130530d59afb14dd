"""helpers.operators against dense float64 matrices computed independently (Jacobian of the gradient,
per-example Jacobians), on a small MLP and a small CNN with frozen BatchNorm and dropout; error paths."""
import helpers  # noqa: F401  (first: quiets TensorFlow before it is imported)
import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import operators, params

N, C = 13, 3


def ce(y, z):
    """Softmax cross-entropy per example (written here so the tests do not depend on helpers.losses)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(y, tf.int32), z)


def sq(y, z):
    """Half squared error to one-hot targets, per example."""
    return 0.5 * tf.reduce_sum((z - tf.one_hot(tf.cast(y, tf.int32), z.shape[-1], dtype=z.dtype)) ** 2, axis=-1)


def mlp(seed=0, dtype="float64", dropout=False):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5,), dtype=dtype)
    h = keras.layers.Dense(6, activation="tanh", dtype=dtype, name="d1")(inp)
    if dropout:
        h = keras.layers.Dropout(0.5, dtype=dtype)(h)
    h = keras.layers.Dense(4, activation="softplus", dtype=dtype, name="d2")(h)
    out = keras.layers.Dense(C, dtype=dtype, name="out")(h)
    return keras.Model(inp, out)


def cnn(seed=0, dtype="float64"):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 1), dtype=dtype)
    h = keras.layers.Conv2D(2, 3, activation="tanh", dtype=dtype, name="conv")(inp)
    h = keras.layers.BatchNormalization(dtype=dtype, name="bn")(h)
    h = keras.layers.AveragePooling2D(2, dtype=dtype)(h)
    h = keras.layers.Flatten(dtype=dtype)(h)
    out = keras.layers.Dense(C, dtype=dtype, name="out")(h)
    m = keras.Model(inp, out)
    bn = m.get_layer("bn")
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.normal(size=2) * 0.1)
    bn.moving_variance.assign(1.0 + rng.random(2))
    bn.gamma.assign(1.0 + 0.3 * rng.normal(size=2))
    return m


def data(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N,) + shape), rng.integers(0, C, N)


def dense_hessian(model, loss, x, y, variables=None):
    vs = [params.tf_variable(v) for v in (variables or model.trainable_variables)]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            L = tf.reduce_mean(loss(y, model(x, training=False)))
        g = params.flatten(inner.gradient(L, vs))
    rows = outer.jacobian(g, vs)
    return np.concatenate([r.numpy().reshape(r.shape[0], -1) for r in rows], axis=1)


def jacobians(model, x, variables=None):
    vs = [params.tf_variable(v) for v in (variables or model.trainable_variables)]
    with tf.GradientTape() as tape:
        z = model(x, training=False)
    jac = tape.jacobian(z, vs)
    return np.concatenate([j.numpy().reshape(len(x), z.shape[1], -1) for j in jac], axis=-1), z.numpy()


def output_hessians(loss, y, z):
    z = tf.constant(z)
    with tf.GradientTape() as t2:
        t2.watch(z)
        with tf.GradientTape() as t1:
            t1.watch(z)
            L = tf.reduce_sum(loss(y, z))
        g = t1.gradient(L, z)
    H = t2.jacobian(g, z).numpy()  # (N, C, N, C)
    return np.stack([H[i, :, i, :] for i in range(len(y))])


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


MODELS = [("mlp", mlp, (5,)), ("cnn", cnn, (6, 6, 1))]


@pytest.mark.parametrize("name,build,shape", MODELS)
@pytest.mark.parametrize("method", ["forward_over_reverse", "double_backward"])
def test_hessian_matches_jacobian_of_gradient(name, build, shape, method):
    m = build()
    x, y = data(shape)
    ref = dense_hessian(m, ce, x, y)
    for bs in (None, 5) if method == "forward_over_reverse" else (5,):  # 1 batch; 2 of 5 + a remainder of 3
        op = operators.hessian(m, ce, (x, y), batch_size=bs, method=method)
        assert op.shape == ref.shape and op.dtype == tf.float64
        # batched products (vectorized_map) once per model and form; single products otherwise (faster to trace)
        batched = (method == "forward_over_reverse") == (name == "mlp") and bs == (None if name == "mlp" else 5)
        assert rel(op.to_dense(block_size=7 if batched else 1), ref) < 1e-10  # identity I-HVP
        v = np.random.default_rng(2).normal(size=op.size)
        assert rel(op.matvec(v).numpy(), ref @ v) < 1e-10


def test_both_hvp_forms_and_matmat_agree():
    m = mlp()
    x, y = data((5,))
    a = operators.hessian(m, sq, (x, y), method="forward_over_reverse", batch_size=5)  # batched data loop
    b = operators.hessian(m, sq, (x, y), method="double_backward")
    V = np.random.default_rng(3).normal(size=(a.size, 4))
    assert rel(a.matmat(V).numpy(), b.matmat(V).numpy()) < 1e-12
    cols = np.stack([a.matvec(V[:, i]).numpy() for i in range(4)], axis=1)
    assert rel(a.matmat(V).numpy(), cols) < 1e-12
    assert a.num_products == 3 * 4  # two matmats and four matvecs (the construction check is not counted)


def test_weight_decay_shifts_spectrum_by_two_lambda():
    m = mlp()
    x, y = data((5,))
    H0 = operators.hessian(m, ce, (x, y)).to_dense(block_size=1)
    lam = 0.37
    H1 = operators.hessian(m, ce, (x, y), weight_decay=lam).to_dense(block_size=1)
    shift = np.linalg.eigvalsh(H1) - np.linalg.eigvalsh(H0)  # identity I-WD
    np.testing.assert_allclose(shift, 2 * lam, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,build,shape", MODELS)
def test_layer_restriction_is_diagonal_block(name, build, shape):
    m = build()
    x, y = data(shape)
    full = dense_hessian(m, ce, x, y)
    layer = "out"
    vs = params.select_variables(m, layer)
    start = params.num_params(m.trainable_variables) - params.num_params(vs)  # "out" is the last layer
    op = operators.hessian(m, ce, (x, y), variables=layer)
    assert op.size == params.num_params(vs)
    assert rel(op.to_dense(block_size=1), full[start:, start:]) < 1e-10
    op2 = operators.hessian(m, ce, (x, y), variables=vs)
    assert rel(op2.to_dense(block_size=1), full[start:, start:]) < 1e-10


@pytest.mark.parametrize("name,build,shape,loss", [MODELS[0] + (ce,), MODELS[0] + (sq,), MODELS[1] + (ce,)])
def test_gauss_newton_and_residual(name, build, shape, loss):
    m = build()
    x, y = data(shape)
    J, z = jacobians(m, x)
    HL = output_hessians(loss, y, z)
    G_ref = np.einsum("iap,iab,ibq->pq", J, HL, J) / N  # 003 eq. 2
    G = operators.gauss_newton(m, loss, (x, y), batch_size=4).to_dense(block_size=1)
    assert rel(G, G_ref) < 1e-10
    Hres = operators.hessian_residual(m, loss, (x, y), batch_size=6).to_dense(block_size=1)
    Hess = dense_hessian(m, loss, x, y)
    assert rel(G + Hres, Hess) < 1e-10  # Hess = G + H (003 eq. 1-2)


def test_layer_gauss_newton_is_block():
    m = mlp()
    x, y = data((5,))
    G = operators.gauss_newton(m, ce, (x, y)).to_dense(block_size=1)
    Gl = operators.gauss_newton(m, ce, (x, y), variables="d2").to_dense(block_size=1)  # 003 eq. 3
    a = 5 * 6 + 6
    b = a + 6 * 4 + 4
    assert rel(Gl, G[a:b, a:b]) < 1e-10


@pytest.mark.parametrize("name,build,shape", MODELS)
def test_fishers(name, build, shape):
    m = build()
    x, y = data(shape)
    J, z = jacobians(m, x)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    Lam = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])
    F_ref = np.einsum("iap,iab,ibq->pq", J, Lam, J) / N
    F = operators.fisher(m, (x, None), kind="true", batch_size=5).to_dense(block_size=1)
    assert rel(F, F_ref) < 1e-10
    G = operators.gauss_newton(m, ce, (x, y)).to_dense(block_size=1)
    assert rel(F, G) < 1e-10  # true Fisher = GGN for the softmax cross-entropy
    Fg = operators.fisher(m, (x, y), kind="true", likelihood="gaussian").to_dense(block_size=1)
    assert rel(Fg, np.einsum("iap,iaq->pq", J, J) / N) < 1e-10
    vs = [params.tf_variable(v) for v in m.trainable_variables]
    grads = []
    for i in range(N):
        with tf.GradientTape() as tape:
            l = ce(y[i:i + 1], m(x[i:i + 1], training=False))[0]
        grads.append(params.flatten(tape.gradient(l, vs)).numpy())
    g = np.array(grads)
    E = operators.fisher(m, (x, y), kind="empirical", loss_fn=ce, batch_size=4).to_dense(block_size=1)
    assert rel(E, g.T @ g / N) < 1e-10


def test_gradient_and_loss_value():
    m = mlp()
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y), batch_size=4, weight_decay=0.1)
    vs = [params.tf_variable(v) for v in m.trainable_variables]
    with tf.GradientTape() as tape:
        L = tf.reduce_mean(ce(y, m(x))) + 0.1 * tf.add_n([tf.reduce_sum(v ** 2) for v in vs])
    want = params.flatten(tape.gradient(L, vs)).numpy()
    assert rel(op.gradient().numpy(), want) < 1e-12
    assert abs(op.loss_value - float(tf.reduce_mean(ce(y, m(x))))) < 1e-12


def test_inference_mode_with_dropout():
    m = mlp(dropout=True)
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y))  # the construction check passes: dropout is off
    assert rel(op.to_dense(block_size=1), dense_hessian(m, ce, x, y)) < 1e-10


def test_float32_operator_close_to_float64():
    x, y = data((5,))
    m64 = mlp(dtype="float64")
    m32 = mlp(dtype="float32")
    for a, b in zip(m32.trainable_variables, m64.trainable_variables):
        a.assign(b.numpy().astype(np.float32))
    H64 = operators.hessian(m64, ce, (x, y)).to_dense(block_size=1)
    op32 = operators.hessian(m32, ce, (x, y))
    assert op32.dtype == tf.float32
    H32 = op32.to_dense(block_size=1)
    assert H32.dtype == np.float32 and rel(H32.astype(np.float64), H64) < 1e-4


def test_scipy_view_and_dense_into_memmap(tmp_path):
    m = mlp()
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y))
    ref = op.to_dense(block_size=1)
    lo = op.as_linear_operator()
    v = np.random.default_rng(4).normal(size=op.size)
    assert lo.shape == op.shape
    assert rel(lo.matvec(v), ref @ v) < 1e-12 and rel(lo @ np.eye(op.size)[:, :3], ref[:, :3]) < 1e-12
    mm = np.lib.format.open_memmap(tmp_path / "h.npy", mode="w+", dtype=np.float64, shape=op.shape)
    op.to_dense(max_bytes=op.size * 8 * 8 * 6, out=mm)  # a cap that allows only a few columns per block
    assert rel(np.asarray(mm), ref) < 1e-14
    with pytest.raises(ValueError, match="max_bytes"):
        op.to_dense(max_bytes=1000)


def test_dense_and_function_operators():
    A = np.random.default_rng(5).normal(size=(9, 9))
    A = A + A.T
    op = operators.DenseOperator(A)
    np.testing.assert_allclose(op.to_dense(block_size=1), A)
    fop = operators.FunctionOperator(lambda V: tf.matmul(V, tf.constant(A), transpose_b=True), 9)
    v = np.arange(9.0)
    np.testing.assert_allclose((fop @ v).numpy(), A @ v)
    np.testing.assert_allclose((fop @ np.eye(9)[:, :2]).numpy(), A[:, :2])
    assert fop.num_products == 3
    with pytest.raises(TypeError, match="callable"):
        operators.FunctionOperator("not a function", 3)
    with pytest.raises(ValueError, match="square"):
        operators.DenseOperator(np.zeros((3, 4)))


def test_error_paths():
    m = mlp()
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y))
    with pytest.raises(ValueError, match=f"shape \\({op.size},\\)"):
        op.matvec(np.zeros(op.size + 1))
    with pytest.raises(ValueError, match="k\\)"):
        op.matmat(np.zeros((op.size - 1, 2)))
    with pytest.raises(ValueError, match="empty"):
        operators.hessian(m, ce, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="x has 13 examples but y has 12"):
        operators.hessian(m, ce, (x, y[:-1]))
    with pytest.raises(ValueError, match="no layer .*'conv9'"):
        operators.hessian(m, ce, (x, y), variables="conv9")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        operators.hessian(m, ce, (bad, y))
    with pytest.raises(ValueError, match="one value per example"):
        operators.hessian(m, lambda yt, z: tf.reduce_mean(ce(yt, z)), (x, y))
    with pytest.raises(ValueError, match="method"):
        operators.hessian(m, ce, (x, y), method="finite_differences")
    with pytest.raises(ValueError, match="weight_decay"):
        operators.hessian(m, ce, (x, y), weight_decay=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        operators.hessian(m, ce, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="kind"):
        operators.fisher(m, (x, y), kind="fake")
    with pytest.raises(ValueError, match="loss_fn"):
        operators.fisher(m, (x, y), kind="empirical")
    with pytest.raises(TypeError, match="loss_fn"):
        operators.hessian(m, None, (x, y))


class _Noisy(keras.layers.Layer):
    """A layer that adds noise whatever the training flag says (a broken 'inference mode')."""

    def call(self, inputs):
        return inputs + 0.1 * tf.random.normal(tf.shape(inputs), dtype=inputs.dtype)


def test_nondeterministic_model_is_reported():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="float64")
    h = _Noisy(dtype="float64")(keras.layers.Dense(4, activation="tanh", dtype="float64")(inp))
    m = keras.Model(inp, keras.layers.Dense(C, dtype="float64")(h))
    x, y = data((5,))
    with pytest.raises(ValueError, match="not deterministic"):
        operators.hessian(m, ce, (x, y))


# ----------------------------------------------------------------------------- no silent wrong answers
def _small_net(softmax=False, seed=0):
    import keras

    inputs = keras.Input(shape=(4,), dtype="float64")
    h = keras.layers.Dense(5, activation="tanh", dtype="float64")(inputs)
    out = keras.layers.Dense(3, activation="softmax" if softmax else None, dtype="float64")(h)
    return keras.Model(inputs, out)


def _xy(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_softmax_outputs_are_refused_where_logits_are_expected():
    from helpers import losses, operators

    x, y = _xy()
    net = _small_net(softmax=True)
    with pytest.raises(ValueError, match="softmax probabilities"):
        operators.hessian(net, losses.cross_entropy, (x, y))
    with pytest.raises(ValueError, match="softmax probabilities"):
        operators.fisher(net, (x, None), kind="true")
    operators.hessian(_small_net(), losses.cross_entropy, (x, y))  # logits are fine


def test_labels_out_of_range_or_nan_are_refused():
    from helpers import losses, models, operators, training

    x, y = _xy()
    net = _small_net()
    for bad in (np.r_[y[:-1], 7], np.r_[y[:-1], -1], np.r_[y[:-1], np.nan].astype(float)):
        with pytest.raises(ValueError, match="labels"):
            operators.hessian(net, losses.cross_entropy, (x, bad))
    mlp = models.mlp((4,), (5,), num_classes=3, seed=0)
    with pytest.raises(ValueError, match="labels must lie in"):
        training.train_sgd(mlp, losses.cross_entropy, (x.astype(np.float32), np.r_[y[:-1], 7]), epochs=1,
                           batch_size=4, lr=0.1)


def test_non_symmetric_operators_and_non_finite_vectors_are_refused():
    from helpers import operators

    A = np.arange(9.0).reshape(3, 3)
    with pytest.raises(ValueError, match="not symmetric"):
        operators.DenseOperator(A)
    with pytest.raises(ValueError, match="not symmetric"):
        operators.FunctionOperator(lambda V: tf.matmul(V, tf.constant(A), transpose_b=True), 3)
    op = operators.DenseOperator(A + A.T)
    with pytest.raises(ValueError, match="NaN"):
        op.matvec(np.array([1.0, np.nan, 0.0]))


def test_loss_argument_order_and_reduction_get_clear_messages():
    import keras

    from helpers import operators

    x, y = _xy()
    net = _small_net()

    def swapped(logits, labels):  # (y_pred, y_true): the wrong order
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    with pytest.raises(ValueError, match=r"loss\(y_true, y_pred\)"):
        operators.hessian(net, swapped, (x, y))
    reduced = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match="reduction=None"):
        operators.hessian(net, reduced, (x, y))


def test_operators_accept_datasets_and_give_the_gradient():
    from helpers import data as hdata
    from helpers import losses, operators

    x, y = _xy()
    net = _small_net()
    v = np.random.default_rng(1).standard_normal(sum(int(np.prod(w.shape)) for w in net.trainable_variables))
    ref = operators.hessian(net, losses.cross_entropy, (x, y)).matvec(v).numpy()
    ds = hdata.Dataset(x, y, x[:2], y[:2], 3, "toy", {})
    ref32 = operators.hessian(net, losses.cross_entropy, (x.astype(np.float32), y)).matvec(v).numpy()
    np.testing.assert_allclose(operators.hessian(net, losses.cross_entropy, ds).matvec(v).numpy(), ref32,
                               rtol=1e-12)  # a Dataset holds float32 inputs
    tfds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    np.testing.assert_allclose(operators.hessian(net, losses.cross_entropy, tfds).matvec(v).numpy(), ref,
                               rtol=1e-12)
    g = operators.gradient(net, losses.cross_entropy, (x, y)).numpy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.cross_entropy(y, net(x)))
    direct = np.concatenate([t.numpy().ravel() for t in tape.gradient(loss, net.trainable_variables)])
    np.testing.assert_allclose(g, direct, rtol=1e-12)
    with pytest.raises(TypeError, match="data=\\(x, y\\)"):
        operators.hessian(net, losses.cross_entropy, x)
