"""helpers.spectra: the outlier edge by eigenvalue ratios, Gaussian unfolding and the spacing ratio."""
import numpy as np
import pytest

from helpers import random_matrix as rmt
from helpers import spectra


def test_ratio_outliers_finds_the_spikes_and_an_edge_between_them_and_the_bulk():
    rng = np.random.default_rng(0)
    bulk = rng.uniform(-0.1, 1.0, size=800)
    spikes = np.linspace(8.0, 30.0, 10)
    k, edge = spectra.ratio_outliers(np.r_[bulk, spikes], 30)
    assert k == 10
    assert bulk.max() < edge < spikes.min()


def test_ratio_outliers_ignores_a_sparse_shoulder_that_the_gap_rule_counts():
    # a bulk whose upper tail is sparse (spacings wider than 2 sigma) followed by 4 clear outliers
    rng = np.random.default_rng(1)
    bulk = np.r_[rng.uniform(0, 1.0, size=400), 2.5, 4.0, 5.5]
    spikes = np.array([30.0, 34.0, 38.0, 43.0])
    values = np.r_[bulk, spikes]
    assert spectra.count_outliers(values) > 4
    assert spectra.ratio_outliers(values, 12)[0] == 4


def test_ratio_outliers_checks_its_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        spectra.ratio_outliers([3.0, 2.0, 1.0], 0)
    with pytest.raises(ValueError, match="positive integer"):
        spectra.ratio_outliers([3.0, 2.0, 1.0], 1.5)
    with pytest.raises(ValueError, match="at least max_outliers"):
        spectra.ratio_outliers([3.0, 2.0, -1.0], 2)
    with pytest.raises(ValueError, match="NaN"):
        spectra.ratio_outliers([3.0, np.nan, 1.0], 1)


def test_unfold_gaussian_counts_well_separated_levels_and_smooths_close_ones():
    x = 100.0 * np.arange(10)
    assert np.allclose(spectra.unfold_gaussian(x[::-1], sigma=1.0), np.arange(10) + 0.5)
    wide = spectra.unfold_gaussian(np.linspace(0, 1e-3, 50), sigma=1.0)
    assert np.all(np.diff(wide) >= 0) and np.allclose(wide, 25.0, atol=0.1)


def test_unfold_gaussian_checks_its_arguments():
    with pytest.raises(ValueError, match="at least two"):
        spectra.unfold_gaussian([1.0])
    with pytest.raises(ValueError, match="sigma"):
        spectra.unfold_gaussian([1.0, 2.0], sigma=0.0)
    with pytest.raises(ValueError, match="NaN"):
        spectra.unfold_gaussian([1.0, np.inf])


def test_mean_spacing_ratio_poisson_goe_and_picket_fence():
    rng = np.random.default_rng(2)
    assert abs(spectra.mean_spacing_ratio(rng.uniform(size=20000)) - 0.386) < 0.01
    goe = np.linalg.eigvalsh(rmt.goe_matrix(1500, seed=3))
    assert abs(spectra.mean_spacing_ratio(goe) - 0.531) < 0.015
    assert spectra.mean_spacing_ratio(np.arange(10.0)) == pytest.approx(1.0)
    assert spectra.mean_spacing_ratio([0.0, 0.0, 0.0, 1.0, 3.0]) == pytest.approx(0.25)


def test_mean_spacing_ratio_checks_its_arguments():
    with pytest.raises(ValueError, match="three"):
        spectra.mean_spacing_ratio([1.0, 2.0])
    with pytest.raises(ValueError, match="zero"):
        spectra.mean_spacing_ratio([1.0, 1.0, 1.0])


def test_plot_density_draws_the_smoothed_density_with_a_floor_on_a_log_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.r_[np.linspace(-0.1, 0.1, 50), 5.0]
    fig, ax = plt.subplots()
    line = spectra.plot_density(ax, values, num_points=300, floor=1e-3, label="spectrum", ls="--")
    grid, dens = spectra.smoothed_density(values, num_points=300)
    np.testing.assert_allclose(line.get_xdata(), grid)
    np.testing.assert_allclose(line.get_ydata(), np.maximum(dens, 1e-3))
    assert ax.get_yscale() == "log" and line.get_label() == "spectrum" and line.get_linestyle() == "--"
    with pytest.raises(ValueError, match="floor"):
        spectra.plot_density(ax, values, floor=0.0)
    with pytest.raises(TypeError, match="axes"):
        spectra.plot_density(None, values)
    plt.close(fig)
