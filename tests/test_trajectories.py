"""helpers.trajectories against dense float64 computations and closed forms."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import models, params, trajectories as tj


def _random_trajectory(T, n, seed=0):
    rng = np.random.default_rng(seed)
    drift = np.outer(np.arange(T), rng.standard_normal(n))
    return drift + np.cumsum(rng.standard_normal((T, n)), axis=0) * 0.3


@pytest.mark.parametrize("T,n", [(30, 80), (90, 40)])  # Gram path (T <= n) and covariance path (n < T)
def test_pca_equals_dense_covariance(T, n):
    X = _random_trajectory(T, n)
    res = tj.pca(X)
    Xc = X - X.mean(axis=0)
    evals, evecs = np.linalg.eigh(Xc.T @ Xc / T)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    k = len(res.variances)
    assert res.method == ("gram" if T <= n else "covariance")
    assert k == (T - 1 if T <= n else n)
    np.testing.assert_allclose(res.variances, evals[:k], rtol=1e-9, atol=1e-10 * evals[0])
    gaps_ok = np.r_[np.diff(-evals[:k]) > 1e-6 * evals[0], False]  # compare non-degenerate components only
    dots = np.abs(np.sum(res.components * evecs[:, :k], axis=0))
    np.testing.assert_allclose(dots[gaps_ok & (evals[:k] > 1e-8 * evals[0])], 1.0, atol=1e-7)
    np.testing.assert_allclose(res.projections, X @ res.components, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(res.projections.var(axis=0), res.variances, rtol=1e-8, atol=1e-10 * evals[0])
    np.testing.assert_allclose(res.total_variance, np.trace(Xc.T @ Xc / T), rtol=1e-10)
    assert np.all(res.projections[-1] - res.projections[0] >= 0)  # the sign convention


def test_pca_chunked_gram_matches_unchunked():
    X = _random_trajectory(20, 300, seed=3)
    a, b = tj.pca(X, num_components=5), tj.pca(X, num_components=5, chunk_size=7)
    np.testing.assert_allclose(a.variances, b.variances, rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(a.components * b.components, axis=0)), 1.0, atol=1e-10)


def test_pca_of_exact_line_has_one_component():
    t = np.arange(50)[:, None]
    direction = np.ones((1, 10)) / np.sqrt(10)
    res = tj.pca(0.3 * t * direction + 2.0)
    assert res.explained[0] > 1 - 1e-12
    np.testing.assert_allclose(res.variances[0], tj.drift_variance(0.3, 50), rtol=1e-12)  # I-DRIFTVAR


def test_pca_errors():
    with pytest.raises(ValueError, match="shape"):
        tj.pca(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        tj.pca(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(ValueError, match="num_components"):
        tj.pca(np.random.rand(5, 20), num_components=5)
    with pytest.raises(TypeError):
        tj.pca("not an array")


def test_pca_memory_stays_small_for_long_vectors():
    """n = 200,000 and T = 500 (a 400 MB trajectory): the n x n covariance (320 GB) is never built and the PCA
    adds well under 1 GB to the peak memory (asserted: under 500 MB)."""
    code = textwrap.dedent("""
        import resource, numpy as np
        from helpers import trajectories as tj
        rng = np.random.default_rng(0)
        X = np.empty((500, 200_000), dtype=np.float32)
        for a in range(0, 200_000, 10_000):  # filled in blocks: no large temporaries before the measurement
            X[:, a:a + 10_000] = np.cumsum(rng.standard_normal((500, 10_000), dtype=np.float32), axis=0)
        tj.pca(X[:5, :100])  # warm up TensorFlow
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = tj.pca(X, num_components=10)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert res.components.shape == (200_000, 10)
        print((after - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    extra_mb = float(out.stdout.strip().splitlines()[-1])
    assert extra_mb < 500, f"the PCA raised the peak memory by {extra_mb:.0f} MB"


def test_velocities():
    X = _random_trajectory(6, 4)
    np.testing.assert_allclose(tj.velocities(X), np.diff(X, axis=0))


def test_linear_fit_against_polyfit():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 10, 40)
    y = 2.5 * x - 1 + rng.standard_normal(40)
    fit = tj.linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit["slope"] == pytest.approx(slope, rel=1e-10) and fit["intercept"] == pytest.approx(intercept, rel=1e-9)
    assert fit["r2"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
    assert tj.linear_fit(x, 3 * x)["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal"):
        tj.linear_fit([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="length"):
        tj.linear_fit([1, 2], [1, 2, 3])


def test_log_log_slope_recovers_power():
    x = np.logspace(0, 2, 10)
    assert tj.log_log_slope(x, 4 * x ** 2)["slope"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        tj.log_log_slope([1, 2], [1, -1])


def test_saturating_exponential_fit_recovers_parameters():
    t = np.arange(200.0) + 10
    y = 3.0 - 2.0 * np.exp(-t / 35.0)
    fit = tj.saturating_exponential_fit(t, y)
    assert fit["a"] == pytest.approx(3.0, rel=1e-6)
    assert fit["b"] == pytest.approx(-2.0, rel=1e-5)
    assert fit["tau"] == pytest.approx(35.0, rel=1e-5)
    assert fit["rss"] < 1e-10
    # on a straight line the exponential cannot do better than the line (it contains it as tau -> inf)
    line = tj.saturating_exponential_fit(t, 0.5 * t)
    assert line["rss"] <= 1e-6 * np.sum((0.5 * t - 0.5 * t.mean()) ** 2)


def test_quadratic_well_fit():
    x = np.linspace(-1, 3, 30)
    fit = tj.quadratic_well_fit(x, 0.2 + 4 * (x - 1.5) ** 2)
    assert fit["x0"] == pytest.approx(1.5) and fit["k"] == pytest.approx(4.0) and fit["c"] == pytest.approx(0.2)
    assert fit["width"] == pytest.approx(np.sqrt(0.2 / 4.0))
    assert fit["r2"] == pytest.approx(1.0)
    assert tj.quadratic_well_fit(x, -x ** 2)["width"] == np.inf  # a hill is no well


def test_drift_variance_closed_form():
    for T in (2, 7, 100):
        theta = 0.7 * np.arange(T) - 3.0
        assert tj.drift_variance(0.7, T) == pytest.approx(np.var(theta), rel=1e-12)
    with pytest.raises(ValueError):
        tj.drift_variance(1.0, 0)


def test_relaxation_variance_and_path():
    T, c, r, b = 300, 1.7, 0.01, 0.4
    path = b + c * np.exp(-r * np.arange(T))
    assert float(tj.relaxation_variance(c, r, T)) == pytest.approx(np.var(path), rel=1e-10)
    # the slow limit is the linear drift of slope -c r (000 eq. 6.6)
    tiny = 1e-9
    assert float(tj.relaxation_variance(c, tiny, T)) == pytest.approx(tj.drift_variance(c * tiny, T), rel=1e-6)
    # eq. 6.11 solves the averaged flow dw/dt = -eta [(h + 2 lam) w - h mu] and ends at mu / (1 + 2 lam / h)
    eta, lam, h, mu, w0 = 0.1, 0.05, 2.0, 1.0, 3.0
    t = np.linspace(0, 50, 5001)
    w = tj.relaxation_path(w0, mu, h, eta, lam, t)
    dwdt = np.gradient(w, t)
    np.testing.assert_allclose(dwdt[1:-1], -eta * ((h + 2 * lam) * w[1:-1] - h * mu), atol=1e-5)
    assert w[0] == pytest.approx(w0) and w[-1] == pytest.approx(mu / (1 + 2 * lam / h), rel=1e-3)
    with pytest.raises(ValueError, match="positive"):
        tj.relaxation_path(0, 0, -1.0, 0.1, 0.0, t)


def test_drift_mode_variance():
    assert tj.drift_mode_variance([0.6, 0.8], [2.0, 1.0]) == pytest.approx(0.36 * 2 + 0.64)
    with pytest.raises(ValueError):
        tj.drift_mode_variance([1.0], [1.0, 2.0])


def test_accumulated_weights():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    w = rng.standard_normal(6)
    rows = tj.accumulated_weights(w, Q, [0, 2, 6])
    np.testing.assert_allclose(rows[0], 0.0)
    np.testing.assert_allclose(rows[1], Q[:, :2] @ (Q[:, :2].T @ w), atol=1e-12)
    np.testing.assert_allclose(rows[2], w, atol=1e-12)  # a full basis rebuilds w(T)
    with pytest.raises(ValueError):
        tj.accumulated_weights(w, Q, [7])


def test_layer_logits_and_restore():
    model = models.mlp((3,), (4,), num_classes=2, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 3))
    variables = params.select_variables(model, "dense_1")
    w = params.get_flat(variables).numpy()
    rows = np.stack([w, 2 * w])
    out = tj.layer_logits(model, variables, rows, x)
    before = model(x).numpy()
    np.testing.assert_allclose(out[0], before, rtol=1e-12)
    params.set_flat(variables, 2 * w)
    np.testing.assert_allclose(out[1], model(x).numpy(), rtol=1e-12)
    params.set_flat(variables, w)
    np.testing.assert_allclose(params.get_flat(variables).numpy(), w)
    with pytest.raises(ValueError, match="shape"):
        tj.layer_logits(model, variables, np.zeros((2, 3)), x)
    with pytest.raises(ValueError, match="empty"):
        tj.layer_logits(model, variables, rows, x[:0])


def test_log_mean_cross_entropy():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 20, 5))
    y = rng.integers(0, 5, 20)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    direct = np.log(-np.take_along_axis(logp, np.broadcast_to(y[:, None], (3, 20, 1)), -1)[..., 0].mean(-1))
    np.testing.assert_allclose(tj.log_mean_cross_entropy(z, y), direct, rtol=1e-10)
    # a confident network: L = e^{-alpha m} (N = 1, one other class, margin m = 1): log L = -alpha
    for alpha in (50.0, 800.0):
        val = tj.log_mean_cross_entropy(np.array([[alpha, 0.0]]), np.array([0]))
        assert float(val) == pytest.approx(-alpha, rel=1e-9)
    with pytest.raises(ValueError, match="labels"):
        tj.log_mean_cross_entropy(z, y + 5)


def test_overlap_matrix():
    eye = np.eye(4)
    np.testing.assert_allclose(tj.overlap_matrix(eye, -eye[:, :2]), eye[:, :2])
    with pytest.raises(ValueError):
        tj.overlap_matrix(np.eye(3), np.eye(4))


def test_crossover_fit_recovers_the_breakpoint():
    h = np.logspace(-4, 0, 200)[::-1]
    s2 = np.where(h < 1e-2, (h / 1e-2) ** 1.0, 1.0) * 3e-5
    fit = tj.crossover_fit(h, s2)
    assert fit["h_cross"] == pytest.approx(1e-2, rel=0.05)
    assert fit["alpha"] == pytest.approx(1.0, rel=1e-2) and fit["r2"] > 0.999  # h_c on a grid of 400
    with pytest.raises(ValueError, match="positive"):
        tj.crossover_fit(-h[:10], s2[:10])


def test_scan_well_finds_an_offset_parabola():
    fit = tj.scan_well(lambda d: 0.3 + 2.0 * (d - 0.4) ** 2 + 0.01 * (d - 0.4) ** 4, extent=5.0)
    assert fit["fit"]["x0"] == pytest.approx(0.4, abs=1e-3)
    assert fit["fit"]["r2"] > 0.999 and not fit["at_edge"] and fit["used"] >= 5
    slope = tj.scan_well(lambda d: np.exp(-d), extent=2.0)  # no well: the minimum is at the edge
    assert slope["at_edge"]
    with pytest.raises(ValueError, match="extent"):
        tj.scan_well(lambda d: d ** 2, extent=0)


def test_power_law_fit_recovers_exponents():
    rng = np.random.default_rng(5)
    eta, T = np.meshgrid([0.01, 0.02, 0.04], [100, 200, 400, 800], indexing="ij")
    y = 3.0 * eta ** 2 * T ** 1.5 * np.exp(0.01 * rng.standard_normal(eta.shape))
    fit = tj.power_law_fit(y.ravel(), eta=eta.ravel(), T=T.ravel())
    assert fit["eta"] == pytest.approx(2.0, abs=4 * fit["se_eta"] + 1e-9)
    assert fit["T"] == pytest.approx(1.5, abs=4 * fit["se_T"] + 1e-9)
    exact = tj.power_law_fit((eta ** 2 * T).ravel(), eta=eta.ravel(), T=T.ravel())
    assert exact["eta"] == pytest.approx(2.0) and exact["se_eta"] < 1e-8
    with pytest.raises(ValueError, match="positive"):
        tj.power_law_fit([1.0, -1.0, 2.0, 3.0], x=[1, 2, 3, 4])


def test_objective_along_matches_the_model():
    import tensorflow as tf

    model = models.mlp((3,), (4,), num_classes=3, seed=1, dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    variables = params.select_variables(model, "dense_1")
    w = params.get_flat(variables).numpy()
    d = rng.standard_normal(w.size)
    lam = 0.01
    f = tj.objective_along(model, variables, x, y, d, weight_decay=lam)
    values = f(np.array([0.0, 0.5]))
    params.set_flat(variables, w + 0.5 * d)
    ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))
    penalty = lam * sum(float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables)
    params.set_flat(variables, w)
    assert values[1] == pytest.approx(float(ce) + penalty, rel=1e-10)
    with pytest.raises(ValueError, match="entries"):
        tj.objective_along(model, variables, x, y, d[:-1])
