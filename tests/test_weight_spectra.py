"""helpers.weight_spectra: every statistic against a case with a known answer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import random_matrix as rmt
from helpers import weight_spectra as ws


def test_layer_matrix_reshapes_convolutions_first_two_and_last_two():
    k = np.arange(3 * 3 * 4 * 5, dtype=float).reshape(3, 3, 4, 5)
    W = ws.layer_matrix(k)
    assert W.shape == (9, 20)
    assert W[4, 7] == k[1, 1, 1, 2]  # (kh*3 + kw, cin*5 + cout)
    assert ws.layer_matrix(np.ones((6, 2))).shape == (6, 2)
    with pytest.raises(ValueError, match="dense kernel"):
        ws.layer_matrix(np.ones((2, 2, 2)))


def test_matrix_spectrum_is_nu_squared_over_larger_dimension():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((30, 12))
    nu, ev, c = ws.matrix_spectrum(W)
    assert c == pytest.approx(12 / 30)
    np.testing.assert_allclose(np.sort(ev), np.sort(np.linalg.eigvalsh(W.T @ W / 30)), rtol=1e-10)
    np.testing.assert_allclose(nu, np.linalg.svd(W, compute_uv=False), rtol=1e-12)


def test_meng_yao_exact_mp_quantiles_give_a_small_distance_and_a_spike_a_large_one():
    # eigenvalues at the MP quantiles: the histogram converges to the density as n grows, so s_hat -> 0
    c, n = 0.3, 4000
    grid = np.linspace(*rmt.mp_edges(c), 20001)
    cdf = rmt.marchenko_pastur_cdf(grid, c)
    ev = np.interp((np.arange(n) + 0.5) / n, cdf, grid)
    my = ws.meng_yao_statistic(ev)
    assert my.bins == 2 * math.floor(n ** (1 / 3))
    assert my.c_hat == pytest.approx(c, rel=0.05) and my.sigma2_hat == pytest.approx(1.0, rel=0.05)
    assert my.s_hat < 0.05
    spiked = np.r_[ev, 20.0]
    assert ws.meng_yao_statistic(spiked).s_hat > 0.5  # the histogram collapses into the first bins


def test_meng_yao_uniform_spectrum_closed_form_limit():
    # a constant histogram against the MP density: L1 distance of the density from the uniform one on [a, b]
    c = 0.5
    a, b = rmt.mp_edges(c)
    n = 200000
    ev = a + (b - a) * (np.arange(n) + 0.5) / n
    ev[0], ev[-1] = a, b
    x = np.linspace(a, b, 400001)
    exact = np.trapezoid(np.abs(1 / (b - a) - rmt.marchenko_pastur_pdf(x, c)), x)
    assert ws.meng_yao_statistic(ev).s_hat == pytest.approx(exact, abs=0.01)


def test_null_scaled_statistic_in_meng_yao_range():
    vals = [ws.meng_yao_statistic(rmt.wishart_eigenvalues(300, 900, seed=s)).scaled for s in range(20)]
    assert np.mean((np.array(vals) >= 0.1) & (np.array(vals) <= 0.3)) >= 0.9


def test_wishart_eigenvalues_moments_match_dense_samples():
    n, N = 40, 100
    e = np.concatenate([rmt.wishart_eigenvalues(n, N, seed=s) for s in range(300)])
    c = n / N
    assert e.mean() == pytest.approx(1.0, rel=0.01)
    assert (e ** 2).mean() == pytest.approx(1 + c + 1 / N, rel=0.02)  # E tr (XX^T/N)^2 / n = 1 + c + 1/N
    with pytest.raises(ValueError):
        rmt.wishart_eigenvalues(10, 5)


def test_threshold_and_criterion_hook_fire_on_a_growing_spike():
    assert ws.spectral_threshold(1000, 0.4) == pytest.approx(0.4 * math.sqrt(math.log(1000)) / 10)
    import keras

    rng = np.random.default_rng(1)
    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(128, name="d")(inp))
    base = rng.standard_normal((64, 128)) / np.sqrt(128)
    u, v = rng.standard_normal(64), rng.standard_normal(128)
    crit = ws.SpectralCriterion("d", C=(0.4, 0.6))
    for epoch, strength in enumerate([0.0, 0.0, 5.0, 5.0], start=1):
        model.get_layer("d").kernel.assign((base + strength * np.outer(u, v) / 64).astype("float32"))
        assert crit(epoch, model, {}) is False
    assert crit.fired("d", 0.4) == 3 and crit.fired("d", 0.6) == 3
    again = ws.SpectralCriterion.from_arrays(crit.as_arrays(), ["d"])
    assert again.fired("d", 0.4) == 3
    stopper = ws.SpectralCriterion("d", stop_layer="d", stop_C=0.4)
    assert stopper(1, model) is True


def test_power_law_alpha_recovers_known_exponent_within_standard_error():
    hits = 0
    for s in range(10):
        rng = np.random.default_rng(s)
        alpha = 3.0
        x = (1 - rng.random(3000)) ** (-1 / (alpha - 1))  # Pareto with density ~ x^-alpha on [1, inf)
        fit = ws.power_law_alpha(x)
        hits += abs(fit["alpha"] - alpha) <= 2 * fit["alpha_se"]
    assert hits >= 9


def test_quality_metrics_on_matrices_with_known_values():
    # W = diag(nu) padded: stable rank sum(nu^2)/nu_max^2, one spike above a flat bulk
    nu = np.r_[10.0, np.ones(49)]
    W = np.zeros((50, 100))
    W[np.arange(50), np.arange(50)] = nu
    m = ws.quality_metrics(W)
    assert m["stable_rank"] == pytest.approx((100 + 49) / 100)
    assert m["lambda_max"] == pytest.approx(100.0)
    assert m["num_spikes"] == 1
    rng = np.random.default_rng(0)
    G = rng.standard_normal((200, 400))
    g = ws.quality_metrics(G)
    assert g["num_spikes"] <= 2 and g["mp_soft_rank"] == pytest.approx(1.0, abs=0.1)
    G[:, :] += 3 * np.outer(rng.standard_normal(200), rng.standard_normal(400)) / np.sqrt(200)
    spiked = ws.quality_metrics(G)
    assert spiked["num_spikes"] >= 1 and spiked["mp_soft_rank"] < 0.5
    assert spiked["alpha_weighted"] == pytest.approx(spiked["alpha"] * math.log10(spiked["lambda_max"]))


def test_classification_rule_on_built_spectra():
    mp = rmt.wishart_eigenvalues(400, 1000, seed=3)
    assert ws.classify_spectrum(mp, ratio=0.4).label == "LT"
    rng = np.random.default_rng(0)
    heavy = np.sort((1 - rng.random(400)) ** (-1 / 1.5))  # power-law tail alpha = 2.5
    cl = ws.classify_spectrum(heavy)
    assert cl.label == "HT" and cl.alpha < 4
    spiked = np.r_[mp, [8.0, 9.0, 10.0]]
    cs = ws.classify_spectrum(spiked, ratio=0.4)
    assert cs.label == "BT" and cs.num_spikes == 3
    collapsed = np.r_[np.full(300, 1e-9), mp[-100:]]
    assert ws.classify_spectrum(collapsed).label == "RC"


def test_model_spectra_table_remove_bulk_and_singular_matrices():
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(40, name="fc")(x)
    model = keras.Model(inp, out)
    base = rng.standard_normal((128, 40)) / np.sqrt(128)
    spike = 4 * np.outer(rng.standard_normal(128), rng.standard_normal(40)) / np.sqrt(128 * 40) * np.sqrt(40)
    model.get_layer("fc").kernel.assign((base + spike).astype("float32"))
    spectra = ws.model_spectra(model)
    assert list(spectra) == ["conv", "fc"]
    assert spectra["conv"].matrix_shape == (9, 16) and spectra["fc"].matrix_shape == (40, 128)
    header, rows = ws.spectra_table(spectra)
    assert len(rows) == 2 and len(rows[0]) == len(header)
    edited, kept = ws.remove_bulk(model, "fc")
    assert kept == spectra["fc"].mp.num_outliers >= 1
    nu_new = np.linalg.svd(edited.get_layer("fc").kernel.numpy(), compute_uv=False)
    assert np.sum(nu_new > 1e-4) == kept
    np.testing.assert_allclose(nu_new[:kept], spectra["fc"].singular_values[:kept], rtol=1e-4)
    np.testing.assert_allclose(edited.get_layer("conv").kernel.numpy(), model.get_layer("conv").kernel.numpy())
    # singular matrices sum to the kernel; their overlaps with themselves are one on the diagonal
    k = model.get_layer("conv").kernel.numpy()
    nu, mats = ws.singular_matrices(k)
    np.testing.assert_allclose(mats.sum(0), k.ravel(), atol=1e-5)
    P = (mats / np.linalg.norm(mats, axis=1, keepdims=True)).T
    P = np.vstack([P, np.zeros((8, P.shape[1]))])  # a bias block after the kernel
    _, S = ws.singular_matrix_pc_overlaps(k, P)
    np.testing.assert_allclose(S, np.eye(len(nu)), atol=1e-6)
    with pytest.raises(ValueError, match="weight layers"):
        ws.model_spectra(model, layers=["nope"])
    small = ws.layer_spectrum(np.random.default_rng(0).standard_normal((5, 5, 1, 6)))  # 25 x 6: too few values
    assert small.meng_yao is None and small.matrix_shape == (6, 25)
    assert ws.spectra_table({"s": small})[1][0][-1] == "–"
    with pytest.raises(ValueError):
        ws.meng_yao_statistic([1.0, 2.0])


def _spectral_run_setup(seed=3, n=60):
    from helpers import models

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 20)).astype("float32"), rng.integers(0, 3, size=n)
    return models.mlp(20, hidden=(24, 16), num_classes=3, seed=seed), (x, y)


def test_train_with_spectral_criterion_is_the_criterion_hook_plus_the_final_spectra():
    from helpers import losses, training

    model, xy = _spectral_run_setup()
    out = ws.train_with_spectral_criterion(model, xy, ["dense_1", "dense_2"], epochs=3, batch_size=16,
                                           lr=0.1, C=(0.4,), seed=5)
    # the same run by hand, from the same initialisation and minibatch seed
    ref_model, _ = _spectral_run_setup()
    crit = ws.SpectralCriterion(["dense_1", "dense_2"], (0.4,))
    crit.observe(0, ref_model)
    h = training.train_sgd(ref_model, losses.cross_entropy, xy, 3, 16, 0.1, eval_data=xy, on_epoch_end=crit,
                           seed=5)
    np.testing.assert_array_equal(out["crit_epochs"], [0, 1, 2, 3])
    np.testing.assert_array_equal(out["test_acc"], h["test_acc"])
    np.testing.assert_array_equal(out["crit_s_dense_1"], crit.as_arrays()["crit_s_dense_1"])
    assert len(out["acc"]) == 3
    for name in ("dense_1", "dense_2"):  # the final spectrum: eigenvalues of W^T W / N, dense float64
        W = model.get_layer(name).kernel.numpy().astype(np.float64)
        N, n = max(W.shape), min(W.shape)
        np.testing.assert_allclose(out[f"ev_{name}"], np.linalg.eigvalsh(W.T @ W / N)[-n:], rtol=1e-8,
                                   atol=1e-12)
        assert out[f"ratio_{name}"] == pytest.approx(n / N)
    again = ws.SpectralCriterion.from_arrays(out, ["dense_1", "dense_2"], (0.4,))
    assert again.epochs == [0, 1, 2, 3] and len(again.scaled["dense_2"]) == 4


def test_train_with_spectral_criterion_says_which_layers_exist():
    model, xy = _spectral_run_setup()
    with pytest.raises(ValueError, match=r"no dense or convolution layers \['dense_9'\].*dense_1"):
        ws.train_with_spectral_criterion(model, xy, ["dense_9"], epochs=1, batch_size=16, lr=0.1)
    with pytest.raises(TypeError, match="non-empty list of layer names"):
        ws.train_with_spectral_criterion(model, xy, [], epochs=1, batch_size=16, lr=0.1)
    with pytest.raises(TypeError, match="Keras model"):
        ws.train_with_spectral_criterion("mlp", xy, ["dense_1"], epochs=1, batch_size=16, lr=0.1)
