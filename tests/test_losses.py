"""Losses against direct NumPy float64 formulas, shapes, dtypes and error paths."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import losses


def _np_softmax_ce(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 4))
    labels = rng.integers(0, 4, size=7)
    return logits, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_numpy(batch, dtype):
    logits, labels = batch
    got = losses.cross_entropy(labels, logits.astype(dtype)).numpy()
    assert got.shape == (7,) and got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, _np_softmax_ce(logits, labels), rtol=tol, atol=tol)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(losses.cross_entropy(onehot, logits.astype(dtype)).numpy(), got, rtol=tol)


def test_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    got = losses.cross_entropy(np.array([1, 1]), logits).numpy()
    np.testing.assert_allclose(got, [1000.0, 1000.0])


def test_binary_cross_entropy_single_output():
    f = np.array([[0.3], [-2.0], [5.0]])
    z = np.array([1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-f[:, 0]))
    want = -z * np.log(p) - (1 - z) * np.log(1 - p)
    np.testing.assert_allclose(losses.cross_entropy(z, f).numpy(), want, rtol=1e-12)


def test_mse_and_mean_power(batch):
    outputs, labels = batch
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(losses.mse(labels, outputs).numpy(), ((outputs - onehot) ** 2).mean(1), rtol=1e-12)
    for n in (2, 4, 6):
        want = ((outputs - onehot) ** n).mean(1)
        np.testing.assert_allclose(losses.mean_power(n)(labels, outputs).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(losses.mean_power(2)(labels, outputs).numpy(), losses.mse(labels, outputs).numpy())


@pytest.mark.parametrize("p", [1, 2, 3.5, 4, 6])
def test_lp_norm(batch, p):
    outputs, labels = batch
    onehot = np.eye(4)[labels]
    want = (np.abs(outputs - onehot) ** p).sum(1) ** (1 / p)
    np.testing.assert_allclose(losses.lp_norm(p)(labels, outputs).numpy(), want, rtol=1e-12)


def test_lp_norm_gradient_finite_at_zero_residual():
    y = tf.constant([[0.0, 1.0]], tf.float64)
    f = tf.Variable([[0.0, 1.0]], dtype=tf.float64)
    with tf.GradientTape() as tape:
        val = tf.reduce_sum(losses.lp_norm(2)(y, f))
    g = tape.gradient(val, f).numpy()
    assert val.numpy() == 0.0 and np.all(np.isfinite(g))


def test_gradient_of_cross_entropy_is_softmax_minus_onehot(batch):
    logits, labels = batch
    f = tf.Variable(logits)
    with tf.GradientTape() as tape:
        val = tf.reduce_sum(losses.cross_entropy(labels, f))
    g = tape.gradient(val, f).numpy()
    sm = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(g, sm - np.eye(4)[labels], rtol=1e-10, atol=1e-12)


def test_get_by_name(batch):
    outputs, labels = batch
    assert losses.get("cross_entropy") is losses.cross_entropy
    np.testing.assert_allclose(losses.get("l4")(labels, outputs), losses.lp_norm(4)(labels, outputs))
    np.testing.assert_allclose(losses.get("mean_power", order=4.0)(labels, outputs),
                               losses.mean_power(4)(labels, outputs))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")


def test_errors():
    with pytest.raises(ValueError, match="p >= 1"):
        losses.lp_norm(0.5)
    with pytest.raises(TypeError):
        losses.lp_norm("2")
    with pytest.raises(ValueError, match="even"):
        losses.mean_power(3)
    with pytest.raises(TypeError):
        losses.mean_power(2.5)
    with pytest.raises(TypeError, match="floating"):
        losses.mse(np.array([0, 1]), np.array([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="columns"):
        losses.mse(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        losses.cross_entropy(np.zeros(2, int), np.zeros((2, 3, 1)))


def test_get_errors():
    with pytest.raises(ValueError, match="order"):
        losses.get("lp_norm")
    with pytest.raises(ValueError, match="order"):
        losses.get("mean_power")
    with pytest.raises(TypeError, match="string"):
        losses.get(2)
    with pytest.raises(ValueError, match="p >= 1"):
        losses.lp_norm(float("inf"))


def _autodiff_output_gradient(loss, labels, outputs):
    f = tf.Variable(outputs)
    with tf.GradientTape() as tape:
        val = tf.reduce_sum(loss(labels, f))
    return tape.gradient(val, f).numpy()


@pytest.mark.parametrize("p", [2, 4, 6])
def test_lp_norm_output_derivative(batch, p):
    """d/df (sum_j |r_j|^p)^(1/p) = |r|^(p-1) sign(r) / ||r||_p^(p-1), r = f - y (chapter 7, 004 eq. 5.1.5)."""
    outputs, labels = batch
    r = outputs - np.eye(4)[labels]
    norm = (np.abs(r) ** p).sum(1, keepdims=True) ** (1 / p)
    want = np.abs(r) ** (p - 1) * np.sign(r) / norm ** (p - 1)
    np.testing.assert_allclose(_autodiff_output_gradient(losses.lp_norm(p), labels, outputs), want, rtol=1e-12)
    if p == 2:  # the L2-norm derivative is the unit residual: its length is 1 whatever the residual's size
        np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_mean_power_output_derivative(batch, n):
    """d/df (1/C) sum_j r_j^n = n r^(n-1) / C (004 eq. 5.1.6)."""
    outputs, labels = batch
    r = outputs - np.eye(4)[labels]
    np.testing.assert_allclose(_autodiff_output_gradient(losses.mean_power(n), labels, outputs),
                               n * r ** (n - 1) / 4, rtol=1e-12)


@pytest.mark.parametrize("name", ["l2", "l4", "l6", "mp2", "mp4", "mp6", "cross_entropy"])
def test_output_derivative_against_finite_differences(batch, name):
    """Every loss of chapter 7: autodiff derivative against central differences in float64."""
    outputs, labels = batch
    loss = losses.get(name)
    g = _autodiff_output_gradient(loss, labels, outputs)
    h, fd = 1e-6, np.zeros_like(outputs)
    for a in range(outputs.shape[1]):
        e = np.zeros_like(outputs)
        e[:, a] = h
        fd[:, a] = (loss(labels, outputs + e).numpy() - loss(labels, outputs - e).numpy()) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
