"""helpers.layerwise.curvature_report against dense float64 Hessian blocks (computed here by nested tapes) and
the closed form of a linear layer; every supported layer type, functional / lazily built / nested models,
the refusal of unknown layers, the table and the error paths."""
import helpers  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import eigensolvers, layerwise, weight_spectra
from test_operators import ce, dense_hessian, mlp

D = "float64"


def xy(shape, n=24, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape), rng.integers(0, classes, n)


def block(model, x, y, layer):
    found = {l.name: l for l in layerwise.weight_layers(model)}
    return dense_hessian(model, ce, x, y, variables=list(found[layer].trainable_variables))


def top(H, k):
    return np.linalg.eigvalsh((H + H.T) / 2)[::-1][:k]


def test_every_row_matches_its_dense_hessian_block_iterative_and_exact():
    m = mlp()
    x, y = xy((5,))
    it = layerwise.curvature_report(m, ce, (x, y), top_k=3, trace_probes=60, dense_max=0, tol=1e-10)
    ex = layerwise.curvature_report(m, ce, (x, y), top_k=3)
    assert [r.name for r in it] == ["d1", "d2", "out", layerwise.NETWORK]
    for r_it, r_ex in zip(it, ex):
        H = dense_hessian(m, ce, x, y) if r_it.name == layerwise.NETWORK else block(m, x, y, r_it.name)
        assert r_it.num_params == H.shape[0]
        np.testing.assert_allclose(r_it.eigenvalues, top(H, 3), rtol=1e-8, atol=1e-12)  # Lanczos
        np.testing.assert_allclose(r_ex.eigenvalues, top(H, 3), rtol=1e-10, atol=1e-13)  # dense
        assert r_it.eig_method == "lanczos" and r_ex.eig_method == "dense" and r_it.all_converged
        np.testing.assert_allclose(r_ex.trace, np.trace(H), rtol=1e-10)
        assert r_ex.trace_stderr == 0.0 and r_ex.trace_method == "exact"
        # Hutch++ within 5 of its standard errors (or exact when the sketch spans the block)
        assert abs(r_it.trace - np.trace(H)) <= 5 * r_it.trace_stderr + 1e-9 * abs(np.trace(H))
        assert r_it.num_products > 0


def test_linear_layer_closed_form_with_repeated_eigenvalues():
    """A linear layer z = W^T x + b under 0.5 |z - onehot|^2: Hess = (1/N) sum [x;1][x;1]^T (x) I_C, so every
    eigenvalue of the input Gram matrix appears C times and the trace is C (1/N) sum (|x|^2 + 1)."""
    C, d = 3, 12
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((d,), dtype=D), keras.layers.Dense(C, dtype=D, name="lin")])
    x, y = xy((d,), n=40, classes=C)

    def sq(t, z):
        return 0.5 * tf.reduce_sum((z - tf.one_hot(tf.cast(t, tf.int32), C, dtype=z.dtype)) ** 2, axis=-1)

    xt = np.c_[x, np.ones(len(x))]
    gram = np.linalg.eigvalsh(xt.T @ xt / len(x))[::-1]
    r = layerwise.curvature_report(m, sq, (x, y), top_k=3, dense_max=0, restarts=3, tol=1e-10,
                                   trace_probes=39, include_network=False)["lin"]
    np.testing.assert_allclose(r.eigenvalues, np.full(3, gram[0]), rtol=1e-8)  # the triple top eigenvalue
    assert r.all_converged
    exact = layerwise.curvature_report(m, sq, (x, y), top_k=4, include_network=False)["lin"]
    np.testing.assert_allclose(exact.trace, C * np.mean(np.sum(xt ** 2, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(exact.eigenvalues, np.r_[np.full(3, gram[0]), gram[1]], rtol=1e-10)
    # weight-spectrum metrics are those of chapter 3 on the kernel
    qm = weight_spectra.quality_metrics(np.asarray(m.get_layer("lin").kernel))
    assert exact.weights["stable_rank"] == pytest.approx(qm["stable_rank"], rel=1e-12)


def test_conv_batchnorm_dropout_embedding_lazy_and_nested_models():
    keras.utils.set_random_seed(2)
    # lazily built Sequential (no Input) with Conv2D, BatchNormalization, Dropout, Dense
    lazy = keras.Sequential([keras.layers.Conv2D(3, 3, activation="tanh", dtype=D, name="c2"),
                             keras.layers.BatchNormalization(dtype=D, name="bn"),
                             keras.layers.Dropout(0.3, dtype=D), keras.layers.Flatten(dtype=D),
                             keras.layers.Dense(3, dtype=D, name="head")])
    x, y = xy((6, 6, 1))
    rep = layerwise.curvature_report(lazy, ce, (x, y), top_k=2)
    assert [(r.name, r.layer_type) for r in rep] == [("c2", "Conv2D"), ("bn", "BatchNormalization"),
                                                    ("head", "Dense"), (layerwise.NETWORK, "Model")]
    for name in ("c2", "bn"):
        np.testing.assert_allclose(rep[name].eigenvalues, top(block(lazy, x, y, name), 2), rtol=1e-9, atol=1e-12)
    assert rep["bn"].weights is None and rep["c2"].weights is not None
    # functional Conv1D inside a nested model
    inp = keras.Input((10, 2), dtype=D)
    inner = keras.Sequential([keras.Input((10, 2), dtype=D), keras.layers.Conv1D(4, 3, dtype=D, name="c1"),
                              keras.layers.LayerNormalization(dtype=D, name="ln")], name="inner")
    h = keras.layers.GlobalAveragePooling1D(dtype=D)(inner(inp))
    fm = keras.Model(inp, keras.layers.Dense(3, dtype=D, name="o")(h))
    x1, y1 = xy((10, 2))
    r1 = layerwise.curvature_report(fm, ce, (x1, y1), top_k=2)
    assert [r.name for r in r1][:3] == ["c1", "ln", "o"]
    np.testing.assert_allclose(r1["c1"].eigenvalues, top(block(fm, x1, y1, "c1"), 2), rtol=1e-9, atol=1e-12)
    # Embedding (integer inputs; double-backward products)
    em = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(9, 3, dtype=D, name="emb"),
                           keras.layers.Flatten(dtype=D), keras.layers.Dense(3, dtype=D, name="o")])
    xe = np.random.default_rng(3).integers(0, 9, (20, 5))
    ye = np.random.default_rng(4).integers(0, 3, 20)
    r2 = layerwise.curvature_report(em, ce, (xe, ye), top_k=2, dense_max=0, tol=1e-10)
    H = block(em, xe, ye, "emb")
    np.testing.assert_allclose(r2["emb"].eigenvalues, top(H, 2), rtol=1e-8, atol=1e-12)
    assert r2["emb"].layer_type == "Embedding" and r2["emb"].weights is not None


def test_unknown_layer_is_named_not_skipped():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.s = self.add_weight(shape=(shape[-1],), initializer="ones", dtype=D)

        def call(self, x):
            return x * self.s

    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), dtype=D)
    m = keras.Model(inp, keras.layers.Dense(3, dtype=D, name="o")(Scale(dtype=D, name="scale")(inp)))
    x, y = xy((4,))
    with pytest.raises(ValueError, match=r"'scale' \(Scale\)"):
        layerwise.curvature_report(m, ce, (x, y))
    rep = layerwise.curvature_report(m, ce, (x, y), extra_layer_types=(Scale,), top_k=1)
    assert rep["scale"].weights is None and rep["scale"].num_params == 4


def test_table_dict_repr_and_unconverged_warning():
    m = mlp()
    x, y = xy((5,))
    with pytest.warns(eigensolvers.NotConvergedWarning, match="did not converge"):
        rep = layerwise.curvature_report(m, ce, (x, y), top_k=3, dense_max=0, max_iter=4, tol=1e-12,
                                         trace_probes=6, slq=True, slq_probes=3, slq_steps=5)
    text = str(rep)
    assert "NOT CONVERGED" in text and "d1" in text and layerwise.NETWORK in text
    header, rows = rep.table()
    assert len(rows) == len(rep) == 4 and all(len(r) == len(header) for r in rows)
    cols = rep.to_dict()
    assert cols["eigenvalues"].shape == (4, 3) and not cols["converged"].all()
    assert rep["d1"].density is not None and rep["d1"].density.stderr.shape == rep["d1"].density.grid.shape
    # a budget caps the products of each row
    b = layerwise.curvature_report(m, ce, (x, y), top_k=1, dense_max=0, budget=20, include_network=False)
    assert all(r.num_products <= 20 + 6 for r in b)  # + the operator's own construction check is not counted


def test_argument_errors():
    m = mlp()
    x, y = xy((5,))
    with pytest.raises(TypeError, match="Keras model"):
        layerwise.curvature_report("model", ce, (x, y))
    with pytest.raises(TypeError, match="per-example loss"):
        layerwise.curvature_report(m, None, (x, y))
    with pytest.raises(ValueError, match="top_k"):
        layerwise.curvature_report(m, ce, (x, y), top_k=0)
    with pytest.raises(ValueError, match="trace_method"):
        layerwise.curvature_report(m, ce, (x, y), trace_method="exact")
    with pytest.raises(ValueError, match="no weight layer named"):
        layerwise.curvature_report(m, ce, (x, y), layers=["nope"])
    with pytest.raises(ValueError, match="curvature"):
        layerwise.curvature_report(m, ce, (x, y), curvature="fisher")
    with pytest.raises(TypeError, match="data must be"):
        layerwise.curvature_report(m, ce, x)
    with pytest.raises(ValueError, match="softmax"):
        sm = keras.Sequential([keras.Input((5,), dtype=D), keras.layers.Dense(3, activation="softmax", dtype=D)])
        layerwise.curvature_report(sm, helpers.losses.cross_entropy, (x, y))
