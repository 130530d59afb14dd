"""Curvature matrices of a network as linear operators on flat parameter vectors.

Every operator is a :class:`CurvatureOperator` with one interface: ``.shape`` (P, P), ``.dtype``,
``.matvec(v)``, ``.matmat(V)``, ``.to_dense(max_bytes=...)`` (materialised in blocks under a memory cap),
``.as_linear_operator()`` (a ``scipy.sparse.linalg.LinearOperator``) and ``.num_products`` (how many
matrix-vector products it has computed). The eigensolvers (``helpers.eigensolvers``) and trace estimators
(``helpers.estimators``) accept any of them.

The matrices, for the mean loss :math:`L(\\theta) = \\frac1N \\sum_i \\ell(f(x_i;\\theta), y_i)` over a data
set, with outputs :math:`z_i = f(x_i;\\theta)` (logits) and Jacobians :math:`J_i = \\partial z_i/\\partial\\theta`:

- :func:`hessian`: :math:`\\mathrm{Hess} = \\nabla^2_\\theta L` (+ :math:`2\\lambda I` for a weight-decay term
  :math:`\\lambda\\|\\theta\\|^2`), written out layer by layer for chains of standard layers
  (:mod:`helpers.layer_chain`, the default where it applies), by double backward (Pearlmutter's trick; 000
  listing 5.1; any model) or by forward-over-reverse differentiation;
- :func:`gauss_newton`: :math:`G = \\frac1N\\sum_i J_i^T \\nabla_z^2\\ell\\, J_i` (003 eqs. 2-3);
- :func:`hessian_residual`: :math:`H = \\frac1N\\sum_i \\sum_c \\partial_{z_c}\\ell\\, \\nabla^2_\\theta f_c`
  (003 eqs. 1 and 4), so that Hess = G + H;
- :func:`fisher`: the true Fisher :math:`F = \\frac1N\\sum_i J_i^T(\\mathrm{diag}\\,p_i - p_ip_i^T)J_i` of the
  softmax model (equal to G for the cross-entropy) or the empirical Fisher
  :math:`\\frac1N\\sum_i \\nabla\\ell_i\\nabla\\ell_i^T` (004 Sec. 3.2.5: the network as a model p = e^{-loss}).

Each can be restricted to a subset of the variables (``variables=`` a layer name, a list of names or a list
of variables: the diagonal block, 003's layerwise Hessian) and averages over the data in batches
(``batch_size=``). The model always runs in inference mode (``training=False``: BatchNorm statistics frozen,
dropout off). All products run inside TensorFlow graphs on the device TensorFlow chose; NumPy appears only in
``to_dense`` and the SciPy bridge. :class:`DenseOperator` and :class:`FunctionOperator` wrap an explicit
matrix or a product function in the same interface (used in tests and for small examples).

Used in chapters 2, 4, 5 and 6.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from . import layer_chain, params

__all__ = ["CurvatureOperator", "hessian", "gauss_newton", "hessian_residual", "fisher", "DenseOperator",
           "FunctionOperator", "ModelOperator"]

_ZERO = tf.UnconnectedGradients.ZERO


class CurvatureOperator:
    """A symmetric P x P matrix known through its products with vectors (the common operator interface).

    Subclasses implement ``_rows_product(V)``: a TensorFlow-traceable map from a batch of vectors stored as
    rows, shape (B, P), to the batch of products (B, P). Everything else (argument checks, counting,
    NumPy/SciPy bridges, block materialisation) lives here. Eigensolvers and estimators call
    :meth:`rows_product` inside their own ``tf.function`` and add their count to ``num_products``.

    Attributes:
        shape: (P, P).
        dtype: ``tf.float32`` or ``tf.float64``.
        num_products: matrix-vector products computed so far (a matmat of k columns counts k).
    Used in chapters 2, 4, 5 and 6.
    """

    def __init__(self, size: int, dtype):
        if int(size) < 1:
            raise ValueError(f"An operator needs dimension P >= 1, got {size}.")
        self.size = int(size)
        self.dtype = tf.as_dtype(dtype)
        if self.dtype not in (tf.float32, tf.float64):
            raise TypeError(f"Operators work in float32 or float64, not {self.dtype.name}.")
        self.num_products = 0
        # one vector (no vectorisation machinery) and a batch of vectors (tf.vectorized_map), traced lazily
        self._compiled_one = tf.function(self._rows_product,
                                         input_signature=[tf.TensorSpec([1, self.size], self.dtype)])
        self._compiled_many = tf.function(self._rows_product_many,
                                          input_signature=[tf.TensorSpec([None, self.size], self.dtype)])

    # --- to be implemented -------------------------------------------------------------------------------
    def _rows_product(self, V: tf.Tensor) -> tf.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rows_product_many(self, V: tf.Tensor) -> tf.Tensor:
        return self._rows_product(V)

    # --- public interface ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(P={self.size}, dtype={self.dtype.name})"

    def rows_product(self, V: tf.Tensor) -> tf.Tensor:
        """Products with a batch of vectors stored as rows: (B, P) -> (B, P). Traceable inside tf.function.

        Does not update ``num_products`` (the caller counts; graph loops cannot touch Python state).
        """
        return self._compiled(V)

    def prepare(self):
        """A product function for a loop of products inside a ``tf.function`` (see ``ModelOperator.prepare``;
        here simply :meth:`rows_product`)."""
        return self.rows_product

    def _compiled(self, V):
        if V.shape.rank == 2 and V.shape[0] == 1:
            return self._compiled_one(V)
        return self._compiled_many(V)

    def _as_tensor(self, v, rank: int, what: str) -> tf.Tensor:
        t = tf.convert_to_tensor(v)
        if t.shape.rank != rank or int(t.shape[0]) != self.size:
            want = f"({self.size},)" if rank == 1 else f"({self.size}, k)"
            raise ValueError(f"{what} needs an array of shape {want} for this {self.size}-dimensional operator, "
                             f"got shape {tuple(t.shape)}.")
        if not (t.dtype.is_floating or t.dtype.is_integer):
            raise TypeError(f"{what} needs a real floating-point array, got {t.dtype.name}.")
        t = tf.cast(t, self.dtype)
        if not bool(tf.reduce_all(tf.math.is_finite(t))):
            raise ValueError(f"{what} got a vector with NaN or inf entries; the product would be NaN. Pass finite "
                             "values (did an earlier computation diverge?).")
        return t

    def matvec(self, v) -> tf.Tensor:
        """The product A v for a vector v of shape (P,) (NumPy or TensorFlow); returns a tensor (P,)."""
        t = self._as_tensor(v, 1, "matvec")
        self.num_products += 1
        return self._compiled(t[None, :])[0]

    def matmat(self, V) -> tf.Tensor:
        """The product A V for a matrix V of shape (P, k); returns a tensor (P, k) (k products)."""
        t = self._as_tensor(V, 2, "matmat")
        k = int(t.shape[1])
        if k == 0:
            return tf.zeros([self.size, 0], self.dtype)
        self.num_products += k
        return tf.transpose(self._compiled(tf.transpose(t)))

    _max_block = 1024

    def block_size(self, max_bytes: int) -> int:
        """Columns per block for ``to_dense``: what ``max_bytes`` allows, at most ``_max_block`` (the block size
        beyond which batched products stop getting cheaper per column)."""
        per_column = max(1, int(self._bytes_per_column()))
        return int(max(1, min(self.size, self._max_block, max_bytes // per_column)))

    def _bytes_per_column(self) -> float:
        return 4.0 * self.size * self.dtype.size

    def to_dense(self, max_bytes: int = 2 * 1024**3, block_size: int | None = None, out=None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Materialise the P x P matrix by products with blocks of unit vectors, under a memory cap.

        Args:
            max_bytes: cap on memory: the result (when ``out`` is None) plus one working block. If the
                P x P result alone exceeds it, pass ``out`` (for instance a ``numpy.memmap`` on disk).
            block_size: columns per block (default: as many as ``max_bytes`` allows, see ``block_size()``).
            out: optional preallocated (P, P) array to fill (NumPy array or memmap).
            progress: optional callback ``progress(done_columns, P)`` after each block.
        Returns:
            the (P, P) array (``out`` when given), in the operator's dtype; row i is A e_i.
        Used in chapters 4 and 6 (dense spectra of small networks) and the benchmark.
        """
        if max_bytes is None or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes}.")
        P = self.size
        result_bytes = P * P * self.dtype.size
        if out is None:
            if result_bytes > max_bytes:
                raise ValueError(f"The dense {P} x {P} {self.dtype.name} matrix needs {result_bytes / 2**30:.2f} GiB, "
                                 f"more than max_bytes={max_bytes / 2**30:.2f} GiB; raise max_bytes or pass out= "
                                 "(e.g. a numpy.memmap) to fill a matrix stored elsewhere.")
            out = np.empty((P, P), dtype=self.dtype.as_numpy_dtype)
            budget = max_bytes - result_bytes
        else:
            if tuple(out.shape) != (P, P):
                raise ValueError(f"out must have shape ({P}, {P}), got {tuple(out.shape)}.")
            budget = max_bytes
        if block_size is None:
            block_size = self.block_size(max(budget, 1))
        block_size = int(max(1, min(P, block_size)))
        for start in range(0, P, block_size):
            stop = min(P, start + block_size)
            eye = tf.one_hot(tf.range(start, stop), P, dtype=self.dtype)
            out[start:stop] = self._compiled(eye).numpy()
            self.num_products += stop - start
            if progress is not None:
                progress(stop, P)
        return out

    def as_linear_operator(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view (NumPy in and out; products are counted).

        Used in chapter 4 (the ``eigsh`` bridge).
        """
        from scipy.sparse.linalg import LinearOperator

        np_dtype = self.dtype.as_numpy_dtype

        def mv(v):
            v = np.asarray(v).reshape(-1)
            return self.matvec(v.astype(np_dtype)).numpy()

        def mm(V):
            return self.matmat(np.asarray(V).astype(np_dtype)).numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, matmat=mm, dtype=np_dtype)

    def __matmul__(self, other):
        t = tf.convert_to_tensor(other)
        return self.matvec(t) if t.shape.rank == 1 else self.matmat(t)


def _vector_independent_inputs(v_in: tf.Tensor, out: tf.Tensor) -> list:
    """The tensors a product graph computes without the vector and feeds into vector-dependent operations.

    Walks the graph of ``out`` = A v: an operation depends on v when v reaches it; its other inputs are the
    frontier (forward activations, output gradients, shapes). Constants, captured inputs (data, variable
    handles) are left out: the split functions capture them themselves.
    """
    dependent, stack = set(), [v_in.op]
    while stack:
        op = stack.pop()
        if op not in dependent:
            dependent.add(op)
            stack.extend(c for t in op.outputs for c in t.consumers())
            stack.extend(op._control_outputs)  # an operation ordered after a dependent one depends on it too
    needed, stack = set(), [out.op]
    while stack:
        op = stack.pop()
        if op not in needed:
            needed.add(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    frontier, seen = [], set()
    for op in sorted(needed & dependent, key=lambda o: o.name):
        for t in op.inputs:
            if (t.op not in dependent and t.dtype != tf.resource and t.op.type not in ("Const", "Placeholder")
                    and t.ref() not in seen):
                seen.add(t.ref())
                frontier.append(t)
    return frontier


def _check_symmetric(op: "CurvatureOperator", what: str, seed: int = 0) -> None:
    """One random bilinear test u.(Av) = v.(Au): the eigensolvers assume a symmetric operator.

    The threshold is 100 sqrt(eps) of the dtype, relative to |u||Av| + |v||Au| (float64: 1.5e-6; float32:
    3.5e-2); a non-symmetric matrix fails it with probability one. The two products are not counted.
    """
    rng = np.random.default_rng(seed)
    U = tf.constant(rng.standard_normal((2, op.size)), op.dtype)
    AU = op._rows_product(U)
    lhs, rhs = float(tf.reduce_sum(U[0] * AU[1])), float(tf.reduce_sum(U[1] * AU[0]))
    scale = float(tf.norm(U[0]) * tf.norm(AU[1]) + tf.norm(U[1]) * tf.norm(AU[0]))
    if not (math.isfinite(lhs) and math.isfinite(rhs)):
        raise ValueError(f"{what}: the products are not finite (NaN or inf); check the matrix or the function.")
    if scale > 0 and abs(lhs - rhs) > 100 * math.sqrt(np.finfo(op.dtype.as_numpy_dtype).eps) * scale:
        raise ValueError(f"{what} is not symmetric: u.(Av) = {lhs:.6g} but v.(Au) = {rhs:.6g} for random u, v. "
                         "Lanczos, SLQ and the trace estimators assume A = A^T; pass (A + A^T) / 2 if that is meant.")


class DenseOperator(CurvatureOperator):
    """An explicit symmetric matrix in the operator interface (tests, small examples); a non-symmetric matrix is
    refused (one random bilinear test, :func:`_check_symmetric`). Used in chapter 4."""

    def __init__(self, matrix, dtype=None, check_symmetric: bool = True):
        A = tf.convert_to_tensor(matrix, dtype=dtype)
        if A.shape.rank != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"DenseOperator needs a square matrix, got shape {tuple(A.shape)}.")
        self.matrix = A
        super().__init__(int(A.shape[0]), A.dtype)
        if check_symmetric:
            _check_symmetric(self, "DenseOperator")

    def _rows_product(self, V):
        return tf.matmul(V, self.matrix, transpose_b=True)


class FunctionOperator(CurvatureOperator):
    """A product function ``fn(V) -> A V`` on rows (B, P) -> (B, P) in the operator interface. Used in chapter 4."""

    def __init__(self, fn: Callable[[tf.Tensor], tf.Tensor], size: int, dtype=tf.float64,
                 check_symmetric: bool = True):
        if not callable(fn):
            raise TypeError("FunctionOperator needs a callable fn(V) mapping (B, P) rows to (B, P) products.")
        self._fn = fn
        super().__init__(size, dtype)
        if check_symmetric:
            _check_symmetric(self, "FunctionOperator")

    def _rows_product(self, V):
        return self._fn(V)


# ------------------------------------------------------------------------------------------------------------
# Operators defined by a model, a loss and a data set
# ------------------------------------------------------------------------------------------------------------

def _resolve_variables(model, variables):
    if variables is None or isinstance(variables, str):
        return params.select_variables(model, variables)
    variables = list(variables)
    if not variables:
        raise ValueError("variables=[] selects nothing; pass None (all trainable variables), a layer name, a "
                         "list of layer names, or a list of variables.")
    if all(isinstance(v, str) for v in variables):
        return params.select_variables(model, variables)
    return variables


def _as_xy(data):
    """(x, y) from an (x, y) tuple, a helpers Dataset (its training part) or a finite tf.data.Dataset of
    (x, y) batches or examples (read once, into memory)."""
    from .data import Dataset

    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for item in data:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError("a tf.data.Dataset passed as data must yield (x, y) pairs.")
            xs.append(np.asarray(item[0]))
            ys.append(np.asarray(item[1]))
        if not xs:
            raise ValueError("The tf.data.Dataset is empty; pass at least one example.")
        batched = xs[0].ndim > 0 and ys[0].ndim > 0 and len(xs[0]) == len(ys[0]) and ys[0].ndim == 1
        return (np.concatenate(xs), np.concatenate(ys)) if batched else (np.stack(xs), np.stack(ys))
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be an (x, y) tuple of arrays (for the true Fisher y may be None), a "
                        f"helpers.data.Dataset or a tf.data.Dataset of (x, y); got {type(data).__name__}. To use "
                        "a model-level function on arrays x and y, pass data=(x, y).")
    return data


def _prepare_data(data, dtype):
    x, y = _as_xy(data)
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError("The data set is empty; pass at least one example (x of shape (N, ...), N >= 1).")
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}; pass matching arrays.")
        y = tf.constant(y.astype(dtype.as_numpy_dtype) if np.issubdtype(y.dtype, np.floating) else y)
    x = tf.constant(x.astype(dtype.as_numpy_dtype) if np.issubdtype(x.dtype, np.floating) else x)
    return x, y


def _check_not_probabilities(z, what: str) -> None:
    """Refuse softmax outputs where logits are expected: every row non-negative and summing to 1."""
    if z.shape.rank != 2 or z.shape[-1] is None or int(z.shape[-1]) < 2:
        return
    zn = z.numpy().astype(np.float64)
    if np.all(zn >= 0) and np.allclose(zn.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{what}: the model's outputs look like softmax probabilities (every row is >= 0 and sums "
                         "to 1), but the operators and losses here expect logits, the values before the softmax; "
                         "the results would be silently wrong. Build the model without the final softmax "
                         "(activation=None in the last layer), or pass keras.Model(model.input, "
                         "model.layers[-1].output) with that layer's activation removed.")


class ModelOperator(CurvatureOperator):
    """Base of the operators defined by a Keras model, a per-example loss and a data set (x, y).

    Subclasses implement ``_batch_product(xb, yb, v) -> list`` (one vector's product contribution of one data
    batch, already divided by the total N). The data loop runs inside the graph: a ``tf.while_loop`` over
    equal batches plus one remainder batch; several vectors are handled with ``tf.vectorized_map``.

    The operator holds references to the model's variables, not copies: every product uses the weights as
    they are at that moment (train the model further and the same operator gives the new curvature).
    The data are copied to the device once, at construction. The construction checks that the loss is
    per-example and finite and (``check=True``) that two products with one random vector agree; the check's
    products are not counted in ``num_products``.
    Used in chapters 2, 4, 5, 6 and 7.
    """

    _needs_loss = True

    def __init__(self, model, loss_fn, data, variables=None, batch_size=None, weight_decay=0.0,
                 check: bool = True, seed: int = 0):
        if not hasattr(model, "trainable_variables"):
            raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
        if self._needs_loss and not callable(loss_fn):
            raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,), e.g. "
                            "helpers.losses.cross_entropy.")
        self.model = model
        self.loss_fn = loss_fn
        self.variables = _resolve_variables(model, variables)
        self._tf_vars = [params.tf_variable(v) for v in self.variables]
        dtypes = {v.dtype for v in self._tf_vars}
        if len(dtypes) != 1:
            raise TypeError(f"The selected variables mix dtypes {sorted(d.name for d in dtypes)}; select "
                            "variables of one floating dtype.")
        dtype = dtypes.pop()
        if not isinstance(weight_decay, (int, float)) or not math.isfinite(weight_decay) or weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}.")
        self.weight_decay = float(weight_decay)
        self._x, self._y = _prepare_data(data, tf.as_dtype(dtype))
        if self._needs_loss and self._y is None:
            raise ValueError("This operator needs labels: pass data=(x, y).")
        self.num_examples = int(self._x.shape[0])
        if batch_size is None:
            batch_size = self.num_examples
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None (whole data set), got {batch_size!r}.")
        self.batch_size = int(min(batch_size, self.num_examples))
        self._shapes = [tuple(int(d) for d in v.shape) for v in self._tf_vars]
        self._sizes = [int(np.prod(s)) for s in self._shapes]
        super().__init__(sum(self._sizes), dtype)
        self._check_loss()
        self._choose_method()
        if check:
            self.check_deterministic(seed=seed)

    # --- helpers ------------------------------------------------------------------------------------------
    def _expects_logits(self) -> bool:
        """True when the outputs are read as logits: the true Fisher/Gauss-Newton with the softmax, or any
        operator whose loss is helpers.losses.cross_entropy."""
        from . import losses

        return getattr(self, "output_curvature", None) == "softmax" or self.loss_fn is losses.cross_entropy

    def _forward(self, xb):
        z = self.model(xb, training=False)
        if isinstance(z, (list, tuple)):
            raise TypeError("The model has several outputs; the operators need a single output tensor (logits).")
        return tf.cast(z, self.dtype)

    def _split(self, v):
        return [tf.reshape(p, s) for p, s in zip(tf.split(v, self._sizes), self._shapes)]

    def _flat(self, tensors):
        return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)

    def _per_example_loss(self, yb, z):
        l = self.loss_fn(yb, z)
        return l

    def _check_loss(self):
        """One pass over the data in batches: the loss has shape (batch,) and is finite; labels lie in the range
        of the outputs; outputs are not softmax probabilities where logits are expected."""
        from . import losses

        total = 0.0
        for start in range(0, self.num_examples, self.batch_size):
            xb = self._x[start:start + self.batch_size]
            z = self._forward(xb)
            if start == 0 and self._expects_logits():
                _check_not_probabilities(z, type(self).__name__)
            if self._y is None or self.loss_fn is None:
                if not bool(tf.reduce_all(tf.math.is_finite(z))):
                    raise ValueError("The model's outputs are not finite (NaN or inf) on the data; check the "
                                     "weights and inputs.")
                continue
            yb = self._y[start:start + self.batch_size]
            if start == 0 and self._y.shape.rank == 1 and z.shape[-1] is not None:
                losses.check_labels(self._y.numpy(), int(z.shape[-1]), type(self).__name__)
            try:
                l = self._per_example_loss(yb, z)
            except (TypeError, ValueError, tf.errors.InvalidArgumentError) as exc:
                raise ValueError(f"loss_fn(y_true, y_pred) failed on the first batch ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200]}). Losses are called as loss(y_true, y_pred): "
                                 "labels or targets first, the model's outputs second (as in Keras); a loss "
                                 "written as loss(logits, labels) must swap its arguments.") from exc
            if l.shape.rank != 1 or int(l.shape[0]) != int(xb.shape[0]):
                raise ValueError(f"loss_fn must return one value per example, shape ({int(xb.shape[0])},), got "
                                 f"shape {tuple(l.shape)}; use an unreduced per-example loss (helpers.losses), or "
                                 "for a Keras loss object create it with reduction=None, e.g. "
                                 "keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None).")
            total += float(tf.reduce_sum(tf.cast(l, tf.float64)))
            if not math.isfinite(total):
                raise ValueError("The loss is not finite (NaN or inf) on the data; the operator would be "
                                 "meaningless. Check the weights, inputs and labels (did training diverge?).")
        self.loss_value = total / self.num_examples if self.loss_fn is not None else float("nan")

    def _choose_method(self):
        """Called once the data are in place, before the first product (a hook for :class:`HessianOperator`)."""

    def check_deterministic(self, seed: int = 0) -> float:
        """Apply the operator twice to the same random vector and raise if the products disagree.

        Returns the relative difference (called by the constructor; also useful after changing the model). A difference larger than sqrt(machine epsilon) means that the model
        is not a deterministic function in inference mode (a layer that ignores ``training=False``).
        """
        v = tf.random.stateless_normal([1, self.size], seed=tf.constant([int(seed), 17], tf.int64), dtype=self.dtype)
        a = self._compiled(v)
        b = self._compiled(v)
        num = float(tf.norm(a - b))
        den = float(tf.norm(a)) + float(tf.norm(b))
        rel = num / den if den > 0 else num
        if not math.isfinite(rel) or rel > math.sqrt(np.finfo(self.dtype.as_numpy_dtype).eps):
            raise ValueError(f"Two products of {type(self).__name__} with the same vector differ (relative "
                             f"difference {rel:.3g}): the model is not deterministic in inference mode (a dropout "
                             "or noise layer that ignores training=False?) or produces non-finite values.")
        return rel

    def _batch_product(self, xb, yb, v) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    #: True while a single product that shares nothing with other products is traced (see HessianOperator).
    _alone = False

    def _batch_rows(self, xb, yb, V, shared: bool = False):
        def one(v):
            return self._flat(self._batch_product(xb, yb, v))

        if V.shape[0] == 1:
            self._alone = not shared
            try:
                return one(V[0])[None, :]
            finally:
                self._alone = False
        return tf.vectorized_map(one, V, fallback_to_while_loop=True)

    def _rows_product(self, V, unroll: bool = False):
        """unroll: the trace from which ``_reuse_plan`` splits out the shared tensors."""
        bs, N = self.batch_size, self.num_examples
        n_full, rem = divmod(N, bs)
        if n_full == 1 and rem == 0:
            total = self._batch_rows(self._x, self._y, V, shared=unroll)
        elif unroll:  # one copy of the batch computation per batch, so each keeps its own shared tensors
            total = tf.add_n([self._batch_rows(self._x[s:s + bs], None if self._y is None else self._y[s:s + bs], V,
                                               shared=True) for s in range(0, N, bs)])
        else:
            x, y = self._x, self._y

            def body(i, acc):
                start = i * bs
                xb = tf.ensure_shape(x[start:start + bs], [bs] + x.shape[1:].as_list())
                yb = None if y is None else tf.ensure_shape(y[start:start + bs], [bs] + y.shape[1:].as_list())
                return i + 1, acc + self._batch_rows(xb, yb, V)

            _, total = tf.while_loop(lambda i, acc: i < n_full, body, (tf.constant(0), tf.zeros_like(V)))
            if rem:
                start = n_full * bs
                total = total + self._batch_rows(x[start:], None if y is None else y[start:], V)
        if self.weight_decay:
            total = total + 2.0 * self.weight_decay * V
        return total

    _max_block = 32

    # --- products that share the work done once per data batch ----------------------------------------------
    #: Bytes of shared intermediate tensors (forward activations, what the first backward pass needs) an operator
    #: may keep alive while a graph loop runs; 0 disables the reuse. Set it on an instance to change it.
    reuse_max_bytes = 1 << 30
    #: Above this many data batches the shared tensors are not kept (the product graph would be unrolled).
    reuse_max_batches = 16

    def prepare(self):
        """Call inside a ``tf.function`` before a loop of products: computes, once, every tensor of the product
        that does not depend on the vector (the forward pass over the data, the first backward pass) and returns
        a function ``product(V)`` on rows (1, P) -> (1, P) that reuses them, so that a loop of products costs
        only the part that is linear in v. The Hessian, Gauss-Newton and Fisher products are linear in v, so
        the result is the same product to round-off (tested). A batch of vectors (B > 1) is a loop over its
        rows with the same shared tensors (on the CPU this beats vectorising the products, which for a
        convolution is 1.6x slower per vector; BENCHMARKS.md). ``matmat`` and ``to_dense`` use it per block.

        The shared tensors are found in the product's graph (the tensors consumed by vector-dependent
        operations that do not themselves depend on the vector) and kept while the caller's graph runs: at most
        ``reuse_max_bytes`` of them, for at most ``reuse_max_batches`` data batches; beyond either, or when the
        product cannot be split this way, ``prepare`` returns :meth:`rows_product` and ``reuse_info`` says why.
        The eigensolvers and estimators of ``helpers`` call it. Used in chapters 2, 4, 5, 6 and 7.
        """
        plan = self._reuse_plan()
        if plan is None:
            return self.rows_product
        prep, apply = plan
        shared = prep()
        P = self.size

        def one(v):
            return tf.reshape(apply(v, *shared), [P])

        def product(V):
            if V.shape.rank == 2 and V.shape[0] == 1:
                return one(V[0])[None, :]
            return tf.map_fn(one, V, fn_output_signature=tf.TensorSpec([P], self.dtype))

        return product

    def _rows_product_many(self, V):
        return self._rows_product(V) if self._reuse_plan() is None else self.prepare()(V)

    def _reuse_plan(self):
        """(prep, apply) concrete functions splitting one product into its vector-independent part and the rest,
        built once per operator; None when the split is not possible or not worth its memory."""
        if "_plan" in self.__dict__:
            return self._plan
        self._plan, self.reuse_bytes = None, 0
        n_batches = -(-self.num_examples // self.batch_size)
        if self.reuse_max_bytes <= 0:
            self.reuse_info = "reuse disabled (reuse_max_bytes = 0)"
            return None
        if n_batches > self.reuse_max_batches:
            self.reuse_info = (f"{n_batches} data batches > reuse_max_batches = {self.reuse_max_batches}: every "
                               "product recomputes the forward pass")
            return None
        P = self.size
        try:
            wrapped = tf.compat.v1.wrap_function(lambda v: self._rows_product(v[None], unroll=True)[0],
                                                 [tf.TensorSpec([P], self.dtype)])
            v_in, out = wrapped.inputs[0], wrapped.outputs[0]
            shared = _vector_independent_inputs(v_in, out)
            nbytes = sum((t.shape.num_elements() or 0) * t.dtype.size for t in shared)
            if shared and all(t.shape.is_fully_defined() for t in shared) and nbytes <= self.reuse_max_bytes:
                plan = (wrapped.prune(feeds=[], fetches=shared),
                        wrapped.prune(feeds=[v_in] + shared, fetches=out))
        except Exception as exc:  # a model the v1-style graph cannot trace: keep the plain products
            self.reuse_info = f"the product graph could not be split ({type(exc).__name__}: {str(exc)[:120]})"
            return None
        if not shared:
            self.reuse_info = "nothing to share"
            return None
        if not all(t.shape.is_fully_defined() for t in shared):
            self.reuse_info = "a shared tensor has a dynamic shape"
            return None
        if nbytes > self.reuse_max_bytes:
            self.reuse_info = f"the shared tensors need {nbytes / 2**20:.1f} MiB > reuse_max_bytes"
            return None
        self._plan = plan
        self.reuse_bytes = int(nbytes)
        self.reuse_info = f"{len(shared)} shared tensors, {nbytes / 2**20:.1f} MiB, computed once per loop"
        return self._plan

    def _bytes_per_column(self) -> float:
        # a batch of B products keeps ~B copies of one data batch's activations (and their tangents) alive
        acts = 0
        for layer in getattr(self.model, "layers", []):
            try:
                acts += int(np.prod([d for d in layer.output.shape[1:]]))
            except Exception:
                continue
        acts = max(acts, int(np.prod(self._x.shape[1:])))
        return self.dtype.size * (4.0 * self.size + 8.0 * self.batch_size * acts)

    # --- convenience ----------------------------------------------------------------------------------------
    def gradient(self) -> tf.Tensor:
        """The mean gradient (P,) of the loss (plus weight decay) over the data, for the selected variables.

        Used in chapter 4 (the gradient's overlap with Hessian eigenvectors) and the benchmark."""
        if self._y is None:
            raise ValueError("This operator has no loss (true Fisher without labels); no gradient to compute.")
        if not hasattr(self, "_grad_fn"):
            self._grad_fn = tf.function(self._gradient_graph)
        return self._grad_fn()

    def _gradient_graph(self):
        total = tf.zeros([self.size], self.dtype)
        N = self.num_examples
        for start in range(0, N, self.batch_size):
            xb, yb = self._x[start:start + self.batch_size], self._y[start:start + self.batch_size]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self._tf_vars)
                loss = tf.reduce_sum(self._per_example_loss(yb, self._forward(xb))) / N
            total += self._flat(tape.gradient(loss, self._tf_vars, unconnected_gradients=_ZERO))
        if self.weight_decay:
            total += 2.0 * self.weight_decay * self._flat(self._tf_vars)
        return total


class HessianOperator(ModelOperator):
    """The Hessian of the mean loss (000 Sec. 5.4; 003's layerwise Hessian when restricted); built by
    :func:`hessian`, which documents the arguments. ``method`` holds the form in use and ``method_info`` why
    (``"auto"`` resolves to ``"layer_chain"`` or ``"double_backward"`` at construction). Used in chapters 2, 4
    and 5."""

    _methods = ("auto", "layer_chain", "double_backward", "forward_over_reverse")

    def __init__(self, model, loss_fn, data, variables=None, batch_size=None, weight_decay=0.0,
                 method: str = "auto", check: bool = True, seed: int = 0):
        if method not in self._methods:
            raise ValueError(f"method must be one of {', '.join(map(repr, self._methods))}, got {method!r}.")
        self.method = method
        super().__init__(model, loss_fn, data, variables, batch_size, weight_decay, check, seed)

    def _choose_method(self):
        self.method_info = f"{self.method} (asked for)"
        if self.method not in ("auto", "layer_chain"):
            return
        try:
            self._chain = layer_chain.plan(self.model, self._x[:min(self.batch_size, 256)])
        except layer_chain.Unsupported as exc:
            if self.method == "layer_chain":
                raise ValueError(f"method='layer_chain' cannot write out this model: {exc}. Use "
                                 "method='double_backward' (any model).") from exc
            self.method, self.method_info = "double_backward", f"double_backward (not a layer chain: {exc})"
            return
        if self.method == "auto" and not self._chain.convolves(self._tf_vars):
            # measured on the CPU (BENCHMARKS.md): for dense layers double backward was as fast or faster in 8
            # of 9 Lanczos comparisons; the written-out sweeps win where the products reach a convolution
            self.method, self.method_info = "double_backward", ("double_backward (auto: no convolution among the "
                                                                "variables, where double backward is as fast)")
            return
        self._auto_chain = self.method == "auto"
        self.method_info = ("layer_chain (asked for)" if self.method == "layer_chain" else
                            "layer_chain (auto: a chain of written-out layers with a convolution among the "
                            "variables; a single product that shares nothing with others runs double_backward, "
                            "faster there)")
        self.method = "layer_chain"

    _auto_chain = False

    def _batch_product(self, xb, yb, v):
        tangents = self._split(v)
        N = self.num_examples
        method = self.method
        if method == "layer_chain" and self._auto_chain and self._alone:
            # the written-out sweeps pay off when a loop shares their saved tensors or a block vectorises them;
            # a lone product, or a loop that cannot share, is faster by double backward (BENCHMARKS.md)
            method = "double_backward"
        if method == "layer_chain":
            out = layer_chain.hessian_product(self._chain, xb,
                                              lambda z, u: _output_loss_derivatives(self.loss_fn, yb, z, u),
                                              {id(t): u for t, u in zip(self._tf_vars, tangents)}, 1.0 / N)
            return [out[id(t)] for t in self._tf_vars]
        if method == "forward_over_reverse":
            with tf.autodiff.ForwardAccumulator(self._tf_vars, tangents) as acc:
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(self._tf_vars)
                    loss = tf.reduce_sum(self._per_example_loss(yb, self._forward(xb))) / N
                grads = tape.gradient(loss, self._tf_vars, unconnected_gradients=_ZERO)
            return acc.jvp(grads, unconnected_gradients=_ZERO)
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(self._tf_vars)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(self._tf_vars)
                loss = tf.reduce_sum(self._per_example_loss(yb, self._forward(xb))) / N
            grads = inner.gradient(loss, self._tf_vars, unconnected_gradients=_ZERO)
            gv = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, tangents)])
        return outer.gradient(gv, self._tf_vars, unconnected_gradients=_ZERO)


def _output_loss_derivatives(loss_fn, yb, z, u):
    """(g, H u) for the summed loss sum_i l_i at outputs z (n, C): its gradient g and its output-space Hessian
    times directions u (n, C), by forward-over-reverse. The Gauss-Newton product and the written-out Hessian
    product share it."""
    z = tf.stop_gradient(z)
    with tf.autodiff.ForwardAccumulator(z, u) as acc:
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(loss_fn(yb, z))
        g = tape.gradient(loss, z)
    return g, acc.jvp(g, unconnected_gradients=_ZERO)


def _softmax_fisher_block(z, u):
    """(diag(p) - p p^T) u per example for p = softmax(z); for one output the Bernoulli p(1-p) u."""
    z = tf.stop_gradient(z)
    if z.shape[-1] == 1:
        p = tf.sigmoid(z)
        return p * (1.0 - p) * u
    p = tf.nn.softmax(z, axis=-1)
    return p * u - p * tf.reduce_sum(p * u, axis=-1, keepdims=True)


class GaussNewtonOperator(ModelOperator):
    """The generalised Gauss-Newton matrix G = (1/N) sum_i J_i^T M_i J_i (003 eqs. 2-3), built by
    :func:`gauss_newton` (M_i = loss Hessian in output space) and by :func:`fisher` with ``kind="true"``
    (M_i = diag(p_i) - p_i p_i^T, or I for the Gaussian likelihood). Used in chapters 4 and 6."""

    def __init__(self, model, loss_fn, data, variables=None, batch_size=None, weight_decay=0.0,
                 output_curvature: str = "loss", check: bool = True, seed: int = 0):
        self.output_curvature = output_curvature
        if output_curvature not in ("loss", "softmax", "identity"):
            raise ValueError(f"output_curvature must be 'loss', 'softmax' or 'identity', got {output_curvature!r}.")
        self._needs_loss = output_curvature == "loss"
        super().__init__(model, loss_fn, data, variables, batch_size, weight_decay, check, seed)

    def _batch_product(self, xb, yb, v):
        tangents = self._split(v)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self._tf_vars)
            with tf.autodiff.ForwardAccumulator(self._tf_vars, tangents) as acc:
                z = self._forward(xb)
            jv = acc.jvp(z, unconnected_gradients=_ZERO)
        if self.output_curvature == "loss":
            hjv = _output_loss_derivatives(self.loss_fn, yb, z, jv)[1]
        elif self.output_curvature == "softmax":
            hjv = _softmax_fisher_block(z, jv)
        else:
            hjv = jv
        return tape.gradient(z, self._tf_vars, output_gradients=tf.stop_gradient(hjv) / self.num_examples,
                             unconnected_gradients=_ZERO)


class HessianResidualOperator(ModelOperator):
    """H = (1/N) sum_i sum_c (dl/dz_c) d^2 f_c/dtheta^2 (003 eqs. 1 and 4), so Hess = G + H; built by
    :func:`hessian_residual`. Used in chapter 4."""

    def _batch_product(self, xb, yb, v):
        tangents = self._split(v)
        z0 = self._forward(xb)
        with tf.GradientTape() as t0:
            t0.watch(z0)
            l0 = tf.reduce_sum(self._per_example_loss(yb, z0))
        dz = tf.stop_gradient(t0.gradient(l0, z0)) / self.num_examples
        with tf.autodiff.ForwardAccumulator(self._tf_vars, tangents) as acc:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self._tf_vars)
                r = tf.reduce_sum(dz * self._forward(xb))
            grads = tape.gradient(r, self._tf_vars, unconnected_gradients=_ZERO)
        return acc.jvp(grads, unconnected_gradients=_ZERO)


class EmpiricalFisherOperator(ModelOperator):
    """The empirical Fisher (1/N) sum_i g_i g_i^T with per-example gradients g_i (its trace is 004 eq. 5.1.3);
    one product is a Jacobian-vector product of the per-example losses followed by one reverse pass. Built
    by :func:`fisher` with ``kind="empirical"``. Used in chapters 6 and 7."""

    def _batch_product(self, xb, yb, v):
        tangents = self._split(v)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self._tf_vars)
            with tf.autodiff.ForwardAccumulator(self._tf_vars, tangents) as acc:
                losses = self._per_example_loss(yb, self._forward(xb))
            gv = acc.jvp(losses, unconnected_gradients=_ZERO)
        return tape.gradient(losses, self._tf_vars, output_gradients=tf.stop_gradient(gv) / self.num_examples,
                             unconnected_gradients=_ZERO)


# ------------------------------------------------------------------------------------------------------------
# Factory functions (the contract)
# ------------------------------------------------------------------------------------------------------------

def hessian(model, loss_fn, data, variables=None, batch_size=None, weight_decay: float = 0.0,
            method: str = "auto", check: bool = True, seed: int = 0) -> HessianOperator:
    """The Hessian of the mean loss over a data set, as a linear operator (Hessian-vector products).

    :math:`\\mathrm{Hess}\\,v = \\nabla_\\theta\\big(\\nabla_\\theta L\\cdot v\\big)` with
    :math:`L = \\frac1N\\sum_i \\ell(f(x_i;\\theta), y_i) + \\lambda\\|\\theta\\|^2` (the weight-decay term adds
    exactly :math:`2\\lambda v`, identity I-WD). Three exact forms:
    ``"layer_chain"`` writes the R-operator sweeps out layer by layer (:mod:`helpers.layer_chain`: chains
    of Dense, Conv2D, max-pooling, Flatten/Reshape, Dropout and ReLU/tanh/sigmoid/softplus/linear
    activations);
    ``"double_backward"`` differentiates :math:`\\nabla L\\cdot v` once more in reverse mode (Pearlmutter
    1994, 000 listing 5.1; any model); ``"forward_over_reverse"`` pushes v forward through the gradient
    computation. ``"auto"`` (the default) takes ``"layer_chain"`` when the model is such a chain with a
    convolution among the variables and ``"double_backward"`` otherwise; ``op.method`` and
    ``op.method_info`` say which and why. On the CPU
    the written-out form is the fastest for the book's CNN (1.1-1.25 gradients per product in Lanczos
    against 1.9-2.0), while on MLPs double backward is as fast or up to 15% faster; so "auto" writes the
    product out when a convolution's kernel is among the variables, and even then runs a single product that
    shares nothing with others (a lone ``matvec``, a loop whose shared tensors exceed ``reuse_max_bytes``) by
    double backward, which is faster there; forward-over-reverse is the slowest everywhere
    (BENCHMARKS.md), because TensorFlow's forward mode obtains each Jacobian-vector product by transposing
    a vector-Jacobian product. Restricting ``variables`` to a layer gives the diagonal block, 003's layerwise Hessian.

    Args:
        model: Keras model returning logits; run with ``training=False``.
        loss_fn: per-example loss ``loss(y_true, y_pred) -> (batch,)`` (``helpers.losses``).
        data: ``(x, y)`` arrays with N >= 1 examples.
        variables: None (all trainable), a layer name, a list of layer names or a list of variables.
        batch_size: examples per batch when averaging over the data (None = all at once).
        weight_decay: :math:`\\lambda >= 0`.
        method: ``"auto"``, ``"layer_chain"``, ``"double_backward"`` or ``"forward_over_reverse"``.
        check: apply the operator twice to one vector and raise if the products differ.
        seed: seed of that check's random vector.
    Returns:
        a :class:`CurvatureOperator` of shape (P, P).
    Raises:
        ValueError: empty data, non-finite loss, a loss that is not per-example, an unknown layer name,
        a non-deterministic model, ``method="layer_chain"`` for a model that is not a chain (the reason).
    Used in chapters 2, 4 and 5 (identities I-HVP, I-WD).
    """
    return HessianOperator(model, loss_fn, data, variables, batch_size, weight_decay, method, check, seed)


def gauss_newton(model, loss_fn, data, variables=None, batch_size=None, weight_decay: float = 0.0,
                 check: bool = True, seed: int = 0) -> GaussNewtonOperator:
    """The Gauss-Newton matrix G of the mean loss (003 eqs. 2 and 3), as a linear operator.

    :math:`G = \\frac1N\\sum_i J_i^T\\,\\nabla_z^2\\ell(z_i, y_i)\\,J_i` with the output Jacobian
    :math:`J_i = \\partial f(x_i;\\theta)/\\partial\\theta`; one product costs a Jacobian-vector product (forward
    mode), a product with the loss Hessian in output space and a vector-Jacobian product. Positive
    semi-definite for convex losses. Restricted to a layer it is 003's :math:`G_l` (eq. 3).
    Args and returns as :func:`hessian` (``weight_decay`` adds :math:`2\\lambda v`).
    Used in chapter 4 (the Gauss-Newton decomposition, finding F-GN).
    """
    return GaussNewtonOperator(model, loss_fn, data, variables, batch_size, weight_decay, "loss", check, seed)


def hessian_residual(model, loss_fn, data, variables=None, batch_size=None, check: bool = True,
                     seed: int = 0) -> HessianResidualOperator:
    """The residual H = Hess - G of the Gauss-Newton decomposition (003 eqs. 1 and 4), as a linear operator.

    :math:`H = \\frac1N\\sum_i\\sum_{c}\\partial_{z_c}\\ell(z_i, y_i)\\,\\nabla^2_\\theta f_c(x_i;\\theta)`: the Hessian of
    :math:`\\frac1N\\sum_i g_i\\cdot f(x_i;\\theta)` with the output gradients :math:`g_i` held fixed. Computed
    directly (not as a difference), so the identity Hess = G + H is a genuine check.
    Args and returns as :func:`hessian`. Used in chapter 4.
    """
    return HessianResidualOperator(model, loss_fn, data, variables, batch_size, 0.0, check, seed)


def gradient(model, loss_fn, data, variables=None, batch_size=None, weight_decay: float = 0.0) -> tf.Tensor:
    """The mean gradient (P,) of the loss (plus weight decay lambda ||w||^2) over a data set, as a flat vector
    in the order of ``params.select_variables``; the same data handling and checks as :func:`hessian`.

    Used by readers with their own models (the gradient without building a curvature operator by hand).
    """
    return HessianOperator(model, loss_fn, data, variables, batch_size, weight_decay, "double_backward",
                           check=False).gradient()


def fisher(model, data, kind: str = "true", loss_fn=None, variables=None, batch_size=None,
           likelihood: str = "categorical", check: bool = True, seed: int = 0) -> ModelOperator:
    """The Fisher information matrix of the network, true or empirical, as a linear operator.

    - ``kind="true"``: :math:`F = \\frac1N\\sum_i J_i^T(\\mathrm{diag}\\,p_i - p_ip_i^T)J_i` with
      :math:`p_i = \\mathrm{softmax}(f(x_i;\\theta))` (``likelihood="categorical"``; a single output uses the
      Bernoulli :math:`p(1-p)`), the expectation over the model's own labels (amari1998natural). It equals the
      Gauss-Newton matrix of the softmax cross-entropy. ``likelihood="gaussian"`` gives :math:`\\frac1N\\sum
      J_i^TJ_i` (unit-variance Gaussian outputs). Labels are not needed (``data=(x, None)`` is allowed).
    - ``kind="empirical"``: :math:`\\frac1N\\sum_i \\nabla_\\theta\\ell_i\\,\\nabla_\\theta\\ell_i^T` with the data's labels
      (004 eq. 5.1.3 is its trace; needs ``loss_fn``).

    Args:
        model, data, variables, batch_size, check, seed: as :func:`hessian`.
        kind: ``"true"`` or ``"empirical"``.
        loss_fn: per-example loss (required for ``"empirical"``).
        likelihood: ``"categorical"`` or ``"gaussian"`` (``kind="true"`` only).
    Returns:
        a :class:`CurvatureOperator` of shape (P, P).
    Used in chapters 6 and 7.
    """
    if kind == "true":
        if likelihood not in ("categorical", "gaussian"):
            raise ValueError(f"likelihood must be 'categorical' or 'gaussian', got {likelihood!r}.")
        if isinstance(data, (tuple, list)) and len(data) == 1:
            data = (data[0], None)
        curv = "softmax" if likelihood == "categorical" else "identity"
        return GaussNewtonOperator(model, None, data, variables, batch_size, 0.0, curv, check, seed)
    if kind == "empirical":
        if loss_fn is None:
            raise ValueError("The empirical Fisher needs loss_fn (a per-example loss) and labels in data=(x, y).")
        return EmpiricalFisherOperator(model, loss_fn, data, variables, batch_size, 0.0, check, seed)
    raise ValueError(f"kind must be 'true' or 'empirical', got {kind!r}.")
