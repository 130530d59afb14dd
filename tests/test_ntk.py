"""helpers.ntk against direct per-example computations in float64 (one tape per example), on a small MLP
and a small CNN; the Fisher-trace identity 004 eq. 5.1.2 (I-FISHERNTK) for several losses; error paths."""
import helpers  # noqa: F401
import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ntk, operators, params
from test_operators import C, N, ce, cnn, data, mlp, sq


def mean_power4(y, z):
    return tf.reduce_mean((z - tf.one_hot(tf.cast(y, tf.int32), z.shape[-1], dtype=z.dtype)) ** 4, axis=-1)


def l3_norm(y, z):
    d = z - tf.one_hot(tf.cast(y, tf.int32), z.shape[-1], dtype=z.dtype)
    return tf.reduce_sum(tf.abs(d) ** 3, axis=-1) ** (1.0 / 3.0)


def direct(model, x, y=None, loss=None):
    vs = [params.tf_variable(v) for v in model.trainable_variables]
    grads, jacs = [], []
    for i in range(len(x)):
        with tf.GradientTape(persistent=True) as tape:
            z = model(x[i:i + 1], training=False)
            l = loss(y[i:i + 1], z)[0] if loss is not None else None
            outs = [z[0, c] for c in range(z.shape[1])]
        if loss is not None:
            grads.append(params.flatten(tape.gradient(l, vs)).numpy())
        jacs.append(np.stack([params.flatten(tape.gradient(o, vs)).numpy() for o in outs]))
    return np.array(grads), np.array(jacs)


MODELS = [(mlp, (5,)), (cnn, (6, 6, 1))]


@pytest.fixture(scope="module")
def small():
    """One MLP shared by the tests below (its traced per-example functions are reused)."""
    return mlp(), data((5,))


@pytest.mark.parametrize("build,shape", MODELS)
def test_per_example_gradients_and_jacobians(build, shape):
    m = build()
    x, y = data(shape)
    g_ref, j_ref = direct(m, x, y, ce)
    g = ntk.per_example_gradients(m, ce, x, y, batch_size=5).numpy()
    assert g.shape == (N, params.num_params(m.trainable_variables))
    np.testing.assert_allclose(g, g_ref, atol=1e-12)
    J = ntk.per_example_jacobians(m, x, batch_size=4).numpy()
    assert J.shape == (N, C, g.shape[1])
    np.testing.assert_allclose(J, j_ref, atol=1e-12)
    # restricted to one layer: the matching columns
    gl = ntk.per_example_gradients(m, ce, x, y, variables="out").numpy()
    np.testing.assert_allclose(gl, g_ref[:, -gl.shape[1]:], atol=1e-12)


def test_empirical_ntk_modes(small):
    m, (x, _) = small
    _, J = direct(m, x)
    full = ntk.empirical_ntk(m, x, batch_size=5).numpy()
    np.testing.assert_allclose(full, np.einsum("iap,jbp->ijab", J, J), atol=1e-12)
    tr = ntk.empirical_ntk(m, x[:4], x[4:], mode="trace").numpy()
    np.testing.assert_allclose(tr, np.einsum("iap,jap->ij", J[:4], J[4:]), atol=1e-12)
    diag = ntk.empirical_ntk(m, x, mode="diagonal", batch_size=6).numpy()
    np.testing.assert_allclose(diag, np.einsum("iap,ibp->iab", J, J), atol=1e-12)
    np.testing.assert_allclose(ntk.ntk_trace(m, x, batch_size=5), (J ** 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(ntk.ntk_trace(m, x, reduction="mean"), (J ** 2).sum() / N, rtol=1e-12)
    # symmetric positive semi-definite kernel
    K = full.transpose(0, 2, 1, 3).reshape(N * C, N * C)
    np.testing.assert_allclose(K, K.T, atol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-10


def test_automatic_batches_match_the_dense_reference(small, monkeypatch):
    """batch_size=None takes all examples at once when they fit, and splits them when BATCH_BYTES is small."""
    m, (x, y) = small
    g_ref, J = direct(m, x, y, ce)
    P = J.shape[2]
    for budget in (ntk.BATCH_BYTES, 3 * C * P * 8):  # all N examples in one batch; batches of 3
        monkeypatch.setattr(ntk, "BATCH_BYTES", budget)
        np.testing.assert_allclose(ntk.empirical_ntk(m, x).numpy(), np.einsum("iap,jbp->ijab", J, J), atol=1e-12)
        np.testing.assert_allclose(ntk.empirical_ntk(m, x, x[:4], mode="trace").numpy(),
                                   np.einsum("iap,jap->ij", J, J[:4]), atol=1e-12)
        np.testing.assert_allclose(ntk.ntk_trace(m, x), (J ** 2).sum(), rtol=1e-12)
        np.testing.assert_allclose(ntk.per_example_gradients(m, ce, x, y).numpy(), g_ref, atol=1e-12)
        np.testing.assert_allclose(ntk.fisher_trace(m, ce, x, y), (g_ref ** 2).sum() / N, rtol=1e-12)
    assert ntk._check_batch(None, N, C * P, tf.float64) == 3  # (the budget of the last round)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer or None"):
            ntk.empirical_ntk(m, x, batch_size=bad)


@pytest.mark.parametrize("loss", [ce, sq, mean_power4, l3_norm])
def test_fisher_trace_identity(small, loss):
    m, (x, y) = small
    g, _ = direct(m, x, y, loss)
    want = (g ** 2).sum(1).mean()  # 004 eq. 5.1.3
    a = ntk.fisher_trace(m, loss, x, y, batch_size=5)
    b = ntk.fisher_trace_via_ntk(m, loss, x, y, batch_size=6)  # 004 eq. 5.1.2
    assert abs(a - want) <= 1e-12 * want
    assert abs(b - a) <= 1e-6 * a  # identity I-FISHERNTK


def test_fisher_trace_equals_empirical_fisher_operator_trace():
    m = cnn()
    x, y = data((6, 6, 1))
    op = operators.fisher(m, (x, y), kind="empirical", loss_fn=ce)
    np.testing.assert_allclose(np.trace(op.to_dense(block_size=1)), ntk.fisher_trace(m, ce, x, y), rtol=1e-10)


def test_output_gradients(small):
    m, (x, y) = small
    z = tf.constant(m(x, training=False))
    with tf.GradientTape() as tape:
        tape.watch(z)
        L = tf.reduce_sum(ce(y, z))
    np.testing.assert_allclose(ntk.output_gradients(m, ce, x, y).numpy(), tape.gradient(L, z).numpy(), atol=1e-14)


def test_error_paths(small):
    m, (x, y) = small
    with pytest.raises(ValueError, match="empty"):
        ntk.per_example_gradients(m, ce, x[:0], y[:0])
    with pytest.raises(ValueError, match="one entry per example"):
        ntk.per_example_gradients(m, ce, x, y[:3])
    with pytest.raises(ValueError, match="mode"):
        ntk.empirical_ntk(m, x, mode="nope")
    with pytest.raises(ValueError, match="x2=None"):
        ntk.empirical_ntk(m, x, x, mode="diagonal")
    with pytest.raises(ValueError, match="no layer"):
        ntk.per_example_jacobians(m, x, variables="missing")
    with pytest.raises(ValueError, match="batch_size"):
        ntk.fisher_trace(m, ce, x, y, batch_size=0)
    bad = x.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        ntk.per_example_gradients(m, ce, bad, y)


def test_fisher_trace_from_ntk_blocks_on_numbers():
    # two examples, two outputs, three parameters, typed in: J_i rows are the output gradients
    J = np.array([[[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], [[3.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    d = np.array([[0.5, -1.0], [2.0, 0.25]])
    g = np.einsum("ia,iap->ip", d, J)  # chain rule: per-example parameter gradients
    want = (g ** 2).sum(1).mean()      # 004 eq. 5.1.3
    blocks = np.einsum("iap,ibp->iab", J, J)
    assert ntk.fisher_trace_from_ntk_blocks(d, blocks) == pytest.approx(want, rel=1e-14)
    per = ntk.fisher_trace_from_ntk_blocks(tf.constant(d, tf.float32), blocks, per_example=True).numpy()
    np.testing.assert_allclose(per, (g ** 2).sum(1), rtol=1e-6)


def test_fisher_trace_from_ntk_blocks_on_a_network(small):
    m, (x, y) = small
    d = ntk.output_gradients(m, mean_power4, x, y)
    blocks = ntk.empirical_ntk(m, x, mode="diagonal")
    g, _ = direct(m, x, y, mean_power4)
    assert ntk.fisher_trace_from_ntk_blocks(d, blocks) == pytest.approx((g ** 2).sum(1).mean(), rel=1e-10)


def test_ntk_trace_function(small):
    m, (x, _) = small
    _, J = direct(m, x)
    np.testing.assert_allclose(ntk.ntk_trace_function(m)(tf.constant(x)).numpy(), (J ** 2).sum((1, 2)), rtol=1e-12)


def test_fisher_trace_from_ntk_blocks_errors():
    d, L = np.ones((2, 3)), np.tile(np.eye(3), (2, 1, 1))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        ntk.fisher_trace_from_ntk_blocks(np.ones(3), L)
    with pytest.raises(ValueError, match=r"\(N, C, C\) = \(2, 3, 3\)"):
        ntk.fisher_trace_from_ntk_blocks(d, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="symmetric"):
        ntk.fisher_trace_from_ntk_blocks(d, np.triu(np.ones((2, 3, 3))))
    with pytest.raises(ValueError, match="NaN or inf"):
        ntk.fisher_trace_from_ntk_blocks(np.full((2, 3), np.nan), L)
    with pytest.raises(TypeError, match="real numbers"):
        ntk.fisher_trace_from_ntk_blocks(np.array([["a", "b", "c"]] * 2), L)
    with pytest.raises(TypeError, match="per-example loss"):
        ntk.gradient_function(mlp(), None)
    with pytest.raises(TypeError, match="per-example loss"):
        ntk.gradient_norm_function(mlp(), None)
    with pytest.raises(TypeError, match="per-example loss"):
        ntk.fisher_trace(mlp(), None, np.ones((2, 5)), np.zeros(2))


# ---- the dense-chain factorisation (exact, for models that provably are chains of Dense layers) ----------

def chain_models():
    """Dense chains of several forms: with Dropout, linear hidden and output layers, one layer, a Flatten prefix
    (helpers.models.mlp on 2-D inputs) with ReLU units, a Sequential model with an Activation layer, a layer without
    bias and a non-linear output."""
    from helpers import models
    keras.utils.set_random_seed(3)
    seq = keras.Sequential([keras.Input((5,), dtype="float64"),
                            keras.layers.Dense(7, use_bias=False, dtype="float64"),
                            keras.layers.Activation("sigmoid", dtype="float64"),
                            keras.layers.Dense(C, activation="softplus", dtype="float64", name="out")])
    inp = keras.Input((5,), dtype="float64")
    linear = keras.Model(inp, keras.layers.Dense(C, dtype="float64")(keras.layers.Dense(4, dtype="float64")(inp)))
    inp = keras.Input((5,), dtype="float64")
    one = keras.Model(inp, keras.layers.Dense(C, dtype="float64")(inp))
    return [("mlp", mlp(), (5,)), ("mlp+dropout", mlp(dropout=True), (5,)),
            ("linear layers", linear, (5,)), ("one layer", one, (5,)),
            ("models.mlp relu", models.mlp((5, 1), hidden=(6, 4), num_classes=C, seed=2, dtype="float64"), (5, 1)),
            ("sequential", seq, (5,))]


def all_quantities(m, x, y, variables=None):
    return {"full": ntk.empirical_ntk(m, x, variables=variables).numpy(),
            "pair full": ntk.empirical_ntk(m, x[:4], x[4:], variables=variables).numpy(),
            "pair trace": ntk.empirical_ntk(m, x[:4], x[4:], mode="trace", variables=variables).numpy(),
            "self trace": ntk.empirical_ntk(m, x, mode="trace", variables=variables).numpy(),
            "chunked full": ntk.empirical_ntk(m, x, variables=variables, batch_size=5).numpy(),
            "diagonal": ntk.empirical_ntk(m, x, mode="diagonal", variables=variables).numpy(),
            "ntk_trace": ntk.ntk_trace(m, x, variables=variables),
            "jacobians": ntk.per_example_jacobians(m, x, variables=variables).numpy(),
            "one example": ntk.per_example_jacobians(m, x[:1], variables=variables).numpy(),  # a batch of one
            "gradients": ntk.per_example_gradients(m, ce, x, y, variables=variables).numpy(),
            "fisher": ntk.fisher_trace(m, ce, x, y, variables=variables),
            "fisher via ntk": ntk.fisher_trace_via_ntk(m, ce, x, y, variables=variables),
            "trace function": ntk.ntk_trace_function(m, variables)(tf.constant(x)).numpy(),
            "gradient function": ntk.gradient_function(m, ce, variables)(tf.constant(x), tf.constant(y)).numpy(),
            "gradient norms": ntk.gradient_norm_function(m, ce, variables)(tf.constant(x), tf.constant(y)).numpy()}


def reference(g, J, n_pair=4):
    return {"full": np.einsum("iap,jbp->ijab", J, J), "pair full": np.einsum("iap,jbp->ijab", J[:n_pair], J[n_pair:]),
            "pair trace": np.einsum("iap,jap->ij", J[:n_pair], J[n_pair:]), "self trace": np.einsum("iap,jap->ij", J, J),
            "chunked full": np.einsum("iap,jbp->ijab", J, J), "diagonal": np.einsum("iap,ibp->iab", J, J),
            "ntk_trace": (J ** 2).sum(), "jacobians": J, "one example": J[:1], "gradients": g, "fisher": (g ** 2).sum(1).mean(),
            "fisher via ntk": (g ** 2).sum(1).mean(), "trace function": (J ** 2).sum((1, 2)), "gradient function": g,
            "gradient norms": (g ** 2).sum(1)}


@pytest.mark.parametrize("name", [c[0] for c in chain_models()])
def test_dense_chain_matches_the_dense_reference_and_the_generic_path(name, monkeypatch):
    _, m, shape = next(c for c in chain_models() if c[0] == name)
    x, y = data(shape)
    vs = [params.tf_variable(v) for v in m.trainable_variables]
    assert ntk._dense_chain(m, vs, vs[0].dtype) is not None  # the fast path applies
    g, J = direct(m, x, y, ce)
    fast, want = all_quantities(m, x, y), reference(g, J)
    monkeypatch.setattr(ntk, "USE_DENSE_CHAIN", False)
    assert ntk._dense_chain(m, vs, vs[0].dtype) is None
    generic = all_quantities(m, x, y)
    for key in want:
        np.testing.assert_allclose(fast[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(generic[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)


def columns(m, chosen):
    """The flat columns of the chosen variables in the order of all trainable variables."""
    sizes = [int(np.prod(v.shape)) for v in m.trainable_variables]
    starts = np.cumsum([0] + sizes)
    pos = {id(v): np.arange(s, s + n) for v, s, n in zip(m.trainable_variables, starts, sizes)}
    return np.concatenate([pos[id(v)] for v in chosen])


def test_dense_chain_on_a_subset_of_variables(small):
    m, (x, y) = small
    g, J = direct(m, x, y, ce)
    d1, out = m.get_layer("d1"), m.get_layer("out")
    for variables in ("d2", ["out", "d1"], [d1.bias, d1.kernel, out.bias], [out.bias, out.bias]):
        chosen = variables if isinstance(variables[0], keras.Variable) else params.select_variables(m, variables)
        vs = [params.tf_variable(v) for v in chosen]
        assert ntk._dense_chain(m, vs, vs[0].dtype) is not None
        idx = columns(m, chosen)
        got, want = all_quantities(m, x, y, variables), reference(g[:, idx], J[:, :, idx])
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=f"{variables}: {key}")


class ScaledDense(keras.layers.Dense):
    """A Dense subclass whose call differs: the fast path must not take it for a Dense layer."""

    def call(self, inputs, training=None):
        return 2.0 * super().call(inputs)


def not_chains():
    """Models the factorisation must leave to the generic path (each differs from a dense chain in one way)."""
    f64 = "float64"
    keras.utils.set_random_seed(4)
    out = []
    inp = keras.Input((5,), dtype=f64)
    out.append(("subclassed Dense", keras.Model(inp, ScaledDense(C, dtype=f64)(keras.layers.Dense(4, "tanh", dtype=f64)(inp)))))
    inp = keras.Input((5,), dtype=f64)
    out.append(("softmax output", keras.Model(inp, keras.layers.Dense(C, "softmax", dtype=f64)(inp))))
    inp = keras.Input((5,), dtype=f64)
    h = keras.layers.LayerNormalization(dtype=f64)(keras.layers.Dense(4, "tanh", dtype=f64)(inp))
    out.append(("layer norm", keras.Model(inp, keras.layers.Dense(C, dtype=f64)(h))))
    inp = keras.Input((5,), dtype=f64)
    shared = keras.layers.Dense(5, "tanh", dtype=f64)
    out.append(("shared layer", keras.Model(inp, keras.layers.Dense(C, dtype=f64)(shared(shared(inp))))))
    inp = keras.Input((5,), dtype=f64)
    h = keras.layers.Dense(5, "tanh", dtype=f64)(inp)
    out.append(("residual", keras.Model(inp, keras.layers.Dense(C, dtype=f64)(keras.layers.Add(dtype=f64)([h, inp])))))
    inner = keras.Sequential([keras.Input((5,), dtype=f64), keras.layers.Dense(4, "tanh", dtype=f64)])
    inp = keras.Input((5,), dtype=f64)
    out.append(("nested model", keras.Model(inp, keras.layers.Dense(C, dtype=f64)(inner(inp)))))
    out.append(("cnn", cnn()))
    return out


@pytest.mark.parametrize("name", [n for n, _ in not_chains()])
def test_models_that_are_not_dense_chains_take_the_generic_path(name):
    m = dict(not_chains())[name]
    shape = (6, 6, 1) if name == "cnn" else (5,)
    x, y = data(shape)
    vs = [params.tf_variable(v) for v in m.trainable_variables]
    assert ntk._dense_chain(m, vs, vs[0].dtype) is None
    g, J = direct(m, x, y, ce)
    got, want = all_quantities(m, x, y), reference(g, J)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_a_variable_outside_the_chain_takes_the_generic_path(small):
    m, (x, _) = small
    extra = tf.Variable(np.ones(2))
    vs = [params.tf_variable(v) for v in m.trainable_variables]
    assert ntk._dense_chain(m, vs + [extra], tf.float64) is None
    J = ntk.per_example_jacobians(m, x, variables=list(m.trainable_variables) + [extra]).numpy()
    _, J_ref = direct(m, x)
    np.testing.assert_allclose(J[:, :, :-2], J_ref, atol=1e-12)
    assert not J[:, :, -2:].any()  # the model does not depend on it


def test_a_loss_without_one_value_per_example_falls_back_to_per_example_tapes(small):
    """The factorisation takes dl_i/df(x_i) from one batched gradient, which needs one loss per example; a loss
    returning a batch mean goes through the generic path, where each example is its own batch of one."""
    m, (x, y) = small
    g, _ = direct(m, x, y, ce)
    mean_ce = lambda y_, z: tf.reduce_mean(ce(y_, z))  # noqa: E731
    np.testing.assert_allclose(ntk.per_example_gradients(m, mean_ce, x, y).numpy(), g, atol=1e-12)
    assert ntk.fisher_trace(m, mean_ce, x, y) == pytest.approx((g ** 2).sum(1).mean(), rel=1e-12)


@pytest.mark.parametrize("chain", [True, False])
def test_repeated_calls_never_retrace(chain, monkeypatch):
    """Every compiled function has a fixed input signature (batch dimension None): after the first call, other
    numbers of examples and repeated calls trace nothing, on both paths."""
    monkeypatch.setattr(ntk, "USE_DENSE_CHAIN", chain)
    m = mlp(seed=5)
    x, y = data((5,))
    for n in (N, 7, N, 3):
        ntk.empirical_ntk(m, x[:n])
        ntk.empirical_ntk(m, x[:n], mode="trace")
        ntk.empirical_ntk(m, x[:n], x[:4])
        ntk.empirical_ntk(m, x[:n], mode="diagonal")
        ntk.ntk_trace(m, x[:n])
        ntk.per_example_gradients(m, ce, x[:n], y[:n])
        ntk.per_example_jacobians(m, x[:n])
        ntk.fisher_trace(m, ce, x[:n], y[:n])
    fns = [f for k, f in m.__dict__["_ntk_fn_cache"].items() if k[0] != "public"]
    assert len(fns) >= 8
    assert all(f.experimental_get_tracing_count() == 1 for f in fns)
