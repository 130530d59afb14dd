"""helpers.kernel_dynamics: the traces and the probe NTK recorded inside the training graph equal dense float64
computations (one tape per example) at the weights of each recorded row, for SGD and Adam, every epoch and
every k steps; the array-level measures against NumPy; error paths."""
import helpers  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from helpers import kernel_dynamics as kd
from helpers import losses, training
from test_ntk import direct
from test_operators import C, N, data, mlp


def dense_quantities(model, loss, x, y, probe):
    g, J = direct(model, x, y, loss)
    _, Jp = direct(model, probe)
    return (g ** 2).sum(1).mean(), (J ** 2).sum() / len(x), np.einsum("iap,jbp->ijab", Jp, Jp)


@pytest.mark.parametrize("optimizer,every", [("sgd", "epoch"), ("adam", "epoch"), ("adam", 2)])
def test_recorded_rows_match_dense(optimizer, every):
    loss = losses.lp_norm(4)
    x, y = data((5,))
    probe = x[:4]
    m = mlp()
    epochs, bs = 3, 5  # 3 steps per epoch (13 examples)
    # replay: train again from the same start and stop at each recorded moment to compute dense references
    start = m.get_weights()
    mon = kd.KernelMonitor(m, loss, x, y, probe_x=probe, every=every, batch_size=4)
    hist = training.train(m, loss, (x, y), epochs, bs, 0.05, optimizer=optimizer, seed=3, monitors=[mon])
    rec = hist["monitors"][0]
    steps_per_epoch = hist["steps_per_epoch"]
    moments = (np.arange(epochs + 1) * steps_per_epoch if every == "epoch"
               else np.arange(0, epochs * steps_per_epoch + 1, every))
    assert len(rec["fisher_trace"]) == len(moments)
    np.testing.assert_allclose(rec["epoch"], moments / steps_per_epoch)
    ref = mlp()
    K0 = None
    for row, step in enumerate(moments):
        ref.set_weights(start)
        _train_steps(ref, loss, x, y, int(step), bs, optimizer)  # the same run, cut after `step` steps
        fisher, trace, K = dense_quantities(ref, loss, x, y, probe)
        K0 = K if K0 is None else K0
        np.testing.assert_allclose(rec["fisher_trace"][row], fisher, rtol=1e-10)
        np.testing.assert_allclose(rec["ntk_trace"][row], trace, rtol=1e-10)
        np.testing.assert_allclose(rec["ntk_change"][row], np.linalg.norm(K - K0) / np.linalg.norm(K0),
                                   rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(rec["kernel_final"], K, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rec["kernel_initial"], K0, rtol=1e-10, atol=1e-12)


def _train_steps(model, loss, x, y, steps, bs, optimizer):
    """Replay the first `steps` steps of training.train(..., seed=3): the same minibatch permutations, plain
    SGD (momentum 0) or Keras Adam, in eager mode."""
    n = len(x)
    spe = -(-n // bs)
    rng = np.random.default_rng(3)
    import keras
    opt = keras.optimizers.Adam(learning_rate=0.05) if optimizer == "adam" else None
    variables = list(model.trainable_variables)
    done = 0
    while done < steps:
        perm = rng.permutation(n)
        for i in range(spe):
            if done == steps:
                return
            idx = perm[i * bs:(i + 1) * bs]
            with tf.GradientTape() as tape:
                L = tf.reduce_mean(loss(y[idx], model(x[idx], training=True)))
            grads = tape.gradient(L, variables)
            if opt is None:
                for v, g in zip(variables, grads):
                    v.assign_sub(0.05 * g)
            else:
                opt.apply_gradients(zip(grads, variables))
            done += 1


def test_wrapper_and_no_probe():
    x, y = data((5,))
    m = mlp()
    h = kd.train_with_kernel_monitor(m, losses.cross_entropy, (x, y), 2, None, 0.01, (x, y), optimizer="sgd",
                                     seed=0)
    assert h["fisher_trace"].shape == (3,) and h["ntk_trace"].shape == (3,) and "ntk_change" not in h
    np.testing.assert_allclose(h["trace_epoch"], [0, 1, 2])
    assert np.all(h["fisher_trace"] > 0) and np.all(h["ntk_trace"] > 0)


def test_relative_kernel_change_and_log_correlation():
    rng = np.random.default_rng(0)
    K0 = rng.normal(size=(3, 3, 2, 2))
    K = K0 + 0.1 * rng.normal(size=K0.shape)
    assert kd.relative_kernel_change(K, K0) == pytest.approx(np.linalg.norm(K - K0) / np.linalg.norm(K0), rel=1e-14)
    assert kd.relative_kernel_change(K0, K0) == 0.0
    a = np.exp(rng.normal(size=20))
    assert kd.log_correlation(a, 3.7 * a) == pytest.approx(1.0, abs=1e-12)      # proportional curves
    assert kd.log_correlation(a, 1 / a) == pytest.approx(-1.0, abs=1e-12)       # inverse curves
    b = np.exp(rng.normal(size=20))
    assert kd.log_correlation(a, b) == pytest.approx(np.corrcoef(np.log(a), np.log(b))[0, 1], rel=1e-12)


def test_error_paths():
    x, y = data((5,))
    m = mlp()
    with pytest.raises(ValueError, match="empty"):
        kd.KernelMonitor(m, losses.cross_entropy, x[:0], y[:0])
    with pytest.raises(ValueError, match="one per example"):
        kd.KernelMonitor(m, losses.cross_entropy, x, y[:3])
    with pytest.raises(ValueError, match="every"):
        kd.KernelMonitor(m, losses.cross_entropy, x, y, every=0)
    with pytest.raises(ValueError, match="shape of x"):
        kd.KernelMonitor(m, losses.cross_entropy, x, y, probe_x=np.zeros((2, 4)))
    with pytest.raises(TypeError, match="per-example loss"):
        kd.KernelMonitor(m, None, x, y)
    with pytest.raises(TypeError, match="Keras model"):
        kd.KernelMonitor("net", losses.cross_entropy, x, y)
    with pytest.raises(RuntimeError, match="bind"):
        kd.KernelMonitor(m, losses.cross_entropy, x, y).write()
    with pytest.raises(TypeError, match="monitor"):
        training.train(m, losses.cross_entropy, (x, y), 1, None, 0.01, monitors=[object()])
    with pytest.raises(TypeError, match="tuple"):
        kd.train_with_kernel_monitor(m, losses.cross_entropy, (x, y), 1, None, 0.01, measure=x)
    with pytest.raises(ValueError, match="same shape"):
        kd.relative_kernel_change(np.ones((2, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="zero"):
        kd.relative_kernel_change(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="positive"):
        kd.log_correlation([1.0, 2.0, -1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="length"):
        kd.log_correlation([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="constant"):
        kd.log_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def test_every_epochs_and_reuse_over_runs():
    """every_epochs=2 keeps rows 0, 2, 4 of an every-epoch record; a reused monitor gives the same numbers as a
    fresh one on a second run (reset, not appended)."""
    x, y = data((5,))
    loss = losses.mean_power(2)
    m = mlp()
    start = m.get_weights()
    every = kd.train_with_kernel_monitor(m, loss, (x, y), 4, 5, 0.05, (x, y), optimizer="sgd", seed=1, probe_x=x[:3])
    m.set_weights(start)
    mon = kd.KernelMonitor(m, loss, x, y, probe_x=x[:3], every_epochs=2)
    sparse = kd.train_with_kernel_monitor(m, loss, (x, y), 4, 5, 0.05, optimizer="sgd", seed=1, monitor=mon)
    np.testing.assert_allclose(sparse["trace_epoch"], [0, 2, 4])
    for k in ("fisher_trace", "ntk_trace", "ntk_change"):
        np.testing.assert_allclose(sparse[k], every[k][[0, 2, 4]], rtol=1e-12, atol=1e-15)
    m.set_weights(start)
    again = kd.train_with_kernel_monitor(m, loss, (x, y), 4, 5, 0.05, optimizer="sgd", seed=1, monitor=mon)
    for k in ("fisher_trace", "ntk_trace", "ntk_change", "kernel_initial", "kernel_final"):
        np.testing.assert_allclose(again[k], sparse[k], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="another model or loss"):
        kd.train_with_kernel_monitor(m, losses.cross_entropy, (x, y), 1, 5, 0.05, monitor=mon)
    with pytest.raises(ValueError, match="not both"):
        kd.train_with_kernel_monitor(m, loss, (x, y), 1, 5, 0.05, (x, y), monitor=mon)
    with pytest.raises(ValueError, match="every_epochs"):
        kd.KernelMonitor(m, loss, x, y, every=2, every_epochs=3)


def test_train_from_initialisations_equals_separate_runs():
    """One monitor over several initialisations gives, run by run, the numbers of a fresh monitor and model
    trained from the same weights with the same minibatch seed; the runs do not leak into each other."""
    x, y = data((5,))
    loss = losses.mean_power(2)
    inits = [mlp(seed=s).get_weights() for s in (1, 2)]
    m = mlp(seed=0)
    runs = kd.train_from_initialisations(m, loss, (x, y), inits, 3, 5, 0.05, (x[:8], y[:8]), batch_seeds=[4, 7],
                                         probe_x=x[:3], optimizer="sgd", every_epochs=1, measure_batch_size=4)
    assert len(runs) == 2
    for w, seed, run in zip(inits, (4, 7), runs):
        ref = mlp(seed=9)
        ref.set_weights(w)
        alone = kd.train_with_kernel_monitor(ref, loss, (x, y), 3, 5, 0.05, (x[:8], y[:8]), optimizer="sgd",
                                             probe_x=x[:3], measure_batch_size=4, seed=seed)
        for k in ("trace_epoch", "fisher_trace", "ntk_trace", "ntk_change", "kernel_initial", "kernel_final",
                  "acc"):
            np.testing.assert_allclose(run[k], alone[k], rtol=1e-12, atol=1e-15)
    assert not np.allclose(runs[0]["fisher_trace"], runs[1]["fisher_trace"])
    for a, b in zip(m.get_weights(), ref.get_weights()):  # the model ends as the last run
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    adam = kd.train_from_initialisations(m, losses.cross_entropy, (x, y), inits[:1], 2, None, 1e-3, (x, y),
                                         batch_seeds=[0], every_epochs=2)
    np.testing.assert_allclose(adam[0]["trace_epoch"], [0, 2])
    assert "ntk_change" not in adam[0]


def test_train_from_initialisations_checks_its_arguments():
    x, y = data((5,))
    m = mlp()
    w = m.get_weights()
    call = lambda **kw: kd.train_from_initialisations(  # noqa: E731
        **{"model": m, "loss_fn": losses.cross_entropy, "data": (x, y), "initial_weights": [w], "epochs": 1,
           "batch_size": 5, "lr": 0.01, "measure": (x, y), "batch_seeds": [0], **kw})
    with pytest.raises(TypeError, match="Keras model"):
        call(model="net")
    with pytest.raises(TypeError, match="one weight list"):
        call(initial_weights=[])
    with pytest.raises(TypeError, match="one weight list"):
        call(initial_weights=w[0])
    with pytest.raises(ValueError, match=r"initial_weights\[1\] must be a list of arrays"):
        call(initial_weights=[w, w[:-1]], batch_seeds=[0, 1])
    with pytest.raises(ValueError, match="one seed per run, 2"):
        call(initial_weights=[w, w], batch_seeds=[0])
    with pytest.raises(ValueError, match="one seed per run"):
        call(batch_seeds=3)
    with pytest.raises(TypeError, match="batch_seeds="):
        call(seed=3)
    with pytest.raises(TypeError, match="measure must be"):
        call(measure=x)
