"""A Keras callback that follows the curvature of every layer while ``model.fit`` trains.

:class:`CurvatureCallback` runs :func:`helpers.layerwise.curvature_report` every ``every`` epochs with a
budget of Hessian-vector products per layer, writes the top eigenvalue and the trace of every layer (and of
the whole network) into the epoch's ``logs`` (so they land in the ``History`` returned by ``fit``, as
``lambda_max/<layer>``, ``trace/<layer>`` and ``trace_stderr/<layer>``, NaN on the epochs not measured so
that every list has one entry per epoch) and appends them to a CSV file, rewritten atomically (a temporary
file in the same folder, then ``os.replace``) so an interrupted run never leaves a half-written file.

Used in the page "Use it on your own model" (09).
"""
from __future__ import annotations

import csv
import io
import math
import numbers
from pathlib import Path

import keras

from . import cache, layerwise

__all__ = ["CurvatureCallback", "CSV_COLUMNS"]

#: the columns of the CSV file (one row per layer and evaluation, long format)
CSV_COLUMNS = ["epoch", "layer", "type", "num_params", "lambda_max", "converged", "trace", "trace_stderr",
               "trace_method", "num_products", "seconds"]


class CurvatureCallback(keras.callbacks.Callback):
    """Log lambda_max and the trace of every weight layer's Hessian block during ``model.fit``.

    Args:
        loss_fn: per-example loss ``loss(y_true, y_pred) -> (batch,)`` on the model's outputs (logits for
            ``helpers.losses.cross_entropy``; a Keras loss needs ``reduction=None``).
        data: the data the curvature is measured on: ``(x, y)``, a ``helpers.data.Dataset`` or a finite
            ``tf.data.Dataset`` (keep it small: every evaluation runs over all of it).
        every: evaluate after every ``every``-th epoch (epochs every, 2 every, ...).
        budget: Hessian-vector products per row and evaluation (Lanczos gets half, the trace the rest;
            see :func:`helpers.layerwise.curvature_report`).
        csv_path: optional CSV file (columns :data:`CSV_COLUMNS`); rewritten atomically after each evaluation.
        append: keep the rows already in ``csv_path`` (same columns required) instead of starting afresh.
        layers, include_network, top_k, seed, and any other keyword: passed to ``curvature_report``
            (weight spectra are off unless ``weight_spectra=True`` is passed).
        operator_cache: a dict to keep the curvature operators in (default: a new one); pass the same
            dict to a later ``curvature_report`` on the same model and data to reuse them.
    Attributes:
        reports: list of ``(epoch, CurvatureReport)``, one per evaluation.
    Used in the page "Use it on your own model".
    """

    def __init__(self, loss_fn, data, every: int = 1, budget: int = 40, csv_path=None, append: bool = False,
                 layers=None, include_network: bool = True, top_k: int = 1, seed: int = 0,
                 operator_cache: dict | None = None, **report_kwargs):
        super().__init__()
        if not callable(loss_fn):
            raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,), e.g. "
                            "helpers.losses.cross_entropy.")
        for name, value, low in (("every", every, 1), ("budget", budget, 2 * int(top_k) + 6)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if "strategy" in report_kwargs and report_kwargs["strategy"] is None:
            report_kwargs.pop("strategy")
        self.loss_fn, self.every, self.budget = loss_fn, int(every), int(budget)
        self.data = layerwise._as_arrays(data)  # checked (and a tf.data.Dataset read) once, here
        self.csv_path = None if csv_path is None else Path(csv_path)
        self.append = bool(append)
        self.kwargs = dict(layers=layers, include_network=include_network, top_k=top_k, seed=seed,
                           weight_spectra=False, **report_kwargs)
        if operator_cache is not None and not isinstance(operator_cache, dict):
            raise TypeError(f"operator_cache must be a dict or None, got {type(operator_cache).__name__}.")
        # operators kept between evaluations (they read the current weights at every product)
        self._ops = {} if operator_cache is None else operator_cache
        self.reports: list = []
        self._rows: list[dict] = []
        self._names: list[str] | None = None

    def on_train_begin(self, logs=None):
        self._rows = []
        if self.csv_path is not None and self.append and self.csv_path.exists():
            with open(self.csv_path, newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames != CSV_COLUMNS:
                    raise ValueError(f"{self.csv_path} has columns {reader.fieldnames}, not {CSV_COLUMNS}; pass "
                                     "another csv_path or append=False.")
                self._rows = list(reader)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        measure = (epoch + 1) % self.every == 0
        if measure:
            report = layerwise.curvature_report(self.model, self.loss_fn, self.data, budget=self.budget,
                                                operator_cache=self._ops, **self.kwargs)
            self.reports.append((epoch, report))
            self._names = [r.name for r in report]
            for r in report:
                logs[f"lambda_max/{r.name}"] = float(r.lambda_max)
                logs[f"trace/{r.name}"] = float(r.trace)
                logs[f"trace_stderr/{r.name}"] = float(r.trace_stderr)
                self._rows.append({"epoch": epoch, "layer": r.name, "type": r.layer_type,
                                   "num_params": r.num_params, "lambda_max": repr(float(r.lambda_max)),
                                   "converged": r.all_converged, "trace": repr(float(r.trace)),
                                   "trace_stderr": repr(float(r.trace_stderr)), "trace_method": r.trace_method,
                                   "num_products": r.num_products, "seconds": f"{r.seconds:.3f}"})
            if self.csv_path is not None:
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(self._rows)
                cache.write_atomic(self.csv_path, buf.getvalue().encode())
        elif self._names is not None or self.every > 1:
            # keep one History entry per epoch: NaN where not measured (names known after the first evaluation;
            # before it, the names come from the model's weight layers)
            names = self._names or [l.name for l in layerwise.weight_layers(
                self.model, self.kwargs.get("extra_layer_types", ()))] + (
                [layerwise.NETWORK] if self.kwargs["include_network"] else [])
            if self.kwargs.get("layers") is not None and self._names is None:
                names = list(self.kwargs["layers"]) + ([layerwise.NETWORK] if self.kwargs["include_network"] else [])
            for name in names:
                for key in ("lambda_max", "trace", "trace_stderr"):
                    logs[f"{key}/{name}"] = math.nan
