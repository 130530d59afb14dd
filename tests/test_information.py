"""Tests of helpers.information and helpers.spin_models (I-COIN, I-GAUSS, I-ADD, both forms, spin levels)."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from helpers import geometry, information, spin_models


# ---------------------------------------------------------------- families
def coin_sequences_log_prob(x, theta):
    """n tosses of a coin with P(heads) = θ; outcomes x (M, n) in {0, 1}."""
    t = theta[:, :1]
    heads = tf.reduce_sum(x, axis=1)[None, :]
    n = float(x.shape[1])
    return heads * tf.math.log(t) + (n - heads) * tf.math.log(1.0 - t)


def binomial_log_prob(n):
    from scipy.special import gammaln

    def log_prob(y, theta):
        t = theta[:, :1]
        log_c = tf.constant(gammaln(n + 1) - gammaln(y.numpy() + 1) - gammaln(n - y.numpy() + 1))
        return log_c[None, :] + y[None, :] * tf.math.log(t) + (n - y[None, :]) * tf.math.log(1.0 - t)

    return log_prob


def categorical_log_prob(x, theta):
    """3 outcomes with logits (θ, θ², −θ); x holds outcome indices."""
    t = theta[:, :1]
    logits = tf.concat([t, t**2, -t], axis=1)
    logp = tf.nn.log_softmax(logits, axis=1)
    return tf.gather(logp, tf.cast(x, tf.int32), axis=1)


# ---------------------------------------------------------------- I-COIN
@pytest.mark.parametrize("form", ["score", "hessian"])
def test_coin_sequences_and_count_carry_the_same_information(form):
    n = 6
    seqs = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)
    thetas = np.array([[0.1], [0.37], [0.5], [0.8]])
    i_x = information.fisher_information(coin_sequences_log_prob, thetas, seqs, form=form)[:, 0, 0]
    i_y = information.fisher_information(binomial_log_prob(n), thetas, np.arange(n + 1.0), form=form)[:, 0, 0]
    exact = n / (thetas[:, 0] * (1 - thetas[:, 0]))
    assert np.allclose(i_x, exact, rtol=1e-12)
    assert np.allclose(i_y, exact, rtol=1e-12)


# ---------------------------------------------------------------- I-GAUSS
@pytest.mark.parametrize("form", ["score", "hessian"])
@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (-1.3, 0.4), (2.0, 3.5)])
def test_gaussian_family_matches_closed_form(form, mu, sigma):
    x, w = information.gauss_hermite_nodes(20, mu, sigma)
    got = information.fisher_information(information.gaussian_log_prob, [mu, sigma], x, w, form=form)
    assert np.allclose(got, information.gaussian_fisher_closed_form(sigma), rtol=0, atol=1e-10 / sigma**2)


def test_gaussian_fisher_metric_by_autodiff_has_curvature_minus_one():
    x, w = information.gauss_hermite_nodes(120, 0.0, 1.0)
    metric = information.fisher_metric(information.gaussian_log_prob, x, w)
    pts = np.array([[0.0, 1.0], [0.3, 0.9], [-0.2, 1.1]])
    assert np.allclose(metric(tf.constant(pts)).numpy(), information.gaussian_fisher_closed_form(pts[:, 1]), atol=1e-10)
    assert np.allclose(geometry.ricci_scalar(metric, pts), -1.0, atol=1e-8)


def test_sampled_fisher_is_within_its_error_bars():
    def sampler(theta, num, rng):
        return rng.normal(theta[0], theta[1], size=num)

    est, err = information.fisher_information_sampled(
        information.gaussian_log_prob, sampler, np.array([0.5, 2.0]), 20000, seed=3
    )
    exact = information.gaussian_fisher_closed_form(2.0)
    assert np.all(np.abs(est - exact) <= 5 * err + 1e-12)
    est_h, _ = information.fisher_information_sampled(
        information.gaussian_log_prob, sampler, np.array([0.5, 2.0]), 20000, seed=3, form="hessian"
    )
    assert abs(est_h[0, 0] - 0.25) < 1e-12  # −∂²ℓ/∂μ² = 1/σ² for every sample


# ---------------------------------------------------------------- I-ADD
@pytest.mark.parametrize("form", ["score", "hessian"])
def test_information_of_independent_observations_adds(form):
    thetas = np.array([[0.2], [0.55], [0.7]])
    coin_x = np.array([[0.0], [1.0]])
    cat_x = np.arange(3.0)
    pairs = np.array(list(itertools.product(range(2), range(3))), dtype=np.float64)

    def joint(x, theta):
        return coin_sequences_log_prob(x[:, :1], theta) + categorical_log_prob(x[:, 1], theta)

    i1 = information.fisher_information(coin_sequences_log_prob, thetas, coin_x, form=form)
    i2 = information.fisher_information(categorical_log_prob, thetas, cat_x, form=form)
    i12 = information.fisher_information(joint, thetas, pairs, form=form)
    assert np.allclose(i12, i1 + i2, rtol=1e-12)


# ---------------------------------------------------------------- error paths
def test_errors():
    seqs = np.array([[0.0], [1.0]])
    with pytest.raises(ValueError, match="form"):
        information.fisher_information(coin_sequences_log_prob, [0.3], seqs, form="observed")
    with pytest.raises(ValueError, match="sum to"):
        information.fisher_information(coin_sequences_log_prob, [0.3], seqs[:1])  # support incomplete
    with pytest.raises(ValueError, match="shape"):
        information.fisher_information(lambda x, t: tf.reduce_sum(t, axis=1), [0.3], seqs)
    with pytest.raises(ValueError, match="quad_weights"):
        information.fisher_information(coin_sequences_log_prob, [0.3], seqs, quad_weights=[1.0])
    with pytest.raises(TypeError, match="log_prob"):
        information.fisher_metric(None, seqs)
    with pytest.raises(ValueError, match="num_samples"):
        information.fisher_information_sampled(information.gaussian_log_prob, None, [0.0, 1.0], 1, seed=0)
    with pytest.raises(ValueError, match="sigma"):
        information.gaussian_fisher_distance([0.0, 1.0], [0.0, -1.0])


def test_gaussian_distance_is_symmetric_and_additive_along_sigma():
    a, b, c = np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.array([0.0, 4.0])
    assert np.isclose(information.gaussian_fisher_distance(a, b), information.gaussian_fisher_distance(b, a))
    # along μ = const the metric is 2 dσ²/σ², so d = √2 ln(σ_b/σ_a)
    assert np.isclose(information.gaussian_fisher_distance(a, b), np.sqrt(2) * np.log(2.0))
    assert np.isclose(
        information.gaussian_fisher_distance(a, c),
        information.gaussian_fisher_distance(a, b) + information.gaussian_fisher_distance(b, c),
    )


# ---------------------------------------------------------------- spin models
def _brute_force_ising(L):
    n = L * L
    rows = []
    for conf in itertools.product([-1, 1], repeat=n):
        s = np.array(conf).reshape(L, L)
        bond = (s * np.roll(s, 1, 0)).sum() + (s * np.roll(s, 1, 1)).sum()
        rows.append((-bond, s.sum()))
    return np.array(rows, dtype=np.float64)


def test_ising_levels_match_brute_force():
    lev = spin_models.ising2d(3)
    rows = _brute_force_ising(3)
    assert np.isclose(np.exp(lev.log_degeneracy).sum(), 2**9)
    for e, m, logd in zip(lev.energy, lev.magnetization, lev.log_degeneracy):
        count = np.sum((rows[:, 0] == e) & (rows[:, 1] == m))
        assert count == round(np.exp(logd))


@pytest.mark.parametrize("L", [2, 3, 4])
def test_row_transfer_counts_equal_the_enumeration(L):
    fast, slow = spin_models.ising2d(L), spin_models.ising2d_enumerated(L)
    key = lambda lev: {(e, m): d for e, m, d in zip(lev.energy, lev.magnetization, lev.log_degeneracy)}
    assert key(fast).keys() == key(slow).keys()
    assert all(abs(key(fast)[k] - key(slow)[k]) < 1e-12 for k in key(slow))


def test_row_transfer_on_a_larger_lattice_counts_every_state_and_is_symmetric():
    lev = spin_models.ising2d(5)
    assert np.isclose(np.logaddexp.reduce(lev.log_degeneracy), 25 * np.log(2.0), rtol=0, atol=1e-12)
    table = {(e, m): d for e, m, d in zip(lev.energy, lev.magnetization, lev.log_degeneracy)}
    assert all(np.isclose(d, table[(e, -m)]) for (e, m), d in table.items())  # spin flip: M -> -M
    assert np.isclose(table[(-50.0, 25.0)], 0.0)  # one ground state per sign: all spins up


def test_curie_weiss_levels_and_independent_limit():
    lev = spin_models.curie_weiss(40)
    assert np.isclose(np.exp(lev.log_degeneracy).sum(), 2.0**40)
    # tiny coupling: independent spins, Var(M) = N at h = 0
    weak = spin_models.curie_weiss(40, coupling=1e-9)
    g = spin_models.thermodynamic_metric(weak)(tf.constant([[1.0, 0.0]])).numpy()[0]
    assert np.isclose(g[1, 1], 40.0, rtol=1e-6)


@pytest.mark.parametrize("levels", [spin_models.curie_weiss(30), spin_models.ising2d(3)])
def test_thermodynamic_metric_is_the_covariance_and_the_fisher_information(levels):
    thetas = np.array([[0.3, 0.0], [0.45, 0.1], [0.8, -0.05]])
    g = spin_models.thermodynamic_metric(levels)(tf.constant(thetas)).numpy()
    stats = levels.stats()
    for b, th in enumerate(thetas):
        logw = levels.log_degeneracy + stats @ th
        p = np.exp(logw - logw.max())
        p /= p.sum()
        mean = p @ stats
        cov = ((stats - mean) * p[:, None]).T @ (stats - mean)
        assert np.allclose(g[b], cov, rtol=1e-9, atol=1e-9)
    # sufficiency: the Fisher information of the levels (both forms) is the same matrix
    outcomes = np.arange(len(levels.energy), dtype=np.float64)
    for form in ("score", "hessian"):
        info = information.fisher_information(spin_models.log_prob_levels(levels), thetas, outcomes, form=form)
        assert np.allclose(info, g, rtol=1e-9, atol=1e-9)


def test_moments_fisher_in_temperature_is_heat_capacity_over_t_squared():
    lev = spin_models.ising2d(3)
    T = np.array([1.5, 2.3, 3.0])
    mo = spin_models.moments(lev, T)
    g = spin_models.thermodynamic_metric(lev)(tf.constant(np.stack([1 / T, 0 * T], -1))).numpy()
    assert np.allclose(mo["fisher_beta"], g[:, 0, 0], rtol=1e-10)
    assert np.allclose(mo["fisher_temperature"], mo["heat_capacity"] / T**2, rtol=1e-12)


def test_spin_model_errors():
    with pytest.raises(ValueError, match="num_spins"):
        spin_models.curie_weiss(1)
    with pytest.raises(ValueError, match="size"):
        spin_models.ising2d(8)
    with pytest.raises(ValueError, match="size"):
        spin_models.ising2d_enumerated(6)
    with pytest.raises(ValueError, match="coupling"):
        spin_models.ising2d(3, coupling=-1.0)
    with pytest.raises(ValueError, match="positive"):
        spin_models.moments(spin_models.curie_weiss(10), [0.0, 1.0])


def test_hessian_form_metric_can_be_differentiated_for_curvature():
    x, w = information.gauss_hermite_nodes(120, 0.0, 1.0)
    metric = information.fisher_metric(information.gaussian_log_prob, x, w, form="hessian")
    pts = np.array([[0.0, 1.0], [0.2, 0.95]])
    assert np.allclose(metric(tf.constant(pts)).numpy(), information.gaussian_fisher_closed_form(pts[:, 1]), atol=1e-10)
    assert np.allclose(geometry.ricci_scalar(metric, pts), -1.0, atol=1e-8)


# ---------------------------------------------------------------- a network's three curvature matrices
def _small_network():
    from helpers import models

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.integers(0, 3, size=12)
    net = models.mlp(3, hidden=[4], num_classes=3, activation="tanh", seed=5, dtype="float64")
    w0 = net.get_weights()
    w1 = [w + 0.3 * rng.normal(size=w.shape) for w in w0]
    return net, (x, y), w0, w1


def test_network_fisher_spectra_match_the_dense_matrices():
    from helpers import losses, operators

    net, data, w0, w1 = _small_network()
    before = net.get_weights()
    P = sum(w.size for w in w0)  # 31; Hutch++ with 3 P products sketches the whole space: exact trace
    spec = information.network_fisher_spectra(net, losses.cross_entropy, data, {"a": w0, "b": w1},
                                              top_k=4, trace_products=3 * P, lanczos_seed=1, trace_seed=2)
    assert sorted(spec) == sorted(f"{s}/{m}/{q}" for s in "ab" for m in information.NETWORK_MATRICES
                                  for q in ("top", "trace"))
    for stage, w in (("a", w0), ("b", w1)):
        net.set_weights(w)
        dense = {"hessian": operators.hessian(net, losses.cross_entropy, data),
                 "true": operators.fisher(net, data, kind="true"),
                 "empirical": operators.fisher(net, data, kind="empirical", loss_fn=losses.cross_entropy)}
        for name, op in dense.items():
            A = np.asarray(op.to_dense())
            exact = np.sort(np.linalg.eigvalsh(0.5 * (A + A.T)))[::-1][:4]
            top = spec[f"{stage}/{name}/top"]
            assert top.shape == (4,) and np.all(np.diff(top) <= 0)  # descending
            np.testing.assert_allclose(top, exact, rtol=1e-6, atol=1e-10 * abs(exact[0]))
            np.testing.assert_allclose(spec[f"{stage}/{name}/trace"][0], np.trace(A), rtol=1e-8)
    # the true Fisher is the Gauss-Newton part of the cross-entropy Hessian: positive semi-definite
    assert np.all(spec["b/true/top"] >= 0) and np.all(spec["b/empirical/top"] >= 0)
    net.set_weights(w1)
    for a, b in zip(before, w0):
        np.testing.assert_array_equal(a, b)
    # the model's weights on entry are restored, and one matrix alone can be asked for
    only = information.network_fisher_spectra(net, losses.cross_entropy, data, {"b": w1}, 2, 9,
                                              matrices=["true"])
    assert sorted(only) == ["b/true/top", "b/true/trace"]
    for a, b in zip(net.get_weights(), w1):
        np.testing.assert_array_equal(a, b)


def test_network_fisher_spectra_check_their_arguments():
    from helpers import losses

    net, data, w0, _ = _small_network()
    ce = losses.cross_entropy
    call = lambda **kw: information.network_fisher_spectra(  # noqa: E731
        **{"model": net, "loss_fn": ce, "data": data, "weights": {"init": w0}, "top_k": 2,
           "trace_products": 9, **kw})
    with pytest.raises(TypeError, match="Keras model"):
        call(model="net")
    with pytest.raises(TypeError, match="per-example loss"):
        call(loss_fn=None)
    with pytest.raises(ValueError, match="pair \\(x, y\\)"):
        call(data=(data[0], data[1][:5]))
    with pytest.raises(TypeError, match="non-empty dict"):
        call(weights=w0)
    with pytest.raises(ValueError, match="without '/'"):
        call(weights={"a/b": w0})
    with pytest.raises(ValueError, match="weight shapes"):
        call(weights={"init": w0[:-1]})
    with pytest.raises(ValueError, match="matrices must be"):
        call(matrices=["hessian", "gauss-newton"])
    with pytest.raises(ValueError, match="matrices must be"):
        call(matrices="true")
    with pytest.raises(ValueError, match="top_k must be at least 1 and at most 31"):
        call(top_k=40)
    with pytest.raises(TypeError, match="top_k must be an integer"):
        call(top_k=2.0)
    with pytest.raises(ValueError, match="trace_products must be at least 3"):
        call(trace_products=2)


@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_kaufman_log_partition_equals_the_exact_levels(L):
    lev = spin_models.ising2d(L)
    beta = np.array([0.05, 0.3, 1 / spin_models.ONSAGER_TC, 0.5, 1.0, 3.0])  # β_c itself included
    exact = spin_models.log_partition(lev, np.c_[beta, 0 * beta]).numpy()
    closed = spin_models.ising2d_log_partition_h0(L, beta).numpy()
    assert np.allclose(closed, exact, rtol=1e-13, atol=0)


def test_kaufman_responses_equal_the_exact_moments_and_reject_bad_input():
    T = np.sort(np.r_[np.linspace(1.0, 4.0, 31), spin_models.ONSAGER_TC])  # T_c: where γ₀ = 0
    exact = spin_models.moments(spin_models.ising2d(5), T)
    closed = spin_models.ising2d_response_h0(5, T)
    for key in ("heat_capacity", "fisher_temperature"):
        assert np.allclose(closed[key], exact[key], rtol=1e-9, atol=0)
    big = spin_models.ising2d_response_h0(64, T)  # large lattices stay finite and positive
    assert np.all(np.isfinite(big["heat_capacity"])) and np.all(big["heat_capacity"] > 0)
    with pytest.raises(ValueError, match="positive"):
        spin_models.ising2d_response_h0(5, [1.0, -1.0])
    with pytest.raises(ValueError, match="size"):
        spin_models.ising2d_log_partition_h0(1, [1.0])


@pytest.mark.parametrize("L", [2, 3, 4, 5, 6])
def test_field_series_has_the_exact_even_moments_of_the_level_tables(L):
    lev, series = spin_models.ising2d(L), spin_models.ising2d_field_series(L)
    z = np.exp(lev.log_degeneracy)
    for i, e in enumerate(series.energy):
        at = lev.energy == e
        assert np.isclose(np.exp(series.log_z0[i]), z[at].sum(), rtol=1e-12)
        for k, mk in ((2, series.m2[i]), (4, series.m4[i])):
            assert np.isclose(mk, (z[at] * lev.magnetization[at] ** k).sum() / z[at].sum(), rtol=1e-12)
    assert set(series.energy) == set(lev.energy)


def test_field_series_gives_the_exact_metric_and_curvature_at_zero_field():
    from helpers import geometry

    lev, series = spin_models.ising2d(4), spin_models.ising2d_field_series(4)
    theta = np.c_[1 / np.linspace(1.5, 4.0, 7), np.zeros(7)]
    g_exact = spin_models.thermodynamic_metric(lev)(tf.constant(theta)).numpy()
    g_series = spin_models.thermodynamic_metric(series)(tf.constant(theta)).numpy()
    assert np.allclose(g_series, g_exact, rtol=1e-10, atol=1e-12 * np.abs(g_exact).max())
    r_exact = geometry.ricci_scalar(spin_models.thermodynamic_metric(lev), theta)
    r_series = geometry.ricci_scalar(spin_models.thermodynamic_metric(series), theta)
    assert np.allclose(r_series, r_exact, rtol=1e-8, atol=0)
    with pytest.raises(ValueError, match="size"):
        spin_models.ising2d_field_series(13)


@pytest.mark.parametrize("L", [7, 8, 10])
def test_field_series_partition_function_is_kaufmans_beyond_the_level_tables(L):
    # an independent closed form: log Σ_E e^{−βE} Z₀(E) against Kaufman's log Z at h = 0
    series = spin_models.ising2d_field_series(L)
    beta = 1 / np.array([1.0, 2.0, spin_models.ONSAGER_TC, 2.5, 4.0])
    logz = [np.logaddexp.reduce(series.log_z0 - b * series.energy) for b in beta]
    kaufman = spin_models.ising2d_log_partition_h0(L, beta).numpy()
    assert np.allclose(logz, kaufman, rtol=1e-13, atol=0)
    assert np.isclose(np.logaddexp.reduce(series.log_z0), L * L * np.log(2), rtol=1e-14)
    assert np.all(series.m2 >= 0) and np.all(series.m4 >= series.m2**2 * (1 - 1e-12))
