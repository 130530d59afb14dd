"""SGD of 000 eq. 2.5 against a hand-computed NumPy update, recording, seeding, schedules, Adam, errors."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import losses, models, training


def _linear_problem(n=12, d=3, c=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, size=n)
    model = models.mlp(d, hidden=(), num_classes=c, seed=seed, dtype="float64")
    return model, x, y


def test_momentum_update_matches_numpy():
    model, x, y = _linear_problem()
    W, b = [w.copy() for w in model.get_weights()]
    eta, beta, lam, steps = 0.1, 0.9, 0.01, 4
    training.train_sgd(model, losses.mse, (x, y), epochs=steps, batch_size=None, lr=eta, momentum=beta,
                       weight_decay=lam, seed=0)
    Y = np.eye(2)[y]
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    for _ in range(steps):  # full batch: v <- -eta grad + beta v; w <- w + v (000 eq. 2.5)
        f = x @ W + b
        dldf = 2.0 * (f - Y) / (Y.size)  # mean over examples of the mean over the 2 outputs
        gW = x.T @ dldf + 2 * lam * W
        gb = dldf.sum(0) + 2 * lam * b
        vW, vb = -eta * gW + beta * vW, -eta * gb + beta * vb
        W, b = W + vW, b + vb
    got_W, got_b = model.get_weights()
    np.testing.assert_allclose(got_W, W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_b, b, rtol=1e-12, atol=1e-14)


def test_constant_gradient_momentum_limit():
    # I-MOMENTUM on a loss with constant gradient g: the step tends to eta g / (1 - beta) (000 eq. 8.1)
    model, x, y = _linear_problem()
    g = np.array([0.3, -0.7])
    const = tf.constant(g)
    last = model.get_layer("dense_1")
    model_b0 = last.bias.numpy().copy()

    def linear_loss(yt, out):  # per-example g . f with a zero-input model: gradient of the bias is g
        return tf.reduce_sum(out * const, axis=-1)

    xz = np.zeros_like(x)
    h = training.train_sgd(model, linear_loss, (xz, y), epochs=200, batch_size=None, lr=0.01, momentum=0.9, seed=0,
                           record={"layers": "dense_1", "every": "step", "velocities": True})
    v = h["velocities"]["dense_1"][-1][-2:]  # the bias part of the layer vector
    np.testing.assert_allclose(v, -0.01 * g / (1 - 0.9), rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("dense_1").bias.numpy() - model_b0,
                               h["weights"]["dense_1"][-1][-2:] - h["weights"]["dense_1"][0][-2:], rtol=1e-10)


def test_recording_shapes_and_values():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.integers(0, 3, size=40)
    model = models.mlp(5, hidden=(4,), num_classes=3, seed=0)
    h = training.train_sgd(model, losses.cross_entropy, (x, y), epochs=3, batch_size=16, lr=0.1, momentum=0.5,
                           seed=0, record={"layers": ["dense_1", "dense_2"], "every": "step", "velocities": True})
    assert h["steps_per_epoch"] == 3 and h["steps"] == 9
    w, v = h["weights"]["dense_1"], h["velocities"]["dense_1"]
    assert w.shape == (10, 5 * 4 + 4) and v.shape == w.shape and h["weights"]["dense_2"].shape == (10, 4 * 3 + 3)
    final = np.concatenate([t.numpy().ravel() for t in model.get_layer("dense_1").trainable_variables])
    np.testing.assert_array_equal(w[-1], final)
    np.testing.assert_allclose(np.diff(w, axis=0), v[1:], atol=1e-6)
    assert np.all(v[0] == 0)
    h2 = training.train_sgd(model, losses.cross_entropy, (x, y), epochs=3, batch_size=16, lr=0.1, seed=0,
                            record={"layers": "dense_2", "every": "epoch"})
    assert h2["weights"]["dense_2"].shape == (4, 15) and "velocities" not in h2
    h3 = training.train_sgd(model, losses.cross_entropy, (x, y), epochs=3, batch_size=16, lr=0.1, seed=0,
                            record={"layers": "dense_2", "every": 2, "initial": False})
    assert h3["weights"]["dense_2"].shape == (4, 15)  # steps 2, 4, 6, 8


def test_seeded_minibatches():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)).astype(np.float32), rng.integers(0, 2, size=30)
    outs = []
    for s in (0, 0, 1):
        m = models.mlp(4, hidden=(3,), num_classes=2, seed=5)
        training.train_sgd(m, losses.cross_entropy, (x, y), epochs=2, batch_size=7, lr=0.1, seed=s)
        outs.append(m.get_weights()[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def test_extra_loss_equals_weight_decay():
    model_a, x, y = _linear_problem(seed=3)
    model_b, _, _ = _linear_problem(seed=3)
    training.train_sgd(model_a, losses.mse, (x, y), epochs=3, batch_size=4, lr=0.1, weight_decay=0.05, seed=0)
    variables = model_b.trainable_variables
    seen = []

    def extra(step, xb, yb):
        seen.append(step)
        return 0.05 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])

    training.train_sgd(model_b, losses.mse, (x, y), epochs=3, batch_size=4, lr=0.1, extra_loss=extra, seed=0)
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert seen  # traced with the step tensor


def test_history_and_evaluate():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 6)).astype(np.float32), rng.integers(0, 3, size=50)
    model = models.mlp(6, hidden=(8,), num_classes=3, seed=0)
    h = training.train_sgd(model, losses.cross_entropy, (x, y), epochs=4, batch_size=10, lr=0.2, seed=0,
                           eval_data=(x[:20], y[:20]), eval_every=2)
    assert list(h["epoch"]) == [1, 2, 3, 4] and np.isnan(h["loss"][0]) and np.isfinite(h["loss"][1])
    loss, acc = training.evaluate(model, losses.cross_entropy, x, y)
    out = model(x).numpy()
    np.testing.assert_allclose(loss, losses.cross_entropy(y, out).numpy().mean(), rtol=1e-5)
    assert acc == pytest.approx(np.mean(out.argmax(1) == y))
    assert h["loss"][-1] == pytest.approx(loss, rel=1e-6) and "test_acc" in h


def test_schedules():
    s = training.exponential_decay(0.01, 0.99)
    assert s(0) == 0.01 and s(200) == pytest.approx(0.01 * 0.99 ** 200)
    assert 0.00133 < s(200) < 0.00135  # 000 Sec. 5.2: final rate about 0.00134
    p = training.PAPER_SETUPS["resnet20"]["lr"]
    assert (p(0), p(79), p(80), p(119), p(120), p(159)) == (1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5)
    with pytest.raises(ValueError):
        training.piecewise_constant([80], [1e-3])
    with pytest.raises(ValueError):
        training.exponential_decay(0.01, 1.5)


def test_schedule_is_applied():
    model, x, y = _linear_problem()
    h = training.train_sgd(model, losses.mse, (x, y), epochs=3, batch_size=None, lr=training.exponential_decay(0.1, 0.5))
    np.testing.assert_allclose(h["lr"], [0.1, 0.05, 0.025])


def test_adam_first_step_is_lr_times_sign():
    model, x, y = _linear_problem(seed=6)
    w0 = [w.copy() for w in model.get_weights()]
    training.train_adam(model, losses.mse, (x, y), epochs=1, batch_size=None, lr=1e-3, seed=0)
    for a, b in zip(model.get_weights(), w0):
        np.testing.assert_allclose(np.abs(a - b), 1e-3, rtol=1e-4)


def test_divergence_raises():
    model, x, y = _linear_problem()
    with pytest.raises(training.TrainingDiverged, match=r"epoch \d+.*smaller learning rate") as err:
        training.train_sgd(model, losses.mse, (x * 100, y), epochs=50, batch_size=None, lr=1e3)
    assert isinstance(err.value, ValueError)


def test_errors():
    model, x, y = _linear_problem()
    with pytest.raises(ValueError, match="momentum"):
        training.train_sgd(model, losses.mse, (x, y), 1, 4, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        training.train_sgd(model, losses.mse, (x, y), 1, 100, 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        training.train_sgd(model, losses.mse, (x, y), 1, 4, -0.1)
    with pytest.raises(ValueError, match="valid names"):
        training.train_sgd(model, losses.mse, (x, y), 1, 4, 0.1, record={"layers": "nope"})
    with pytest.raises(ValueError, match="every"):
        training.train_sgd(model, losses.mse, (x, y), 1, 4, 0.1, record={"layers": "dense_1", "every": "hour"})
    with pytest.raises(TypeError):
        training.train_sgd(model, losses.mse, x, 1, 4, 0.1)
    with pytest.raises(ValueError, match="differ in length"):
        training.train_sgd(model, losses.mse, (x, y[:3]), 1, 4, 0.1)


def test_gd_approaches_gradient_flow_linearly_in_eta():
    # I-FLOW on a problem with an exact flow: a linear model with MSE has a quadratic loss
    # L(w) = 1/2 w^T A w - c^T w + const, whose gradient flow is w(t) = w* + exp(-A t)(w0 - w*).
    from scipy.linalg import expm

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(20, 3)), rng.integers(0, 2, size=20)
    model = models.mlp(3, hidden=(), num_classes=2, seed=0, dtype="float64")
    w_init = [w.copy() for w in model.get_weights()]
    X = np.c_[np.kron(np.eye(2), x), np.kron(np.eye(2), np.ones((20, 1)))]  # maps (W col-major, b) to outputs
    Y = np.eye(2)[y].T.reshape(-1)
    A = 2.0 * X.T @ X / 40  # MSE: mean over 20 examples and 2 outputs
    c = 2.0 * X.T @ Y / 40
    w0 = np.r_[w_init[0].T.reshape(-1), w_init[1]]
    w_star = np.linalg.lstsq(A, c, rcond=None)[0]
    T = 1.0
    w_flow = w_star + expm(-A * T) @ (w0 - w_star)
    etas, errors = np.array([0.1, 0.05, 0.025, 0.0125]), []
    for eta in etas:
        model.set_weights(w_init)
        training.train_sgd(model, losses.mse, (x, y), epochs=int(round(T / eta)), batch_size=None, lr=float(eta))
        W, b = model.get_weights()
        errors.append(np.linalg.norm(np.r_[W.T.reshape(-1), b] - w_flow))
    slope = np.polyfit(np.log(etas), np.log(errors), 1)[0]
    assert abs(slope - 1.0) <= 0.1


def test_more_error_paths():
    model, x, y = _linear_problem()
    with pytest.raises(ValueError, match="weight_decay"):
        training.train_sgd(model, losses.mse, (x, y), 1, 4, 0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        training.train_sgd(model, losses.mse, (x, y), 0, 4, 0.1)
    with pytest.raises(TypeError, match="loss_fn"):
        training.train_sgd(model, "mse", (x, y), 1, 4, 0.1)
    with pytest.raises(ValueError, match="empty"):
        training.train_sgd(model, losses.mse, (x[:0], y[:0]), 1, 4, 0.1)
    # labels, not targets: one-hot rows and real values would be cast to int64 silently otherwise
    with pytest.raises(ValueError, match="shape \\(N,\\)"):
        training.train_sgd(model, losses.mse, (x, np.eye(2)[y]), 1, 4, 0.1)
    with pytest.raises(ValueError, match="integer class labels"):
        training.train_sgd(model, losses.mse, (x, y + 0.5), 1, 4, 0.1)
    with pytest.raises(ValueError, match="integer class labels"):
        training.evaluate(model, losses.mse, x, y + 0.5)
    with pytest.raises(ValueError, match="non-empty"):
        training.evaluate(model, losses.mse, x[:0], y[:0])
    with pytest.raises(ValueError, match="batch_size"):
        training.evaluate(model, losses.mse, x, y, batch_size=0)
    # integer-valued float labels are accepted and give the same result as int labels
    assert training.evaluate(model, losses.mse, x, y.astype(float)) == training.evaluate(model, losses.mse, x, y)


def test_retraining_a_model_reuses_its_graph_and_gives_the_same_bits():
    """A second train_sgd call on the same model traces nothing and matches a fresh model trained alike,
    also when the weight decay, the regulariser's gamma and its update frequency change between runs."""
    from helpers import regularizers

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    kw = dict(epochs=3, batch_size=16, lr=0.1, momentum=0.9)
    runs = {1: dict(wd=0.0, gamma=1e-2, every=2), 2: dict(wd=1e-2, gamma=3e-2, every=3)}

    def fresh(seed):
        return models.mlp(6, hidden=(5,), num_classes=3, seed=seed)

    shared = fresh(1)
    reg = regularizers.HessianTraceRegularizer(shared, losses.cross_entropy, 1e-2, every=2, seed=4)
    finals = []
    for seed, r in runs.items():
        shared.set_weights(fresh(seed).get_weights())
        reg.seed, reg.gamma, reg.every = 10 + seed, r["gamma"], r["every"]
        training.train_sgd(shared, losses.cross_entropy, (x, y), extra_loss=reg, seed=seed,
                           weight_decay=r["wd"], **kw)
        finals.append([w.copy() for w in shared.get_weights()])
    states = list(training._EPOCH_FNS[shared].values())
    assert len(states) == 1 and states[0].run_epoch.experimental_get_tracing_count() == 1
    for (seed, r), final in zip(runs.items(), finals):
        m = fresh(seed)
        reg_m = regularizers.HessianTraceRegularizer(m, losses.cross_entropy, r["gamma"], every=r["every"],
                                                     seed=10 + seed)
        training.train_sgd(m, losses.cross_entropy, (x, y), extra_loss=reg_m, seed=seed, weight_decay=r["wd"],
                           **kw)
        for a, b in zip(final, m.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(finals[0][0], finals[1][0])
    with pytest.raises(ValueError, match="positive"):
        reg.gamma = 0.0
    with pytest.raises(ValueError, match="every"):
        reg.every = 0
    with pytest.raises(ValueError, match="seed"):
        reg.seed = -1
