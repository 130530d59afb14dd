"""helpers.estimators: Hutchinson, Hutch++ and the diagonal against exact traces and diagonals (float64);
statistical checks use many probes and a generous multiple of the reported standard error."""
import helpers  # noqa: F401
import numpy as np
import pytest

from helpers import estimators as est
from helpers import operators
from test_operators import ce, data, mlp


@pytest.fixture(scope="module")
def hess():
    m = mlp()
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y))
    return op, op.to_dense(block_size=1)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_trace(hess, distribution):
    op, H = hess
    before = op.num_products
    r = est.hutchinson_trace(op, num_probes=300, distribution=distribution, seed=1, block_size=64)
    assert r.num_products == 300 and op.num_products - before == 300 and r.samples.shape == (300,)
    assert abs(r.value - np.trace(H)) <= 4 * r.stderr
    np.testing.assert_allclose(r.stderr, r.samples.std(ddof=1) / np.sqrt(300))
    again = est.hutchinson_trace(op, num_probes=300, distribution=distribution, seed=1, block_size=64)
    assert again.value == r.value  # reproducible from the seed


def test_hutchinson_samples_are_quadratic_forms():
    A = np.random.default_rng(0).normal(size=(12, 12))
    A = A + A.T
    op = operators.DenseOperator(A)
    r = est.hutchinson_trace(op, num_probes=7, block_size=3)  # two full blocks and a remainder of one
    assert r.samples.shape == (7,)
    # Rademacher: v^T A v = tr(A) + off-diagonal part, so every sample differs from tr A by an even-weighted sum
    assert np.all(np.isfinite(r.samples))


def test_rademacher_exact_for_diagonal_matrix():
    d = np.random.default_rng(1).normal(size=25)
    op = operators.DenseOperator(np.diag(d))
    r = est.hutchinson_trace(op, num_probes=5)
    np.testing.assert_allclose(r.samples, d.sum(), rtol=1e-12)  # v_i^2 = 1: every sample is exact
    diag = est.hutchinson_diagonal(op, num_probes=3)
    np.testing.assert_allclose(diag.value, d, rtol=1e-12)


def test_hutchpp_exact_on_low_rank_and_better_on_decaying_spectrum():
    rng = np.random.default_rng(2)
    U = np.linalg.qr(rng.normal(size=(60, 60)))[0]
    low = U[:, :4] @ np.diag([5.0, 3.0, -2.0, 1.0]) @ U[:, :4].T
    r = est.hutchpp_trace(operators.DenseOperator(low), num_products=30, seed=3)
    np.testing.assert_allclose(r.value, 7.0, rtol=1e-10)  # the sketch captures the whole range
    decay = U @ np.diag(1.0 / np.arange(1, 61) ** 2) @ U.T
    op = operators.DenseOperator(decay)
    errs_h, errs_pp = [], []
    for s in range(10):
        errs_h.append(abs(est.hutchinson_trace(op, num_probes=30, seed=s).value - np.trace(decay)))
        errs_pp.append(abs(est.hutchpp_trace(op, num_products=30, seed=s).value - np.trace(decay)))
    assert np.mean(errs_pp) < np.mean(errs_h)


def test_hutchpp_on_hessian(hess):
    op, H = hess
    r = est.hutchpp_trace(op, num_products=150, seed=4)
    assert r.num_products == 150
    assert abs(r.value - np.trace(H)) <= 4 * r.stderr + 1e-12


def test_diagonal(hess):
    op, H = hess
    np.testing.assert_allclose(est.exact_diagonal(op, block_size=10), np.diag(H), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(est.exact_trace(op), np.trace(H), rtol=1e-12)
    r = est.hutchinson_diagonal(op, num_probes=400, seed=5, block_size=100)
    z = (r.value - np.diag(H)) / np.maximum(r.stderr, 1e-12)
    assert np.mean(np.abs(z) < 3) > 0.95 and r.value.shape == (op.size,)
    g = est.hutchinson_diagonal(op, num_probes=400, distribution="gaussian", seed=5, block_size=100)
    assert np.corrcoef(g.value, np.diag(H))[0, 1] > 0.9


def test_error_paths(hess):
    op, _ = hess
    with pytest.raises(ValueError, match="num_probes"):
        est.hutchinson_trace(op, num_probes=0)
    with pytest.raises(ValueError, match="distribution"):
        est.hutchinson_trace(op, num_probes=3, distribution="uniform")
    with pytest.raises(ValueError, match="at least 3"):
        est.hutchpp_trace(op, num_products=2)
    with pytest.raises(TypeError, match="CurvatureOperator"):
        est.hutchinson_diagonal(np.eye(3), num_probes=3)
    with pytest.raises(ValueError, match="block_size"):
        est.hutchinson_trace(op, num_probes=3, block_size=0)
    assert np.isnan(est.hutchinson_trace(op, num_probes=1).stderr)
