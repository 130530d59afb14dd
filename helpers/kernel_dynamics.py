"""How the neural tangent kernel and the Fisher trace move during training.

:class:`KernelMonitor` measures, inside the training graph of :func:`helpers.training.train` (argument
``monitors=``), every epoch or every k steps:

- the Fisher trace :math:`\\mathrm{tr}F = \\frac1n\\sum_i\\|\\nabla_\\theta\\ell_i\\|^2` (004 eq. 5.1.3) on a fixed
  measurement set of n examples, from per-example gradients;
- the NTK trace per example, :math:`\\frac1n\\mathrm{tr}\\Lambda = \\frac1n\\sum_i\\sum_a\\Lambda_{iiaa}` on the same
  examples (004 sums over the examples; the mean is that sum divided by n, so its logarithm differs by a
  constant and every correlation below is unchanged);
- optionally, the full NTK :math:`\\Lambda_{ijab}` on a fixed probe set and its relative change
  :math:`\\|\\Lambda(t)-\\Lambda(0)\\|_F/\\|\\Lambda(0)\\|_F` (the lazy regime, jacot2018neural, lee2019wide).

Squared per-example gradient norms, NTK traces and Jacobians come from :func:`helpers.ntk.gradient_norm_function`,
:func:`helpers.ntk.ntk_trace_function` and :func:`helpers.ntk.jacobian_function` (the exact dense-chain
factorisation for MLPs, else ``tf.vectorized_map`` over the examples of a batch), called from one
``tf.function``; results are written into preallocated variables on the device, so nothing returns to NumPy
until training ends. :func:`train_with_kernel_monitor` wraps the two for SGD or Adam, and
:func:`train_from_initialisations` repeats a run from several initialisations (seeds) with one monitor.

:func:`relative_kernel_change` and :func:`log_correlation` are the array-level measures chapter 7 applies
(findings F-LAZY, F-L2PROP, F-WIDTHDEV).

Used in chapter 7.
"""
from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from . import ntk

__all__ = ["KernelMonitor", "train_with_kernel_monitor", "train_from_initialisations", "relative_kernel_change",
           "log_correlation"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class KernelMonitor:
    """Records tr F, the NTK trace and (optionally) the NTK on a probe set during training.

    Args:
        model: the Keras model being trained (a single output tensor (N, C)).
        loss_fn: the per-example training loss (:mod:`helpers.losses`).
        x, y: the fixed measurement set (n examples, labels (n,)); a subset of the training data when the
            full set is too slow.
        probe_x: inputs (m, ...) on which the full NTK (m, m, C, C) is kept, or None (no kernel change).
        every: ``"epoch"`` (after every ``every_epochs``-th epoch, one compiled measurement outside the epoch's
            loop) or k (every k optimisation steps, inside the epoch's graph).
        every_epochs: with ``every="epoch"``, measure after epochs k, 2k, ... only.
        initial: also measure before the first step (row 0: the initialisation).
        batch_size: examples per vectorised batch (memory ~ batch_size x C x P floats).
    A monitor can be reused for several runs of the same model and loss (for instance over seeds): ``bind``
    then resets it and keeps its compiled measurement, so it is traced once.
    After training, :meth:`result` gives NumPy arrays ``epoch`` (fractional for every k steps),
    ``fisher_trace``, ``ntk_trace`` and, with a probe set, ``ntk_change``, ``kernel_initial``, ``kernel_final``.
    """

    def __init__(self, model, loss_fn, x, y, probe_x=None, every="epoch", initial: bool = True,
                 batch_size: int = 64, every_epochs: int = 1):
        if not hasattr(model, "trainable_variables") or not callable(model):
            raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be a per-example loss, loss(y_true, y_pred) -> (batch,).")
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError("the measurement set x is empty; pass at least one example (shape (n, ...)).")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y must be labels of shape (n,) = ({len(x)},), one per example of x; got {y.shape}.")
        from .training import every_steps

        self.every_steps = every_steps(every)
        self.initial = bool(initial)
        self.every_epochs = _positive_int(every_epochs, "every_epochs")
        if self.every_steps is not None and self.every_epochs != 1:
            raise ValueError("every_epochs applies to every='epoch'; with every=k steps leave every_epochs=1.")
        self.loss_fn = loss_fn
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.dtype = tf.as_dtype(model.trainable_variables[0].dtype)
        self.model = model
        self.n = len(x)
        self.x = tf.constant(x.astype(self.dtype.as_numpy_dtype) if np.issubdtype(x.dtype, np.floating) else x)
        self.y = tf.constant(y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(self.dtype.as_numpy_dtype))
        self.grad_norm_fn = ntk.gradient_norm_function(model, loss_fn)
        self.jac_fn = ntk.jacobian_function(model)
        self.trace_fn = ntk.ntk_trace_function(model)
        self.probe = None
        if probe_x is not None:
            p = np.asarray(probe_x)
            if p.ndim == 0 or len(p) == 0:
                raise ValueError("probe_x is empty; pass at least one probe input or probe_x=None.")
            if p.shape[1:] != x.shape[1:]:
                raise ValueError(f"probe_x examples must have the shape of x's, {x.shape[1:]}, got {p.shape[1:]}.")
            self.probe = tf.constant(p.astype(self.dtype.as_numpy_dtype))
        self._write = None
        self.steps_per_epoch = None

    def bind(self, epochs: int, steps_per_epoch: int) -> None:
        """Allocate the rows for a run of ``epochs`` x ``steps_per_epoch`` steps (called by ``train``)."""
        epochs, spe = _positive_int(epochs, "epochs"), _positive_int(steps_per_epoch, "steps_per_epoch")
        self.steps_per_epoch = spe
        self._calls = 0
        rows = (epochs // self.every_epochs if self.every_steps is None else epochs * spe // self.every_steps)
        rows += int(self.initial)
        if self._write is not None and int(self.fisher.shape[0]) == rows:  # reuse: reset, keep the graph
            for v in (self.fisher, self.trace, self.change):
                v.assign(tf.zeros_like(v))
            self.row.assign(0)
            return
        f64 = tf.float64
        self.fisher = tf.Variable(tf.zeros(rows, f64), trainable=False)
        self.trace = tf.Variable(tf.zeros(rows, f64), trainable=False)
        self.change = tf.Variable(tf.zeros(rows, f64), trainable=False)
        self.row = tf.Variable(0, dtype=tf.int32, trainable=False)
        if self.probe is not None:
            m = int(self.probe.shape[0])
            c = int(self.model(self.probe[:1], training=False).shape[-1])
            self.k0 = tf.Variable(tf.zeros((m, m, c, c), f64), trainable=False)
            self.k_last = tf.Variable(tf.zeros((m, m, c, c), f64), trainable=False)
        self._write = tf.function(self._measure_and_store)

    def _traces(self):
        f_sum = tf.constant(0.0, tf.float64)
        t_sum = tf.constant(0.0, tf.float64)
        for s in range(0, self.n, self.batch_size):  # a few batches, unrolled in the graph
            xb, yb = self.x[s:s + self.batch_size], self.y[s:s + self.batch_size]
            f_sum += tf.reduce_sum(self.grad_norm_fn(xb, yb))
            t_sum += tf.reduce_sum(tf.cast(self.trace_fn(xb), tf.float64))
        return f_sum / self.n, t_sum / self.n

    def _measure_and_store(self):
        r = self.row
        fisher, trace = self._traces()
        self.fisher[r].assign(fisher)
        self.trace[r].assign(trace)
        if self.probe is not None:
            J = tf.cast(self.jac_fn(self.probe), tf.float64)
            K = tf.einsum("iap,jbp->ijab", J, J)
            if r == 0:
                self.k0.assign(K)
            self.k_last.assign(K)
            self.change[r].assign(tf.norm(K - self.k0) / tf.norm(self.k0))
        self.row.assign_add(1)

    def write(self) -> None:
        """Measure now and store the next row (traceable: ``train`` calls it inside its graph)."""
        if self._write is None:
            raise RuntimeError("KernelMonitor.write() before bind(): pass the monitor to training.train(monitors=[...]).")
        if self.every_steps is None and self.every_epochs > 1 and not tf.inside_function():
            self._calls += 1  # call 1 is the initial state when `initial`; then one call per epoch
            epoch = self._calls - int(self.initial)
            if epoch > 0 and epoch % self.every_epochs:
                return
        self._write()

    def result(self) -> dict:
        """The recorded rows as NumPy arrays (see the class docstring)."""
        if self._write is None:
            raise RuntimeError("nothing recorded: pass the monitor to training.train(monitors=[...]) first.")
        n = int(self.row.numpy())
        k = np.arange(n) + (0 if self.initial else 1)
        epoch = (k * float(self.every_epochs) if self.every_steps is None
                 else k * self.every_steps / self.steps_per_epoch)
        out = {"epoch": epoch, "fisher_trace": self.fisher.numpy()[:n], "ntk_trace": self.trace.numpy()[:n]}
        if self.probe is not None:
            out.update(ntk_change=self.change.numpy()[:n], kernel_initial=self.k0.numpy(),
                       kernel_final=self.k_last.numpy())
        return out


def train_with_kernel_monitor(model, loss_fn, data, epochs: int, batch_size: int | None, lr, measure=None,
                              optimizer: str = "adam", probe_x=None, every="epoch", measure_batch_size: int = 64,
                              every_epochs: int = 1, monitor: KernelMonitor | None = None, **train_kw) -> dict:
    """Train ``model`` (SGD or Adam, :func:`helpers.training.train`) while a :class:`KernelMonitor` records.

    Args:
        model, loss_fn, data, epochs, batch_size, lr: as :func:`helpers.training.train`.
        measure: the measurement set ``(x, y)`` of the traces.
        optimizer: ``"adam"`` (004) or ``"sgd"`` (``momentum=`` etc. go in ``train_kw``).
        probe_x, every, every_epochs, measure_batch_size: as :class:`KernelMonitor` (``batch_size`` there).
        monitor: an existing :class:`KernelMonitor` of this model and loss to reuse (then ``measure``, ``probe_x``,
            ``every`` and the like are its own and must not be passed).
    Returns:
        the training history with the monitor's arrays added (``fisher_trace``, ``ntk_trace``,
        ``trace_epoch`` and, with a probe set, ``ntk_change``, ``kernel_initial``, ``kernel_final``).
    Used in chapter 7.
    """
    from . import training

    if monitor is not None:
        if not isinstance(monitor, KernelMonitor):
            raise TypeError(f"monitor must be a KernelMonitor, got {type(monitor).__name__}.")
        if monitor.model is not model or monitor.loss_fn is not loss_fn:
            raise ValueError("the monitor was made for another model or loss; make one KernelMonitor per (model, loss).")
        if measure is not None or probe_x is not None:
            raise ValueError("pass either monitor= or measure=/probe_x=, not both (the monitor has its own sets).")
        mon = monitor
    else:
        if not isinstance(measure, (tuple, list)) or len(measure) != 2:
            raise TypeError("measure must be the measurement set as a tuple (x, y).")
        mon = KernelMonitor(model, loss_fn, measure[0], measure[1], probe_x=probe_x, every=every,
                            batch_size=measure_batch_size, every_epochs=every_epochs)
    hist = training.train(model, loss_fn, data, epochs, batch_size, lr, optimizer=optimizer, monitors=[mon],
                          **train_kw)
    rec = hist.pop("monitors")[0]
    hist["trace_epoch"] = rec.pop("epoch")
    hist.update(rec)
    return hist


def train_from_initialisations(model, loss_fn, data, initial_weights, epochs: int, batch_size: int | None, lr,
                               measure, batch_seeds, probe_x=None, optimizer: str = "adam", every_epochs: int = 1,
                               measure_batch_size: int = 64, **train_kw) -> list[dict]:
    """Train ``model`` once from each of several initialisations while one :class:`KernelMonitor` records.

    The usual design of a seeds experiment: the same architecture, loss and measurement set, re-initialised
    for every seed. One model and one monitor serve all runs, so the monitor's measurement is traced once;
    run k starts from ``initial_weights[k]`` and draws its minibatches with ``batch_seeds[k]``. To compare
    losses from the same initialisations, call it once per loss with the same ``initial_weights``.

    Args:
        model: the Keras model (its weights end as those of the last run).
        loss_fn, data, epochs, batch_size, lr, optimizer, **train_kw: as :func:`train_with_kernel_monitor`.
        initial_weights: one weight list (``model.get_weights()`` format) per run.
        measure: the measurement set ``(x, y)`` of the traces.
        batch_seeds: one minibatch-order seed per run (same length as ``initial_weights``).
        probe_x, every_epochs, measure_batch_size: as :class:`KernelMonitor` (``batch_size`` there).
    Returns:
        one history per run, in order, as :func:`train_with_kernel_monitor` returns it (``trace_epoch``,
        ``fisher_trace``, ``ntk_trace``, ``acc`` and, with ``probe_x``, ``ntk_change``, ``kernel_initial``,
        ``kernel_final``).
    Used in chapter 7 (F-LAZY over widths, F-L2PROP and F-WIDTHDEV over losses and widths).
    """
    if not hasattr(model, "get_weights") or not hasattr(model, "set_weights"):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    if isinstance(initial_weights, np.ndarray) or not isinstance(initial_weights, (list, tuple)) \
            or not initial_weights:
        raise TypeError("initial_weights must be a non-empty list with one weight list (model.get_weights()) "
                        "per run.")
    shapes = [np.shape(w) for w in model.get_weights()]
    for k, w in enumerate(initial_weights):
        if not isinstance(w, (list, tuple)) or [np.shape(a) for a in w] != shapes:
            raise ValueError(f"initial_weights[{k}] must be a list of arrays of the model's weight shapes {shapes} "
                             "(model.get_weights() of a model of the same architecture).")
    if isinstance(batch_seeds, (str, bytes)) or not hasattr(batch_seeds, "__len__") \
            or len(batch_seeds) != len(initial_weights):
        raise ValueError(f"batch_seeds must hold one seed per run, {len(initial_weights)} for the "
                         f"{len(initial_weights)} initial weights; got {batch_seeds!r}.")
    if "seed" in train_kw or "monitor" in train_kw:
        raise TypeError("pass the minibatch seeds as batch_seeds= (one per run); the monitor is made here.")
    if not isinstance(measure, (tuple, list)) or len(measure) != 2:
        raise TypeError("measure must be the measurement set as a tuple (x, y).")
    mon = KernelMonitor(model, loss_fn, measure[0], measure[1], probe_x=probe_x, batch_size=measure_batch_size,
                        every_epochs=every_epochs)
    histories = []
    for w, seed in zip(initial_weights, batch_seeds):
        model.set_weights(w)
        histories.append(train_with_kernel_monitor(model, loss_fn, data, epochs, batch_size, lr,
                                                   optimizer=optimizer, monitor=mon, seed=seed, **train_kw))
    return histories


def relative_kernel_change(kernel, kernel_initial) -> float:
    """:math:`\\|\\Lambda - \\Lambda_0\\|_F / \\|\\Lambda_0\\|_F` for two NTKs of the same shape (any of the modes of
    :func:`helpers.ntk.empirical_ntk`). Used in chapter 7 (F-LAZY)."""
    a = np.asarray(kernel, dtype=np.float64)
    b = np.asarray(kernel_initial, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"the two kernels must be non-empty and of the same shape, got {a.shape} and {b.shape}.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("the kernels contain NaN or inf; pass finite kernels.")
    norm0 = np.linalg.norm(b)
    if norm0 == 0:
        raise ValueError("the initial kernel is zero, so a relative change is undefined; pass a non-zero kernel.")
    return float(np.linalg.norm(a - b) / norm0)


def log_correlation(a, b) -> float:
    """Pearson correlation of :math:`\\log a(t)` and :math:`\\log b(t)` over the recorded times.

    1 when the two curves are proportional (:math:`a = c\\,b`), and also for any power law :math:`a = c\\,b^k`, k > 0
    (it measures a monotone log-linear relation, not proportionality itself); chapter 7 measures
    how far two traces are from proportional by ``1 - log_correlation`` (F-L2PROP, F-WIDTHDEV).
    Args: a, b: positive, finite 1-D arrays of the same length >= 3, neither constant.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 3:
        raise ValueError(f"a and b must be 1-D arrays of the same length >= 3, got shapes {a.shape} and {b.shape}.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise ValueError("log_correlation needs positive, finite values (it takes logarithms).")
    la, lb = np.log(a), np.log(b)
    if np.ptp(la) == 0 or np.ptp(lb) == 0:
        raise ValueError("one of the curves is constant, so its correlation is undefined.")
    return float(np.corrcoef(la, lb)[0, 1])
