"""Per-layer curvature of any Keras model in one call: Hessian eigenvalues, traces, spectral densities and
weight-spectrum metrics for every weight layer and for the whole network, as one table.

:func:`curvature_report` builds, for each layer that owns trainable weights (and for all of them together),
the diagonal block of the Hessian (003's layerwise Hessian; or of the Gauss-Newton matrix) with
:func:`helpers.operators.hessian` and measures it:

- the top-k eigenvalues by Lanczos (:func:`helpers.eigensolvers.lanczos`) with residuals and converged
  flags, or exactly by a dense eigendecomposition when the block is small (``dense_max``);
- the trace by Hutch++ or Hutchinson with its standard error (:mod:`helpers.estimators`), exact for small
  blocks;
- optionally the SLQ spectral density with its spread across probes (:func:`helpers.eigensolvers.slq_density`);
- for layers with a weight matrix (Dense, convolutions, Embedding), the weight-spectrum metrics of chapter 3
  (:func:`helpers.weight_spectra.quality_metrics`: power-law exponent alpha, stable rank, spikes above the
  Marchenko-Pastur bulk, and the LT/BT/HT/RC class).

Layers handled: ``Dense``, ``Conv1D``/``Conv2D``/``Conv3D``, ``BatchNormalization``,
``LayerNormalization`` and ``Embedding``, in Sequential, functional and subclassed models (nested models are
walked), built with ``keras.Input`` or lazily (the report calls the model once to build it). A layer with
trainable weights of another type raises a ValueError naming it (pass ``extra_layer_types`` to accept it
for the Hessian block only); nothing is skipped silently. Layers without trainable weights (pooling,
dropout, flatten, frozen layers) have no block and no row.

The result, :class:`CurvatureReport`, is a list of :class:`LayerCurvature` records that prints as a
fixed-width table, converts to a dict of arrays (``to_dict()``) and to header and rows for
``helpers.plotting.show_table`` (``table()``). No pandas.

Used in the page "Use it on your own model" (09) and by :class:`helpers.callbacks.CurvatureCallback`.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import tensorflow as tf

from . import eigensolvers, estimators, operators
from . import weight_spectra as ws

__all__ = ["LayerCurvature", "CurvatureReport", "curvature_report", "weight_layers", "SUPPORTED_LAYERS",
           "NETWORK"]

#: Keras layer classes (by name) whose Hessian blocks the report computes; the value says where the
#: weight matrix of chapter 3 comes from (None: no matrix, e.g. normalisation scales and shifts).
SUPPORTED_LAYERS = {"Dense": "kernel", "Conv1D": "kernel", "Conv2D": "kernel", "Conv3D": "kernel",
                    "BatchNormalization": None, "LayerNormalization": None, "Embedding": "embeddings"}

#: the name of the whole-network row
NETWORK = "(network)"


@dataclass
class LayerCurvature:
    """One row of the report: the curvature of one layer's block (or of the whole network).

    Attributes:
        name, layer_type: the layer's name and class (``NETWORK`` and "Model" for the whole network).
        num_params: P, the block's dimension.
        eigenvalues: (k,) the top-k eigenvalues, descending; residuals (k,), converged (k,) as
            :class:`helpers.eigensolvers.EigResult`.
        eig_method: "lanczos" or "dense" (exact, for P <= ``dense_max``).
        trace, trace_stderr: the trace and its standard error (0 when exact); trace_method "hutch++",
            "hutchinson" or "exact".
        density: the SLQ :class:`helpers.eigensolvers.Density` (None unless requested).
        weights: chapter 3's metrics of the layer's weight matrix (dict), None where there is no matrix.
        num_products: Hessian-vector products spent on this row; seconds: wall time of this row.
    """

    name: str
    layer_type: str
    num_params: int
    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    eig_method: str
    trace: float
    trace_stderr: float
    trace_method: str
    num_products: int
    seconds: float
    density: eigensolvers.Density | None = field(default=None, repr=False)
    weights: dict | None = None
    notes: str = ""

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


def _fmt(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


class CurvatureReport(list):
    """The records of :func:`curvature_report` (a list of :class:`LayerCurvature`), printable as a table.

    ``report["conv1"]`` is the record of a layer by name, ``report.network`` the whole-network row,
    ``report.to_dict()`` a dict of NumPy arrays (one entry per column), ``report.table()`` ``(header, rows)``
    of strings for ``helpers.plotting.show_table``. ``str(report)`` / ``repr(report)`` is the table, plus a
    line naming what did not converge.
    """

    def __init__(self, records=(), config: dict | None = None):
        super().__init__(records)
        self.config = dict(config or {})

    def __getitem__(self, key):
        if isinstance(key, str):
            for r in self:
                if r.name == key:
                    return r
            raise KeyError(f"no row named {key!r}; rows are {[r.name for r in self]}.")
        return super().__getitem__(key)

    @property
    def network(self) -> LayerCurvature:
        return self[NETWORK]

    @property
    def num_products(self) -> int:
        return int(sum(r.num_products for r in self))

    @property
    def unconverged(self) -> list[str]:
        return [r.name for r in self if not r.all_converged]

    def to_dict(self) -> dict:
        """Columns as arrays: eigenvalues (n, k) padded with NaN, converged (n,) all pairs converged, ..."""
        k = max((len(r.eigenvalues) for r in self), default=0)
        eig = np.full((len(self), k), np.nan)
        for i, r in enumerate(self):
            eig[i, :len(r.eigenvalues)] = r.eigenvalues
        w = [r.weights or {} for r in self]
        return {
            "layer": np.array([r.name for r in self]), "type": np.array([r.layer_type for r in self]),
            "num_params": np.array([r.num_params for r in self]), "eigenvalues": eig,
            "lambda_max": eig[:, 0] if k else np.zeros(0), "converged": np.array([r.all_converged for r in self]),
            "trace": np.array([r.trace for r in self]), "trace_stderr": np.array([r.trace_stderr for r in self]),
            "alpha": np.array([m.get("alpha", np.nan) for m in w]),
            "stable_rank": np.array([m.get("stable_rank", np.nan) for m in w]),
            "num_spikes": np.array([m.get("num_spikes", -1) for m in w]),
            "spectrum_class": np.array([m.get("class", "") for m in w]),
            "num_products": np.array([r.num_products for r in self]), "seconds": np.array([r.seconds for r in self]),
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """``(header, rows)`` of strings: one row per layer and one for the network."""
        header = ["layer", "type", "params", "top eigenvalues", "converged", "trace ± s.e.", "alpha",
                  "stable rank", "spikes", "class", "products", "s"]
        rows = []
        for r in self:
            m = r.weights or {}
            tr = _fmt(r.trace) + ("" if r.trace_method == "exact" else f" ± {_fmt(r.trace_stderr, 2)}")
            rows.append([r.name, r.layer_type, str(r.num_params), ", ".join(_fmt(v) for v in r.eigenvalues),
                         f"{int(np.sum(r.converged))}/{len(r.converged)}" + (" (exact)" if r.eig_method == "dense" else ""),
                         tr + (" (exact)" if r.trace_method == "exact" else ""), _fmt(m.get("alpha"), 3),
                         _fmt(m.get("stable_rank"), 3), _fmt(m.get("num_spikes")), m.get("class", "-") or "-",
                         str(r.num_products), f"{r.seconds:.1f}"])
        return header, rows

    def __str__(self) -> str:
        header, rows = self.table()
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        bad = self.unconverged
        if bad:
            lines.append(f"NOT CONVERGED: {', '.join(bad)} (raise max_iter or budget; see the residuals).")
        return "\n".join(lines)

    __repr__ = __str__


# ------------------------------------------------------------------------------------------------------------
# walking the model
# ------------------------------------------------------------------------------------------------------------

def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def weight_layers(model, extra_layer_types: Sequence = ()) -> list:
    """The leaf layers of a Keras model that own trainable weights, in model order (nested models walked).

    Raises ValueError for a layer with trainable weights whose type is neither in :data:`SUPPORTED_LAYERS`
    nor in ``extra_layer_types`` (classes or class names), naming it. Used by :func:`curvature_report`.
    """
    extra = tuple(t if isinstance(t, str) else t.__name__ for t in extra_layer_types)
    found, refused = [], []

    def visit(container):
        for layer in container.layers:
            if _is_model(layer):
                visit(layer)
            elif layer.trainable_weights:
                kind = type(layer).__name__
                if kind in SUPPORTED_LAYERS or kind in extra:
                    found.append(layer)
                else:
                    refused.append(f"{layer.name!r} ({kind})")

    visit(model)
    if refused:
        raise ValueError(f"curvature_report cannot handle the layer(s) {', '.join(refused)}: it knows "
                         f"{', '.join(SUPPORTED_LAYERS)}. Pass extra_layer_types=(TheClass,) to compute the Hessian "
                         "block of such a layer anyway (no weight-spectrum metrics), or layers=[...] to choose the "
                         "layers to report.")
    return found


def _as_arrays(data):
    """(x, y) NumPy arrays from an (x, y) tuple, a helpers Dataset (training part) or a finite tf.data.Dataset
    of (x, y) batches (read once)."""
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
        batched = xs[0].ndim > 0 and ys[0].ndim > 0 and len(xs[0]) == len(ys[0])
        return (np.concatenate(xs), np.concatenate(ys)) if batched else (np.stack(xs), np.stack(ys))
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be an (x, y) tuple of arrays, a helpers.data.Dataset or a tf.data.Dataset of "
                        f"(x, y) batches; got {type(data).__name__}.")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("The data set is empty; pass at least one example (x of shape (N, ...), N >= 1).")
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}; pass matching arrays.")
    return x, y


def _weight_matrix(layer) -> np.ndarray | None:
    attr = SUPPORTED_LAYERS.get(type(layer).__name__)
    if attr is None or not hasattr(layer, attr):
        return None
    W = np.asarray(getattr(layer, attr), dtype=np.float64)
    if W.ndim > 2:  # a convolution (..., c_in, c_out): spatial dimensions together, channels together (000 7.3)
        W = W.reshape(int(np.prod(W.shape[:-2])), W.shape[-2] * W.shape[-1])
    return W


def weight_metrics(layer) -> dict | None:
    """Chapter 3's metrics of a layer's weight matrix (None for layers without one, or a matrix with a
    dimension below 2): :func:`helpers.weight_spectra.quality_metrics` (alpha, stable rank, spikes above the
    MP bulk, lambda_max) and the LT/BT/HT/RC ``class`` (:func:`helpers.weight_spectra.classify_spectrum`,
    at least 8 eigenvalues). A power-law fit impossible on few eigenvalues gives alpha NaN with a ``note``.
    """
    W = _weight_matrix(layer)
    if W is None or min(W.shape) < 2:
        return None
    nu, ev, ratio = ws.matrix_spectrum(W)
    try:
        m = ws.quality_metrics(W)
    except ValueError as exc:
        lam = np.sort(nu ** 2)
        from . import random_matrix as rmt

        fit = rmt.mp_fit(ev, ratio)
        m = {"alpha": float("nan"), "stable_rank": float(lam.sum() / lam[-1]), "num_spikes": int(fit.num_outliers),
             "lambda_max": float(lam[-1]), "n": int(lam.size), "ratio": float(ratio),
             "note": f"no power-law fit: {exc}"}
    if ev.size >= 8 and ev[-1] > 0:
        m["class"] = ws.classify_spectrum(ev, ratio=ratio).label
    return m


# ------------------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------------------

def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _build(model, x):
    if not model.built or not model.trainable_variables:
        model(x[:1], training=False)
    if not model.trainable_variables:
        raise ValueError("The model has no trainable variables, so it has no curvature to report.")


def curvature_report(model, loss_fn, data, top_k: int = 3, trace_probes: int = 30, slq: bool = False,
                     layers: Sequence[str] | None = None, include_network: bool = True,
                     curvature: str = "hessian", trace_method: str = "hutch++", tol: float = 1e-6,
                     max_iter: int | None = None, restarts: int = 0, budget: int | None = None, dense_max: int = 128,
                     slq_probes: int = 8, slq_steps: int = 40, weight_spectra: bool = True,
                     batch_size: int | None = None, extra_layer_types: Sequence = (), strategy=None,
                     seed: int = 0, operator_cache: dict | None = None) -> CurvatureReport:
    """Curvature of every weight layer and of the whole network of a Keras model, as one table.

    For each layer (its trainable variables: kernel and bias, BatchNorm's gamma and beta, ...) the block
    :math:`H_{ll} = \\partial^2 L/\\partial\\theta_l^2` of the Hessian of the mean loss
    :math:`L = \\frac1N\\sum_i\\ell(f(x_i), y_i)` (003's layerwise Hessian), and for the network the full Hessian:
    top-k eigenvalues (Lanczos; exact by dense ``eigh`` when P <= ``dense_max``), trace (Hutch++ with its
    standard error; exact when P <= ``dense_max``), optionally an SLQ density, and the weight-spectrum
    metrics of chapter 3. The model runs in inference mode (dropout off, BatchNorm's moving statistics), and
    must return logits when the loss is ``helpers.losses.cross_entropy`` (a softmax output is refused by the
    operators). A model with an Embedding layer uses double-backward Hessian-vector products (forward-mode
    differentiation of an embedding lookup's sparse gradient is not supported by TensorFlow).

    Args:
        model: a Keras model (Sequential, functional or subclassed; built or not).
        loss_fn: per-example loss ``loss(y_true, y_pred) -> (batch,)`` (``helpers.losses`` or a Keras loss
            with ``reduction=None``).
        data: ``(x, y)``, a ``helpers.data.Dataset`` (its training part) or a finite ``tf.data.Dataset``.
        top_k: eigenvalues per row (capped at the block's P).
        trace_probes: products of the trace estimator (Hutch++ needs >= 3, Hutchinson >= 2).
        slq: also estimate each row's spectral density (``slq_probes`` probes of ``slq_steps`` steps).
        layers: names of the layers to report (default: every weight layer).
        include_network: add the whole-network row.
        curvature: ``"hessian"`` or ``"gauss_newton"`` (the positive semi-definite Gauss-Newton matrix).
        trace_method: ``"hutch++"`` or ``"hutchinson"``.
        tol, max_iter: Lanczos' tolerance and step cap.
        restarts: rounds of Lanczos' multiplicity check (:func:`helpers.eigensolvers.lanczos`); 0 by default
            (top eigenvalues of a Hessian are usually simple); raise it when the top eigenvalue may be
            repeated (a linear layer with C outputs has every eigenvalue C times).
        budget: products per row, if given: Lanczos gets at most half (``max_iter = budget // 2 - top_k``),
            the trace the rest (at least 3); overrides ``max_iter`` and ``trace_probes``.
        dense_max: largest P computed exactly by a dense eigendecomposition (0: always iterative).
        weight_spectra: compute chapter 3's metrics for layers with a weight matrix.
        batch_size: examples per batch inside the products (None: all at once).
        extra_layer_types: layer classes (or class names) to accept besides :data:`SUPPORTED_LAYERS`.
        strategy: a ``tf.distribute`` strategy: the data are split into one shard per replica and every
            product is the shard-size-weighted mean of the shards' products, each computed on its replica's
            device (:func:`helpers.distributed.sharded`).
        seed: seed of every random probe and start vector.
        operator_cache: a dict that keeps the operators between calls on the same model and data (the
            callback passes one). An operator reads the model's variables at every product, so a kept one
            measures the current weights; keeping it saves building and tracing it again.
    Returns:
        :class:`CurvatureReport` (layers in model order, then the network). Warns
        (:class:`helpers.eigensolvers.NotConvergedWarning`) once, naming every row that did not converge.
    Used in the page "Use it on your own model".
    """
    if not hasattr(model, "trainable_variables") or not callable(model):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,), e.g. "
                        "helpers.losses.cross_entropy.")
    top_k = _check_int(top_k, "top_k", 1)
    if trace_method not in ("hutch++", "hutchinson"):
        raise ValueError(f"trace_method must be 'hutch++' or 'hutchinson', got {trace_method!r}.")
    trace_probes = _check_int(trace_probes, "trace_probes", 3 if trace_method == "hutch++" else 2)
    if curvature not in ("hessian", "gauss_newton"):
        raise ValueError(f"curvature must be 'hessian' or 'gauss_newton', got {curvature!r}.")
    dense_max = _check_int(dense_max, "dense_max", 0)
    if budget is not None:
        budget = _check_int(budget, "budget", 2 * top_k + 6)
    if max_iter is not None:
        max_iter = _check_int(max_iter, "max_iter", top_k)
    restarts = _check_int(restarts, "restarts", 0)
    if not isinstance(slq, bool):
        raise TypeError(f"slq must be True or False, got {slq!r}.")
    if slq:
        slq_probes, slq_steps = _check_int(slq_probes, "slq_probes", 1), _check_int(slq_steps, "slq_steps", 2)
    x, y = _as_arrays(data)
    _build(model, x)
    found = weight_layers(model, extra_layer_types)
    if layers is not None:
        names = [layers] if isinstance(layers, str) else list(layers)
        by_name = {l.name: l for l in found}
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            raise ValueError(f"layers={names!r}: no weight layer named {unknown}; the model's weight layers are "
                             f"{list(by_name)}.")
        found = [by_name[n] for n in names]
    else:  # every trainable variable must belong to a reported layer, or it would silently be left out
        owned = {id(v) for l in found for v in l.trainable_variables}
        orphans = [v.path if hasattr(v, "path") else v.name for v in model.trainable_variables if id(v) not in owned]
        if orphans:
            raise ValueError(f"The trainable variables {orphans} belong to no layer the report can see (weights "
                             "created directly on a model?); they are in the network row only. Pass layers=[...] to "
                             "report the layers you mean.")
    factory = _factory(model, loss_fn, batch_size, curvature, seed)
    if strategy is not None:
        from . import distributed

        plain = factory
        factory = lambda variables, xy: distributed.sharded(  # noqa: E731
            lambda shard: plain(variables, shard), xy, strategy=strategy)
    rows = [(l.name, type(l).__name__, list(l.trainable_variables), l) for l in found]
    if include_network:
        rows.append((NETWORK, "Model", None, None))
    records, unconverged = [], []
    for name, kind, variables, layer in rows:
        t0 = time.perf_counter()
        key = (id(model), name, curvature, batch_size, strategy is not None, len(x))
        if operator_cache is not None and key in operator_cache:
            op = operator_cache[key]
        else:
            op = factory(variables, (x, y))
            if operator_cache is not None:
                operator_cache[key] = op
        start = op.num_products
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", eigensolvers.NotConvergedWarning)
            rec = _measure(op, top_k, trace_probes, trace_method, tol, max_iter, restarts, budget, dense_max, slq,
                           slq_probes, slq_steps, seed)
        wm = weight_metrics(layer) if (weight_spectra and layer is not None) else None
        records.append(LayerCurvature(name=name, layer_type=kind, num_params=op.size, num_products=
                                      op.num_products - start, seconds=time.perf_counter() - t0, weights=wm, **rec))
        if not records[-1].all_converged:
            unconverged.append(name)
    report = CurvatureReport(records, config=dict(top_k=top_k, trace_probes=trace_probes, trace_method=trace_method,
                                                  curvature=curvature, tol=tol, max_iter=max_iter, budget=budget,
                                                  dense_max=dense_max, slq=slq, seed=seed, num_examples=len(x)))
    if unconverged:
        warnings.warn(f"curvature_report: the top eigenvalues of {', '.join(unconverged)} did not converge (see the "
                      "residuals); raise max_iter or budget.", eigensolvers.NotConvergedWarning, stacklevel=2)
    return report


def _factory(model, loss_fn, batch_size, curvature, seed):
    def make(variables, xy):
        if curvature == "hessian":
            return operators.hessian(model, loss_fn, xy, variables=variables, batch_size=batch_size, seed=seed)
        return operators.gauss_newton(model, loss_fn, xy, variables=variables, batch_size=batch_size, seed=seed)

    return make


def _measure(op, top_k, trace_probes, trace_method, tol, max_iter, restarts, budget, dense_max, slq, slq_probes, slq_steps,
             seed) -> dict:
    P = op.size
    k = min(top_k, P)
    dense = P <= dense_max and (budget is None or P <= budget)
    notes = []
    if dense:
        full = eigensolvers.dense_eigh(op, eigenvectors=True)
        w = full.eigenvalues[::-1]
        eig = dict(eigenvalues=w[:k], residuals=full.residuals[::-1][:k], converged=np.ones(k, bool),
                   eig_method="dense")
        tr = dict(trace=float(np.sum(full.eigenvalues)), trace_stderr=0.0, trace_method="exact")
    else:
        steps = max_iter
        probes = trace_probes
        if budget is not None:
            steps = max(k, budget // 2 - k)
        res = eigensolvers.lanczos(op, k, which="LA", tol=tol, max_iter=steps, seed=seed, restarts=restarts)
        eig = dict(eigenvalues=res.eigenvalues, residuals=res.residuals, converged=res.converged,
                   eig_method="lanczos")
        if res.notes:
            notes.append(res.notes)
        if budget is not None:
            probes = max(3, budget - res.num_products)
        if trace_method == "hutch++":
            est = estimators.hutchpp_trace(op, num_products=probes, seed=seed)
        else:
            est = estimators.hutchinson_trace(op, num_probes=probes, seed=seed)
        tr = dict(trace=est.value, trace_stderr=est.stderr, trace_method=trace_method)
    density = eigensolvers.slq_density(op, num_probes=slq_probes, num_steps=slq_steps, seed=seed) if slq else None
    return dict(**eig, **tr, density=density, notes="; ".join(notes))
