"""helpers.hessian_tools: eigenvector-versus-weight tools, plain Lanczos, cached training."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import hessian_tools as ht
from helpers import losses, models, params


def _model(seed=0, dtype="float64"):
    return models.mlp(6, hidden=(5, 4), num_classes=3, seed=seed, dtype=dtype)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.integers(0, 3, size=n)


def test_layer_slices_cover_the_flat_vector():
    m = _model()
    sl = ht.layer_slices(m)
    assert list(sl) == ["dense_1", "dense_2", "dense_3"]
    assert sl["dense_1"].start == 0 and sl["dense_3"].stop == params.num_params(m.trainable_variables)
    for name, s in sl.items():
        assert s.stop - s.start == params.num_params(params.select_variables(m, name))
    flat = params.get_flat(m.trainable_variables).numpy()
    kernel = params.tf_variable(params.select_variables(m, "dense_2")[0]).numpy()
    assert np.array_equal(flat[sl["dense_2"]][: kernel.size], kernel.ravel())


def test_weight_product_and_concentration_on_an_orthonormal_basis():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    w = rng.normal(size=20)
    wp = ht.weight_product(Q, w)
    assert abs(np.sum(wp ** 2) - 1.0) < 1e-12
    conc = ht.layer_concentration(Q, {"a": slice(0, 5), "b": slice(5, 20)})
    assert np.allclose(conc["a"] + conc["b"], 1.0)
    with pytest.raises(ValueError, match="P = len"):
        ht.weight_product(Q[:5], w)


def test_accumulation_recovers_the_network_and_empty_network():
    m = _model(2)
    x, y = _data()
    P = params.num_params(m.trainable_variables)
    Q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(P, P)))
    full_loss = float(tf.reduce_mean(losses.cross_entropy(y, m(x))))
    l_k, a_k = ht.accumulation_curve(m, losses.cross_entropy, x, y, Q, [0, P])
    assert abs(l_k[1] - full_loss) < 1e-10
    assert abs(l_k[0] - np.log(3)) < 1e-12  # all weights zero: uniform softmax
    # the model keeps its weights afterwards
    assert abs(float(tf.reduce_mean(losses.cross_entropy(y, m(x)))) - full_loss) < 1e-14
    assert abs(ht.loss_along(m, losses.cross_entropy, x, y, Q[:, 0], [0.0])[0] - full_loss) < 1e-12


def test_singular_matrix_overlaps_identity():
    rng = np.random.default_rng(4)
    W = rng.normal(size=(5, 3))
    U, nu, Vt = np.linalg.svd(W, full_matrices=False)
    mats = np.stack([np.outer(U[:, j], Vt[j]).ravel() for j in range(3)], axis=1)
    nu2, F = ht.singular_matrix_overlaps(W, mats)
    assert np.allclose(nu2, nu) and np.allclose(F, np.eye(3), atol=1e-12)


def test_embed_and_max_overlaps():
    V = np.eye(3)
    E = ht.embed_layer_vectors(V, slice(2, 5), 6)
    assert E.shape == (6, 3) and np.array_equal(E[2:5], V)
    assert np.allclose(ht.max_overlaps(E, np.eye(6)), 1.0)
    with pytest.raises(ValueError, match="parameters"):
        ht.embed_layer_vectors(V, slice(0, 2), 6)


def test_lanczos_plain_with_and_without_reorthogonalisation():
    rng = np.random.default_rng(5)
    lam = np.r_[np.linspace(0, 1, 300), [5.0, 4.0, 3.0]]
    Q, _ = np.linalg.qr(rng.normal(size=(303, 303)))
    A = (Q * lam) @ Q.T
    v0 = rng.normal(size=303)
    ritz, loss = ht.lanczos_plain(lambda v: A @ v, v0, 80, reorthogonalize=True)
    assert loss < 1e-12
    assert np.allclose(np.sort(ritz)[-3:], [3.0, 4.0, 5.0], atol=1e-10)
    ritz_p, loss_p = ht.lanczos_plain(lambda v: A @ v, v0, 80, reorthogonalize=False)
    assert loss_p > 1e-3  # orthogonality is lost once the top eigenvalues converge
    assert np.sum(np.abs(ritz_p - 5.0) < 1e-8) >= 2  # a ghost copy of the largest eigenvalue
    with pytest.raises(ValueError, match="num_steps"):
        ht.lanczos_plain(lambda v: A @ v, v0, 0)


def test_train_cached_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path))
    x, y = _data(64, 6)
    x = x.astype(np.float32)
    build = lambda: _model(7, "float32")
    kw = dict(epochs=3, batch_size=16, lr=0.1, seed=1)
    m1, r1 = ht.train_cached("t", build, (x, y), {"k": 1}, kw, snapshot_epochs=[0, 2])
    m2, r2 = ht.train_cached("t", build, (x, y), {"k": 1}, kw, snapshot_epochs=[0, 2])
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        assert np.array_equal(a, b)
    assert set(r2["snapshots"]) == {0, 2}
    for a, b in zip(r2["snapshots"][0], build().get_weights()):
        assert np.array_equal(a, b)
    assert len(r2["history"]["loss"]) == 3 and r2["seconds"] == r1["seconds"]


def test_accumulated_weights_and_correct_predictions_match_the_accumulation_curve():
    m = _model()
    x, y = _data()
    rng = np.random.default_rng(4)
    P = params.num_params(m.trainable_variables)
    V = np.linalg.qr(rng.normal(size=(P, P)))[0]
    w = params.get_flat(m.trainable_variables).numpy()
    order = rng.permutation(P)
    assert np.allclose(ht.accumulated_weights(V, w, P, order), w)
    assert np.allclose(ht.accumulated_weights(V, w, 0), 0.0)
    wk = ht.accumulated_weights(V, w, 7, order)
    _, acc = ht.accumulation_curve(m, losses.cross_entropy, x, y, V, [7], order=order, w=w)
    ok = ht.correct_predictions(m, x, y, wk)
    assert ok.dtype == bool and ok.shape == (len(y),) and ok.mean() == pytest.approx(acc[0])
    assert np.allclose(params.get_flat(m.trainable_variables).numpy(), w)  # weights restored


def test_paired_accuracy_difference_and_its_standard_error():
    a = np.array([1, 1, 1, 0, 1, 0, 1, 1], bool)
    b = np.array([1, 0, 1, 0, 1, 1, 0, 1], bool)
    d = a.astype(float) - b
    diff, se = ht.paired_accuracy_difference(a, b)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert se == pytest.approx(np.std(d, ddof=1) / np.sqrt(len(d)))
    assert ht.paired_accuracy_difference(a, a) == (0.0, 0.0)


def test_accumulation_helpers_check_their_arguments():
    m = _model()
    x, y = _data()
    with pytest.raises(ValueError, match="k must be"):
        ht.accumulated_weights(np.eye(3), np.ones(3), 4)
    with pytest.raises(ValueError, match="vectors must be"):
        ht.accumulated_weights(np.eye(3), np.ones(4), 1)
    with pytest.raises(ValueError, match="entries"):
        ht.correct_predictions(m, x, y, np.zeros(3))
    with pytest.raises(ValueError, match="same length"):
        ht.paired_accuracy_difference([True, False], [True])


def test_value_at_loss_interpolates_at_the_first_crossing_on_log_scales():
    losses_ = [2.0, 1.0, 0.1, 0.3, 0.01]
    values = [10.0, 100.0, 1000.0, 5.0, 1.0]
    # the first crossing of 0.316 lies between 1.0 and 0.1: half way in log loss, so half way in log value
    assert ht.value_at_loss(losses_, values, 10 ** -0.5) == pytest.approx(10 ** 2.5)
    assert ht.value_at_loss(losses_, values, 0.1) == pytest.approx(1000.0)  # a recorded point
    assert ht.value_at_loss(losses_, values, 5.0) == 10.0  # starts below the target
    assert np.isnan(ht.value_at_loss(losses_, values, 1e-3))  # never gets there
    for bad in (dict(losses=[1.0], values=[1.0, 2.0]), dict(losses=[1.0, -1.0], values=[1.0, 2.0]),
                dict(losses=[], values=[])):
        with pytest.raises(ValueError, match="losses"):
            ht.value_at_loss(bad["losses"], bad["values"], 0.5)
    with pytest.raises(ValueError, match="target"):
        ht.value_at_loss(losses_, values, 0.0)


def test_trace_and_loss_matches_the_estimators_and_evaluate_at_each_snapshot():
    from helpers import estimators, operators, training

    model = _model()
    x, y = _data()
    op = operators.hessian(model, losses.cross_entropy, (x, y))
    first = model.get_weights()
    second = [w * 0.5 for w in first]
    traces, values = ht.trace_and_loss(model, op, [first, second], losses.cross_entropy, x, y, 12, seed=3)
    assert traces.shape == values.shape == (2,)
    assert traces[1] == pytest.approx(estimators.hutchinson_trace(op, 12, seed=3).value, rel=1e-12)
    model.set_weights(first)  # the model kept the last snapshot; now check the first one
    assert traces[0] == pytest.approx(estimators.hutchinson_trace(op, 12, seed=3).value, rel=1e-12)
    assert values[0] == pytest.approx(training.evaluate(model, losses.cross_entropy, x, y)[0], rel=1e-12)
    pp, _ = ht.trace_and_loss(model, op, [first], losses.cross_entropy, x, y, 51, "hutch++", seed=3)
    assert pp[0] == pytest.approx(estimators.hutchpp_trace(op, 51, seed=3).value, rel=1e-12)
    with pytest.raises(ValueError, match="estimator"):
        ht.trace_and_loss(model, op, [first], losses.cross_entropy, x, y, estimator="exact")
    with pytest.raises(ValueError, match="snapshots"):
        ht.trace_and_loss(model, op, [], losses.cross_entropy, x, y)
    bigger = models.mlp(6, hidden=(9, 9), num_classes=3, seed=0, dtype="float64")
    big_op = operators.hessian(bigger, losses.cross_entropy, (x, y))
    with pytest.raises(ValueError, match="same model"):
        ht.trace_and_loss(model, big_op, [first], losses.cross_entropy, x, y)
