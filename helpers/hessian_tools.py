"""Tools for studying Hessian eigenvectors against the weights (000 Ch. 7) and layerwise spectra (003).

- :func:`layer_slices`: where each layer's parameters sit in the flat parameter vector;
- :func:`weight_product`: ``|h_i . w| / ||w||`` (000 eq. 7.2);
- :func:`accumulation_curve`: accuracy and loss of the network rebuilt from its first ``k`` eigen-components,
  ``w_add = sum_{j<=k} (w . h_j) h_j`` (000 eq. 7.3);
- :func:`accumulated_weights`, :func:`correct_predictions`, :func:`paired_accuracy_difference`: one
  rebuilt weight vector, its per-example correctness and a paired accuracy difference with its error;
- :func:`loss_along`: ``L(w + (alpha - w . h) h)`` (000 eq. 7.6) and its quadratic model;
- :func:`layer_concentration`: ``||h_i||_l^2`` per layer (000 eq. 7.8);
- :func:`singular_matrix_overlaps`: ``|h_i . w~_j| / ||w~_j||`` with the flattened singular matrices (000 eq. 7.4);
- :func:`embed_layer_vectors` and :func:`max_overlaps`: layer eigenvectors in the full space (000 eq. 7.5);
- :func:`lanczos_plain`: textbook Lanczos with or without re-orthogonalisation, to show ghost eigenvalues;
- :func:`train_cached`: train a network once and keep its weights and history in the result cache;
- :func:`trace_and_loss`: the Hessian trace and the training loss at a list of weight snapshots (003 Fig. 7);
- :func:`value_at_loss`: a run's value read off where its loss first falls to a target (matched-loss comparisons).

Used in chapter 4.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from . import params

__all__ = ["layer_slices", "weight_product", "accumulation_curve", "loss_along", "layer_concentration",
           "singular_matrix_overlaps", "embed_layer_vectors", "max_overlaps", "lanczos_plain", "train_cached",
           "evaluate_flat", "accumulated_weights", "correct_predictions", "paired_accuracy_difference",
           "trace_and_loss", "value_at_loss"]


def layer_slices(model, layers: Sequence[str] | None = None) -> dict[str, slice]:
    """Slices of each weight layer's parameters in the flat vector of ``params.select_variables(model)``.

    Args:
        model: a Keras model. layers: names to report (default: every layer with weights, in order).
    Returns:
        dict layer name -> slice (the layer's variables are contiguous in model order). Used in chapter 4.
    """
    allv = params.select_variables(model)
    offsets, pos = {}, 0
    for v in allv:
        offsets[id(v)] = (pos, pos + int(np.prod(v.shape)))
        pos += int(np.prod(v.shape))
    names = params.layer_names(model) if layers is None else list(layers)
    out = {}
    for name in names:
        spans = sorted(offsets[id(v)] for v in params.select_variables(model, name))
        for (a, b), (c, _) in zip(spans, spans[1:]):
            if b != c:
                raise ValueError(f"layer {name!r} has non-contiguous variables in the flat vector.")
        out[name] = slice(spans[0][0], spans[-1][1])
    return out


def weight_product(vectors, w) -> np.ndarray:
    """The weight product ``|h_i . w| / ||w||`` of each column ``h_i`` of ``vectors`` (000 eq. 7.2).

    Args:
        vectors: (P, k) unit eigenvectors as columns. w: (P,) the weights (same flat order).
    Returns:
        (k,) array. Used in chapter 4 (F-WPROD).
    """
    V = np.asarray(vectors, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if V.ndim != 2 or V.shape[0] != w.size:
        raise ValueError(f"vectors must be (P, k) with P = len(w) = {w.size}; got shape {V.shape}.")
    nw = np.linalg.norm(w)
    if nw == 0:
        raise ValueError("weight_product: the weight vector is zero.")
    return np.abs(V.T @ w) / nw


def evaluate_flat(model, loss_fn, x, y, flat_vectors, variables=None, batch_size: int = 4096):
    """Loss and accuracy of ``model`` with its (selected) weights replaced by each of ``flat_vectors``.

    The original weights are restored afterwards.

    Args:
        model, loss_fn: the network and its per-example loss. x, y: data.
        flat_vectors: (K, P) weight vectors. variables: the variables they fill (default all trainable).
    Returns:
        (losses (K,), accuracies (K,)). Used in chapter 4.
    """
    variables = params.select_variables(model) if variables is None else list(variables)
    W = np.atleast_2d(np.asarray(flat_vectors))
    if W.shape[1] != params.num_params(variables):
        raise ValueError(f"flat_vectors must have {params.num_params(variables)} columns, got {W.shape[1]}.")
    original = params.get_flat(variables)
    y = np.asarray(y)
    losses, accs = [], []
    try:
        for row in W:
            params.set_flat(variables, row)
            tot_l, tot_c = 0.0, 0
            for i in range(0, len(x), batch_size):
                out = model(x[i:i + batch_size], training=False)
                tot_l += float(tf.reduce_sum(loss_fn(y[i:i + batch_size], out)))
                tot_c += int(np.sum(np.argmax(out.numpy(), axis=1) == y[i:i + batch_size]))
            losses.append(tot_l / len(x))
            accs.append(tot_c / len(x))
    finally:
        params.set_flat(variables, original)
    return np.asarray(losses), np.asarray(accs)


def accumulation_curve(model, loss_fn, x, y, vectors, counts: Sequence[int], order=None, w=None, variables=None):
    """Accuracy and loss of the network rebuilt from ``k`` eigen-components (000 eq. 7.3).

    ``w_add(k) = sum_{j <= k} theta_j h_j`` with ``theta_j = w . h_j``, the eigenvectors taken in ``order``
    (e.g. decreasing eigenvalue, or decreasing ``|eigenvalue|``).

    Args:
        model, loss_fn, x, y: network, per-example loss and evaluation data.
        vectors: (P, n) orthonormal eigenvectors (columns). counts: the k values (0 <= k <= n).
        order: (n,) column order (default as given). w: (P,) weights (default the model's current ones).
    Returns:
        (losses (len(counts),), accuracies (len(counts),)). Used in chapter 4 (F-ACC20).
    """
    variables = params.select_variables(model) if variables is None else list(variables)
    V = np.asarray(vectors)  # kept in its dtype: a float32 eigenbasis of a large network is not copied
    w = params.get_flat(variables).numpy().astype(np.float64) if w is None else np.asarray(w, np.float64)
    order = np.arange(V.shape[1]) if order is None else np.asarray(order)
    counts = [int(k) for k in counts]
    if any(k < 0 or k > len(order) for k in counts):
        raise ValueError(f"counts must lie in [0, {len(order)}], got {counts}.")
    theta = (V.T @ w)[order]
    # partial sums only at the requested counts (no P x n matrix of cumulative sums)
    rows, current, done = {}, np.zeros(V.shape[0]), 0
    for k in sorted(set(counts)):
        if k > done:
            current = current + V[:, order[done:k]].astype(np.float64) @ theta[done:k]
            done = k
        rows[k] = current.copy()
    return evaluate_flat(model, loss_fn, x, y, np.stack([rows[k] for k in counts]), variables)


def loss_along(model, loss_fn, x, y, direction, deltas, variables=None) -> np.ndarray:
    """``L(w + delta h)`` for each ``delta`` (000 eq. 7.6 with ``delta = alpha - w . h``).

    Args:
        direction: (P,) unit vector h. deltas: (K,) offsets.
    Returns:
        (K,) losses on (x, y). Used in chapter 4 (F-QUAD).
    """
    variables = params.select_variables(model) if variables is None else list(variables)
    w = params.get_flat(variables).numpy()
    h = np.asarray(direction, dtype=w.dtype).reshape(-1)
    if h.size != w.size:
        raise ValueError(f"direction must have {w.size} entries, got {h.size}.")
    return evaluate_flat(model, loss_fn, x, y, w[None, :] + np.asarray(deltas, w.dtype)[:, None] * h[None, :],
                         variables)[0]


def layer_concentration(vectors, slices: Mapping[str, slice]) -> dict[str, np.ndarray]:
    """Share of each eigenvector's squared norm in each layer, ``||h_i||_l^2`` (000 eq. 7.8).

    Returns:
        dict layer -> (k,) shares (they sum to one over the layers). Used in chapter 4 (F-CONC).
    """
    V = np.asarray(vectors, dtype=np.float64)
    total = np.sum(V ** 2, axis=0)
    return {name: np.sum(V[s] ** 2, axis=0) / total for name, s in slices.items()}


def singular_matrix_overlaps(kernel, vectors) -> tuple[np.ndarray, np.ndarray]:
    """Overlaps ``|h_i . w~_j| / ||w~_j||`` of eigenvectors with the flattened singular matrices of a kernel.

    ``W = sum_j nu_j u_j v_j^T``; the j-th singular matrix ``w~_j = nu_j u_j v_j^T`` flattened in row-major
    order (the order of the layer's kernel in the flat vector) has norm ``nu_j`` (000 eq. 7.4).

    Args:
        kernel: (n_in, n_out) dense kernel (convolutions: reshape to 2-D first).
        vectors: (n_in * n_out, k) eigenvectors restricted to the kernel's entries.
    Returns:
        (singular values (r,), overlaps (k, r)). Used in chapter 4.
    """
    W = np.asarray(kernel, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"kernel must be 2-D (reshape convolution kernels first), got shape {W.shape}.")
    V = np.asarray(vectors, dtype=np.float64)
    if V.shape[0] != W.size:
        raise ValueError(f"vectors must have {W.size} rows (the kernel's entries), got {V.shape[0]}.")
    U, nu, Vt = np.linalg.svd(W, full_matrices=False)
    mats = np.einsum("ir,rj->rij", U, Vt).reshape(len(nu), -1)  # unit-norm u_j v_j^T, flattened
    return nu, np.abs(V.T @ mats.T)


def embed_layer_vectors(vectors, layer_slice: slice, size: int) -> np.ndarray:
    """Pad a layer's eigenvectors (n_l, k) with zeros to the full parameter space (size, k) (000 eq. 7.5)."""
    V = np.asarray(vectors, dtype=np.float64)
    n = layer_slice.stop - layer_slice.start
    if V.shape[0] != n:
        raise ValueError(f"the layer has {n} parameters but the vectors have {V.shape[0]} rows.")
    out = np.zeros((size, V.shape[1]))
    out[layer_slice] = V
    return out


def max_overlaps(A, B) -> np.ndarray:
    """For each column of A the largest ``|a_i . b_j|`` over the columns of B. Used in chapter 4 (F-LAYERFULL)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B need the same number of rows, got {A.shape[0]} and {B.shape[0]}.")
    return np.abs(A.T @ B).max(axis=1)


def lanczos_plain(matvec: Callable[[np.ndarray], np.ndarray], v0, num_steps: int,
                  reorthogonalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The textbook Lanczos recursion (003 Algorithm 2) in NumPy float64, optionally fully re-orthogonalised.

    Without re-orthogonalisation the Lanczos vectors lose orthogonality once a Ritz value converges, and
    converged eigenvalues reappear as spurious copies ("ghosts") among the Ritz values.

    Args:
        matvec: v -> A v for a symmetric A. v0: (P,) start vector. num_steps: m >= 1.
        reorthogonalize: orthogonalise each new vector against all previous ones (twice).
    Returns:
        (Ritz values (m,) in increasing order, orthogonality loss ``max |Q^T Q - I|``). Used in chapter 4.
    """
    q = np.asarray(v0, dtype=np.float64).reshape(-1)
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1 or num_steps > q.size:
        raise ValueError(f"num_steps must be an integer in [1, {q.size}], got {num_steps!r}.")
    nq = np.linalg.norm(q)
    if nq == 0:
        raise ValueError("lanczos_plain: the start vector is zero.")
    q = q / nq
    Q = np.zeros((num_steps, q.size))
    alphas, betas = [], []
    prev, beta = np.zeros_like(q), 0.0
    for j in range(num_steps):
        Q[j] = q
        r = matvec(q) - beta * prev
        a = float(q @ r)
        r = r - a * q
        if reorthogonalize:
            for _ in range(2):
                r = r - Q[: j + 1].T @ (Q[: j + 1] @ r)
        alphas.append(a)
        beta = float(np.linalg.norm(r))
        if j < num_steps - 1:
            if beta == 0:
                raise ValueError("lanczos_plain hit an invariant subspace; use fewer steps.")
            betas.append(beta)
            prev, q = q, r / beta
    T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    loss = float(np.abs(Q @ Q.T - np.eye(num_steps)).max())
    return np.linalg.eigvalsh(T), loss


def train_cached(name: str, build: Callable[[], object], data, cfg: Mapping, train_kw: Mapping,
                 loss_fn=None, eval_data=None, extra_loss_fn: Callable | None = None,
                 snapshot_epochs: Sequence[int] = (), version: str = "", model=None):
    """Train a network once; later runs load its initial and final weights and history from the cache.

    Args:
        name: cache label. build: ``() -> model`` (seeded, so it is reproducible).
        data: (x, y) training data. cfg: everything that determines the result (the cache key).
        train_kw: keyword arguments of ``training.train_sgd`` (epochs, batch_size, lr, momentum, ...).
        loss_fn: per-example loss (default cross-entropy). eval_data: (x, y) test data.
        extra_loss_fn: ``model -> extra_loss`` callable (e.g. a Hessian trace regulariser), built on the model.
        snapshot_epochs: epochs after which the weights are kept (0 = the initial weights).
        model: optional model to train instead of a new one (same architecture as ``build()``'s, which gives
            the initial weights). ``train_sgd`` keeps its compiled training graph with the model, so a series
            of runs on one model object (other seeds, other initialisations) traces it once.
    Returns:
        (model with the trained weights, dict with ``history`` arrays, ``initial`` weights list,
        ``snapshots`` {epoch: weights list}, ``seconds`` of training and ``epoch_seconds``, the median
        time of an epoch after the first, which excludes the tracing). Used in chapter 4.
    """
    import time

    from . import cache, losses, training

    loss_fn = losses.cross_entropy if loss_fn is None else loss_fn
    wanted = sorted({int(e) for e in snapshot_epochs})
    fresh = build()
    if model is None:
        model = fresh
    else:
        if [w.shape for w in model.get_weights()] != [w.shape for w in fresh.get_weights()]:
            raise ValueError("model must have the architecture build() gives (the same weight shapes), so that "
                             "build()'s initial weights can be set into it.")
        model.set_weights(fresh.get_weights())

    def compute():
        init = model.get_weights()
        extra = extra_loss_fn(model) if extra_loss_fn is not None else None
        snaps = {0: init} if 0 in wanted else {}
        ends = [time.perf_counter()]

        def keep(epoch, m, history):
            ends.append(time.perf_counter())
            if epoch in wanted:
                snaps[epoch] = m.get_weights()
            return False

        hist = training.train_sgd(model, loss_fn, data, eval_data=eval_data, extra_loss=extra, on_epoch_end=keep,
                                  **dict(train_kw))
        secs = time.perf_counter() - ends[0]
        out = {f"hist_{k}": np.asarray(v) for k, v in hist.items() if np.asarray(v).dtype != object
               and not isinstance(v, dict)}
        out.update(cache.pack_weights(model.get_weights(), "final"))
        out.update(cache.pack_weights(init, "init"))
        for epoch, weights in snaps.items():
            out.update(cache.pack_weights(weights, f"s{epoch:05d}_"))
        out["seconds"] = secs
        out["epoch_seconds"] = float(np.median(np.diff(ends)[1:])) if len(ends) > 2 else secs
        return out

    arrays = cache.cached(name, dict(cfg, snapshot_epochs=wanted), compute, version=version, verbose=False)
    model.set_weights(cache.unpack_weights(arrays, "final"))
    history = {k[5:]: v for k, v in arrays.items() if k.startswith("hist_")}
    snapshots = {e: cache.unpack_weights(arrays, f"s{e:05d}_") for e in wanted}
    return model, {"history": history, "initial": cache.unpack_weights(arrays, "init"),
                   "snapshots": snapshots, "seconds": float(arrays["seconds"]),
                   "epoch_seconds": float(arrays["epoch_seconds"])}


def accumulated_weights(vectors, w, k: int, order=None) -> np.ndarray:
    """``w_add(k) = sum_{j <= k} (w . h_j) h_j``, the eigenvectors taken in ``order`` (000 eq. 7.3).

    Args:
        vectors: (P, n) orthonormal eigenvectors (columns). w: (P,) weights. k: 0 <= k <= n.
        order: (n,) column order (default as given).
    Returns:
        (P,) float64 weight vector. Used in chapter 4 (F-ACC20).
    """
    V = np.asarray(vectors)
    w = np.asarray(w, np.float64).reshape(-1)
    if V.ndim != 2 or V.shape[0] != w.size:
        raise ValueError(f"vectors must be (P, n) with P = len(w) = {w.size}, got shape {V.shape}.")
    order = np.arange(V.shape[1]) if order is None else np.asarray(order)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(order):
        raise ValueError(f"k must be an integer in [0, {len(order)}], got {k!r}.")
    cols = V[:, order[:k]].astype(np.float64)
    return cols @ (cols.T @ w)


def correct_predictions(model, x, y, flat_vector, variables=None, batch_size: int = 4096) -> np.ndarray:
    """Which examples the model classifies correctly with its (selected) weights set to ``flat_vector``.

    The original weights are restored afterwards.

    Args:
        model: a Keras classifier. x, y: data (N examples, integer labels).
        flat_vector: (P,) weights. variables: the variables they fill (default all trainable).
    Returns:
        (N,) bool array. Used in chapter 4 (F-ACC20, with :func:`paired_accuracy_difference`).
    """
    variables = params.select_variables(model) if variables is None else list(variables)
    vec = np.asarray(flat_vector).reshape(-1)
    if vec.size != params.num_params(variables):
        raise ValueError(f"flat_vector must have {params.num_params(variables)} entries, got {vec.size}.")
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same positive number of examples, got {len(x)} and {len(y)}.")
    original = params.get_flat(variables)
    try:
        params.set_flat(variables, vec)
        pred = np.concatenate([np.argmax(model(x[i:i + batch_size], training=False).numpy(), axis=1)
                               for i in range(0, len(x), batch_size)])
    finally:
        params.set_flat(variables, original)
    return pred == y


def paired_accuracy_difference(correct_a, correct_b) -> tuple[float, float]:
    """Accuracy of a minus accuracy of b on the same examples, with its standard error.

    With ``d_i = 1[a correct on i] - 1[b correct on i]`` the difference is ``mean(d)`` and its standard
    error ``std(d) / sqrt(N)`` (sample standard deviation): only the examples on which the two
    classifiers disagree contribute, which makes it much smaller than that of either accuracy.

    Args:
        correct_a, correct_b: (N,) bool arrays from :func:`correct_predictions`, N >= 2.
    Returns:
        (difference, standard error). Used in chapter 4 (F-ACC20).
    """
    a = np.asarray(correct_a, dtype=np.float64).reshape(-1)
    b = np.asarray(correct_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"correct_a and correct_b must have the same length >= 2, got {a.size} and {b.size}.")
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def value_at_loss(losses, values, target: float) -> float:
    """A quantity of a training run read off where the run's loss first falls to ``target``.

    Between the two recorded points that bracket the first crossing, ``log value`` is interpolated linearly in
    ``log loss`` (traces and losses change by orders of magnitude). This compares two runs at matched
    training loss rather than at a matched epoch, e.g. the Hessian trace of a regularised run that trains
    more slowly against the baseline's at the loss the regularised run ends with (003 Fig. 7).

    Args:
        losses: (T,) positive training losses at the recorded points, in training order.
        values: (T,) positive values at the same points (e.g. Hessian traces).
        target: the loss to match (> 0).
    Returns:
        The interpolated value; the first point's value when the run starts at or below ``target``; NaN
        when the run never gets down to ``target``. Used in chapter 4 (F-HTR diagnostics).
    """
    loss = np.asarray(losses, dtype=np.float64).reshape(-1)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if loss.size == 0 or loss.shape != vals.shape:
        raise ValueError(f"losses and values must be non-empty and of one length, got {loss.size} and {vals.size}.")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0) and np.all(np.isfinite(vals)) and np.all(vals > 0)):
        raise ValueError("losses and values must be finite and positive (they are compared on a log scale).")
    if not (isinstance(target, (int, float, np.floating)) and np.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive loss, got {target!r}.")
    below = np.nonzero(loss <= target)[0]
    if below.size == 0:
        return float("nan")
    j = int(below[0])
    if j == 0:
        return float(vals[0])
    x0, x1 = np.log(loss[j - 1]), np.log(loss[j])
    t = (np.log(target) - x0) / (x1 - x0)
    return float(np.exp(np.log(vals[j - 1]) + t * (np.log(vals[j]) - np.log(vals[j - 1]))))


def trace_and_loss(model, operator, snapshots, loss_fn, x, y, num_products: int = 30,
                   estimator: str = "hutchinson", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian trace and the mean loss of ``model`` at each of a list of weight snapshots.

    For each snapshot the weights are loaded into ``model`` (which ``operator`` must be built on, e.g. by
    :func:`helpers.operators.hessian`), the trace of ``operator`` is estimated with ``num_products`` products
    and the same seed at every snapshot (so the differences between snapshots are not probe noise), and the
    loss is evaluated on ``(x, y)``. This is the trace-during-training curve of 003 Fig. 7; with
    :func:`value_at_loss` two runs are compared at matched training loss. The model keeps the last snapshot.

    Args:
        model: the Keras model the operator differentiates.
        operator: a curvature operator of :mod:`helpers.operators` on ``model``'s parameters.
        snapshots: a non-empty list of weight lists (``model.get_weights()``).
        loss_fn: per-example loss ``(y, out) -> (B,)``; x, y: the data whose mean loss is reported.
        num_products: products per trace (Hutchinson: probes, >= 1; Hutch++: the budget, >= 3).
        estimator: ``"hutchinson"`` or ``"hutch++"`` (:mod:`helpers.estimators`).
        seed: seed of the probes.
    Returns:
        ``(traces, losses)``, two float64 arrays of shape (len(snapshots),). Used in chapter 4 (F-HTR).
    """
    from . import estimators, training

    estimate = {"hutchinson": estimators.hutchinson_trace, "hutch++": estimators.hutchpp_trace}.get(estimator)
    if estimate is None:
        raise ValueError(f"estimator must be 'hutchinson' or 'hutch++', got {estimator!r}.")
    if not isinstance(snapshots, (list, tuple)) or not snapshots:
        raise ValueError("snapshots must be a non-empty list of weight lists (model.get_weights()).")
    size = int(sum(np.size(w) for w in model.trainable_weights))
    if getattr(operator, "size", None) is None or int(operator.size) > size:
        raise ValueError(f"operator (size {getattr(operator, 'size', None)}) is not a curvature operator on this "
                         f"model's {size} parameters; build it from the same model.")
    traces, values = [], []
    for weights in snapshots:
        model.set_weights(weights)
        traces.append(estimate(operator, num_products, seed=seed).value)
        values.append(training.evaluate(model, loss_fn, x, y)[0])
    return np.asarray(traces, np.float64), np.asarray(values, np.float64)
