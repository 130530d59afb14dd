"""helpers.neuron2d: the 2-parameter sigmoid neuron of chapter 8, checked against direct float64 routes
(naive formulas, automatic differentiation, finite differences, known curvatures)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from helpers import neuron2d as nd

LOSSES = nd.LOSSES


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(23, 2))
    return x, nd.label_above_diagonal(x)


def _naive_loss(loss, theta, x, y):
    f = 1.0 / (1.0 + np.exp(-5.0 * (x @ theta)))
    if loss == "mean_power2":
        return (f - y) ** 2
    if loss == "l2_norm":
        return np.sqrt((f - y) ** 2)
    return -y * np.log(f) - (1 - y) * np.log(1 - f)


def _random_thetas(n=6, scale=2.0, seed=3):
    return np.random.default_rng(seed).normal(scale=scale, size=(n, 2))


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_match_naive_formulas(loss, data):
    x, y = data
    # moderate θ, where the naive log(1 - f) has not yet lost its digits
    for theta in _random_thetas(scale=1.0):
        got = nd.per_example_loss(loss, theta, x, y).numpy()
        np.testing.assert_allclose(got, _naive_loss(loss, theta, x, y), rtol=1e-10, atol=1e-14)


def test_batched_shapes(data):
    x, y = data
    th = np.zeros((4, 3, 2))
    assert nd.per_example_loss("l2_norm", th, x, y).shape == (4, 3, len(y))
    assert nd.mean_loss("l2_norm", th, x, y).shape == (4, 3)
    assert nd.fisher_metric("l2_norm", th, x, y).shape == (4, 3, 2, 2)
    assert nd.ntk_trace(th, x).shape == (4, 3)


@pytest.mark.parametrize("loss", LOSSES)
def test_fisher_metric_equals_mean_outer_product_of_autodiff_gradients(loss, data):
    x, y = data
    th = _random_thetas()
    G = nd.per_example_gradients(loss, th, x, y).numpy()  # (B, N, 2)
    ref = np.einsum("bni,bnj->bij", G, G) / len(y)
    np.testing.assert_allclose(nd.fisher_metric(loss, th, x, y).numpy(), ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(nd.fisher_trace(loss, th, x, y).numpy(), np.trace(ref, axis1=1, axis2=2), rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_per_example_gradients_match_finite_differences(loss, data):
    x, y = data
    th = _random_thetas(3, scale=1.0)
    G = nd.per_example_gradients(loss, th, x, y).numpy()
    h = 1e-6
    for a in range(2):
        e = np.zeros(2)
        e[a] = h
        fd = np.stack([(_naive_loss(loss, t + e, x, y) - _naive_loss(loss, t - e, x, y)) / (2 * h) for t in th])
        np.testing.assert_allclose(G[..., a], fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_closed_form_metric_derivatives_match_autodiff(loss, data):
    x, y = data
    th = tf.constant(_random_thetas(5), tf.float64)
    g, dg, d2g = nd.fisher_metric_and_derivatives(loss, th, x, y, order=2)
    with tf.GradientTape() as outer:
        outer.watch(th)
        with tf.GradientTape() as inner:
            inner.watch(th)
            g_ad = nd.fisher_metric(loss, th, x, y)
        dg_ad = inner.batch_jacobian(g_ad, th)  # (B, 2, 2, 2) [a, b, c]
    d2g_ad = outer.batch_jacobian(dg_ad, th)  # (B, 2, 2, 2, 2)
    np.testing.assert_allclose(dg.numpy(), dg_ad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(d2g.numpy(), d2g_ad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_dloss_dlogit_and_dloss_doutput_match_autodiff(loss, data):
    x, y = data
    th = tf.constant(_random_thetas(4), tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(th)
        z = nd.logits(th, x)
        tape.watch(z)
        s = 2.0 * y - 1.0
        ell = nd._loss_from_margin(loss, s * z, nd._sigmoid_pair(s * z)[1])
    dz = tape.gradient(ell, z).numpy()
    np.testing.assert_allclose(nd.dloss_dlogit(loss, th, x, y).numpy(), dz, rtol=1e-12, atol=1e-300)
    # chain rule: dℓ/df = (dℓ/dz) / (df/dz)
    pq = (tf.math.sigmoid(z) * tf.math.sigmoid(-z)).numpy()
    np.testing.assert_allclose(nd.dloss_doutput(loss, th, x, y).numpy(), dz / pq, rtol=1e-10)


def test_ntk_trace_equals_sum_of_squared_output_gradients(data):
    x, _ = data
    th = _random_thetas()
    J = nd.output_jacobian(th, x).numpy()
    np.testing.assert_allclose(nd.ntk_trace(th, x).numpy(), np.sum(J**2, axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_fisher_trace_ntk_relation_eq_5_1_2(loss, data):
    """tr I = (1/N) Σ_i (∂ℓ/∂f_i)² Λ_ii with one output (004 eq. 5.1.2)."""
    x, y = data
    th = _random_thetas()
    J = nd.output_jacobian(th, x).numpy()
    lam_ii = np.sum(J**2, axis=-1)
    rhs = np.mean(nd.dloss_doutput(loss, th, x, y).numpy() ** 2 * lam_ii, axis=-1)
    np.testing.assert_allclose(nd.fisher_trace(loss, th, x, y).numpy(), rhs, rtol=1e-10)


def test_l2_norm_traces_are_exactly_proportional(data):
    """I-L2EXACT: |∂ℓ/∂f| = 1 for ℓ = |f − y|, so tr I = tr Λ / N at every θ."""
    x, y = data
    th = _random_thetas(50, scale=6.0)
    ratio = nd.fisher_trace("l2_norm", th, x, y).numpy() * len(y) / nd.ntk_trace(th, x).numpy()
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-12)
    assert not np.allclose(nd.fisher_trace("mean_power2", th, x, y).numpy() * len(y) / nd.ntk_trace(th, x).numpy(), 1)


# --------------------------------------------------------------------------------------------------
# Brioschi formula on metrics of known curvature
# --------------------------------------------------------------------------------------------------
def _brioschi_from_function(gfun, th):
    th = tf.constant(th, tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(th)
        with tf.GradientTape() as inner:
            inner.watch(th)
            g = gfun(th)
        dg = inner.batch_jacobian(g, th)
    d2g = outer.batch_jacobian(dg, th)
    return nd.brioschi_gaussian_curvature(g, dg, d2g).numpy()


def test_brioschi_on_sphere_halfplane_plane_and_gaussian_family():
    r = 1.7
    th = np.column_stack([np.linspace(0.3, 2.8, 7), np.linspace(-1.0, 2.0, 7)])

    def sphere(t):  # (polar angle, azimuth)
        s = tf.sin(t[:, 0])
        z = tf.zeros_like(s)
        return tf.stack([tf.stack([r**2 + z, z], -1), tf.stack([z, (r * s) ** 2], -1)], -2)

    np.testing.assert_allclose(_brioschi_from_function(sphere, th), 1 / r**2, rtol=1e-10)

    hp = np.column_stack([np.linspace(-2, 2, 7), np.linspace(0.2, 3.0, 7)])

    def halfplane(t):
        v = 1.0 / t[:, 1] ** 2
        z = tf.zeros_like(v)
        return tf.stack([tf.stack([v, z], -1), tf.stack([z, v], -1)], -2)

    np.testing.assert_allclose(_brioschi_from_function(halfplane, hp), -1.0, rtol=1e-10)

    def polar(t):  # (radius, angle): flat
        z = tf.zeros_like(t[:, 0])
        return tf.stack([tf.stack([1.0 + z, z], -1), tf.stack([z, t[:, 0] ** 2], -1)], -2)

    np.testing.assert_allclose(_brioschi_from_function(polar, hp[:, ::-1]), 0.0, atol=1e-10)

    def gauss(t):  # (μ, σ): Fisher metric diag(1, 2)/σ², K = −1/2
        v = 1.0 / t[:, 1] ** 2
        z = tf.zeros_like(v)
        return tf.stack([tf.stack([v, z], -1), tf.stack([z, 2 * v], -1)], -2)

    np.testing.assert_allclose(_brioschi_from_function(gauss, hp), -0.5, rtol=1e-10)


def test_brioschi_with_off_diagonal_metric_matches_conformal_change():
    """A sheared flat metric has K = 0; a conformal factor e^{2φ} gives K = −e^{−2φ} Δφ."""
    A = np.array([[2.0, 0.7], [0.7, 1.3]])
    th = _random_thetas(5, scale=0.5)

    def conformal(t):
        phi = 0.3 * t[:, 0] ** 2 + 0.2 * t[:, 0] * t[:, 1] - 0.1 * t[:, 1] ** 3
        return tf.exp(2 * phi)[:, None, None] * tf.constant(A, tf.float64)

    # in coordinates u = L θ with A = LᵀL the metric is e^{2φ}|du|²: K = −e^{−2φ} Δ_u φ; Δ_u φ = tr(A⁻¹ ∇²_θ φ)
    t1, t2 = th[:, 0], th[:, 1]
    phi = 0.3 * t1**2 + 0.2 * t1 * t2 - 0.1 * t2**3
    hess = np.stack([np.stack([np.full_like(t1, 0.6), np.full_like(t1, 0.2)], -1),
                     np.stack([np.full_like(t1, 0.2), -0.6 * t2], -1)], -2)
    lap = np.einsum("ij,bji->b", np.linalg.inv(A), hess)
    np.testing.assert_allclose(_brioschi_from_function(conformal, th), -np.exp(-2 * phi) * lap, rtol=1e-9)


def test_brioschi_is_scale_covariant_and_survives_tiny_metrics():
    th = _random_thetas(3, scale=0.5)

    def sheared(c):
        def g(t):
            v = 1.0 / (1.0 + t[:, 1] ** 2)
            return c * tf.stack([tf.stack([v, 0.3 * v], -1), tf.stack([0.3 * v, 1.0 + t[:, 0] ** 2], -1)], -2)
        return g

    k1 = _brioschi_from_function(sheared(1.0), th)
    k_small = _brioschi_from_function(sheared(1e-200), th)
    np.testing.assert_allclose(k_small * 1e-200, k1, rtol=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_closed_form_brioschi_matches_autodiff_brioschi(loss, data):
    x, y = data
    th = _random_thetas(6)
    auto = _brioschi_from_function(lambda t: nd.fisher_metric(loss, t, x, y), th)
    np.testing.assert_allclose(nd.ricci_scalar_brioschi(loss, th, x, y).numpy(), 2 * auto, rtol=1e-8)


@pytest.mark.skipif(importlib.util.find_spec("helpers.geometry") is None, reason="helpers.geometry not written yet")
@pytest.mark.parametrize("loss", LOSSES)
def test_general_ricci_scalar_agrees_with_brioschi(loss, data):
    """I-2D on random θ: the general routine of helpers.geometry equals 2K from Brioschi."""
    from helpers import geometry

    x = np.random.default_rng(5).uniform(size=(100, 2))
    y = nd.label_above_diagonal(x)
    th = np.vstack([_random_thetas(40, scale=4.0), [[-9.5, 9.6], [-10.0, 10.0]]])  # includes the valley
    gfun = nd.metric_fn(loss, x, y)
    r_geo = np.asarray(nd.in_orthonormal_coordinates(geometry.ricci_scalar)(gfun, th))
    r_b = nd.ricci_scalar_brioschi(loss, th, x, y).numpy()
    np.testing.assert_allclose(r_geo, r_b, rtol=1e-8, atol=1e-12)
    # the raw coordinates agree as well where the metric is well conditioned
    r_raw = np.asarray(geometry.ricci_scalar(gfun, th))
    good = np.linalg.cond(nd.fisher_metric(loss, th, x, y).numpy()) < 1e3
    np.testing.assert_allclose(r_raw[good], r_b[good], rtol=1e-8, atol=1e-12)


def test_brioschi_orthonormal_and_raw_coordinates_agree(data):
    x, y = data
    th = _random_thetas(10, scale=1.5)
    good = np.linalg.cond(nd.fisher_metric("cross_entropy", th, x, y).numpy()) < 1e3
    a = nd.ricci_scalar_brioschi("cross_entropy", th, x, y, orthonormal=True).numpy()
    b = nd.ricci_scalar_brioschi("cross_entropy", th, x, y, orthonormal=False).numpy()
    np.testing.assert_allclose(a[good], b[good], rtol=1e-9)


@pytest.mark.skipif(importlib.util.find_spec("helpers.geometry") is None, reason="helpers.geometry not written yet")
def test_orthonormal_wrapper_on_known_surfaces():
    from helpers import geometry

    r = 1.3

    def sphere(t):
        s = tf.sin(t[:, 0])
        z = tf.zeros_like(s)
        return tf.stack([tf.stack([r**2 + z, z], -1), tf.stack([z, (r * s) ** 2], -1)], -2)

    th = np.column_stack([np.linspace(0.2, 2.9, 6), np.linspace(-1.0, 2.0, 6)])
    got = nd.in_orthonormal_coordinates(geometry.ricci_scalar)(sphere, th)
    np.testing.assert_allclose(got, 2 / r**2, rtol=1e-10)
    with pytest.raises(TypeError):
        nd.in_orthonormal_coordinates(3)


@pytest.mark.skipif(importlib.util.find_spec("helpers.ntk") is None, reason="helpers.ntk not written yet")
def test_ntk_trace_agrees_with_helpers_ntk(data):
    """The vectorised closed form equals helpers.ntk on a Keras model of the same neuron."""
    import keras

    from helpers import ntk

    x, _ = data
    theta = np.array([-1.3, 0.8])
    inp = keras.Input(shape=(2,), dtype="float64")
    dense = keras.layers.Dense(1, use_bias=False, dtype="float64")
    out = keras.layers.Activation("sigmoid", dtype="float64")(keras.layers.Rescaling(5.0, dtype="float64")(dense(inp)))
    model = keras.Model(inp, out)
    dense.kernel.assign(theta.reshape(2, 1))
    got = float(np.asarray(ntk.ntk_trace(model, x)))
    np.testing.assert_allclose(got, nd.ntk_trace(theta, x).numpy(), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# finiteness, training, grids, measurements, errors
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
def test_everything_finite_at_extreme_theta(loss, data):
    x, y = data
    extreme = np.array([[1e4, 1e4], [-1e4, 1e4], [-1e4, -1e4], [300.0, -300.0]])
    for fn in (nd.per_example_loss, nd.dloss_dlogit, nd.fisher_metric, nd.fisher_trace):
        assert np.all(np.isfinite(fn(loss, extreme, x, y).numpy()))
    assert np.all(np.isfinite(nd.ntk_trace(extreme, x).numpy()))
    # on a grid wider than chapter 8's every surface, curvature included, is finite (far beyond it, with
    # few data points, one example dominates the metric and it becomes numerically singular in float64)
    xs = np.random.default_rng(11).uniform(size=(100, 2))
    _, _, th = nd.theta_grid((-12, 12), (-12, 12), 41)
    S = nd.surfaces(loss, th, xs, nd.label_above_diagonal(xs))
    for k, v in S.items():
        assert v.shape == (41, 41) and np.all(np.isfinite(v)), k


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_descent_step_and_descent(loss, data):
    x, y = data
    eta = 0.3
    path = nd.gradient_descent(loss, x, y, (0.5, 0.5), eta, 200)
    assert path.shape == (201, 2)
    grad = nd.per_example_gradients(loss, path[:1], x, y).numpy().mean(axis=1)[0]
    np.testing.assert_allclose(path[1], path[0] - eta * grad, rtol=1e-12)
    losses = nd.mean_loss(loss, path, x, y).numpy()
    assert losses[-1] < losses[0]


def test_classified_correctly(data):
    x, y = data
    assert nd.classified_correctly([-1.0, 1.0], x, y).all()
    assert not nd.classified_correctly([1.0, -1.0], x, y).any()


def test_theta_grid_layout():
    t1, t2, th = nd.theta_grid((-1, 1), (0, 3), (5, 4))
    assert th.shape == (4, 5, 2)
    assert th[2, 3, 0] == t1[3] and th[2, 3, 1] == t2[2]


def test_valley_width_of_known_profiles():
    s = np.linspace(-5, 5, 2001)
    # |s| valley: floor 0, rim = median of |s| over |s| >= 2.5 = 3.75, level 1.875, width 3.75
    m = nd.valley_width(s, np.abs(s))
    assert abs(m["width"] - 3.75) < 1e-2 and abs(m["s_min"]) < 1e-2
    # a narrow Gaussian dip: width at half depth = FWHM = 2 sqrt(2 ln 2) σ
    sig = 0.2
    m = nd.valley_width(s, -np.exp(-((s - 1.0) ** 2) / (2 * sig**2)))
    assert abs(m["width"] - 2 * np.sqrt(2 * np.log(2)) * sig) < 1e-3 and abs(m["s_min"] - 1.0) < 1e-2
    assert np.isnan(nd.valley_width(s, np.ones_like(s))["width"])
    # the floor can be searched in a window only: two dips, the shallower one chosen
    two = -np.exp(-((s - 2.0) ** 2) / 0.02) - 2 * np.exp(-((s + 2.0) ** 2) / 0.02)
    assert abs(nd.valley_width(s, two, search=(1.0, 3.0))["s_min"] - 2.0) < 1e-2


def test_cross_section():
    s, th = nd.cross_section([1.0, 2.0], [3.0, 4.0], 2.0, 5)
    np.testing.assert_allclose(th[-1], [1.0 + 1.2, 2.0 + 1.6])
    assert s.shape == (5,)


def test_error_paths(data):
    x, y = data
    with pytest.raises(ValueError, match="unknown loss"):
        nd.mean_loss("hinge", [0.0, 0.0], x, y)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        nd.mean_loss("l2_norm", [0.0, 0.0], x[:, :1], y)
    with pytest.raises(ValueError, match="labels"):
        nd.mean_loss("l2_norm", [0.0, 0.0], x, y + 2)
    with pytest.raises(ValueError, match="one label per row"):
        nd.mean_loss("l2_norm", [0.0, 0.0], x, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        nd.mean_loss("l2_norm", [0.0, 0.0], np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match=r"theta must have shape"):
        nd.mean_loss("l2_norm", [0.0, 0.0, 0.0], x, y)
    with pytest.raises(ValueError, match="steps"):
        nd.gradient_descent("l2_norm", x, y, steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        nd.gradient_descent("l2_norm", x, y, learning_rate=-1.0)
    with pytest.raises(ValueError, match="order"):
        nd.fisher_metric_and_derivatives("l2_norm", [0.0, 0.0], x, y, order=3)
    with pytest.raises(ValueError, match="2-D metrics"):
        nd.brioschi_gaussian_curvature(np.eye(3), np.zeros((3, 3, 3)), np.zeros((3, 3, 3, 3)))
    with pytest.raises(ValueError, match="at least 2 points"):
        nd.theta_grid((0, 1), (0, 1), 1)
    with pytest.raises(ValueError, match="strictly increasing"):
        nd.valley_width(np.zeros(6), np.zeros(6))


def test_valley_floor_finds_the_minimum_on_each_line(data):
    x, y = data
    cs = np.array([2.0, 5.0])
    got = nd.valley_floor("cross_entropy", x, y, cs, theta1_range=(-10.0, 5.0), num=1501)
    for c, t1 in zip(cs, got):
        line = np.column_stack([np.linspace(-10, 5, 1501), np.full(1501, c)])
        assert t1 == line[np.argmin(nd.mean_loss("cross_entropy", line, x, y).numpy()), 0]
    with pytest.raises(ValueError):
        nd.valley_floor("cross_entropy", x, y, [], num=10)


def test_metric_ellipse_shape_and_orientation():
    g = np.array([[4.0, 0.0], [0.0, 1.0]])
    pts = nd.metric_ellipse(g, [1.0, 2.0], size=2.0, num=400)
    d = pts - np.array([1.0, 2.0])
    # longest semi-axis 2 along θ₂ (small metric eigenvalue), the other 1 along θ₁; all on v^T g v = const
    assert abs(np.abs(d[:, 1]).max() - 2.0) < 1e-3 and abs(np.abs(d[:, 0]).max() - 1.0) < 1e-3
    q = np.einsum("ni,ij,nj->n", d, g, d)
    np.testing.assert_allclose(q, q[0], rtol=1e-12)
    with pytest.raises(ValueError):
        nd.metric_ellipse(-np.eye(2), [0.0, 0.0])


def test_plot_surface_checks_its_input():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t1, t2 = np.linspace(0, 1, 4), np.linspace(0, 1, 3)
    fig, ax = plt.subplots()
    nd.plot_surface(ax, t1, t2, np.ones((3, 4)) + np.arange(4), "log", path=np.zeros((5, 2)))
    nd.plot_surface(ax, t1, t2, np.linspace(-5, 5, 12).reshape(3, 4), "symlog")
    with pytest.raises(ValueError, match="non-finite"):
        nd.plot_surface(ax, t1, t2, np.full((3, 4), np.nan), "symlog")
    with pytest.raises(ValueError, match="positive"):
        nd.plot_surface(ax, t1, t2, -np.ones((3, 4)), "log")
    with pytest.raises(ValueError, match="shape"):
        nd.plot_surface(ax, t1, t2, np.ones((4, 3)), "log")
    plt.close(fig)


def _brioschi_reference(loss, theta, x, y, digits=50):
    """R = 2K at one θ in 50-digit decimal arithmetic from the closed-form metric derivatives."""
    from decimal import Decimal as D, localcontext

    with localcontext() as ctx:
        ctx.prec = digits
        t = [D(float(v)) for v in theta]
        n = len(y)
        g = {}
        for (a, b), lab in zip(x, y):
            xa = [D(float(a)), D(float(b))]
            s = D(int(2 * lab - 1))
            u = s * 5 * (t[0] * xa[0] + t[1] * xa[1])
            p, q = 1 / (1 + (-u).exp()), 1 / (1 + u.exp())
            c = D(25)
            if loss == "mean_power2":
                w = (4 * c * p**2 * q**4, 8 * c * s * p**2 * q**4 * (q - 2 * p),
                     8 * c * p**2 * q**4 * (2 * (q - 2 * p) ** 2 - 3 * p * q))
            elif loss == "l2_norm":
                w = (c * p**2 * q**2, 2 * c * s * p**2 * q**2 * (q - p), 4 * c * p**2 * q**2 * ((q - p) ** 2 - p * q))
            else:
                w = (c * q**2, -2 * c * s * p * q**2, 2 * c * p * q**2 * (2 * p - q))
            for idx in np.ndindex(2, 2, 2, 2):
                i, j, k, l = idx
                g[i, j] = g.get((i, j), D(0)) + w[0] * xa[i] * xa[j] / n if (k, l) == (0, 0) else g.get((i, j), D(0))
                if l == 0:
                    g[i, j, k] = g.get((i, j, k), D(0)) + 5 * w[1] * xa[i] * xa[j] * xa[k] / n
                g[i, j, k, l] = g.get((i, j, k, l), D(0)) + 25 * w[2] * xa[i] * xa[j] * xa[k] * xa[l] / n
        E, F, G = g[0, 0], g[0, 1], g[1, 1]
        Eu, Ev, Fu, Fv, Gu, Gv = g[0, 0, 0], g[0, 0, 1], g[0, 1, 0], g[0, 1, 1], g[1, 1, 0], g[1, 1, 1]
        Evv, Fuv, Guu = g[0, 0, 1, 1], g[0, 1, 0, 1], g[1, 1, 0, 0]

        def det3(m):
            return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                    + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))

        m1 = [[-Evv / 2 + Fuv - Guu / 2, Eu / 2, Fu - Ev / 2], [Fv - Gu / 2, E, F], [Gv / 2, F, G]]
        m2 = [[D(0), Ev / 2, Gu / 2], [Ev / 2, E, F], [Gu / 2, F, G]]
        return float(2 * (det3(m1) - det3(m2)) / (E * G - F * F) ** 2)


@pytest.mark.parametrize("loss", LOSSES)
def test_brioschi_matches_high_precision_reference_in_the_valley(loss, data):
    """At ill-conditioned points deep in the valley the orthonormal-coordinate route keeps ~1e-8 accuracy."""
    x, y = data
    th = np.array([[-9.7, 9.9], [-3.46, 13.29], [1.0, 0.5]])
    ref = np.array([_brioschi_reference(loss, t, x, y) for t in th])
    got = nd.ricci_scalar_brioschi(loss, th, x, y).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-8)


def test_finding_measurements_are_consistent(data):
    x, y = data
    m = nd.finding_measurements("cross_entropy", x, y, 0.2, 400, path_samples=51, section_points=201)
    assert set(m) == {"misclassified", "valley_angle", "max_R", "rho", "drop", "width_ratio", "prominence"}
    path = nd.gradient_descent("cross_entropy", x, y, (0.5, 0.5), 0.2, 400)
    assert m["misclassified"] == int(np.sum(~nd.classified_correctly(path[-1], x, y)))
    assert -1.0 <= m["rho"] <= 1.0 and 0.0 <= m["valley_angle"] <= 180.0


# --------------------------------------------------------------------------------------------------
# routes that chapter 8 needs at N = 1000: chain-rule Jacobians, the Brioschi grid, the NaN-width rule
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
def test_chain_rule_jacobians_equal_tensorflow_batch_jacobian(loss, data):
    """∂ℓ_i/∂θ and ∂f_i/∂θ through z_i = 5 θ·x_i equal TensorFlow's batch_jacobian of the whole map."""
    x, y = data
    th = tf.constant(_random_thetas(7, scale=3.0), tf.float64)
    xt, yt = tf.constant(x, tf.float64), tf.constant(y, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(th)
        ell = nd.per_example_loss(loss, th, x, y)
        f = nd.outputs(th, xt)
    np.testing.assert_allclose(nd.per_example_gradients(loss, th, x, y).numpy(),
                               tape.batch_jacobian(ell, th).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(nd.output_jacobian(th, x).numpy(), tape.batch_jacobian(f, th).numpy(),
                               rtol=1e-12, atol=1e-300)
    assert nd.per_example_gradients(loss, th, xt, yt).shape == (7, len(y), 2)


@pytest.mark.skipif(importlib.util.find_spec("helpers.geometry") is None, reason="helpers.geometry not written yet")
@pytest.mark.parametrize("loss", LOSSES)
def test_brioschi_grid_agrees_with_the_general_routine_on_a_sub_grid(loss):
    """Chapter 8 draws R on the full grid with Brioschi and checks every k-th point with helpers.geometry."""
    from helpers import geometry

    x = np.random.default_rng(17).uniform(size=(300, 2))
    y = nd.label_above_diagonal(x)
    _, _, th = nd.theta_grid((-10.0, 4.0), (-4.0, 10.0), 13)
    full = nd.surfaces(loss, th, x, y)  # Brioschi only
    sub = nd.surfaces(loss, th[::4, ::4], x, y, ricci_fn=nd.in_orthonormal_coordinates(geometry.ricci_scalar))
    scale = np.max(np.abs(sub["R_brioschi"]))
    # the same closed form; only the batch composition (summation order) differs
    np.testing.assert_allclose(sub["R_brioschi"], full["R"][::4, ::4], rtol=1e-8, atol=1e-14 * scale)
    assert np.all(np.abs(sub["R"] - sub["R_brioschi"]) <= 1e-8 * np.abs(sub["R_brioschi"]) + 1e-12 * scale)


def test_metric_weights_are_finite_and_positive_far_out(data):
    """The product forms of w, w', w'' underflow to 0 (never NaN) deep on either side of the boundary."""
    x, y = data
    for loss in LOSSES:
        g, dg, d2g = nd.fisher_metric_and_derivatives(loss, np.array([[-400.0, 400.0], [400.0, -400.0]]), x, y)
        assert all(np.all(np.isfinite(v.numpy())) for v in (g, dg, d2g))
        assert np.all(np.linalg.eigvalsh(g.numpy()) >= 0)


def test_largest_width_ratio_propagates_a_missing_valley():
    """A cross-section without a valley (NaN width) makes F-NARROW fail; Python's max would drop it."""
    ratios = [0.2, float("nan"), 0.4]
    assert max(ratios) == 0.4  # the trap: the built-in skips a NaN that does not come first
    got = nd.largest_width_ratio(ratios)
    assert np.isnan(got) and not got < 1  # the F-NARROW rule `ratio < 1` then says: not reproduced
    assert nd.largest_width_ratio([0.2, 0.4]) == 0.4
    with pytest.raises(ValueError):
        nd.largest_width_ratio([])


def test_path_cross_section_without_a_valley_gives_nan(data, monkeypatch):
    x, y = data
    path = nd.gradient_descent("cross_entropy", x, y, (0.5, 0.5), 0.2, 200)
    c = nd.path_cross_section("cross_entropy", path, 0.5, x, y, half_width=2.0, num=201)
    assert c["wl"]["width"] > 0 and c["ratio"] == c["wr"]["width"] / c["wl"]["width"]
    assert c["S"]["R"].shape == c["s"].shape == (201,)
    real = nd.surfaces

    def flat_loss(*args, **kw):  # a loss profile with no valley at all
        out = real(*args, **kw)
        return dict(out, loss=np.ones_like(out["loss"]))

    monkeypatch.setattr(nd, "surfaces", flat_loss)
    c = nd.path_cross_section("cross_entropy", path, 0.5, x, y, half_width=2.0, num=201)
    assert np.isnan(c["wl"]["width"]) and np.isnan(c["ratio"]) and np.isnan(c["wr"]["width"])
    with pytest.raises(ValueError):
        nd.path_cross_section("cross_entropy", path, 0.0, x, y)


# ---- direction of a trained neuron (F-CLASSIFY diagnostics) ----
def test_separating_directions_match_a_brute_force_scan(data):
    x, y = data
    cone = nd.separating_directions(x, y)
    phi = np.linspace(cone["low"] - 5, cone["high"] + 5, 20001)
    ok = np.array([np.all(nd.classified_correctly([np.cos(a), np.sin(a)], x, y))
                   for a in np.radians(phi)])
    assert phi[ok].min() == pytest.approx(cone["low"], abs=2e-3)
    assert phi[ok].max() == pytest.approx(cone["high"], abs=2e-3)
    d = nd.classification_diagnostics(
        [np.cos(np.radians(cone["max_margin"])), np.sin(np.radians(cone["max_margin"]))], x, y)
    assert d["misclassified"] == 0 and d["smallest_margin"] == pytest.approx(cone["margin"])
    assert d["smallest_margin"] > 0


def test_separating_directions_empty_and_errors(data):
    x, y = data
    assert np.isnan(nd.separating_directions(x, 1 - y)["low"])  # labels swapped: no direction near 135°
    with pytest.raises(ValueError, match="both labels"):
        nd.separating_directions(x, np.zeros(len(y)))
    with pytest.raises(ValueError, match="positive coordinates"):
        nd.separating_directions(x - 0.5, y)
    with pytest.raises(ValueError, match="num must be at least 3"):
        nd.separating_directions(x, y, num=2)


def test_classification_diagnostics_on_the_diagonal_and_off_it(data):
    x, y = data
    d = nd.classification_diagnostics([-2.0, 2.0], x, y)
    assert d["misclassified"] == 0 and d["direction"] == pytest.approx(0.0)
    assert d["norm"] == pytest.approx(np.sqrt(8.0))
    assert d["smallest_margin"] == pytest.approx(np.min(np.abs(x[:, 1] - x[:, 0])) / np.sqrt(2))
    wrong = nd.classification_diagnostics([2.0, -2.0], x, y)  # boundary flipped: all wrong
    assert wrong["misclassified"] == len(y) and wrong["smallest_margin"] < 0
    assert abs(wrong["direction"]) == pytest.approx(180.0)
    with pytest.raises(ValueError, match="not both zero"):
        nd.classification_diagnostics([0.0, 0.0], x, y)
    with pytest.raises(ValueError, match="two finite numbers"):
        nd.classification_diagnostics([1.0, 2.0, 3.0], x, y)


# ---- the widget's drawing ----
def test_output_on_unit_square_is_the_network_output():
    u, out = nd.output_on_unit_square([-1.0, 2.0], num=5)
    assert out.shape == (5, 5) and u[0] == 0 and u[-1] == 1
    assert out[3, 1] == pytest.approx(1 / (1 + np.exp(-5 * (-1.0 * u[1] + 2.0 * u[3]))))
    with pytest.raises(ValueError, match="two finite numbers"):
        nd.output_on_unit_square([np.nan, 1.0])
    with pytest.raises(ValueError, match="integer >= 2"):
        nd.output_on_unit_square([1.0, 1.0], num=1)


def test_draw_point_draws_three_panels_with_agg(data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = data
    t1, t2, TH = nd.theta_grid((-3.0, 3.0), (-3.0, 3.0), 7)
    S = nd.surfaces("cross_entropy", TH, x, y)
    fig, axes = plt.subplots(1, 3)
    out = nd.draw_point(axes, "cross_entropy", (-2.0, 2.0), x, y, t1, t2, S["loss"], S["R"],
                        path=np.array([[0.5, 0.5], [-1.0, 1.0]]))
    assert out["misclassified"] == 0
    assert out["loss"] == pytest.approx(float(nd.mean_loss("cross_entropy", [-2.0, 2.0], x, y)))
    assert axes[0].get_title() == "output, 0 misclassified"
    assert axes[2].get_title().startswith("R = ")
    fig.canvas.draw()
    with pytest.raises(ValueError, match="three Axes"):
        nd.draw_point(axes[:2], "cross_entropy", (-2.0, 2.0), x, y, t1, t2, S["loss"], S["R"])
    with pytest.raises(ValueError, match="two finite numbers"):
        nd.draw_point(axes, "cross_entropy", (np.inf, 2.0), x, y, t1, t2, S["loss"], S["R"])
    with pytest.raises(ValueError, match="loss"):
        nd.draw_point(axes, "hinge", (-2.0, 2.0), x, y, t1, t2, S["loss"], S["R"])
    plt.close(fig)
