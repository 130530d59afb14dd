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
- :func:`gradient_function`, :func:`gradient_norm_function`, :func:`jacobian_function`, :func:`ntk_trace_function`:
  the compiled batch functions behind the above, for use inside another ``tf.function`` (the training-time
  recording of :mod:`helpers.kernel_dynamics`).

Two exact paths compute every quantity, inside ``tf.function`` on TensorFlow's device, in batches of ``batch_size``
examples, with the model run as ``training=False``:

- *dense chains* (a Keras functional or Sequential model that provably is a chain of ``Dense`` layers with
  elementwise activations, optionally with ``Flatten`` in front and ``Dropout``/``Activation`` layers between; see
  :func:`_dense_chain` for the exact conditions): for a dense layer the Jacobian of output a at example i with
  respect to the kernel is the outer product :math:`a_i\\otimes\\delta_{ia}` of the layer's input and the
  back-propagated output derivative, so :math:`\\Lambda_{ijab} = \\sum_l (a^l_i\\cdot a^l_j + 1)
  (\\delta^l_{ia}\\cdot\\delta^l_{jb})` (the 1 for the bias). Kernels, traces and squared norms then need only the
  (N, width) inputs and the (N, C, width) deltas of each layer, never a row of P numbers;
- every other model: ``tf.vectorized_map`` over the examples of a batch (each example's backward pass
  vectorised, no N-fold waste), the kernel as one matrix product of the flattened Jacobians.

Each compiled function has a fixed input signature (any number of examples), is cached on the model and never
retraces. Results are TensorFlow tensors (``np.asarray`` converts them).

Used in chapters 6 and 7 (identities I-NTKSTEP, I-FISHERNTK) and 8.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import params

__all__ = ["per_example_gradients", "per_example_jacobians", "empirical_ntk", "ntk_trace", "fisher_trace",
           "fisher_trace_via_ntk", "fisher_trace_from_ntk_blocks", "output_gradients", "gradient_function",
           "gradient_norm_function", "jacobian_function", "ntk_trace_function"]

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


def _batches(X, bs):
    """X in consecutive batches of ``bs`` examples (X itself when it is one batch: no slicing op)."""
    n = int(X.shape[0])
    return [X] if bs >= n else [X[s:s + bs] for s in range(0, n, bs)]


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


def _generic_kernel(model, kind, tf_vars, dtype, loss_fn=None):
    """The Python function (traced by the caller) of one quantity for any model: ``tf.vectorized_map`` over the
    examples, each example's gradients by its own tape."""

    def gradient(args):
        xi, yi = args
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(tf_vars)
            loss = tf.reduce_sum(loss_fn(yi[None], _outputs(model, xi[None], dtype)))
        return tape.gradient(loss, tf_vars, unconnected_gradients=_ZERO)

    def output_gradients(xi):
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(tf_vars)
            z = _outputs(model, xi[None], dtype)[0]
            parts = [z[c] for c in range(z.shape[0])]
        grads = [tape.gradient(p, tf_vars, unconnected_gradients=_ZERO) for p in parts]
        del tape
        return grads

    def vmap(fn, args):
        # pfor mis-shapes some backward passes (a broadcasting Add, TensorFlow 2.21) for a batch of exactly one
        # example; one extra copy of the first example, dropped afterwards, avoids it at the cost of one example
        n = tf.shape(tf.nest.flatten(args)[0])[0]
        padded = tf.nest.map_structure(lambda a: tf.concat([a, a[:1]], axis=0), args)
        return tf.nest.map_structure(lambda r: r[:n], tf.vectorized_map(fn, padded, fallback_to_while_loop=True))

    def grad(xb, yb):
        return vmap(lambda a: _flat(gradient(a), []), (xb, yb))

    def grad_sq(xb, yb):  # |g_i|^2 in float64 without concatenating the row
        return vmap(lambda a: tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float64))) for g in gradient(a)]),
                    (xb, yb))

    def jac(xb):
        return vmap(lambda xi: tf.stack([_flat(g, []) for g in output_gradients(xi)]), xb)

    def sqnorm(xb):  # sum_a |grad f_a|^2 without keeping the C x P Jacobian
        return vmap(lambda xi: tf.add_n([tf.reduce_sum(tf.square(g)) for gs in output_gradients(xi) for g in gs]), xb)

    def full(x1, x2=None):
        j1 = jac(x1)
        return _contract_full(j1, j1 if x2 is None else jac(x2))

    def trace(x1, x2=None):
        j1 = jac(x1)
        return _contract_trace(j1, j1 if x2 is None else jac(x2))

    def diagonal(xb):
        j = jac(xb)
        return tf.matmul(j, j, transpose_b=True)

    return {"grad": grad, "grad_sq": grad_sq, "jac": jac, "sqnorm": sqnorm, "full": full, "trace": trace,
            "diagonal": diagonal}[kind]


def _kernel(model, kind, tf_vars, dtype, loss_fn=None):
    """The Python function of one quantity: the exact dense-chain factorisation when the model provably is a chain
    of Dense layers (:func:`_dense_chain`), else the generic per-example path."""
    generic = _generic_kernel(model, kind, tf_vars, dtype, loss_fn)
    chain = _dense_chain(model, tf_vars, dtype)
    if chain is None:
        return generic
    if kind in ("grad", "grad_sq"):
        return _chain_gradients(chain, loss_fn, kind == "grad_sq", generic)
    return _chain_kernel(chain, kind)


def _compiled(model, kind, tf_vars, dtype, specs, loss_fn=None):
    """``_kernel`` as a ``tf.function`` with a fixed input signature (batch dimension None), cached on the model:
    repeated calls, with any number of examples, never retrace."""
    key = (kind, loss_fn, tuple(id(v) for v in tf_vars), tuple((tuple(s.shape), s.dtype.name) for s in specs),
           USE_DENSE_CHAIN)
    return _cached(model, key, lambda: tf.function(_kernel(model, kind, tf_vars, dtype, loss_fn),
                                                   input_signature=list(specs)))


def _public(model, kind, tf_vars, dtype, loss_fn=None):
    """``_kernel`` as a ``tf.function`` for callers' own tensors and graphs (shapes generalised on retracing)."""
    key = ("public", kind, loss_fn, tuple(id(v) for v in tf_vars), USE_DENSE_CHAIN)
    return _cached(model, key, lambda: tf.function(_kernel(model, kind, tf_vars, dtype, loss_fn),
                                                   reduce_retracing=True))


def _spec(t):
    return tf.TensorSpec([None] + list(t.shape[1:]), t.dtype)


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
    fn = _compiled(model, "grad", tf_vars, dtype, (_spec(X), _spec(Y)), loss_fn)
    out = [fn(xb, yb) for xb, yb in zip(_batches(X, bs), _batches(Y, bs))]
    G = out[0] if len(out) == 1 else tf.concat(out, axis=0)
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
    fn = _compiled(model, "jac", tf_vars, dtype, (_spec(X),))
    out = [fn(xb) for xb in _batches(X, bs)]
    return out[0] if len(out) == 1 else tf.concat(out, axis=0)


def empirical_ntk(model, x1, x2=None, mode: str = "full", variables=None,
                  batch_size: int | None = None) -> tf.Tensor:
    """The empirical NTK :math:`\\Lambda_{ijab} = \\nabla_\\theta f(x_i)_a\\cdot\\nabla_\\theta f(x_j)_b` (004 eq. 4.2.1).

    Args:
        model: Keras model.
        x1: inputs (N1, ...); x2: inputs (N2, ...) or None for x2 = x1.
        mode: ``"full"`` -> (N1, N2, C, C); ``"trace"`` -> (N1, N2) with :math:`\\sum_a\\Lambda_{ijaa}`;
            ``"diagonal"`` -> (N1, C, C) with the blocks :math:`\\Lambda_{iiab}` (x2 must be None).
        variables: None (all trainable), layer name(s) or a list of variables.
        batch_size: examples of x1 per batch. Generic path: the Jacobians of x2 are kept (N2 x C x P), x1 is
            streamed. Dense chains: the layer factors of x2 are kept (N2 x about C x the widths) and each batch of
            x1 makes its rows of the kernel (memory about 2 x batch_size x N2 x C^2 numbers besides the result).
            None (default): as many examples per batch as fit in ``BATCH_BYTES`` (usually all of them: each
            batch is one more call).
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
    X2t = X1t if x2 is None else _inputs(x2, dtype, "x2")
    n1, n2 = int(X1t.shape[0]), int(X2t.shape[0])
    chain = _dense_chain(model, tf_vars, dtype)
    if chain is not None:  # memory per row of x1: its kernel row (N2 C^2, twice) and its factors
        c = chain.num_outputs
        per = 2 * (n2 if mode != "diagonal" else 1) * (c * c if mode != "trace" else 1) + chain.numbers_per_example
    else:  # the Jacobian rows (C x P per example)
        per = _num_outputs(model, X1t, dtype) * params.num_params(tf_vars)
    bs = _check_batch(batch_size, n1, per, dtype)
    if mode == "diagonal":
        fn = _compiled(model, "diagonal", tf_vars, dtype, (_spec(X1t),))
        out = [fn(xb) for xb in _batches(X1t, bs)]
    elif chain is not None or (bs >= n1 and bs >= n2):
        # one compiled call computes the factors (or Jacobians) and contracts them
        if x2 is None and bs >= n1:
            out = [_compiled(model, mode, tf_vars, dtype, (_spec(X1t),))(X1t)]
        else:
            fn = _compiled(model, mode, tf_vars, dtype, (_spec(X1t), _spec(X2t)))
            out = [fn(xb, X2t) for xb in _batches(X1t, bs)]
    else:  # generic and too large for one batch: keep the Jacobians of x2 (N2 x C x P), stream x1
        jac = _compiled(model, "jac", tf_vars, dtype, (_spec(X1t),))
        J2 = tf.concat([jac(X2t[s:s + bs]) for s in range(0, n2, bs)], axis=0)
        contract = _contract_full if mode == "full" else _contract_trace
        out = [contract(J2[s:s + bs] if x2 is None else jac(X1t[s:s + bs]), J2) for s in range(0, n1, bs)]
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
    chain = _dense_chain(model, tf_vars, dtype)
    per = (chain.numbers_per_example if chain is not None
           else _num_outputs(model, Xt, dtype) * params.num_params(tf_vars))
    bs = _check_batch(batch_size, X.shape[0], per, dtype)
    fn = _compiled(model, "sqnorm", tf_vars, dtype, (_spec(Xt),))
    total = float(sum(np.sum(fn(xb).numpy(), dtype=np.float64) for xb in _batches(Xt, bs)))
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

    Computed from the squared norms of per-example gradients in batches (never stores all N x P at once; on a
    dense chain, no gradient row at all: :math:`\\|g_i\\|^2 = \\sum_l (\\|a^l_i\\|^2 + 1)\\|e^l_i\\|^2` with the layer
    inputs a and the back-propagated loss derivatives e), summed in float64.
    Args: as :func:`per_example_gradients`. Returns: a Python float.
    Used in chapters 6 and 7 (identity I-FISHERNTK, finding F-L2PROP) and 8.
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    X, Y = _examples(x, y)
    tf_vars, dtype = _setup(model, variables)
    Xt, Yt = _inputs(X, dtype), _labels(Y, X.shape[0], dtype)
    chain = _dense_chain(model, tf_vars, dtype)
    bs = _check_batch(batch_size, X.shape[0], chain.numbers_per_example if chain else params.num_params(tf_vars),
                      dtype)
    fn = _compiled(model, "grad_sq", tf_vars, dtype, (_spec(Xt), _spec(Yt)), loss_fn)
    total = float(sum(np.sum(fn(xb, yb).numpy()) for xb, yb in zip(_batches(Xt, bs), _batches(Yt, bs))))
    if not np.isfinite(total):
        raise ValueError("Some per-example gradients are not finite (NaN or inf): the loss is not finite on the data.")
    return total / X.shape[0]


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

    The same computation :func:`per_example_gradients` uses (the dense-chain factorisation or a
    ``tf.vectorized_map`` over the examples); it can be called inside another ``tf.function``, so a training loop
    can measure without leaving its graph. Inputs must already be tensors of the model's dtype (labels as
    integers or the model's dtype).
    Used by :mod:`helpers.kernel_dynamics` (chapter 7).
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    tf_vars, dtype = _setup(model, variables)
    return _public(model, "grad", tf_vars, dtype, loss_fn)


def gradient_norm_function(model, loss_fn, variables=None):
    """The compiled batch function ``(x_batch, y_batch) -> (B,)`` of squared per-example gradient norms
    :math:`\\|\\nabla_\\theta\\ell_i\\|^2` in float64 (as :func:`fisher_trace`, without the (B, P) rows on a dense chain).
    Inputs as :func:`gradient_function`. Used by :mod:`helpers.kernel_dynamics` (chapter 7)."""
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
    tf_vars, dtype = _setup(model, variables)
    return _public(model, "grad_sq", tf_vars, dtype, loss_fn)


def jacobian_function(model, variables=None):
    """The compiled batch function ``x_batch -> (B, C, P)`` of per-example output Jacobians (as
    :func:`gradient_function`, for :func:`per_example_jacobians`). Used by :mod:`helpers.kernel_dynamics`."""
    tf_vars, dtype = _setup(model, variables)
    return _public(model, "jac", tf_vars, dtype)


def ntk_trace_function(model, variables=None):
    """The compiled batch function ``x_batch -> (B,)`` of :math:`\\sum_a\\Lambda_{iiaa} = \\|J_i\\|_F^2` per example.

    Sums the squared output gradients inside the vectorised map, so the (B, C, P) Jacobian is never stored
    (about four times faster than squaring :func:`jacobian_function`'s result for a wide MLP); on a dense chain,
    :math:`\\sum_l (\\|a^l_i\\|^2 + 1)\\|\\delta^l_i\\|_F^2` from the layer factors.
    Used by :func:`ntk_trace` and :mod:`helpers.kernel_dynamics` (chapter 7).
    """
    tf_vars, dtype = _setup(model, variables)
    return _public(model, "sqnorm", tf_vars, dtype)


# --------------------------------------------------------------------------------------------------------
# The dense-chain fast path: exact per-layer factorisation for models that are provably a chain of Dense layers
# --------------------------------------------------------------------------------------------------------
#
# For a dense layer h = a W + b the per-example Jacobian of output c with respect to W is the outer product
# a_i (x) delta_ic, with delta_ic = d f_c(x_i) / d h_i, and with respect to b it is delta_ic. So
#     grad_W f_a(x_i) . grad_W f_b(x_j) = (a_i . a_j) (delta_ia . delta_jb),   grad_b ... = delta_ia . delta_jb,
# and every NTK quantity needs only the layer inputs a (N, width_in) and the back-propagated delta (N, C, width_out),
# never a P-sized row. The deltas follow from delta_L = diag(s'_L(h_L)) and delta_l = (delta_{l+1} W_{l+1}^T) s'_l(h_l)
# for elementwise activations s (their derivative taken by TensorFlow's own gradient, as the generic path does).

#: Keras activations that act element by element (so their Jacobian is the diagonal s'(h)).
_ELEMENTWISE = ("linear", "relu", "tanh", "sigmoid", "softplus", "softsign", "elu", "selu", "gelu", "silu",
                "exponential", "hard_sigmoid", "hard_silu", "leaky_relu", "relu6", "mish", "log_sigmoid", "celu",
                "sparse_plus", "squareplus", "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink")

#: Set to False to send every model through the generic ``tf.vectorized_map`` path (the tests compare both).
USE_DENSE_CHAIN = True


def _keras_classes():
    try:
        import keras
        from keras.src.models.functional import Functional
        from keras.src.models.sequential import Sequential
        from keras.src.backend.common.keras_tensor import KerasTensor
    except ImportError:  # another Keras layout: no fast path
        return None
    acts = {id(getattr(keras.activations, n)) for n in _ELEMENTWISE if hasattr(keras.activations, n)}
    return keras, Functional, Sequential, KerasTensor, acts


class _DenseChain:
    """A model ``x -> prefix(x) -> [Dense, then Dropout/Activation layers]...`` with rank-2 output, in one dtype.

    ``prefix`` holds weight-free Flatten/Dropout layers before the first Dense; ``layers`` holds, per Dense,
    (kernel, bias or None, activations applied after it); ``slots`` maps each selected variable to
    (layer index, "kernel" or "bias").
    """

    def __init__(self, prefix, layers, slots, num_outputs):
        self.prefix, self.layers, self.slots, self.num_outputs = prefix, layers, slots, num_outputs
        # memory per example of the factors: inputs a_l, derivatives and deltas (C per unit)
        self.numbers_per_example = sum(int(k.shape[0]) + (num_outputs + 2) * int(k.shape[1]) for k, _, _ in layers)

    def forward(self, x):
        """Output (N, C), layer inputs a_l (N, w_in) and elementwise derivatives s'_l(h_l) (N, w_out) or None."""
        a = x
        for layer in self.prefix:
            a = layer(a, training=False)
        ins, ders = [], []
        for kernel, bias, acts in self.layers:
            ins.append(a)
            h = tf.matmul(a, kernel)
            if bias is not None:
                h = h + bias
            if acts:
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(h)
                    out = h
                    for f in acts:
                        out = f(out)
                ders.append(tape.gradient(out, h, unconnected_gradients=_ZERO))  # s'(h), elementwise
                a = out
            else:
                ders.append(None)
                a = h
        return a, ins, ders

    def backward(self, ders, top, n):
        """delta_l for every layer from ``top`` = d f / d h_L with shape (N, K, w_L) (K = C rows, or 1 for a loss);
        ``top`` None stands for the identity (a linear output layer: delta_L = I for every example) and stays
        None in the result, so that the kernels use the identity without products."""
        deltas = [None] * len(self.layers)
        d = top
        for l in range(len(self.layers) - 1, -1, -1):
            deltas[l] = d
            if l > 0:
                kernel = self.layers[l][0]
                if d is None:  # I W^T for every example
                    d = tf.transpose(kernel)[None]
                    d = tf.broadcast_to(d, [n, d.shape[1], d.shape[2]]) if ders[l - 1] is None else d
                else:
                    k, w = tf.shape(d)[1], tf.shape(d)[2]
                    d = tf.reshape(tf.matmul(tf.reshape(d, [n * k, w]), kernel, transpose_b=True), [n, k, -1])
                if ders[l - 1] is not None:
                    d = d * ders[l - 1][:, None, :]
        return deltas

    def jacobian_factors(self, x):
        """(layer inputs, deltas (N, C, w)) of the output Jacobian."""
        z, ins, ders = self.forward(x)
        top = None if ders[-1] is None else tf.linalg.diag(ders[-1])  # diag(s'_L(h_L))
        return ins, self.backward(ders, top, tf.shape(z)[0])

    def weights(self, ins1, ins2, pairwise):
        """Per layer, the factor multiplying delta . delta: k (a_i . a_j) + b, with k and b the numbers of selected
        kernels and biases of the layer ((N1, N2) when ``pairwise``, else (N,) with i = j); None for unselected."""
        counts = [[0, 0] for _ in self.layers]
        for l, kind in self.slots:
            counts[l][kind == "bias"] += 1
        out = []
        for l, (k, b) in enumerate(counts):
            a1 = ins1[l]
            shape = [tf.shape(a1)[0], tf.shape(ins2[l])[0]] if pairwise else [tf.shape(a1)[0]]
            if k == 0:
                out.append(None if b == 0 else tf.fill(shape, tf.constant(float(b), a1.dtype)))
                continue
            dot = tf.matmul(a1, ins2[l], transpose_b=True) if pairwise else tf.reduce_sum(tf.square(a1), axis=-1)
            if k > 1:
                dot = float(k) * dot
            out.append(dot + float(b) if b else dot)
        return out

    def per_example_rows(self, ins, deltas):
        """The flat per-example rows (N, K, P) in the order of the selected variables (K = C or 1)."""
        parts = []
        for l, kind in self.slots:
            d, a = deltas[l], ins[l]
            n = tf.shape(a)[0]
            if d is None:  # the identity
                d = tf.broadcast_to(tf.eye(self.num_outputs, dtype=a.dtype), [n, self.num_outputs, self.num_outputs])
            if kind == "bias":
                parts.append(d)
            else:
                parts.append(tf.reshape(a[:, None, :, None] * d[:, :, None, :], [n, tf.shape(d)[1], -1]))
        return tf.concat(parts, axis=-1)


def _dense_chain(model, tf_vars, dtype):
    """The model as a :class:`_DenseChain` when it provably is one (else None: the generic path applies).

    Provably: a Keras functional or Sequential model (those exact classes) with one input and one rank-2 output,
    whose output is reached from the input through a chain of distinct layers of exactly the classes Flatten or
    Dropout (weight-free, before the first Dense), Dense (no LoRA, not quantised, elementwise activation) and
    Dropout or Activation (elementwise) after it, every layer computing in the variables' dtype, each called on
    the previous one's output alone; and every selected variable a kernel or bias of one of those Dense layers.
    """
    cached = model.__dict__.setdefault("_ntk_chain", {})
    key = (tuple(id(v) for v in tf_vars), tf.as_dtype(dtype).name, USE_DENSE_CHAIN)
    if key not in cached:
        try:
            cached[key] = _find_dense_chain(model, tf_vars, tf.as_dtype(dtype)) if USE_DENSE_CHAIN else None
        except Exception:  # any unexpected structure: the generic path
            cached[key] = None
    return cached[key]


def _find_dense_chain(model, tf_vars, dtype):
    found = _keras_classes()
    if found is None:
        return None
    keras, Functional, Sequential, KerasTensor, acts = found
    if type(model) is Sequential:
        graph = getattr(model, "_functional", None)
        if type(graph) is not Functional:
            return None
    elif type(model) is Functional:
        graph = model
    else:
        return None
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return None
    inp, out = graph.inputs[0], graph.outputs[0]
    if len(out.shape) != 2 or not isinstance(out.shape[-1], int) or tf.as_dtype(inp.dtype) != dtype:
        return None
    ops, t = [], out
    while t is not inp:
        if not isinstance(t, KerasTensor):
            return None
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        args, kwargs = node.arguments.args, node.arguments.kwargs
        # (a recorded `training` flag is overridden by the call's training=False)
        if len(args) != 1 or set(kwargs) - {"training"} or len(node.outputs) != 1 or node.outputs[0] is not t:
            return None
        ops.append(op)
        t = args[0]
    ops.reverse()
    if len({id(op) for op in ops}) != len(ops):
        return None  # a layer used twice
    L = keras.layers
    prefix, layers, owner = [], [], {}
    for op in ops:
        kind = type(op)
        if kind is L.Dense:
            if (getattr(op, "lora_enabled", False) or getattr(op, "quantization_mode", None) is not None
                    or op.compute_dtype != dtype.name or op.variable_dtype != dtype.name
                    or id(op.activation) not in acts):
                return None
            kernel = params.tf_variable(op.kernel)
            bias = params.tf_variable(op.bias) if op.bias is not None else None
            if len(op.weights) != 1 + (bias is not None):
                return None
            owner[id(kernel)] = (len(layers), "kernel")
            if bias is not None:
                owner[id(bias)] = (len(layers), "bias")
            linear = op.activation is keras.activations.linear
            layers.append((kernel, bias, [] if linear else [op.activation]))
        elif kind is L.Flatten and not layers and not op.weights:
            prefix.append(op)
        elif kind is L.Dropout and not op.trainable_weights:
            continue  # the identity with training=False (its only weight is the state of its random generator)
        elif kind is L.Activation and layers and not op.weights and id(op.activation) in acts:
            if op.compute_dtype != dtype.name:
                return None
            if op.activation is not keras.activations.linear:
                layers[-1][2].append(op.activation)
        else:
            return None
    if not layers:
        return None
    slots = []
    for v in tf_vars:
        if id(v) not in owner:
            return None
        slots.append(owner[id(v)])
    return _DenseChain(prefix, layers, slots, int(out.shape[-1]))


def _chain_kernel(chain, kind):
    """The Python function (traced by the caller) of one NTK quantity on a dense chain."""
    c = chain.num_outputs

    def full(x1, x2=None):
        ins1, d1 = chain.jacobian_factors(x1)
        ins2, d2 = (ins1, d1) if x2 is None else chain.jacobian_factors(x2)
        total = None
        for w, a, b in zip(chain.weights(ins1, ins2, True), d1, d2):
            if w is None:
                continue
            # (C, C, N1, N2): a batch of C^2 products delta_a delta_b^T, scaled by w (N1, N2) along the
            # contiguous axes (measured faster than one (N1 C) x (N2 C) product scaled across strided axes)
            if a is None:  # identity deltas: delta_a . delta_b = [a = b]
                k = tf.eye(c, dtype=w.dtype)[:, :, None, None] * w
            else:
                a, b = tf.transpose(a, [1, 0, 2]), tf.transpose(b, [1, 0, 2])
                k = tf.matmul(a[:, None], b[None], transpose_b=True) * w
            total = k if total is None else total + k
        return tf.transpose(total, [2, 3, 0, 1])

    def trace(x1, x2=None):
        ins1, d1 = chain.jacobian_factors(x1)
        ins2, d2 = (ins1, d1) if x2 is None else chain.jacobian_factors(x2)
        n1, n2 = tf.shape(x1)[0], tf.shape(ins2[0])[0]
        total = None
        for w, a, b in zip(chain.weights(ins1, ins2, True), d1, d2):
            if w is None:
                continue
            k = (float(c) * w if a is None
                 else tf.matmul(tf.reshape(a, [n1, -1]), tf.reshape(b, [n2, -1]), transpose_b=True) * w)
            total = k if total is None else total + k
        return total

    def diagonal(x):
        ins, d = chain.jacobian_factors(x)
        total = None
        for w, a in zip(chain.weights(ins, ins, False), d):
            if w is None:
                continue
            k = (tf.eye(c, dtype=w.dtype) if a is None else tf.matmul(a, a, transpose_b=True)) * w[:, None, None]
            total = k if total is None else total + k
        return total

    def sqnorm(x):
        ins, d = chain.jacobian_factors(x)
        terms = [(float(c) if a is None else tf.reduce_sum(tf.square(a), axis=[1, 2])) * w
                 for w, a in zip(chain.weights(ins, ins, False), d) if w is not None]
        return tf.add_n(terms)

    def jacobian(x):
        ins, d = chain.jacobian_factors(x)
        return chain.per_example_rows(ins, d)

    return {"full": full, "trace": trace, "diagonal": diagonal, "sqnorm": sqnorm, "jac": jacobian}[kind]


def _chain_gradients(chain, loss_fn, squared, generic):
    """Per-example loss gradients on a dense chain (rows (N, P), or their squared norms in float64): the loss
    derivatives d_i = dl_i/df(x_i) from one batched gradient of the per-example losses, back-propagated as the
    (N, 1, w) deltas. A loss that does not return one value per example goes to the generic path."""

    def batch(xb, yb):
        z, ins, ders = chain.forward(xb)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(z)
            loss = loss_fn(yb, z)
        if loss.shape.rank != 1:
            return generic(xb, yb)
        d = tape.gradient(loss, z, unconnected_gradients=_ZERO)  # of the sum; row i depends on example i only
        if ders[-1] is not None:
            d = d * ders[-1]
        deltas = chain.backward(ders, d[:, None, :], tf.shape(d)[0])
        if not squared:
            return chain.per_example_rows(ins, deltas)[:, 0, :]
        ins64 = [tf.cast(a, tf.float64) for a in ins]
        terms = [tf.reduce_sum(tf.square(tf.cast(e, tf.float64)), axis=[1, 2]) * w
                 for w, e in zip(chain.weights(ins64, ins64, False), deltas) if w is not None]
        return tf.add_n(terms)

    return batch
