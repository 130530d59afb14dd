"""Per-example gradients and Jacobians, the empirical neural tangent kernel (NTK) and the Fisher trace.

With outputs :math:`f(x_i;\\theta)\\in\\mathbb R^C` and per-example losses :math:`\\ell_i`:

- :func:`per_example_gradients`: :math:`g_i = \\nabla_\\theta\\ell_i`, shape (N, P);
- :func:`per_example_jacobians`: :math:`J_i = \\partial f(x_i)/\\partial\\theta`, shape (N, C, P);
- :func:`empirical_ntk`: :math:`\\Lambda_{ijab} = \\nabla_\\theta f(x_i)_a\\cdot\\nabla_\\theta f(x_j)_b` (004 eq. 4.2.1;
  jacot2018neural), as the full 4-index tensor, traced over the outputs, or only its diagonal blocks i = j;
- :func:`ntk_trace`: :math:`\\mathrm{tr}\\Lambda = \\sum_i\\sum_a\\Lambda_{iiaa}`;
- :func:`fisher_trace`: :math:`\\mathrm{tr}F = \\frac1N\\sum_i\\|\\nabla_\\theta\\ell_i\\|^2` (004 eq. 5.1.3, the trace of
  the empirical Fisher), and :func:`fisher_trace_via_ntk`: the same through 004 eq. 5.1.2,
  :math:`\\frac1N\\sum_i\\sum_{a,b}\\partial_a\\ell_i\\,\\partial_b\\ell_i\\,\\Lambda_{iiab}`;
- :func:`fisher_trace_from_ntk_blocks`: the same contraction on arrays (loss derivatives and diagonal NTK
  blocks a reader types in or computed elsewhere);
- :func:`gradient_function`, :func:`jacobian_function`, :func:`ntk_trace_function`: the compiled batch functions behind the above, for
  use inside another ``tf.function`` (the training-time recording of :mod:`helpers.kernel_dynamics`).

Per-example quantities are computed with ``tf.vectorized_map`` over the examples of a batch (each example's
backward pass vectorised, no N-fold waste), inside ``tf.function`` on TensorFlow's device, in batches of
``batch_size`` examples. The model runs with ``training=False``. Results are TensorFlow tensors
(``np.asarray`` converts them).

Used in chapters 6 and 7 (identities I-NTKSTEP, I-FISHERNTK) and 8.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import params

__all__ = ["per_example_gradients", "per_example_jacobians", "empirical_ntk", "ntk_trace", "fisher_trace",
           "fisher_trace_via_ntk", "fisher_trace_from_ntk_blocks", "output_gradients", "gradient_function",
           "jacobian_function", "ntk_trace_function"]

_ZERO = tf.UnconnectedGradients.ZERO


def _setup(model, variables):
    if not hasattr(model, "trainable_variables"):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    if variables is None or isinstance(variables, str):
        variables = params.select_variables(model, variables)
    else:
        variables = list(variables)
        if variables and all(isinstance(v, str) for v in variables):
            variables = params.select_variables(model, variables)
        if not variables:
            raise ValueError("variables=[] selects nothing; pass None, layer name(s) or a list of variables.")
    tf_vars = [params.tf_variable(v) for v in variables]
    dtypes = {v.dtype for v in tf_vars}
    if len(dtypes) != 1:
        raise TypeError("The selected variables mix dtypes; select variables of one floating dtype.")
    return tf_vars, dtypes.pop()


def _inputs(x, dtype, name="x"):
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one example (shape (N, ...), N >= 1).")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(tf.as_dtype(dtype).as_numpy_dtype)
    return tf.constant(x)


def _labels(y, n, dtype):
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y must have one entry per example ({n}), got shape {y.shape}.")
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(tf.as_dtype(dtype).as_numpy_dtype)
    return tf.constant(y)


#: Memory for one vectorised batch of per-example gradients or Jacobians when ``batch_size=None``.
BATCH_BYTES = 256 * 1024**2


def _check_batch(batch_size, n: int | None = None, per_example: int = 0, dtype=tf.float32):
    """The examples per vectorised batch: ``batch_size`` checked, or with None as many as ``BATCH_BYTES`` allows
    for ``per_example`` numbers per example (all n at once when they fit: each batch costs a call and a trace)."""
    if batch_size is None and n is not None:
        per = max(1, per_example) * tf.as_dtype(dtype).size
        return int(max(1, min(n, BATCH_BYTES // per)))
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None (as many examples as fit in "
                         f"helpers.ntk.BATCH_BYTES), got {batch_size!r}.")
    return int(batch_size)


def _num_outputs(model, X, dtype) -> int:
    """C, the model's outputs per example (read from its output shape, or from one call, cached per input shape)."""
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, tuple) and len(shape) >= 1 and isinstance(shape[-1], int):
        return int(shape[-1]) if len(shape) > 1 else 1
    cache = model.__dict__.setdefault("_ntk_num_outputs", {})
    key = tuple(X.shape[1:])
    if key not in cache:
        cache[key] = int(_outputs(model, X[:1], dtype).shape[-1])
    return cache[key]


def _flat(tensors, lead):
    return tf.concat([tf.reshape(t, lead + [-1]) for t in tensors], axis=-1)


def _outputs(model, xb, dtype):
    z = model(xb, training=False)
    if isinstance(z, (list, tuple)):
        raise TypeError("The model has several outputs; these functions need a single output tensor.")
    z = tf.cast(z, dtype)
    if z.shape.rank == 1:
        z = z[:, None]
    return z


def _cached(model, key, builder):
    cache = model.__dict__.setdefault("_ntk_fn_cache", {})
    if key not in cache:
        cache[key] = builder()
    return cache[key]


def _grad_fn(model, loss_fn, tf_vars, dtype):
    def one(args):
        xi, yi = args
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(tf_vars)
            loss = tf.reduce_sum(loss_fn(yi[None], _outputs(model, xi[None], dtype)))
        return _flat(tape.gradient(loss, tf_vars, unconnected_gradients=_ZERO), [])

    @tf.function(reduce_retracing=True)
    def batch(xb, yb):
        return tf.vectorized_map(one, (xb, yb), fallback_to_while_loop=True)

    return batch


def _jac_fn(model, tf_vars, dtype):
    def one(xi):
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(tf_vars)
            z = _outputs(model, xi[None], dtype)[0]
            parts = [z[c] for c in range(z.shape[0])]
        rows = [_flat(tape.gradient(p, tf_vars, unconnected_gradients=_ZERO), []) for p in parts]
        del tape
        return tf.stack(rows)

    @tf.function(reduce_retracing=True)
    def batch(xb):
        return tf.vectorized_map(one, xb, fallback_to_while_loop=True)

    return batch


def _jac_sqnorm_fn(model, tf_vars, dtype):
    def one(xi):  # sum_a |grad f_a|^2 without keeping the C x P Jacobian
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(tf_vars)
            z = _outputs(model, xi[None], dtype)[0]
            parts = [z[c] for c in range(z.shape[0])]
        total = tf.constant(0.0, dtype)
        for p in parts:
            for g in tape.gradient(p, tf_vars, unconnected_gradients=_ZERO):
                total += tf.reduce_sum(tf.square(g))
        del tape
        return total

    @tf.function(reduce_retracing=True)
    def batch(xb):
        return tf.vectorized_map(one, xb, fallback_to_while_loop=True)

    return batch


def per_example_gradients(model, loss_fn, x, y, variables=None, batch_size: int | None = None) -> tf.Tensor:
    """Gradients of each example's loss, :math:`g_i = \\nabla_\\theta\\ell(f(x_i;\\theta), y_i)`, stacked (N, P).

    Args:
        model: Keras model (run with ``training=False``).
        loss_fn: per-example loss ``loss(y_true, y_pred) -> (batch,)``.
        x: inputs (N, ...); y: labels or targets (N, ...).
        variables: None (all trainable), layer name(s) or a list of variables.
        batch_size: examples per vectorised batch (memory ~ batch_size x P); None: as many as fit in
            ``BATCH_BYTES``.
    Returns:
        tensor (N, P) in the variables' dtype (flat order of ``helpers.params``).
    Used in chapters 6 and 7 (the empirical Fisher, 004 eq. 5.1.3).
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    tf_vars, dtype = _setup(model, variables)
    X = _inputs(x, dtype)
    Y = _labels(y, int(X.shape[0]), dtype)
    bs = _check_batch(batch_size, int(X.shape[0]), params.num_params(tf_vars), dtype)
    fn = gradient_function(model, loss_fn, tf_vars)
    out = [fn(X[s:s + bs], Y[s:s + bs]) for s in range(0, int(X.shape[0]), bs)]
    G = tf.concat(out, axis=0)
    if not bool(tf.reduce_all(tf.math.is_finite(G))):
        raise ValueError("Some per-example gradients are not finite (NaN or inf): the loss is not finite on the data.")
    return G


def per_example_jacobians(model, x, variables=None, batch_size: int | None = None) -> tf.Tensor:
    """Jacobians of the outputs for each example, :math:`J_i = \\partial f(x_i;\\theta)/\\partial\\theta`, (N, C, P).

    Args:
        model: Keras model returning (N, C) (or (N,) for one output).
        x: inputs (N, ...).
        variables: None (all trainable), layer name(s) or a list of variables.
        batch_size: examples per vectorised batch (memory ~ batch_size x C x P); None: as many as fit in
            ``BATCH_BYTES``.
    Returns:
        tensor (N, C, P).
    Used in chapter 7 (the NTK, 004 eq. 4.2.1) and 8.
    """
    tf_vars, dtype = _setup(model, variables)
    X = _inputs(x, dtype)
    bs = _check_batch(batch_size, int(X.shape[0]), _num_outputs(model, X, dtype) * params.num_params(tf_vars), dtype)
    fn = jacobian_function(model, tf_vars)
    return tf.concat([fn(X[s:s + bs]) for s in range(0, int(X.shape[0]), bs)], axis=0)


def empirical_ntk(model, x1, x2=None, mode: str = "full", variables=None,
                  batch_size: int | None = None) -> tf.Tensor:
    """The empirical NTK :math:`\\Lambda_{ijab} = \\nabla_\\theta f(x_i)_a\\cdot\\nabla_\\theta f(x_j)_b` (004 eq. 4.2.1).

    Args:
        model: Keras model.
        x1: inputs (N1, ...); x2: inputs (N2, ...) or None for x2 = x1.
        mode: ``"full"`` -> (N1, N2, C, C); ``"trace"`` -> (N1, N2) with :math:`\\sum_a\\Lambda_{ijaa}`;
            ``"diagonal"`` -> (N1, C, C) with the blocks :math:`\\Lambda_{iiab}` (x2 must be None).
        variables: None (all trainable), layer name(s) or a list of variables.
        batch_size: examples per Jacobian batch; the Jacobians of x2 are kept (N2 x C x P), x1 is streamed.
            None (default): as many examples per batch as fit in ``BATCH_BYTES`` (usually all of them: each
            batch is one more call, and the first of a new size one more trace).
    Returns:
        tensor of the shape given by ``mode``.
    Used in chapter 7 (the NTK and the lazy regime, identity I-NTKSTEP).
    """
    if mode not in ("full", "trace", "diagonal"):
        raise ValueError(f"mode must be 'full', 'trace' or 'diagonal', got {mode!r}.")
    if mode == "diagonal" and x2 is not None:
        raise ValueError("mode='diagonal' gives the blocks Lambda_iiab of one input set; pass x2=None.")
    X1 = np.asarray(x1)
    if X1.ndim == 0 or X1.shape[0] == 0:
        raise ValueError("x1 is empty; pass at least one example.")
    if x2 is not None and tuple(np.asarray(x2).shape[1:]) != tuple(X1.shape[1:]):
        raise ValueError(f"x1 and x2 must have the same example shape, got {X1.shape[1:]} and {np.asarray(x2).shape[1:]}.")
    tf_vars, dtype = _setup(model, variables)
    X1t = _inputs(X1, dtype, "x1")
    per = _num_outputs(model, X1t, dtype) * params.num_params(tf_vars)
    bs = _check_batch(batch_size, int(X1.shape[0]), per, dtype)
    jac = jacobian_function(model, tf_vars)
    if mode == "diagonal":
        return tf.concat([_diagonal_blocks(jac(X1t[s:s + bs])) for s in range(0, X1.shape[0], bs)], axis=0)
    X2t = X1t if x2 is None else _inputs(x2, dtype, "x2")
    J2 = tf.concat([jac(X2t[s:s + bs]) for s in range(0, int(X2t.shape[0]), bs)], axis=0)
    contract = _contract_full if mode == "full" else _contract_trace
    out = []
    for s in range(0, X1.shape[0], bs):
        J1 = J2[s:s + bs] if x2 is None else jac(X1t[s:s + bs])
        out.append(contract(J1, J2))
    return out[0] if len(out) == 1 else tf.concat(out, axis=0)


@tf.function(reduce_retracing=True)
def _contract_full(J1, J2):
    # one (N1*C, P) x (P, N2*C) matrix product (BLAS), then the (i, j, a, b) order
    n1, n2, c = tf.shape(J1)[0], tf.shape(J2)[0], tf.shape(J1)[1]
    K = tf.matmul(tf.reshape(J1, [n1 * c, -1]), tf.reshape(J2, [n2 * c, -1]), transpose_b=True)
    return tf.transpose(tf.reshape(K, [n1, c, n2, c]), [0, 2, 1, 3])


@tf.function(reduce_retracing=True)
def _contract_trace(J1, J2):
    # sum_a J1[i,a,:] . J2[j,a,:] as one matrix product of the (N, C*P) flattenings
    return tf.matmul(tf.reshape(J1, [tf.shape(J1)[0], -1]), tf.reshape(J2, [tf.shape(J2)[0], -1]), transpose_b=True)


@tf.function(reduce_retracing=True)
def _diagonal_blocks(J):
    return tf.matmul(J, J, transpose_b=True)


def ntk_trace(model, x, variables=None, batch_size: int | None = None, reduction: str = "sum") -> float:
    """Trace of the empirical NTK, :math:`\\mathrm{tr}\\Lambda = \\sum_i\\sum_a\\Lambda_{iiaa} = \\sum_i\\|J_i\\|_F^2`.

    Args:
        model, x, variables, batch_size: as :func:`empirical_ntk`.
        reduction: ``"sum"`` over examples (004's tr Λ; then tr F = tr Λ / N for the one-output L2-norm loss,
            identity I-L2EXACT) or ``"mean"``.
    Returns:
        a Python float.
    Used in chapters 7 and 8.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}.")
    X, _ = _examples(x)
    tf_vars, dtype = _setup(model, variables)
    Xt = _inputs(X, dtype)
    bs = _check_batch(batch_size, X.shape[0], _num_outputs(model, Xt, dtype) * params.num_params(tf_vars), dtype)
    fn = ntk_trace_function(model, tf_vars)
    parts = [tf.reduce_sum(tf.cast(fn(Xt[s:s + bs]), tf.float64)) for s in range(0, X.shape[0], bs)]
    total = float(tf.add_n(parts))
    return total / X.shape[0] if reduction == "mean" else total


def output_gradients(model, loss_fn, x, y) -> tf.Tensor:
    """Derivatives of each example's loss with respect to the outputs, :math:`\\partial\\ell_i/\\partial f(x_i)`, (N, C).

    Used in chapter 7 (004 eq. 5.1.2, the loss part of the Fisher trace).
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    dtype = model.trainable_variables[0].dtype if model.trainable_variables else tf.float32
    X = _inputs(x, dtype)
    Y = _labels(y, int(X.shape[0]), dtype)
    z = _outputs(model, X, tf.as_dtype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(loss_fn(Y, z))
    g = tape.gradient(loss, z)
    if not bool(tf.reduce_all(tf.math.is_finite(g))):
        raise ValueError("The loss derivatives are not finite (NaN or inf) on the data.")
    return g


def _examples(x, y=None):
    """x (and y) as NumPy arrays with at least one example and one label per example, or a clear error."""
    X = np.asarray(x)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError("x is empty; pass at least one example.")
    if y is None:
        return X, None
    Y = np.asarray(y)
    if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have one entry per example ({X.shape[0]}), got shape {Y.shape}.")
    return X, Y


def fisher_trace(model, loss_fn, x, y, variables=None, batch_size: int | None = None) -> float:
    """Trace of the empirical Fisher, :math:`\\mathrm{tr}F = \\frac1N\\sum_i\\|\\nabla_\\theta\\ell_i\\|^2` (004 eq. 5.1.3).

    Computed from per-example gradients in batches (never stores all N x P at once).
    Args: as :func:`per_example_gradients`. Returns: a Python float.
    Used in chapters 6 and 7 (identity I-FISHERNTK, finding F-L2PROP) and 8.
    """
    X, Y = _examples(x, y)
    tf_vars, dtype = _setup(model, variables)
    bs = _check_batch(batch_size, X.shape[0], params.num_params(tf_vars), dtype)
    parts = [tf.reduce_sum(tf.cast(per_example_gradients(model, loss_fn, X[s:s + bs], Y[s:s + bs], variables, bs),
                                   tf.float64) ** 2) for s in range(0, X.shape[0], bs)]
    return float(tf.add_n(parts)) / X.shape[0]


def fisher_trace_via_ntk(model, loss_fn, x, y, variables=None, batch_size: int | None = None) -> float:
    """Trace of the empirical Fisher through the NTK, 004 eq. 5.1.2.

    :math:`\\mathrm{tr}F = \\frac1N\\sum_i\\sum_{a,b}\\frac{\\partial\\ell_i}{\\partial f_a}\\frac{\\partial\\ell_i}{\\partial f_b}
    \\Lambda_{iiab}`: the loss derivatives in output space (independent of the architecture) contracted with
    the diagonal NTK blocks (independent of the loss). Equals :func:`fisher_trace` (identity I-FISHERNTK).
    Args: as :func:`per_example_gradients`. Returns: a Python float.
    Used in chapter 7.
    """
    X, Y = _examples(x, y)
    tf_vars, dtype = _setup(model, variables)
    bs = _check_batch(batch_size, X.shape[0], params.num_params(tf_vars) * 16, dtype)
    total = 0.0
    for s in range(0, X.shape[0], bs):
        g = tf.cast(output_gradients(model, loss_fn, X[s:s + bs], Y[s:s + bs]), tf.float64)
        L = tf.cast(empirical_ntk(model, X[s:s + bs], mode="diagonal", variables=variables, batch_size=bs), tf.float64)
        total += float(tf.reduce_sum(fisher_trace_from_ntk_blocks(g, L, per_example=True)))
    return total / X.shape[0]


def fisher_trace_from_ntk_blocks(loss_gradients, ntk_blocks, per_example: bool = False):
    """004 eq. 5.1.2 on arrays: :math:`\\mathrm{tr}F = \\frac1N\\sum_i\\sum_{a,b} d_{ia}\\,d_{ib}\\,\\Lambda_{iiab}`.

    Args:
        loss_gradients: :math:`d_{ia} = \\partial\\ell_i/\\partial f(x_i)_a`, shape (N, C) (:func:`output_gradients`).
        ntk_blocks: the diagonal NTK blocks :math:`\\Lambda_{iiab}`, shape (N, C, C)
            (``empirical_ntk(model, x, mode="diagonal")``); each block must be symmetric.
        per_example: return the N terms :math:`d_i^\\top\\Lambda_{ii}d_i` instead of their mean.
    Returns:
        a Python float (the mean over the N examples), or a float64 tensor (N,) with ``per_example=True``.
        Computed in float64 whatever the inputs' dtype.
    Used in chapter 7 (identity I-FISHERNTK on typed-in numbers).
    """
    g = _float_array(loss_gradients, "loss_gradients")
    L = _float_array(ntk_blocks, "ntk_blocks")
    if g.shape.rank != 2 or g.shape[0] == 0 or g.shape[1] == 0:
        raise ValueError(f"loss_gradients must have shape (N, C) with N, C >= 1 (one row of dl/df per example), "
                         f"got shape {tuple(g.shape)}.")
    n, c = int(g.shape[0]), int(g.shape[1])
    if tuple(L.shape) != (n, c, c):
        raise ValueError(f"ntk_blocks must have shape (N, C, C) = ({n}, {c}, {c}) to match loss_gradients (N, C), "
                         f"got shape {tuple(L.shape)}; pass the blocks Lambda_iiab of the same examples.")
    if not bool(tf.reduce_all(tf.abs(L - tf.transpose(L, [0, 2, 1]))
                              <= 1e-8 * (1.0 + tf.reduce_max(tf.abs(L))))):
        raise ValueError("ntk_blocks are not symmetric (Lambda_iiab != Lambda_iiba); pass J_i J_i^T blocks of the NTK.")
    terms = tf.einsum("ia,iab,ib->i", g, L, g)
    return terms if per_example else float(tf.reduce_mean(terms))


def _float_array(a, name):
    if isinstance(a, tf.Tensor):
        t = a
    else:
        arr = np.asarray(a)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}.")
        t = tf.constant(arr)
    if not (t.dtype.is_floating or t.dtype.is_integer):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {t.dtype.name}.")
    t = tf.cast(t, tf.float64)
    if not bool(tf.reduce_all(tf.math.is_finite(t))):
        raise ValueError(f"{name} contains NaN or inf; pass finite numbers.")
    return t


def gradient_function(model, loss_fn, variables=None):
    """The compiled batch function ``(x_batch, y_batch) -> (B, P)`` of per-example loss gradients.

    The same function :func:`per_example_gradients` uses (a ``tf.vectorized_map`` over the examples); it can be
    called inside another ``tf.function``, so a training loop can measure without leaving its graph. Inputs must
    already be tensors of the model's dtype (labels as integers or the model's dtype).
    Used by :mod:`helpers.kernel_dynamics` (chapter 7).
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    tf_vars, dtype = _setup(model, variables)
    return _cached(model, ("grad", loss_fn, tuple(id(v) for v in tf_vars)),
                   lambda: _grad_fn(model, loss_fn, tf_vars, dtype))


def jacobian_function(model, variables=None):
    """The compiled batch function ``x_batch -> (B, C, P)`` of per-example output Jacobians (as
    :func:`gradient_function`, for :func:`per_example_jacobians`). Used by :mod:`helpers.kernel_dynamics`."""
    tf_vars, dtype = _setup(model, variables)
    return _cached(model, ("jac", tuple(id(v) for v in tf_vars)), lambda: _jac_fn(model, tf_vars, dtype))


def ntk_trace_function(model, variables=None):
    """The compiled batch function ``x_batch -> (B,)`` of :math:`\\sum_a\\Lambda_{iiaa} = \\|J_i\\|_F^2` per example.

    Sums the squared output gradients inside the vectorised map, so the (B, C, P) Jacobian is never stored
    (about four times faster than squaring :func:`jacobian_function`'s result for a wide MLP).
    Used by :func:`ntk_trace` and :mod:`helpers.kernel_dynamics` (chapter 7).
    """
    tf_vars, dtype = _setup(model, variables)
    return _cached(model, ("sqnorm", tuple(id(v) for v in tf_vars)), lambda: _jac_sqnorm_fn(model, tf_vars, dtype))
