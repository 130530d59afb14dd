"""Tests of helpers.geometry against closed forms (I-CURV, I-GEODESIC) and finite differences."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import geometry


# ---------------------------------------------------------------- metrics with known curvature
def _diag(*entries):
    """Diagonal metric (..., n, n) from n arrays of shape (...)."""
    return tf.linalg.diag(tf.stack(entries, axis=-1))


def sphere(r):
    # coordinates (polar angle θ, azimuth φ): ds² = r² dθ² + r² sin²θ dφ²
    return lambda th: _diag(r**2 * tf.ones_like(th[..., 0]), r**2 * tf.sin(th[..., 0]) ** 2)


def polar_plane(th):
    # coordinates (ρ, φ): ds² = dρ² + ρ² dφ²
    return _diag(tf.ones_like(th[..., 0]), th[..., 0] ** 2)


def poincare(th):
    # upper half-plane (x, y), y > 0: ds² = (dx² + dy²) / y²
    y2 = th[..., 1] ** 2
    return _diag(1.0 / y2, 1.0 / y2)


def gaussian_fisher(th):
    # Fisher metric of N(μ, σ²) in (μ, σ): diag(1, 2) / σ²
    s2 = th[..., 1] ** 2
    return _diag(1.0 / s2, 2.0 / s2)


def three_sphere(r):
    # hyperspherical coordinates (χ, θ, φ): r² (dχ² + sin²χ dθ² + sin²χ sin²θ dφ²), R = 6 / r²
    def g(th):
        s1 = tf.sin(th[..., 0]) ** 2
        return r**2 * _diag(tf.ones_like(s1), s1, s1 * tf.sin(th[..., 1]) ** 2)

    return g


def half_space_3d(th):
    # upper half-space model of hyperbolic 3-space, R = −6
    z2 = th[..., 2] ** 2
    return _diag(1.0 / z2, 1.0 / z2, 1.0 / z2)


def random_metric_3d(seed=0):
    """A smooth, non-diagonal, position-dependent SPD metric in 3-D (no closed form; used against FD)."""
    rng = np.random.default_rng(seed)
    a = tf.constant(rng.normal(size=(3, 3, 3)) * 0.3, tf.float64)
    b = tf.constant(rng.normal(size=(3, 3)) * 0.3, tf.float64)

    def g(th):
        m = tf.einsum("ijk,...k->...ij", a, tf.sin(th)) + b
        return tf.eye(3, dtype=tf.float64) * 1.5 + tf.einsum("...ik,...jk->...ij", m, m)

    return g


def _points(rng, lows, highs, size):
    return np.stack([rng.uniform(lo, hi, size) for lo, hi in zip(lows, highs)], axis=-1)


RNG = np.random.default_rng(1)


# ---------------------------------------------------------------- I-CURV
@pytest.mark.parametrize("r", [0.5, 1.0, 2.3])
def test_sphere_ricci_scalar(r):
    pts = _points(RNG, [0.2, -3], [2.9, 3], 64)
    assert np.allclose(geometry.ricci_scalar(sphere(r), pts), 2.0 / r**2, rtol=0, atol=1e-8)


def test_sphere_christoffel_closed_form():
    pts = _points(RNG, [0.2, -3], [2.9, 3], 16)
    gam = geometry.christoffel(sphere(1.3), pts)
    t = pts[:, 0]
    expected = np.zeros((16, 2, 2, 2))
    expected[:, 0, 1, 1] = -np.sin(t) * np.cos(t)
    expected[:, 1, 0, 1] = expected[:, 1, 1, 0] = np.cos(t) / np.sin(t)
    assert np.allclose(gam, expected, atol=1e-12)


def test_polar_plane_flat():
    pts = _points(RNG, [0.1, -3], [5, 3], 32)
    out = geometry.curvature(polar_plane, pts)
    assert np.abs(out["riemann"]).max() < 1e-8
    assert np.abs(out["ricci_scalar"]).max() < 1e-8
    # non-zero Christoffel symbols although the space is flat: Γ^ρ_φφ = −ρ, Γ^φ_ρφ = 1/ρ
    assert np.allclose(out["christoffel"][:, 0, 1, 1], -pts[:, 0])
    assert np.allclose(out["christoffel"][:, 1, 0, 1], 1.0 / pts[:, 0])


def test_poincare_half_plane():
    pts = _points(RNG, [-3, 0.05], [3, 4], 64)
    assert np.allclose(geometry.ricci_scalar(poincare, pts), -2.0, atol=1e-8)


def test_gaussian_fisher_metric():
    pts = _points(RNG, [-3, 0.1], [3, 5], 64)
    assert np.allclose(geometry.ricci_scalar(gaussian_fisher, pts), -1.0, atol=1e-8)


def test_three_dimensional_examples():
    pts = _points(RNG, [0.3, 0.3, -3], [2.8, 2.8, 3], 32)
    assert np.allclose(geometry.ricci_scalar(three_sphere(1.7), pts), 6.0 / 1.7**2, atol=1e-8)
    pts = _points(RNG, [-2, -2, 0.1], [2, 2, 3], 32)
    ric = geometry.ricci_tensor(half_space_3d, pts)
    g = geometry.check_metric(half_space_3d, pts)
    # maximally symmetric space of curvature −1: R_jl = −(n − 1) g_jl
    assert np.allclose(ric, -2.0 * g, atol=1e-8 * np.abs(g).max())
    assert np.allclose(geometry.ricci_scalar(half_space_3d, pts), -6.0, atol=1e-8)


def test_batch_shapes_and_single_point():
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(0.5, 2, 4), indexing="ij"), axis=-1)
    assert geometry.ricci_scalar(poincare, grid).shape == (5, 4)
    assert geometry.christoffel(poincare, grid).shape == (5, 4, 2, 2, 2)
    assert geometry.riemann(poincare, grid).shape == (5, 4, 2, 2, 2, 2)
    single = geometry.ricci_scalar(poincare, [0.0, 1.0])
    assert single.shape == () and abs(float(single) + 2) < 1e-10


# ---------------------------------------------------------------- against finite differences (no closed form)
def _fd_christoffel(metric_fn, x, h=1e-5):
    n = x.shape[0]
    g = metric_fn(tf.constant(x[None])).numpy()[0]
    dg = np.zeros((n, n, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = h
        gp = metric_fn(tf.constant((x + e)[None])).numpy()[0]
        gm = metric_fn(tf.constant((x - e)[None])).numpy()[0]
        dg[:, :, k] = (gp - gm) / (2 * h)
    first = 0.5 * (np.einsum("mlk->mkl", dg) + dg - np.einsum("klm->mkl", dg))
    return np.einsum("im,mkl->ikl", np.linalg.inv(g), first)


def test_christoffel_and_riemann_match_finite_differences():
    metric = random_metric_3d()
    x = np.array([0.3, -0.7, 1.1])
    gam = geometry.christoffel(metric, x)
    assert np.allclose(gam, _fd_christoffel(metric, x), atol=1e-8)
    # Riemann from the definition with finite-difference derivatives of the (autodiff) Christoffel symbols
    h = 1e-5
    dgam = np.zeros((3, 3, 3, 3))
    for m in range(3):
        e = np.zeros(3)
        e[m] = h
        dgam[..., m] = (geometry.christoffel(metric, x + e) - geometry.christoffel(metric, x - e)) / (2 * h)
    expected = (
        np.einsum("iljk->ijkl", dgam) - np.einsum("ikjl->ijkl", dgam)
        + np.einsum("ikm,mlj->ijkl", gam, gam) - np.einsum("ilm,mkj->ijkl", gam, gam)
    )
    assert np.allclose(geometry.riemann(metric, x), expected, atol=1e-7)


def test_riemann_symmetries():
    metric = random_metric_3d(3)
    pts = _points(RNG, [-2, -2, -2], [2, 2, 2], 8)
    out = geometry.curvature(metric, pts)
    low = np.einsum("bim,bmjkl->bijkl", out["metric"], out["riemann"])  # R_ijkl
    scale = np.abs(low).max()
    assert np.allclose(low, -np.swapaxes(low, 3, 4), atol=1e-9 * scale)  # antisymmetric in k, l
    assert np.allclose(low, -np.swapaxes(low, 1, 2), atol=1e-9 * scale)  # antisymmetric in i, j
    assert np.allclose(low, np.einsum("bijkl->bklij", low), atol=1e-9 * scale)  # pair symmetry
    first_bianchi = low + np.einsum("biklj->bijkl", low) + np.einsum("biljk->bijkl", low)
    assert np.abs(first_bianchi).max() < 1e-9 * scale
    assert np.allclose(out["ricci_tensor"], np.swapaxes(out["ricci_tensor"], -1, -2), atol=1e-9 * scale)


def test_metric_built_with_an_inner_tape():
    """A metric that itself uses autodiff (a pull-back g = Jᵀ J of an embedding) works: third derivatives."""

    def embed(th):  # sphere of radius 2 embedded in R³
        t, p = th[..., 0], th[..., 1]
        return 2.0 * tf.stack([tf.sin(t) * tf.cos(p), tf.sin(t) * tf.sin(p), tf.cos(t)], axis=-1)

    def pullback(th):
        with tf.GradientTape() as tape:
            tape.watch(th)
            y = embed(th)
        jac = tape.batch_jacobian(y, th)
        return tf.einsum("bai,baj->bij", jac, jac)

    pts = _points(RNG, [0.3, -3], [2.8, 3], 8)
    assert np.allclose(geometry.ricci_scalar(pullback, pts), 0.5, atol=1e-8)


# ---------------------------------------------------------------- geodesics and lengths (I-GEODESIC)
def _gauss_distance(a, b):
    # Fisher-Rao distance between N(μ1, σ1²) and N(μ2, σ2²)
    (m1, s1), (m2, s2) = a, b
    return np.sqrt(2.0) * np.arccosh(1.0 + ((m1 - m2) ** 2 / 2.0 + (s1 - s2) ** 2) / (2.0 * s1 * s2))


def test_geodesic_on_gaussian_manifold_matches_closed_form():
    start, vel = np.array([0.0, 1.0]), np.array([1.0, 0.3])
    path = geometry.geodesic(gaussian_fisher, start, vel, t_max=2.0, num_steps=200)
    assert path.shape == (201, 2)
    d = _gauss_distance(path[0], path[-1])
    speed = np.sqrt(vel @ np.diag([1.0, 2.0]) @ vel)  # σ = 1 at the start
    assert abs(d - 2.0 * speed) < 1e-7 * d  # the geodesic is length-minimising
    assert abs(geometry.curve_length(gaussian_fisher, path, extrapolate=True) - d) < 1e-7 * d
    assert abs(geometry.curve_length(gaussian_fisher, path) - d) < 1e-4 * d


def test_poincare_geodesic_is_a_semicircle_and_batched():
    starts = np.array([[0.0, 1.0], [0.0, 2.0]])
    vels = np.array([[1.0, 0.0], [2.0, 0.0]])
    path = geometry.geodesic(poincare, starts, vels, t_max=1.5, num_steps=150)
    assert path.shape == (151, 2, 2)
    radii = np.array([1.0, 2.0])
    assert np.allclose(np.hypot(path[..., 0], path[..., 1]), radii, atol=1e-8)


def test_curve_length_simple_cases():
    line = np.linspace([0.0, 0.0], [3.0, 4.0], 11)
    flat = lambda th: _diag(tf.ones_like(th[..., 0]), tf.ones_like(th[..., 0]))  # noqa: E731
    assert abs(geometry.curve_length(flat, line) - 5.0) < 1e-12
    circle = np.stack([np.full(101, 2.0), np.linspace(0, np.pi, 101)], axis=-1)  # ρ = 2, φ ∈ [0, π]
    assert abs(geometry.curve_length(polar_plane, circle) - 2 * np.pi) < 1e-12


# ---------------------------------------------------------------- error paths
def test_not_positive_definite_names_the_point():
    pts = np.array([[0.0, 1.0], [0.5, 2.0], [0.3, 0.0]])
    with pytest.raises(ValueError, match=r"index \(2,\).*0\.3"):
        geometry.ricci_scalar(gaussian_fisher, pts)  # σ = 0: not finite
    indefinite = lambda th: _diag(tf.ones_like(th[..., 0]), th[..., 0])  # noqa: E731
    grid = np.array([[[1.0, 0.0], [2.0, 0.0]], [[-0.5, 0.0], [3.0, 0.0]]])
    with pytest.raises(ValueError, match=r"not positive definite at index \(1, 0\).*-0\.5"):
        geometry.christoffel(indefinite, grid)


def test_not_symmetric_names_the_point():
    def skew(th):
        x = th[..., 0]
        one, zero = tf.ones_like(x), tf.zeros_like(x)
        return tf.stack([tf.stack([one, x], -1), tf.stack([zero, one], -1)], -2)

    with pytest.raises(ValueError, match=r"not symmetric at index \(1,\)"):
        geometry.riemann(skew, np.array([[0.0, 0.0], [0.5, 0.0]]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="metric_fn"):
        geometry.ricci_scalar("not a function", [0.0, 1.0])
    with pytest.raises(ValueError, match="scalar"):
        geometry.ricci_scalar(poincare, 1.0)
    with pytest.raises(ValueError, match="shape"):
        geometry.ricci_scalar(lambda th: th, np.array([[0.0, 1.0]]))  # returns (B, n) not (B, n, n)
    with pytest.raises(ValueError, match="same shape"):
        geometry.geodesic(poincare, [0.0, 1.0], [1.0, 0.0, 0.0], 1.0, 10)
    with pytest.raises(ValueError, match="num_steps"):
        geometry.geodesic(poincare, [0.0, 1.0], [1.0, 0.0], 1.0, 0)
    with pytest.raises(ValueError, match="t_max"):
        geometry.geodesic(poincare, [0.0, 1.0], [1.0, 0.0], -1.0, 10)
    with pytest.raises(ValueError, match="left the metric's domain"):
        indefinite = lambda th: _diag(tf.ones_like(th[..., 0]), th[..., 0])  # noqa: E731
        geometry.geodesic(indefinite, [1.0, 0.0], [-1.0, 0.0], 2.0, 20)  # straight to x < 0
    with pytest.raises(ValueError, match="two points"):
        geometry.curve_length(poincare, np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="even number"):
        geometry.curve_length(poincare, np.array([[0.0, 1.0], [0.0, 2.0]]), extrapolate=True)


def test_pointwise_jacobian_matches_batch_jacobian():
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(5, 3)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.einsum("bi,bj,bk->bijk", tf.sin(x), x**2, tf.exp(x))  # (5, 3, 3, 3), pointwise in b
    ours = geometry.pointwise_jacobian(tape, y, x)
    ref = tape.batch_jacobian(y, x)
    assert ours.shape == (5, 3, 3, 3, 3)
    assert np.allclose(ours.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        sym = tf.einsum("bi,bj->bij", tf.sin(x), tf.sin(x))
    assert np.allclose(geometry.pointwise_jacobian(tape, sym, x, symmetric_last_two=True).numpy(),
                       tape.batch_jacobian(sym, x).numpy(), atol=1e-12)


# ---------------------------------------------------------------- geodesics between points, conditioning
def test_geodesic_distance_on_the_sphere_and_the_hyperbolic_plane():
    a, b = np.array([0.7, 0.2]), np.array([1.9, 2.1])  # (polar angle, azimuth) on the unit sphere
    great_circle = np.arccos(np.cos(a[0]) * np.cos(b[0]) + np.sin(a[0]) * np.sin(b[0]) * np.cos(b[1] - a[1]))
    res = geometry.geodesic_between(sphere(1.0), a, b, num_steps=200)
    assert res.converged and res.endpoint_error <= 1e-9
    assert abs(res.length - great_circle) < 1e-7
    np.testing.assert_allclose(res.path[0], a) and np.testing.assert_allclose(res.path[-1], b, atol=1e-9)
    # radius 2: every distance doubles
    assert abs(geometry.geodesic_distance(sphere(2.0), a, b) - 2 * great_circle) < 2e-7
    p, q = np.array([-1.0, 0.5]), np.array([2.0, 1.5])  # upper half-plane (x, y)
    exact = np.arccosh(1 + ((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2) / (2 * p[1] * q[1]))
    assert abs(geometry.geodesic_distance(poincare, p, q, num_steps=400) - exact) < 1e-7
    # the path's own length by quadrature agrees with the speed formula
    path = geometry.geodesic_between(poincare, p, q, num_steps=400).path
    assert abs(geometry.curve_length(poincare, path, extrapolate=True) - exact) < 1e-6


def test_geodesic_between_errors_and_non_convergence():
    with pytest.raises(ValueError, match="single points"):
        geometry.geodesic_between(poincare, np.zeros((2, 2)) + 1, np.ones(2))
    with pytest.raises(ValueError, match="max_iter"):
        geometry.geodesic_between(poincare, np.ones(2), np.ones(2) * 2, max_iter=0)
    with pytest.raises(ValueError, match=r"not finite at index \(1,\)"):
        geometry.geodesic_between(poincare, np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="did not reach"):
        geometry.geodesic_distance(poincare, np.array([-1.0, 0.5]), np.array([2.0, 1.5]), max_iter=1,
                                   tol=1e-14)


def test_ill_conditioned_is_not_called_indefinite():
    stiff = lambda th: _diag(tf.ones_like(th[..., 0]), 1e-16 * tf.ones_like(th[..., 0]))  # noqa: E731
    with pytest.raises(ValueError, match=r"ill-conditioned at the given point.*condition number 1e\+16"):
        geometry.check_metric(stiff, np.array([0.3, 0.1]))
    assert geometry.ILL_CONDITIONED == 1e-14


def test_geodesic_through_a_singular_metric_names_step_and_point():
    """g = diag(1, max(x, 0)^2) is exactly singular for x <= 0; a geodesic heading there must fail with a
    ValueError naming the step, not a raw InvalidArgumentError from the matrix inverse."""
    def cone(th):
        x = th[..., 0]
        return _diag(tf.ones_like(x), tf.nn.relu(x) ** 2)

    with pytest.raises(ValueError, match=r"left the metric's domain at step \d+ of 40") as err:
        geometry.geodesic(cone, np.array([0.5, 0.0]), np.array([-1.0, 0.0]), t_max=1.0, num_steps=40)
    assert "InvalidArgument" not in str(err.value)


# ---------------------------------------------------------------- geodesic circles (chapter 6 widget)
def _skewed_flat(th):
    # the Euclidean plane in the sheared coordinates x = (u + v, v): a constant, non-diagonal metric
    ones = tf.ones_like(th[..., 0])
    return tf.stack([tf.stack([ones, ones], -1), tf.stack([ones, 2.0 * ones], -1)], -2)


def test_geodesic_circle_end_points_are_at_the_radius_on_the_gaussian_manifold():
    center, radius = np.array([0.5, 0.8]), 1.3
    paths = geometry.geodesic_circle(gaussian_fisher, center, radius, num_directions=12, num_steps=200)
    assert paths.shape == (201, 12, 2)
    np.testing.assert_allclose(paths[0], np.tile(center, (12, 1)))
    # unit speed: every end point is at Fisher-Rao distance `radius` (closed form)
    dist = [_gauss_distance(center, p) for p in paths[-1]]
    np.testing.assert_allclose(dist, radius, rtol=1e-8)
    # the first direction is the first axis of the orthonormal frame: sigma does not change at t = 0
    assert abs(paths[1, 0, 1] - center[1]) < abs(paths[1, 0, 0] - center[0])


def test_geodesic_circle_of_a_flat_non_diagonal_metric_is_a_euclidean_circle():
    center, radius = np.array([0.2, -0.4]), 0.7
    paths = geometry.geodesic_circle(_skewed_flat, center, radius, num_directions=16, num_steps=20)
    to_xy = lambda p: np.stack([p[..., 0] + p[..., 1], p[..., 1]], -1)  # noqa: E731
    r = np.linalg.norm(to_xy(paths[-1]) - to_xy(center), axis=-1)
    np.testing.assert_allclose(r, radius, rtol=1e-12)
    # straight lines in the Euclidean coordinates: the midpoint lies halfway
    np.testing.assert_allclose(to_xy(paths[10]) - to_xy(center), 0.5 * (to_xy(paths[-1]) - to_xy(center)),
                               atol=1e-12)


def test_geodesic_circle_checks_its_arguments():
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        geometry.geodesic_circle(gaussian_fisher, [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="radius must be a positive"):
        geometry.geodesic_circle(gaussian_fisher, [0.0, 1.0], 0.0)
    with pytest.raises(TypeError, match="radius must be a positive number"):
        geometry.geodesic_circle(gaussian_fisher, [0.0, 1.0], "far")
    with pytest.raises(ValueError, match="num_directions must be an integer >= 3"):
        geometry.geodesic_circle(gaussian_fisher, [0.0, 1.0], 1.0, num_directions=2)
    with pytest.raises(ValueError, match="not finite at the given point"):
        geometry.geodesic_circle(gaussian_fisher, [0.0, 0.0], 1.0)  # sigma = 0
    with pytest.raises(TypeError, match="metric_fn"):
        geometry.geodesic_circle("gaussian", [0.0, 1.0], 1.0)


def test_plot_geodesic_circle_draws_the_fan_the_circle_and_the_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    paths = geometry.plot_geodesic_circle(ax, gaussian_fisher, [0.0, 1.0], 1.0, num_directions=12,
                                          draw_every=3, num_steps=50, xlabel="mean", ylabel="sd",
                                          title="fan")
    assert paths.shape == (51, 12, 2)
    lines = ax.get_lines()
    assert len(lines) == 12 // 3 + 2  # the drawn geodesics, the circle, the centre
    circle = lines[-2]
    np.testing.assert_allclose(circle.get_xydata()[0], circle.get_xydata()[-1])  # closed
    assert len(circle.get_xydata()) == 13
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("mean", "sd", "fan")
    assert ax.get_legend().get_texts()[0].get_text() == "geodesic circle, radius 1.0"
    ax.cla()
    geometry.plot_geodesic_circle(ax, gaussian_fisher, [0.0, 1.0], 0.5, num_directions=6, draw_every=1,
                                  num_steps=10)
    assert len(ax.get_lines()) == 8 and ax.get_title() == "geodesics from (0.0, 1.0)"
    assert ax.get_xlabel() == r"$\theta_1$"
    with pytest.raises(ValueError, match="draw_every"):
        geometry.plot_geodesic_circle(ax, gaussian_fisher, [0.0, 1.0], 1.0, draw_every=0)
    with pytest.raises(TypeError, match="matplotlib Axes"):
        geometry.plot_geodesic_circle(fig.number, gaussian_fisher, [0.0, 1.0], 1.0)
    plt.close(fig)
