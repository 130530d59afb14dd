"""Forgetting penalties, the gradient constraint and the protocol (helpers.forgetting) against dense float64
computations on small random problems."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import estimators, forgetting as fg, losses, models, operators, params, training


def _setup(seed=0, n=16):
    model = models.mlp(4, hidden=(5,), num_classes=3, seed=seed, dtype="float64", activation="tanh")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = rng.integers(0, 3, size=n)
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


def _penalty_and_grad(pen, variables):
    with tf.GradientTape() as tape:
        value = pen(tf.constant(0, tf.int64), None, None)
    g = tape.gradient(value, [params.tf_variable(v) for v in variables])
    return float(value), params.flatten(g).numpy()


def _shift(variables, seed):
    w = params.get_flat(variables).numpy()
    mu = w.copy()
    params.set_flat(variables, w + 0.3 * np.random.default_rng(seed).normal(size=w.size))
    return mu, params.get_flat(variables).numpy()


def test_hessian_penalty_and_gradient_match_dense():
    model, x, y = _setup(0)
    vs = params.select_variables(model, "dense_1")
    H = _dense_hessian(model, x, y, vs)
    evals, evecs = np.linalg.eigh(H)
    h, V = fg.hessian_directions(model, losses.cross_entropy, (x, y), vs, k=6)
    np.testing.assert_allclose(h, evals[::-1][:6], rtol=1e-10, atol=1e-12)
    mu, w = _shift(vs, 1)
    pen = fg.QuadraticPenalty([fg.Block(vs, mu, V, h)], strength=7.0)
    value, grad = _penalty_and_grad(pen, vs)
    d = w - mu
    # eq. 7.10 written densely: lambda * sum_i h_i ((w - mu) . h_i)^2 with the eigh eigenvectors
    E = evecs[:, ::-1][:, :6]
    assert value == pytest.approx(7.0 * np.sum(evals[::-1][:6] * (E.T @ d) ** 2), rel=1e-10)
    np.testing.assert_allclose(grad, 2 * 7.0 * E @ (evals[::-1][:6] * (E.T @ d)), rtol=1e-9, atol=1e-12)


def test_singular_value_penalty_matches_dense_svd():
    model, x, y = _setup(1)
    kernel = params.select_variables(model, "dense_1")[0]
    W = kernel.numpy()
    U, nu, Vt = np.linalg.svd(W, full_matrices=False)
    got_nu, D, k = fg.singular_directions(W, n_out=3)
    np.testing.assert_allclose(got_nu, nu[:3], rtol=1e-12)
    for i in range(3):  # unit flattened singular matrices w~_i / ||w~_i|| (up to the shared sign of u_i, v_i)
        ref = (nu[i] * np.outer(U[:, i], Vt[i])).ravel() / nu[i]
        assert abs(abs(D[:, i] @ ref) - 1) < 1e-12
    np.testing.assert_allclose(D.T @ D, np.eye(3), atol=1e-12)
    mu, w = _shift([kernel], 2)
    pen = fg.QuadraticPenalty([fg.Block([kernel], mu, D, got_nu)], strength=3.0)
    value, grad = _penalty_and_grad(pen, [kernel])
    M = (w - mu).reshape(W.shape)
    proj = np.array([U[:, i] @ M @ Vt[i] for i in range(3)])  # (w - mu) . (u_i v_i^T)
    assert value == pytest.approx(3.0 * np.sum(nu[:3] * proj ** 2), rel=1e-10)
    ref_grad = sum(2 * 3.0 * nu[i] * proj[i] * np.outer(U[:, i], Vt[i]) for i in range(3)).ravel()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_mp_outliers_choose_n_out_for_a_planted_spike():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(60, 40)) / np.sqrt(60)
    u, v = rng.normal(size=60), rng.normal(size=40)
    W += 4 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    nu, D, k = fg.singular_directions(W)
    assert k == 1 and nu[0] > 3.5


def test_convolution_kernel_flattening_is_the_kernels_own():
    K = np.random.default_rng(4).normal(size=(3, 3, 2, 4))
    np.testing.assert_array_equal(fg.kernel_matrix(K).ravel(), K.ravel())
    with pytest.raises(ValueError, match="bias has no singular values"):
        fg.kernel_matrix(np.ones(4))


def test_pca_penalty_uses_flatness_and_matches_dense():
    rng = np.random.default_rng(5)
    model, x, y = _setup(5)
    vs = params.select_variables(model, "dense_2")
    n = params.num_params(vs)
    traj = np.cumsum(rng.normal(size=(12, n)) * np.linspace(2, 0.1, n), axis=0)
    var, P = fg.pca_directions(traj, 4)
    Xc = traj - traj.mean(0)
    ev, evec = np.linalg.eigh(Xc.T @ Xc / len(traj))
    np.testing.assert_allclose(var, ev[::-1][:4], rtol=1e-9)
    F = np.array([0.5, 1.0, 2.0, 4.0])
    mu, w = _shift(vs, 6)
    pen = fg.QuadraticPenalty([fg.Block(vs, mu, P, 1 / F ** 2)], strength=2.0)
    value, grad = _penalty_and_grad(pen, vs)
    theta = P.T @ (w - mu)
    assert value == pytest.approx(2.0 * np.sum(theta ** 2 / F ** 2), rel=1e-10)
    np.testing.assert_allclose(grad, 4.0 * P @ (theta / F ** 2), rtol=1e-9, atol=1e-12)


def test_flatness_of_a_quadratic_profile():
    # L(d) = L0 + a d^2 crosses 2 L0 at d = sqrt(L0 / a): width 2 sqrt(L0 / a)
    L0, a = np.array([0.1, 0.2]), np.array([1.0, 9.0])
    F = fg.flatness(lambda i, d: L0[i] + a[i] * d ** 2, 2, num=400)
    np.testing.assert_allclose(F, 2 * np.sqrt(L0 / a), rtol=1e-3)


def test_ewc_fisher_diagonal_and_penalty():
    model, x, y = _setup(7)
    vs = params.select_variables(model, "dense_2")
    diag = fg.fisher_diagonal(model, x, vs)
    p = tf.nn.softmax(model(x)).numpy()
    # dense true Fisher: mean over examples and classes c of p_c g_c g_c^T, g_c the gradient of -log p_c
    F = np.zeros((diag.size, diag.size))
    tvars = [params.tf_variable(v) for v in vs]
    for i in range(len(x)):
        for c in range(3):
            with tf.GradientTape() as t:
                l = losses.cross_entropy(np.array([c]), model(x[i:i + 1]))[0]
            g = params.flatten(t.gradient(l, tvars)).numpy()
            F += p[i, c] * np.outer(g, g) / len(x)
    np.testing.assert_allclose(diag, np.diag(F), rtol=1e-9, atol=1e-14)
    hutch = estimators.exact_diagonal(operators.fisher(model, (x, None), variables=vs))
    np.testing.assert_allclose(diag, hutch, rtol=1e-12)
    mu, w = _shift(vs, 8)
    pen = fg.QuadraticPenalty([fg.Block(vs, mu, None, 0.5 * diag)], strength=10.0)
    value, grad = _penalty_and_grad(pen, vs)
    assert value == pytest.approx(5.0 * np.sum(diag * (w - mu) ** 2), rel=1e-10)
    np.testing.assert_allclose(grad, 10.0 * diag * (w - mu), rtol=1e-9, atol=1e-14)


def test_projection_removes_known_directions_with_ratios():
    model, x, y = _setup(9)
    vs = params.select_variables(model, "dense_2")
    n = params.num_params(vs)
    Q, _ = np.linalg.qr(np.random.default_rng(10).normal(size=(n, 3)))
    c = np.array([4.0, 2.0, 1.0])
    proj = fg.GradientProjection([fg.Block(vs, params.get_flat(vs).numpy(), Q, c)], gamma=1.0)
    all_vars = list(model.trainable_variables)
    g = [tf.constant(np.random.default_rng(11).normal(size=v.shape)) for v in all_vars]
    out = proj(g, all_vars)
    np.testing.assert_array_equal(out[0].numpy(), g[0].numpy())  # dense_1 untouched
    gv = params.flatten(g[2:]).numpy()
    ov = params.flatten(out[2:]).numpy()
    expected = gv - Q @ ((c / c[0]) * (Q.T @ gv))  # eq. 7.12 with gamma = 1
    np.testing.assert_allclose(ov, expected, rtol=1e-12, atol=1e-12)
    assert abs(Q[:, 0] @ ov) < 1e-12  # the largest direction is fully conserved
    np.testing.assert_allclose(Q[:, 1:].T @ ov, (1 - c[1:] / c[0]) * (Q[:, 1:].T @ gv), rtol=1e-10)


def test_projection_in_training_never_moves_along_a_fully_constrained_direction():
    model, x, y = _setup(12, n=30)
    vs = params.select_variables(model, "dense_2")
    n = params.num_params(vs)
    Q, _ = np.linalg.qr(np.random.default_rng(13).normal(size=(n, 2)))
    w0 = params.get_flat(vs).numpy()
    proj = fg.GradientProjection([fg.Block(vs, w0, Q, np.array([1.0, 1.0]))], gamma=1.0)
    training.train_sgd(model, losses.cross_entropy, (x, y), epochs=3, batch_size=10, lr=0.5, momentum=0.5, seed=0,
                       project_gradient=proj)
    d = params.get_flat(vs).numpy() - w0
    assert np.linalg.norm(d) > 1e-3
    assert np.abs(Q.T @ d).max() < 1e-10


def test_training_without_hook_is_unchanged_by_identity_hook():
    m1, x, y = _setup(14, n=20)
    m2, _, _ = _setup(14, n=20)
    training.train_sgd(m1, losses.cross_entropy, (x, y), epochs=2, batch_size=5, lr=0.1, seed=1)
    training.train_sgd(m2, losses.cross_entropy, (x, y), epochs=2, batch_size=5, lr=0.1, seed=1,
                       project_gradient=lambda g, v: g)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_say_what_to_pass():
    model, x, y = _setup(15)
    vs = params.select_variables(model, "dense_2")
    mu = params.get_flat(vs).numpy()
    with pytest.raises(ValueError, match="one coefficient"):
        fg.Block(vs, mu, np.eye(mu.size)[:, :2], np.ones(3))
    with pytest.raises(ValueError, match="mu has"):
        fg.Block(vs, mu[:-1], None, np.ones(mu.size - 1))
    with pytest.raises(TypeError, match="list of the model's variables"):
        fg.Block(vs[0], mu, None, np.ones(mu.size))
    with pytest.raises(ValueError, match="finite number >= 0"):
        fg.QuadraticPenalty([fg.Block(vs, mu, None, np.ones(mu.size))], strength=-1)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fg.GradientProjection([fg.Block(vs, mu, np.eye(mu.size)[:, :1], [1.0])], gamma=2)
    with pytest.raises(ValueError, match="descending"):
        fg.GradientProjection([fg.Block(vs, mu, np.eye(mu.size)[:, :2], [1.0, 2.0])], gamma=1)
    with pytest.raises(ValueError, match="diagonal"):
        fg.GradientProjection([fg.Block(vs, mu, None, np.ones(mu.size))], gamma=1)
    with pytest.raises(ValueError, match="unknown forgetting method"):
        fg.build_method("l2", model, losses.cross_entropy, (x, y), ["dense_2"])
    with pytest.raises(TypeError, match="list of layer names"):
        fg.build_method("sv", model, losses.cross_entropy, (x, y), "dense_2")
    with pytest.raises(ValueError, match=r"n_out must be an integer in \[1, 3\]"):
        fg.singular_directions(np.ones((5, 3)), n_out=4)
    with pytest.raises(ValueError, match="k must be an integer"):
        fg.hessian_directions(model, losses.cross_entropy, (x, y), vs, k=0)
    with pytest.raises(ValueError, match="trajectory"):
        fg.build_method("pca", model, losses.cross_entropy, (x, y), ["dense_2"])
    with pytest.raises(TypeError, match="project_gradient must be a function"):
        training.train_sgd(model, losses.cross_entropy, (x, y), 1, 4, 0.1, project_gradient=3)
    with pytest.raises(ValueError, match="one gradient per trainable variable"):
        training.train_sgd(model, losses.cross_entropy, (x, y), 1, 4, 0.1, project_gradient=lambda g, v: g[:1])
    with pytest.raises(ValueError, match="equally long"):
        fg.best_epoch([0.1, 0.2], [0.3])


def test_best_epoch_is_the_highest_sum():
    assert fg.best_epoch([0.9, 0.6, 0.5], [0.0, 0.5, 0.55]) == 1


def test_divergence_names_method_and_step():
    model, x, y = _setup(16, n=24)
    state = fg.TaskAState(weights=model.get_weights(), layers=["dense_2"], trajectories={}, final_lr=1.0,
                          epochs=1, train_acc=1.0)
    s = fg.MethodSettings(strength=1e6, n_out=1)
    with pytest.raises(training.TrainingDiverged, match=r"method 'sv'.*global step \d+"):
        fg.train_task_b(model, state, "sv", (x, y), {"A": (x, y), "B": (x, y)}, (x, y), epochs=60, batch_size=8,
                        lr_fraction=1.0, settings=s)


def test_strength_sweep_is_train_task_b_per_strength_and_keeps_divergence_as_nan():
    model, x, y = _setup(16, n=24)
    state = fg.TaskAState(weights=model.get_weights(), layers=["dense_2"], trajectories={}, final_lr=1.0,
                          epochs=1, train_acc=1.0)
    tests = {"A": (x[:12], y[:12]), "B": (x[12:], y[12:])}
    s = fg.MethodSettings(n_out=1)
    grid = fg.strength_sweep(model, state, ["sv"], [1.0, 1e6], (x, y), tests, (x, y), epochs=60,
                             batch_size=8, lr_fraction=1.0, settings=s, seed=4)
    assert set(grid) == {"sv_1_A", "sv_1_B", "sv_1e+06_A", "sv_1e+06_B"}
    assert np.isnan(grid["sv_1e+06_A"]).all() and grid["sv_1e+06_B"].shape == (60,)
    ref = fg.train_task_b(model, state, "sv", (x, y), tests, (x, y), epochs=60, batch_size=8, lr_fraction=1.0,
                          settings=fg.MethodSettings(strength=1.0, n_out=1), seed=4)
    np.testing.assert_array_equal(grid["sv_1_A"], ref["acc_A"])
    np.testing.assert_array_equal(grid["sv_1_B"], ref["acc_B"])


def test_strength_sweep_refuses_methods_without_a_strength_and_bad_grids():
    model, x, y = _setup(0)
    state = fg.TaskAState(weights=model.get_weights(), layers=["dense_2"], trajectories={}, final_lr=1.0,
                          epochs=1, train_acc=1.0)
    args = ((x, y), {"A": (x, y), "B": (x, y)}, (x, y), 1, 8)
    with pytest.raises(ValueError, match="tuned by gamma"):
        fg.strength_sweep(model, state, ["grad_sv"], [1.0], *args)
    with pytest.raises(ValueError, match="positive numbers"):
        fg.strength_sweep(model, state, ["sv"], [1.0, -10.0], *args)
    with pytest.raises(ValueError, match="positive numbers"):
        fg.strength_sweep(model, state, ["sv"], [], *args)
    with pytest.raises(TypeError, match="MethodSettings"):
        fg.strength_sweep(model, state, ["sv"], [1.0], *args, settings={"strength": 1.0})
