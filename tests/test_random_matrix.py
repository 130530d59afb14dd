"""Random-matrix tools against exact results and Gaussian-ensemble controls (helpers.random_matrix, spectra)."""
import numpy as np
import pytest
from scipy import integrate, stats

from helpers import random_matrix as rmt
from helpers import spectra


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_mp_density_integrates_to_one(ratio):
    lo, hi = rmt.mp_edges(ratio, 2.0)
    total, _ = integrate.quad(lambda x: rmt.marchenko_pastur_pdf(np.array([x]), ratio, 2.0)[0], lo, hi, limit=200)
    assert abs(total - 1.0) < 1e-6
    assert abs(rmt.marchenko_pastur_cdf(np.array([hi + 1.0]), ratio, 2.0)[0] - 1.0) < 1e-8


def test_mp_cdf_matches_quadrature_and_atom():
    ratio = 0.3
    xs = np.linspace(0.2, 1.9, 7)
    lo, _ = rmt.mp_edges(ratio)
    exact = [integrate.quad(lambda t: rmt.marchenko_pastur_pdf(np.array([t]), ratio)[0], lo, x, limit=200)[0] for x in xs]
    assert np.allclose(rmt.marchenko_pastur_cdf(xs, ratio), exact, atol=1e-7)
    # ratio > 1: atom 1 - 1/ratio at zero, continuous part integrates to 1/ratio
    assert abs(rmt.marchenko_pastur_cdf(np.array([1e-12]), 2.0)[0] - 0.5) < 1e-6


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_mp_matches_wishart_samples_and_fit(ratio):
    rng = np.random.default_rng(0)
    n = 500
    m = int(n / ratio)
    X = rng.normal(scale=np.sqrt(1.7), size=(n, m))
    ev = np.linalg.eigvalsh(X @ X.T / m)
    assert rmt.mp_ks_distance(ev, ratio, 1.7) < 0.05
    fit = rmt.mp_fit(np.concatenate([ev, [40.0, 60.0]]), ratio)
    assert abs(fit.sigma2 - 1.7) < 0.05 and fit.num_outliers == 2
    assert fit.ks_distance < 0.05


def test_goe_spacings_pass_wigner_and_poisson_fails():
    ev = np.linalg.eigvalsh(rmt.goe_matrix(600, seed=1))
    s = rmt.level_spacings(ev, degree=9, trim=0.1)
    assert abs(s.mean() - 1.0) < 1e-12
    assert rmt.spacing_ks_test(s).pvalue > 0.05
    # uncorrelated (Poisson) levels have exponential spacings: the surmise is rejected
    poisson = np.cumsum(np.random.default_rng(2).exponential(size=600))
    assert rmt.spacing_ks_test(rmt.level_spacings(poisson, degree=3)).pvalue < 1e-3


def test_unfold_spline_and_polynomial_agree_on_mean_spacing():
    ev = np.linalg.eigvalsh(rmt.goe_matrix(300, seed=3))
    for method in ("polynomial", "spline", "local"):
        u = rmt.unfold(ev, method=method)
        assert abs(np.mean(np.diff(u)) - 1.0) < 0.05


def test_local_unfolding_handles_a_density_over_decades():
    # GOE levels mapped through exp: the density spans decades, local unfolding still recovers Wigner spacings
    ev = np.linalg.eigvalsh(rmt.goe_matrix(800, seed=9))
    ev = np.exp(3 * ev / np.abs(ev).max())
    s = rmt.level_spacings(ev, method="local", window=10)
    assert rmt.spacing_ks_test(s).pvalue > 0.05
    with pytest.raises(ValueError, match="degenerate"):
        rmt.unfold(np.r_[np.zeros(40), np.arange(1.0, 40.0)], method="local")


def test_wigner_surmise_pdf_cdf_consistent():
    for beta in (1, 2):
        total, _ = integrate.quad(lambda s: rmt.wigner_surmise_pdf(s, beta), 0, np.inf)
        mean, _ = integrate.quad(lambda s: s * rmt.wigner_surmise_pdf(s, beta), 0, np.inf)
        assert abs(total - 1) < 1e-8 and abs(mean - 1) < 1e-8
        x = 1.3
        c, _ = integrate.quad(lambda s: rmt.wigner_surmise_pdf(s, beta), 0, x)
        assert abs(rmt.wigner_surmise_cdf(x, beta) - c) < 1e-8


def test_porter_thomas_equals_scipys_kstest_column_by_column():
    from scipy import stats

    V = np.random.default_rng(4).normal(size=(300, 6))
    V[:, 5] = np.r_[np.ones(10), np.zeros(290)]  # localised: a tiny p-value
    for j, res in enumerate(rmt.porter_thomas_test(V)):
        x = 300 * V[:, j] ** 2 / np.sum(V[:, j] ** 2)
        ref = stats.kstest(x, stats.chi2(df=1).cdf)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_porter_thomas_accepts_gaussian_rejects_localised():
    rng = np.random.default_rng(4)
    V = rng.normal(size=(2000, 20))
    p = [r.pvalue for r in rmt.porter_thomas_test(V)]
    assert np.mean(np.array(p) > 0.01) >= 0.9
    v = np.zeros(2000)
    v[:50] = rng.normal(size=50)
    assert rmt.porter_thomas_test(v).pvalue < 1e-6


def test_ipr_delocalised_localised_random():
    n = 400
    assert abs(rmt.inverse_participation_ratio(np.ones(n)) - 1.0 / n) < 1e-15
    e = np.zeros(n)
    e[7] = -2.0
    assert rmt.inverse_participation_ratio(e) == 1.0
    g = np.random.default_rng(5).normal(size=(n, 200))
    assert abs(np.mean(rmt.inverse_participation_ratio(g)) * n - 3.0) < 0.3


def test_power_law_tail_fit_recovers_exponent():
    rng = np.random.default_rng(6)
    x = (1 - rng.random(5000)) ** (-1 / 1.5)  # Pareto with density exponent alpha = 2.5, xmin = 1
    fit = rmt.power_law_tail_fit(x, xmin=1.0)
    assert abs(fit.alpha - 2.5) < 0.1
    free = rmt.power_law_tail_fit(x)
    assert abs(free.alpha - 2.5) < 0.3


def test_smoothed_density_and_distances():
    rng = np.random.default_rng(7)
    a = rng.normal(size=3000)
    grid, d = spectra.smoothed_density(a, sigma=0.2, grid=np.linspace(-8, 8, 2001))
    assert abs(np.trapezoid(d, grid) - 1.0) < 1e-6
    # Wasserstein-1 between a spectrum and its shift by c is c; scale normalisation removes a rescaling
    assert abs(spectra.wasserstein_distance(a, a + 0.7) - 0.7) < 1e-12
    assert spectra.wasserstein_distance(a, 3 * a, normalize="scale") < 1e-12
    assert abs(spectra.wasserstein_distance([0.0], [1.0], normalize="width") - 1.0) < 1e-12
    # weighted form equals repeating values
    assert abs(spectra.wasserstein_distance([0, 1], [0, 1, 1], weights_a=[1, 2]) - 0.0) < 1e-12
    _, d2 = spectra.smoothed_density(a + 20, sigma=0.2, grid=grid)
    assert spectra.jensen_shannon_distance(d, d) < 1e-7
    js_far = spectra.jensen_shannon_distance(d, np.exp(-0.5 * (grid - 6) ** 2))
    assert 0.9 < js_far <= 1.0
    # subnormal tails (which vanish when halved) must not make the distance infinite
    tiny = np.r_[1.0, 5e-324, 0.0]
    assert np.isfinite(spectra.jensen_shannon_distance(tiny, np.r_[1.0, 0.0, 0.0]))


def test_count_outliers_on_spiked_spectrum():
    rng = np.random.default_rng(8)
    bulk = rng.normal(scale=0.05, size=2000)
    spikes = np.array([40.0, 25.0, 18.0, 12.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0])
    assert spectra.count_outliers(np.concatenate([bulk, spikes])) == 10
    assert spectra.count_outliers(rng.uniform(1, 2, size=500)) == 0
    # two close spikes (closer than 2 sigma) still count as two outliers above the bulk
    assert spectra.count_outliers(np.r_[bulk, 40.0, 39.9], sigma=0.1) == 2
    with pytest.raises(ValueError, match="three"):
        spectra.count_outliers([1.0, 2.0])


def test_errors_are_clear():
    with pytest.raises(ValueError, match="ratio"):
        rmt.mp_edges(-1)
    with pytest.raises(ValueError, match="sigma2"):
        rmt.marchenko_pastur_pdf([1.0], 0.5, sigma2=0)
    with pytest.raises(ValueError, match="unfolding method"):
        rmt.unfold(np.arange(20.0), method="magic")
    with pytest.raises(ValueError, match="degree"):
        rmt.unfold(np.arange(5.0), degree=9)
    with pytest.raises(ValueError, match="non-negative"):
        rmt.spacing_ks_test([-1.0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        rmt.level_spacings([1.0, np.nan, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="zero vector"):
        rmt.inverse_participation_ratio(np.zeros(4))
    with pytest.raises(ValueError, match="N >= 5"):
        rmt.porter_thomas_test(np.ones(3))
    with pytest.raises(ValueError, match="same grid"):
        spectra.jensen_shannon_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="normalize"):
        spectra.wasserstein_distance([1.0], [2.0], normalize="bogus")
    with pytest.raises(ValueError, match="beta"):
        rmt.wigner_surmise_pdf(1.0, beta=4)


def test_brody_levels_bridge_poisson_and_wigner():
    from scipy import stats

    for q in (0.0, 0.5, 1.0):
        s = np.diff(rmt.brody_levels(q, 20001, seed=4))
        assert abs(s.mean() - 1) < 0.02
    poisson = np.diff(rmt.brody_levels(0, 5001, seed=5))
    assert stats.kstest(poisson, "expon").pvalue > 0.01
    assert rmt.spacing_ks_test(poisson).pvalue < 1e-10
    wigner = np.diff(rmt.brody_levels(1, 5001, seed=6))
    assert rmt.spacing_ks_test(wigner).pvalue > 0.01
    assert np.array_equal(rmt.brody_levels(0.5, 100, seed=1), rmt.brody_levels(0.5, 100, seed=1))
    for bad in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="q must be"):
            rmt.brody_levels(bad, 10)
    with pytest.raises(ValueError, match="n must be"):
        rmt.brody_levels(0.5, 1)
