"""helpers.eigensolvers against numpy.linalg.eigh in float64: Lanczos (all four 'which'), power iteration,
eigsh, dense eigh and SLQ (identity I-LANCZOS, I-SLQ), on explicit matrices and on a network's Hessian."""
import helpers  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import wasserstein_distance

from helpers import eigensolvers as es
from helpers import operators
from test_operators import ce, data, mlp


def sym(n, seed=0):
    A = np.random.default_rng(seed).normal(size=(n, n))
    return (A + A.T) / 2


@pytest.fixture(scope="module")
def hess():
    m = mlp()
    x, y = data((5,))
    op = operators.hessian(m, ce, (x, y))
    H = op.to_dense(block_size=1)
    return op, (H + H.T) / 2


def wanted(w, k, which):
    if which == "LA":
        return w[::-1][:k]
    if which == "SA":
        return w[:k]
    if which == "LM":
        return w[np.argsort(-np.abs(w), kind="stable")][:k]
    hi = (k + 1) // 2
    return np.sort(np.r_[w[::-1][:hi], w[:k - hi]])[::-1]


@pytest.mark.parametrize("which", ["LA", "SA", "LM", "BE"])
def test_lanczos_matches_eigh(which):
    A = sym(70)
    w = np.linalg.eigvalsh(A)
    op = operators.DenseOperator(A)
    r = es.lanczos(op, 6, which=which, tol=1e-10, seed=3)
    np.testing.assert_allclose(r.eigenvalues, wanted(w, 6, which), rtol=1e-8, atol=1e-12)
    assert r.converged.all() and r.eigenvectors.shape == (70, 6)
    np.testing.assert_allclose(r.eigenvectors.T @ r.eigenvectors, np.eye(6), atol=1e-10)
    res = np.linalg.norm(A @ r.eigenvectors - r.eigenvectors * r.eigenvalues, axis=0)
    np.testing.assert_allclose(r.residuals, res, atol=1e-12)
    assert r.num_products == op.num_products >= r.num_iterations + 6
    assert r.complete is (True if which in ("SA", "BE") else None)
    # unpacking and reproducibility from the seed
    vals, vecs = es.lanczos(op, 6, which=which, tol=1e-10, seed=3)
    np.testing.assert_array_equal(vals, r.eigenvalues)


def test_lanczos_top10_of_hessian(hess):
    op, H = hess
    w = np.linalg.eigvalsh(H)
    r = es.lanczos(op, 10, which="LA", tol=1e-10)
    rel_err = np.abs(r.eigenvalues - w[::-1][:10]) / np.abs(w[::-1][:10])
    assert rel_err.max() <= 1e-8  # identity I-LANCZOS
    both = es.lanczos(op, 4, which="BE")
    np.testing.assert_allclose(both.eigenvalues, wanted(w, 4, "BE"), rtol=1e-8, atol=1e-10)


def test_lanczos_full_dimension_and_repeated_eigenvalues():
    d = np.r_[np.full(6, 2.0), np.linspace(-1, 1, 14)]  # a 6-fold eigenvalue: Lanczos must restart to see it
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(20, 20)))
    op = operators.DenseOperator(Q @ np.diag(d) @ Q.T)
    r = es.lanczos(op, 20, which="SA", tol=1e-10)
    np.testing.assert_allclose(r.eigenvalues, np.sort(d), atol=1e-9)
    top = es.lanczos(op, 7, which="LA", max_iter=20)
    np.testing.assert_allclose(top.eigenvalues, np.r_[np.full(6, 2.0), 1.0], atol=1e-9)


def test_lanczos_tridiagonal_is_orthogonal_projection():
    A = sym(30, seed=2)
    a, b, Q = es.lanczos_tridiagonal(operators.DenseOperator(A), 12, seed=4)
    T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    np.testing.assert_allclose(Q @ Q.T, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(Q @ A @ Q.T, T, atol=1e-10)


def test_lanczos_float32():
    A = sym(50, seed=5).astype(np.float32)
    op = operators.DenseOperator(A)
    assert op.dtype == tf.float32
    r = es.lanczos(op, 3, which="LA")
    np.testing.assert_allclose(r.eigenvalues, np.linalg.eigvalsh(A.astype(np.float64))[::-1][:3], rtol=1e-5)
    assert r.eigenvectors.dtype == np.float32


def test_not_converged_is_reported():
    A = np.diag(np.linspace(1.0, 1.01, 200))  # clustered top: 5 steps cannot resolve it
    r = es.lanczos(operators.DenseOperator(A), 3, which="LA", max_iter=5, tol=1e-12)
    assert not r.converged.all() and r.num_iterations == 5


def test_power_iteration_with_deflation():
    d = np.r_[10.0, -7.0, 4.0, np.linspace(-1, 1, 37)]
    Q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(40, 40)))
    op = operators.DenseOperator(Q @ np.diag(d) @ Q.T)
    r = es.power_iteration(op, 3, tol=1e-12, max_iter=2000, seed=1)
    np.testing.assert_allclose(r.eigenvalues, [10.0, -7.0, 4.0], rtol=1e-8)
    assert r.converged.all() and r.num_products == op.num_products
    for i, lam in enumerate(r.eigenvalues):
        v = r.eigenvectors[:, i]
        assert np.linalg.norm(op.to_dense(block_size=1) @ v - lam * v) < 1e-4 * abs(lam)


@pytest.mark.parametrize("which", ["LA", "SA", "LM", "BE"])
def test_eigsh_bridge(hess, which):
    op, H = hess
    w = np.linalg.eigvalsh(H)
    r = es.eigsh(op, 4, which=which)
    np.testing.assert_allclose(r.eigenvalues, wanted(w, 4, which), rtol=1e-7, atol=1e-10)
    assert r.num_products > 4


def test_dense_eigh(hess):
    op, H = hess
    r = es.dense_eigh(op, block_size=16)
    np.testing.assert_allclose(r.eigenvalues, np.linalg.eigvalsh(H), atol=1e-12)
    assert r.residuals.max() < 1e-10 and r.num_products == op.size
    with pytest.raises(ValueError, match="max_bytes"):
        es.dense_eigh(op, max_bytes=100)


def test_slq_density_close_to_exact(hess):
    op, H = hess
    w = np.linalg.eigvalsh(H)
    d = es.slq_density(op, num_probes=20, num_steps=30, seed=7)
    assert d.nodes.shape == (20, 30) and d.weights.shape == (20, 30)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-10)
    assert abs(np.trapezoid(d.density, d.grid) - 1.0) < 1e-3
    dist = wasserstein_distance(d.nodes.ravel(), w, u_weights=d.weights.ravel())
    assert dist <= 0.02 * (w.max() - w.min())  # identity I-SLQ
    assert d.num_products == 20 * 30
    # the smoothed density on a grid agrees with the smoothed exact spectrum (both are probability densities)
    g = np.linspace(w.min(), w.max(), 200)
    dd = es.slq_density(op, num_probes=20, num_steps=30, seed=7, grid=g, sigma=0.05 * (w.max() - w.min()))
    exact = np.exp(-0.5 * ((g[:, None] - w[None]) / dd.sigma) ** 2).sum(1) / (len(w) * dd.sigma * np.sqrt(2 * np.pi))
    assert np.trapezoid(np.abs(dd.density - exact), g) < 0.2


def test_slq_gaussian_probes_on_explicit_matrix():
    A = sym(40, seed=8)
    w = np.linalg.eigvalsh(A)
    d = es.slq_density(operators.DenseOperator(A), num_probes=10, num_steps=40, distribution="gaussian")
    # 40 steps on a 40 x 40 matrix: every probe's quadrature is exact, nodes are the eigenvalues
    np.testing.assert_allclose(np.sort(d.nodes, axis=1), np.tile(w, (10, 1)), atol=1e-9)


def test_error_paths(hess):
    op, _ = hess
    with pytest.raises(ValueError, match="larger than the dimension"):
        es.lanczos(op, op.size + 1)
    with pytest.raises(ValueError, match="larger than the dimension"):
        es.power_iteration(op, op.size + 1)
    with pytest.raises(ValueError, match="which"):
        es.lanczos(op, 2, which="XX")
    with pytest.raises(ValueError, match="positive integer"):
        es.lanczos(op, 0)
    with pytest.raises(ValueError, match="max_iter"):
        es.lanczos(op, 5, max_iter=3)
    with pytest.raises(ValueError, match="k < P"):
        es.eigsh(op, op.size)
    with pytest.raises(TypeError, match="CurvatureOperator"):
        es.lanczos(np.eye(3), 1)
    with pytest.raises(ValueError, match="num_probes"):
        es.slq_density(op, num_probes=0)
    with pytest.raises(ValueError, match="distribution"):
        es.slq_density(op, num_probes=2, num_steps=3, distribution="uniform")
    with pytest.raises(ValueError, match="zero"):
        es.lanczos(op, 1, v0=np.zeros(op.size))


def triple(seed=1):
    """A 60 x 60 matrix with a triple eigenvalue at each end and simple ones between."""
    d = np.r_[np.full(3, -2.0), np.linspace(-1, 1, 54), np.full(3, 3.0)]
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(60, 60)))
    return Q @ np.diag(d) @ Q.T, d


@pytest.mark.parametrize("which", ["SA", "BE", "LA"])
def test_lanczos_finds_every_copy_of_a_triple_eigenvalue(which):
    A, d = triple()
    op = operators.DenseOperator(A)
    r = es.lanczos(op, 3 if which != "BE" else 6, which=which, tol=1e-8, max_iter=40, restarts=3)
    np.testing.assert_allclose(r.eigenvalues, wanted(np.sort(d), len(r.eigenvalues), which), atol=1e-8)
    assert r.complete is True and r.converged.all() and r.all_converged
    np.testing.assert_allclose(r.eigenvectors.T @ r.eigenvectors, np.eye(len(r.eigenvalues)), atol=1e-8)
    assert r.num_products == op.num_products


def test_single_run_misses_copies_and_says_so():
    """Without the check, one run returns the triple eigenvalue once; with too few rounds the result says
    it is not complete, flags the displaceable pairs and warns."""
    A, d = triple()
    op = operators.DenseOperator(A)
    one = es.lanczos(op, 3, which="SA", tol=1e-8, max_iter=40, restarts=0)
    assert one.complete is None and np.sum(np.isclose(one.eigenvalues, -2.0, atol=1e-8)) < 3
    # what is flagged converged is an eigenpair; only the set is unchecked
    res = np.linalg.norm(A @ one.eigenvectors - one.eigenvectors * one.eigenvalues, axis=0)
    assert np.all(res[one.converged] <= 1e-8 * 3 * 1.01)
    with pytest.warns(es.NotConvergedWarning, match="copies"):
        short = es.lanczos(op, 3, which="SA", tol=1e-8, max_iter=40, restarts=1)
    assert short.complete is False and not short.converged.all() and "NOT CONVERGED" in repr(short)
    with pytest.raises(ValueError, match="restarts"):
        es.lanczos(op, 3, which="SA", restarts=-1)


def test_repr_and_warning_of_unconverged_result():
    A = np.diag(np.linspace(1.0, 1.01, 200))
    with pytest.warns(es.NotConvergedWarning, match="did not converge"):
        r = es.lanczos(operators.DenseOperator(A), 3, which="LA", max_iter=5, tol=1e-12)
    assert "NOT CONVERGED" in repr(r) and not r.all_converged
    ok = es.lanczos(operators.DenseOperator(sym(40)), 2, which="LA", tol=1e-10)
    assert repr(ok).startswith("EigResult(converged")


def test_slq_spread_across_probes():
    A = sym(60, seed=7)
    op = operators.DenseOperator(A)
    d = es.slq_density(op, num_probes=6, num_steps=60, seed=2)
    # the reported spread is the standard error of the six per-probe densities, recomputed here
    g = np.exp(-0.5 * ((d.grid[:, None, None] - d.nodes[None]) / d.sigma) ** 2) / (d.sigma * np.sqrt(2 * np.pi))
    per = np.einsum("gpm,pm->pg", g, d.weights)
    np.testing.assert_allclose(d.density, per.mean(0), rtol=1e-12)
    np.testing.assert_allclose(d.stderr, per.std(0, ddof=1) / np.sqrt(6), rtol=1e-12, atol=1e-15)
    assert np.all(d.stderr > 0) and "probes" in repr(d)
    single = es.slq_density(op, num_probes=1, num_steps=20)
    assert np.all(np.isnan(single.stderr))


def test_batched_lanczos_runs_each_start_vector_as_alone():
    """Each start vector of a batch keeps its own basis: the batch gives the single runs' T and Q; after a
    breakdown (a triple eigenvalue, more steps than distinct eigenvalues) every basis stays orthonormal."""
    op = operators.DenseOperator(sym(30, seed=3))
    V0 = tf.random.stateless_normal([3, 30], seed=[4, 5], dtype=tf.float64)
    seed, tol = tf.constant([0, 1], tf.int64), tf.constant(0.0, tf.float64)
    j, Q, alpha, beta = es._get_lanczos(op, 12, 0, "LA", 1, 3)(V0, seed, tol)
    assert int(j) == 12 and Q.shape == (3, 13, 30)
    for b in range(3):
        _, Qb, ab, bb = es._get_lanczos(op, 12, 0, "LA", 1, 1)(V0[b:b + 1], seed, tol)
        np.testing.assert_allclose(alpha[:, b], ab[:, 0], atol=1e-12)
        np.testing.assert_allclose(beta[:, b], bb[:, 0], atol=1e-12)
        np.testing.assert_allclose(Q[b], Qb[0], atol=1e-12)
    # five distinct eigenvalues, four copies each: every Krylov space has dimension 5, so step 5 breaks down
    A = np.diag(np.repeat(np.arange(1.0, 6.0), 4))
    Vt = tf.random.stateless_normal([2, 20], seed=[6, 7], dtype=tf.float64)
    _, Q, _, beta = es._get_lanczos(operators.DenseOperator(A), 10, 0, "LA", 1, 2)(Vt, seed, tol)
    np.testing.assert_array_equal(beta.numpy()[4], [0.0, 0.0])  # the breakdown, restarted
    for b in range(2):
        np.testing.assert_allclose(Q[b, :10] @ tf.transpose(Q[b, :10]), np.eye(10), atol=1e-10)
