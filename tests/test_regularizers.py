"""The Hessian trace regulariser (helpers.regularizers) against dense float64 Hessians."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import losses, models, params, regularizers


def _setup(seed=0):
    model = models.mlp(4, hidden=(5,), num_classes=3, seed=seed, dtype="float64", activation="tanh")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 4))
    y = rng.integers(0, 3, size=12)
    return model, x, y


def _dense_hessian(model, x, y, variables):
    tvars = [params.tf_variable(v) for v in variables]
    with tf.GradientTape(persistent=True) as t2:
        with tf.GradientTape() as t1:
            loss = tf.reduce_mean(losses.cross_entropy(y, model(x)))
        g = params.flatten(t1.gradient(loss, tvars))
    H = t2.jacobian(g, tvars)
    P = g.shape[0]
    return np.concatenate([tf.reshape(h, (P, -1)).numpy() for h in H], axis=1)


def test_quadratic_form_matches_dense_and_basis_probes_give_trace():
    model, x, y = _setup()
    variables = params.select_variables(model, ["dense_2"])
    H = _dense_hessian(model, x, y, variables)
    rng = np.random.default_rng(1)
    v = rng.normal(size=H.shape[0])
    probe = params.unflatten(tf.constant(v), variables)
    q = regularizers.hutchinson_quadratic(model, losses.cross_entropy, x, y, variables, [probe]).numpy()
    assert abs(q - v @ H @ v) <= 1e-10 * abs(v @ H @ v)
    basis = [params.unflatten(tf.constant(e), variables) for e in np.eye(H.shape[0])]
    tr = regularizers.hutchinson_quadratic(model, losses.cross_entropy, x, y, variables, basis).numpy() * H.shape[0]
    assert abs(tr - np.trace(H)) <= 1e-10 * abs(np.trace(H))


def test_penalty_is_unbiased_for_the_selected_block():
    model, x, y = _setup(2)
    variables = params.select_variables(model, ["dense_1", "dense_2"])
    H = _dense_hessian(model, x, y, variables)
    est = regularizers.hessian_trace_penalty(model, losses.cross_entropy, x, y, variables, num_probes=400,
                                             seed=(3, 0)).numpy()
    # Rademacher variance is 2 * sum_{i != j} H_ij^2; allow 4 standard errors
    off = H - np.diag(np.diag(H))
    se = np.sqrt(2 * np.sum(off ** 2) / 400)
    assert abs(est - np.trace(H)) <= 4 * se + 1e-12


def test_penalty_gradient_matches_finite_differences():
    model, x, y = _setup(4)
    variables = params.select_variables(model)
    tvars = [params.tf_variable(v) for v in variables]
    P = params.num_params(variables)
    v = np.random.default_rng(5).choice([-1.0, 1.0], size=P)
    probe = params.unflatten(tf.constant(v), variables)

    def q():
        return regularizers.hutchinson_quadratic(model, losses.cross_entropy, x, y, variables, [probe])

    with tf.GradientTape() as tape:
        val = q()
    grad = params.flatten(tape.gradient(val, tvars)).numpy()
    w0 = params.get_flat(variables).numpy()
    direction = np.random.default_rng(6).normal(size=P)
    eps = 1e-5
    params.set_flat(variables, w0 + eps * direction)
    qp = q().numpy()
    params.set_flat(variables, w0 - eps * direction)
    qm = q().numpy()
    params.set_flat(variables, w0)
    fd = (qp - qm) / (2 * eps)
    assert abs(fd - grad @ direction) <= 1e-6 * max(1.0, abs(fd))


def test_probes_sharing_one_forward_pass_give_the_mean_of_single_probe_values_and_gradients():
    model, x, y = _setup(4)
    variables = params.select_variables(model)
    tvars = [params.tf_variable(v) for v in variables]
    rng = np.random.default_rng(7)
    probes = [params.unflatten(tf.constant(rng.normal(size=params.num_params(variables))), variables)
              for _ in range(3)]

    def value_and_grad(ps):
        with tf.GradientTape() as tape:
            val = regularizers.hutchinson_quadratic(model, losses.cross_entropy, x, y, variables, ps)
        return val.numpy(), params.flatten(tape.gradient(val, tvars)).numpy()

    together = value_and_grad(probes)
    alone = [value_and_grad([p]) for p in probes]
    assert together[0] == pytest.approx(np.mean([a[0] for a in alone]), rel=1e-12)
    np.testing.assert_allclose(together[1], np.mean([a[1] for a in alone], axis=0), rtol=1e-10, atol=1e-14)


def test_regularizer_schedule_eager_and_graph():
    model, x, y = _setup(7)
    reg = regularizers.HessianTraceRegularizer(model, losses.cross_entropy, gamma=0.5, every=3, seed=1)
    assert float(reg(1, x, y)) == 0.0 and float(reg(2, x, y)) == 0.0
    on = float(reg(3, x, y))
    assert on != 0.0 and reg.num_applied == 1
    direct = 0.5 * regularizers.hessian_trace_penalty(model, losses.cross_entropy, x, y, reg.variables,
                                                       seed=tf.constant([1, 3], tf.int64)).numpy()
    assert abs(on - direct) < 1e-12

    @tf.function
    def f(step):
        return reg(step, tf.constant(x), tf.constant(y))

    assert float(f(tf.constant(4))) == 0.0
    assert abs(float(f(tf.constant(3))) - on) < 1e-12
    # its gradient flows into the weights when it is applied
    with tf.GradientTape() as tape:
        val = reg(0, x, y)
    grads = tape.gradient(val, [params.tf_variable(v) for v in reg.variables])
    assert all(g is not None for g in grads)


def test_middle_layers():
    assert regularizers.middle_layers(["a", "b", "c", "d"]) == ["b", "c"]
    assert regularizers.middle_layers(["a", "b", "c", "d", "e"]) == ["b", "c", "d"]
    assert regularizers.middle_layers(["a"]) == ["a"]
    assert regularizers.middle_layers(["a", "b"]) == ["a", "b"]


def test_errors():
    model, x, y = _setup()
    with pytest.raises(ValueError, match="gamma"):
        regularizers.HessianTraceRegularizer(model, losses.cross_entropy, gamma=-1.0)
    with pytest.raises(ValueError, match="update frequency"):
        regularizers.HessianTraceRegularizer(model, losses.cross_entropy, gamma=1.0, every=0)
    with pytest.raises(ValueError, match="valid names"):
        regularizers.HessianTraceRegularizer(model, losses.cross_entropy, gamma=1.0, layers=["nope"])
    with pytest.raises(ValueError, match="distribution"):
        regularizers.hessian_trace_penalty(model, losses.cross_entropy, x, y, model.trainable_variables,
                                           distribution="uniform")
    with pytest.raises(ValueError, match="probe"):
        regularizers.hutchinson_quadratic(model, losses.cross_entropy, x, y, model.trainable_variables, [])
    with pytest.raises(ValueError, match="middle_layers"):
        regularizers.middle_layers([])
