"""Products that share the vector-independent work (``ModelOperator.prepare``): the same products as the plain
path in float64, the limits that switch the sharing off, no retracing on repeated calls, and no tensor of size
P^2 or N x P in the product graphs of a model with a million parameters."""
import helpers  # noqa: F401  (first: quiets TensorFlow before it is imported)
import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import eigensolvers, estimators, operators
from test_operators import ce, cnn, data, mlp, sq


def _operators(model, x, y, batch_size, chain=False):
    xy = (x, y)
    written = {"hessian (written out)": operators.hessian(model, ce, xy, batch_size=batch_size, weight_decay=0.01,
                                                          method="layer_chain")} if chain else {}
    return {
        **written,
        "hessian (default)": operators.hessian(model, ce, xy, batch_size=batch_size, weight_decay=0.01),
        "hessian (double backward)": operators.hessian(model, ce, xy, batch_size=batch_size, weight_decay=0.01,
                                                       method="double_backward"),
        "hessian (forward over reverse)": operators.hessian(model, sq, xy, batch_size=batch_size,
                                                            method="forward_over_reverse"),
        "gauss-newton": operators.gauss_newton(model, ce, xy, batch_size=batch_size),
        "residual": operators.hessian_residual(model, ce, xy, batch_size=batch_size),
        "true fisher": operators.fisher(model, xy, batch_size=batch_size),
        "empirical fisher": operators.fisher(model, xy, kind="empirical", loss_fn=ce, batch_size=batch_size),
    }


@pytest.mark.parametrize("name,build,shape", [("mlp", mlp, (5,)), ("cnn", cnn, (6, 6, 1))])
@pytest.mark.parametrize("batch_size", [None, 5])  # one batch; two of 5 and a remainder of 3
def test_prepared_products_equal_the_plain_products(name, build, shape, batch_size):
    x, y = data(shape)
    for kind, op in _operators(build(), x, y, batch_size, chain=name == "mlp").items():
        V = tf.constant(np.random.default_rng(3).normal(size=(3, op.size)))

        @tf.function
        def shared_products():
            product = op.prepare()
            return product(V[:1]), product(V)

        one, many = shared_products()
        plain = op._rows_product(V)
        assert op.reuse_bytes > 0, (kind, op.reuse_info)
        scale = float(tf.norm(plain))
        assert float(tf.norm(one - plain[:1])) <= 1e-12 * scale, kind
        assert float(tf.norm(many - plain)) <= 1e-12 * scale, kind
        if kind == "hessian (default)":  # dense layers only, and the CNN has batch normalisation (not a chain)
            assert op.method == "double_backward", op.method_info
        if kind.startswith("hessian"):  # blocks of unit vectors through the shared path
            dense = op.to_dense()
            assert np.allclose(dense @ V.numpy().T, plain.numpy().T, rtol=1e-10, atol=1e-12 * scale), kind


def test_limits_switch_the_sharing_off_and_the_products_stay_right():
    x, y = data((5,))
    m = mlp()
    ref = operators.hessian(m, ce, (x, y), batch_size=5).to_dense()
    few = operators.hessian(m, ce, (x, y), batch_size=5)
    few.reuse_max_batches = 2
    assert few.prepare() == few.rows_product and "reuse_max_batches" in few.reuse_info
    off = operators.hessian(m, ce, (x, y))
    off.reuse_max_bytes = 0
    assert off._reuse_plan() is None and "disabled" in off.reuse_info
    for op in (few, off):
        assert np.allclose(op.to_dense(), ref, rtol=1e-12, atol=1e-14)


def test_lanczos_and_trace_agree_with_and_without_sharing():
    x, y = data((5,))
    m = mlp()
    shared = operators.hessian(m, ce, (x, y))
    plain = operators.hessian(m, ce, (x, y))
    plain.reuse_max_bytes = 0
    a = eigensolvers.lanczos(shared, k=3, seed=0)
    b = eigensolvers.lanczos(plain, k=3, seed=0)
    assert shared.reuse_bytes > 0 and plain.reuse_bytes == 0
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-10)
    ta = estimators.hutchinson_trace(shared, 12, seed=0).value
    tb = estimators.hutchinson_trace(plain, 12, seed=0).value
    assert abs(ta - tb) <= 1e-10 * abs(tb)


def test_repeated_calls_do_not_retrace():
    x, y = data((5,))
    op = operators.hessian(mlp(), ce, (x, y))
    rng = np.random.default_rng(0)
    for _ in range(3):
        op.matvec(rng.normal(size=op.size))
        op.matmat(rng.normal(size=(op.size, 4)))
    assert op._compiled_one.experimental_get_tracing_count() == 1
    assert op._compiled_many.experimental_get_tracing_count() == 1
    for seed in range(3):
        eigensolvers.lanczos(op, k=2, seed=seed)
        estimators.hutchinson_trace(op, 8, seed=seed)
    lanczos_fns = op.__dict__["_lanczos_cache"].values()
    assert all(fn.experimental_get_tracing_count() == 1 for fn in lanczos_fns)


def _largest_static_tensor(graphs):
    """Largest number of elements of any tensor with a known shape in the graphs and the functions they call."""
    seen, largest = set(), (0, "")
    while graphs:
        g = graphs.pop()
        if id(g) in seen:
            continue
        seen.add(id(g))
        for op in g.get_operations():
            for t in op.outputs:
                if t.shape.rank is not None:
                    n = int(np.prod([d if d is not None else 1 for d in t.shape.as_list()]))
                    if n > largest[0]:
                        largest = (n, f"{op.type} {t.shape}")
        graphs.extend(f.graph for f in getattr(g, "_functions", {}).values() if getattr(f, "graph", None) is not None)
    return largest


def test_products_of_a_million_parameter_model_allocate_nothing_of_size_n_p_or_p_squared():
    keras.utils.set_random_seed(0)
    inp = keras.Input((1000,))
    h = keras.layers.Dense(1000, activation="tanh")(inp)
    m = keras.Model(inp, keras.layers.Dense(10)(h))
    rng = np.random.default_rng(0)
    n = 32
    x, y = rng.normal(size=(n, 1000)).astype("float32"), rng.integers(0, 10, n)
    for op in _operators(m, x, y, None, chain=True).values():
        P = op.size
        assert P > 1_000_000
        graphs = [op._compiled_one.get_concrete_function().graph, op._compiled_many.get_concrete_function().graph]
        assert op._reuse_plan() is not None, op.reuse_info
        graphs += [f.graph for f in op._plan]
        size, what = _largest_static_tensor(graphs)
        # a product needs a few vectors of size P; a per-example Jacobian would be n x P, a dense block P x P
        assert size <= 2 * P < n * P, (type(op).__name__, what)
        assert op.reuse_bytes < n * P * 4
