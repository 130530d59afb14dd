"""The book's figure style: every figure fits the text column, so the page shows it at its natural size."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import plotting  # noqa: E402


@pytest.mark.parametrize("nrows,ncols,width,height", [(1, 1, 6.0, 3.6), (1, 2, 4.8, 3.5), (1, 3, 3.9, 3.3),
                                                      (2, 2, 4.2, 3.0), (3, 1, 9.0, 3.0)])
def test_figures_never_exceed_the_text_column(nrows, ncols, width, height):
    w, h = plotting.figure_size(nrows, ncols, width, height)
    assert w <= plotting.TEXT_WIDTH + 1e-9
    assert h >= nrows * min(height, plotting.MIN_PANEL_HEIGHT) - 1e-9
    if width * ncols <= plotting.TEXT_WIDTH:
        assert (w, h) == (width * ncols, height * nrows)  # a figure that fits is left alone


def test_saved_figure_is_no_wider_than_the_column_in_pixels(tmp_path):
    plotting.use_book_style()
    fig, axes = plotting.subplots(1, 2, width=5.0, height=3.4)
    for ax in axes:
        ax.plot(np.arange(10), np.arange(10) ** 2, label="a curve")
        ax.set(xlabel="epoch", ylabel="loss", title="a title")
        ax.legend()
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    width_px = plt.imread(tmp_path / "f.png").shape[1]
    pad = plotting.BOOK_STYLE["savefig.pad_inches"]
    assert width_px <= (plotting.TEXT_WIDTH + 2 * pad) * plotting.BOOK_STYLE["savefig.dpi"] + 2
    # tick labels: 9 pt at 110 dpi is 13.75 px on the page, above the 10 px a reader needs
    assert plotting.BOOK_STYLE["xtick.labelsize"] * plotting.BOOK_STYLE["figure.dpi"] / 72 >= 10


def test_too_many_columns_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at most 3 columns"):
        plotting.figure_size(1, 5)
    with pytest.raises(ValueError, match="positive"):
        plotting.figure_size(1, 1, width=0)
    with pytest.raises(ValueError, match="at least one row"):
        plotting.subplots(0, 1)


def test_heatmap_draws_without_grid_and_checks_its_input():
    plotting.use_book_style()
    fig, ax = plt.subplots()
    image = plotting.heatmap(ax, np.eye(3), colorbar="overlap")
    assert image.get_array().shape == (3, 3)
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
    with pytest.raises(ValueError, match="2-D"):
        plotting.heatmap(ax, np.arange(3))
    plt.close(fig)


def test_quadratic_paths_draws_each_path_and_its_closed_form_loss():
    plotting.use_book_style()
    fig, axes = plotting.subplots(1, 2, width=4.6, height=3.4)
    a = np.array([1.0, 10.0])
    t = np.arange(31)[:, None]
    paths = {"GD": np.array([-4.0, 1.5]) * 0.9 ** t, "other": np.array([-4.0, 1.5]) * 0.8 ** t,
             "third": np.zeros((31, 2))}
    out = plotting.quadratic_paths(axes, paths, a, {"GD": {"color": "k", "ls": "--"}}, title="Paths, η = 0.1")
    ax, ax_loss = out
    assert len(ax.lines) == 3 and len(ax_loss.lines) == 3 and ax.collections  # the contour lines
    assert ax.lines[0].get_color() == "k" and ax.lines[1].get_color() == plotting.PALETTE[1]
    np.testing.assert_allclose(ax_loss.lines[1].get_ydata(), 0.5 * (a * paths["other"] ** 2).sum(1) + 1e-12)
    assert ax_loss.get_yscale() == "log" and ax.get_title() == "Paths, η = 0.1"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax_loss.get_ylabel()) == ("w₁", "w₂", "loss L(w)")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["GD", "other", "third"]
    plt.close(fig)


def test_quadratic_paths_says_what_is_wrong():
    fig, axes = plotting.subplots(1, 2)
    good = {"GD": np.zeros((3, 2))}
    with pytest.raises(TypeError, match="two Axes"):
        plotting.quadratic_paths(axes[0], good, [1.0, 10.0])
    with pytest.raises(ValueError, match="two positive numbers"):
        plotting.quadratic_paths(axes, good, [1.0, -1.0])
    with pytest.raises(ValueError, match=r"\(T \+ 1, 2\) array"):
        plotting.quadratic_paths(axes, {"GD": np.zeros((3, 3))}, [1.0, 10.0])
    with pytest.raises(ValueError, match="not drawn"):
        plotting.quadratic_paths(axes, good, [1.0, 10.0], {"SGD": {"color": "r"}})
    with pytest.raises(ValueError, match="empty"):
        plotting.quadratic_paths(axes, {}, [1.0, 10.0])
    plt.close(fig)


def test_esd_with_mp_fit_draws_the_histogram_and_the_fitted_density():
    from helpers import random_matrix as rmt

    plotting.use_book_style()
    fig, ax = plt.subplots()
    ev = rmt.wishart_eigenvalues(200, 400, seed=0)
    fit = plotting.esd_with_mp_fit(ax, ev, 0.5, bins=30, title="an MP sample")
    assert len(ax.patches) == 30 and len(ax.lines) == 1
    x, y = ax.lines[0].get_data()
    assert x[0] == pytest.approx(fit.lower) and x[-1] == pytest.approx(fit.upper)
    np.testing.assert_allclose(y, rmt.marchenko_pastur_pdf(x, 0.5, fit.sigma2))
    assert fit.sigma2 == pytest.approx(1.0, rel=0.1)  # a Wishart sample of variance 1
    assert ax.get_yscale() == "log" and ax.get_title() == "an MP sample"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("eigenvalue λ", "density")
    with pytest.raises(ValueError, match="1-D array"):
        plotting.esd_with_mp_fit(ax, np.ones((3, 3)), 0.5)
    with pytest.raises(ValueError, match="bins"):
        plotting.esd_with_mp_fit(ax, ev, 0.5, bins=0)
    plt.close(fig)


def _sweep_results():
    rng = np.random.default_rng(0)
    out = {}
    for m in ("hessian", "sv"):
        for lam in (10.0, 100.0, 1000.0):
            for task in "AB":
                out[f"{m}_{lam:g}_{task}"] = rng.uniform(0, 0.5, size=5)
    out["sv_1000_A"] = out["sv_1000_B"] = np.full(5, np.nan)  # a diverged run
    return out


def test_penalty_strength_sweep_draws_curves_at_one_strength_and_the_best_sums():
    plotting.use_book_style()
    fig, axes = plotting.subplots(1, 2, width=4.3, height=3.2)
    res = _sweep_results()
    ax1, ax2 = plotting.penalty_strength_sweep(axes, res, 100.0, [10.0, 100.0, 1000.0],
                                               {"hessian": "L_cf", "sv": "L_sv"})
    assert len(ax1.lines) == 4 and len(ax2.lines) == 3  # 2 methods x 2 tasks; 2 sums and the marker
    np.testing.assert_allclose(ax1.lines[2].get_ydata(), 100 * res["sv_100_A"])
    np.testing.assert_array_equal(ax1.lines[0].get_xdata(), np.arange(1, 6))
    best = [np.max(100 * (res[f"sv_{l:g}_A"] + res[f"sv_{l:g}_B"])) for l in (10.0, 100.0)]
    np.testing.assert_allclose(ax2.lines[1].get_ydata(), best + [0.0])  # the diverged run at zero
    assert ax2.get_xscale() == "log" and ax1.get_title() == "λ = 100"
    assert [t.get_text() for t in ax1.get_legend().get_texts()] == ["L_cf, A", "L_cf, B", "L_sv, A", "L_sv, B"]
    assert (ax1.get_ylabel(), ax2.get_xlabel()) == ("test accuracy (%)", "strength λ")
    plt.close(fig)


def test_penalty_strength_sweep_says_what_is_wrong():
    fig, axes = plotting.subplots(1, 2)
    res, grid, methods = _sweep_results(), [10.0, 100.0, 1000.0], {"hessian": "L_cf"}
    with pytest.raises(ValueError, match="not in the sweep"):
        plotting.penalty_strength_sweep(axes, res, 5.0, grid, methods)
    with pytest.raises(ValueError, match="results lack"):
        plotting.penalty_strength_sweep(axes, res, 10.0, grid, {"ewc": "EWC"})
    with pytest.raises(ValueError, match="positive"):
        plotting.penalty_strength_sweep(axes, res, 10.0, [], methods)
    with pytest.raises(TypeError, match="two Axes"):
        plotting.penalty_strength_sweep(axes[0], res, 10.0, grid, methods)
    plt.close(fig)
