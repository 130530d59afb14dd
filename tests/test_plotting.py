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
