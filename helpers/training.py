"""Training: SGD with momentum and weight decay exactly as 000 eq. 2.5, learning-rate schedules of 000 Sec. 5.2,
Adam through Keras, evaluation, and recording of weight/velocity trajectories of chosen layers.

The update (000 eq. 2.5, with the L2 term of 000 Sec. 2 "Regularization" added to the batch loss):

.. math::

    l^{(k)}(w) = \\frac1S \\sum_{i \\in B_k} \\ell(f(x_i; w), y_i) + \\lambda \\|w\\|_2^2 + \\text{extra}(t),
    \\qquad v(t+1) = -\\eta(t)\\, \\nabla_w l^{(k(t))}(w(t)) + \\beta\\, v(t), \\qquad w(t+1) = w(t) + v(t+1),

with v(0) = 0, learning rate eta, momentum beta in [0, 1), weight decay lambda (so the gradient gets
+2 lambda w) and batches B_k of size S drawn as a seeded random permutation of the training set each epoch
(the last batch of an epoch may be smaller). beta = 0 is plain SGD; S = N with beta = 0 is gradient
descent (004 eq. 2.3.6). Each epoch runs as one ``tf.function`` (a graph loop over its steps), so the work
stays on whatever device TensorFlow has.

Used in chapters 1-5 and 7.
"""
from __future__ import annotations

import contextlib
import logging
import math
import numbers
import types
import weakref
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from . import config

__all__ = ["TrainingDiverged", "train_sgd", "train_adam", "train", "evaluate", "constant", "exponential_decay",
           "piecewise_constant", "PAPER_SETUPS", "Recorder", "every_steps"]


class TrainingDiverged(ValueError):
    """Raised when the training loss becomes NaN or infinite."""


# ------------------------------------------------------------------------------------------------ schedules
def _check_lr_value(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"the learning rate must be a finite number > 0, got {eta!r}.")
    return float(eta)


def constant(eta: float) -> Callable[[int], float]:
    """The schedule eta(t) = eta. Used in chapter 1."""
    eta = _check_lr_value(eta)

    def schedule(epoch: int) -> float:
        return eta

    schedule.description = f"eta = {eta:g}"
    return schedule


def exponential_decay(eta0: float, rate: float) -> Callable[[int], float]:
    """The schedule eta(t) = eta0 * rate**t, t in epochs from 0 (000 Sec. 5.2: MLP 256 uses 0.01 * 0.99^t,
    LeNet 0.005 * 0.98^t, miniAlexNet 0.01 * 0.95^t). Used in chapters 1-4."""
    eta0 = _check_lr_value(eta0)
    if not isinstance(rate, numbers.Real) or not 0 < rate <= 1:
        raise ValueError(f"the decay rate must be in (0, 1], got {rate!r}.")

    def schedule(epoch: int) -> float:
        return eta0 * float(rate) ** int(epoch)

    schedule.description = f"eta(t) = {eta0:g} x {rate:g}^t"
    return schedule


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Callable[[int], float]:
    """eta(t) = values[i] for boundaries[i-1] <= t < boundaries[i] (epochs). 000 eq. 5.3 (ResNet20) is
    ``piecewise_constant([80, 120], [1e-3, 1e-4, 1e-5])``. Used in chapters 1 and 4."""
    boundaries, values = [int(b) for b in boundaries], [_check_lr_value(v) for v in values]
    if len(values) != len(boundaries) + 1 or sorted(boundaries) != boundaries:
        raise ValueError("piecewise_constant needs increasing boundaries and one more value than boundaries, "
                         f"got boundaries={boundaries}, values={values}.")

    def schedule(epoch: int) -> float:
        return values[int(np.searchsorted(boundaries, int(epoch), side="right"))]

    schedule.description = "eta piecewise " + ", ".join(
        f"{v:g}" + (f" until epoch {b}" if b is not None else "") for v, b in zip(values, boundaries + [None]))
    return schedule


#: 000 Sec. 5.2 training setups of the Table 5.1 networks (data set, epochs, batch size, schedule, beta,
#: lambda and the layers lambda applies to; None = all layers). For LeNet 000 quotes a final rate of about
#: 0.00134, which its own schedule 0.005 x 0.98^t does not give (0.005 x 0.98^100 = 6.6e-4; 0.00134 is
#: MLP 256's value); we follow the schedule as written.
PAPER_SETUPS = {
    "mlp50": dict(dataset="mnist", epochs=200, batch_size=32, lr=constant(0.01), momentum=0.0, weight_decay=0.0,
                  weight_decay_layers=None),
    "mlp256": dict(dataset="cifar10", epochs=200, batch_size=32, lr=exponential_decay(0.01, 0.99), momentum=0.0,
                   weight_decay=5e-4, weight_decay_layers=None),
    "lenet": dict(dataset="cifar10", epochs=100, batch_size=64, lr=exponential_decay(0.005, 0.98), momentum=0.9,
                  weight_decay=1e-4, weight_decay_layers=None),
    "minialexnet": dict(dataset="cifar10", epochs=100, batch_size=32, lr=exponential_decay(0.01, 0.95),
                        momentum=0.9, weight_decay=1e-4, weight_decay_layers=["dense_1", "dense_2", "dense_3"]),
    "resnet20": dict(dataset="cifar10", epochs=160, batch_size=128,
                     lr=piecewise_constant([80, 120], [1e-3, 1e-4, 1e-5]), momentum=0.9, weight_decay=1e-4,
                     weight_decay_layers=None),
}


def _as_schedule(lr) -> Callable[[int], float]:
    if callable(lr):
        return lr
    return constant(lr)


# ------------------------------------------------------------------------------------------------- data
def _split_data(data, what: str):
    from .data import Dataset

    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise ValueError(f"{what}: x and y differ in length ({len(x)} vs {len(y)}).")
        if len(x) == 0:
            raise ValueError(f"{what}: the data are empty.")
        _check_labels(y, what)
        return x, y
    raise TypeError(f"{what} must be a helpers.data.Dataset or an (x, y) tuple of arrays, got {type(data).__name__}.")


def _check_labels(y: np.ndarray, what: str) -> None:
    """Labels must be integer classes of shape (N,): they are cast to int64, so real targets would be truncated."""
    if y.ndim != 1:
        raise ValueError(f"{what}: y must be integer class labels of shape (N,), got shape {y.shape}; pass labels, "
                         "not one-hot targets (the losses turn labels into one-hot targets themselves).")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{what}: y must be an array of integer class labels, got dtype {y.dtype}.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError(f"{what}: y must hold integer class labels, got non-integer or non-finite values; "
                         "labels are cast to int64, which would truncate real-valued targets.")


def _eval_pair(eval_data):
    from .data import Dataset

    if eval_data is None:
        return None
    if isinstance(eval_data, Dataset):
        return eval_data.x_test, eval_data.y_test
    return _split_data(eval_data, "eval_data")


def _model_dtype(model):
    return tf.as_dtype(model.trainable_variables[0].dtype)


# --------------------------------------------------------------------------------------------- evaluate
_EVAL_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _quiet_tf():
    """Silence TensorFlow's Python-side warnings (e.g. retracing notices) while the helpers run."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _eval_fn(model, loss_fn):
    """One compiled evaluation function per (model, loss); forgotten when the model is."""
    per_model = _EVAL_FNS.setdefault(model, {})
    fn = per_model.get(id(loss_fn))
    if fn is None:
        model_ref = weakref.ref(model)

        @tf.function(reduce_retracing=True)
        def fn(xb, yb, mask):
            out = model_ref()(xb, training=False)
            per = loss_fn(yb, out)
            if out.shape[-1] == 1:
                pred = tf.cast(out[:, 0] > 0, yb.dtype)
            else:
                pred = tf.cast(tf.argmax(out, axis=-1), yb.dtype)
            mask = tf.cast(mask, per.dtype)
            return tf.reduce_sum(per * mask), tf.reduce_sum(tf.cast(tf.equal(pred, yb), per.dtype) * mask)

        per_model[id(loss_fn)] = (fn, loss_fn)  # keep loss_fn alive so its id stays unique
        return fn
    return fn[0]


def evaluate(model, loss_fn, x, y, batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in batches, in inference mode.

    Args:
        model: a Keras model giving logits (N, C) (or (N, 1): then the prediction is logit > 0).
        loss_fn: a per-example loss of :mod:`helpers.losses`.
        x: inputs (N, ...); y: integer labels (N,).
        batch_size: examples per forward pass (the last batch is padded, so one graph serves all).
    Returns:
        ``(mean_loss, accuracy)`` as Python floats (accuracy in [0, 1]).
    Used in chapters 1-5.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"evaluate needs non-empty x and y of equal length, got {len(x)} and {len(y)}.")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, e.g. helpers.losses.cross_entropy.")
    _check_labels(y, "evaluate")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive integer, got {batch_size!r}.")
    dtype = _model_dtype(model)
    fn = _eval_fn(model, loss_fn)
    bs = min(int(batch_size), len(x))
    total_loss, total_correct = 0.0, 0.0
    with _quiet_tf():
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs], y[start:start + bs].astype(np.int64)
            mask = np.ones(bs, bool)
            if len(xb) < bs:  # pad the last batch to the common shape; padded rows are masked out
                mask[len(xb):] = False
                xb = np.concatenate([xb, np.repeat(xb[:1], bs - len(xb), axis=0)])
                yb = np.concatenate([yb, np.repeat(yb[:1], bs - len(yb))])
            l, c = fn(tf.convert_to_tensor(xb, dtype=dtype), tf.convert_to_tensor(yb), tf.constant(mask))
            total_loss += float(l)
            total_correct += float(c)
    return total_loss / len(x), total_correct / len(x)


# --------------------------------------------------------------------------------------------- recording
def every_steps(every, what: str = "every") -> int | None:
    """How often something is written during training: ``"epoch"`` -> None (after every epoch), ``"step"`` -> 1,
    a positive integer k -> k (every k steps). Shared by :class:`Recorder` and ``kernel_dynamics.KernelMonitor``."""
    if every == "step":
        return 1
    if every == "epoch":
        return None
    if isinstance(every, numbers.Integral) and not isinstance(every, bool) and every >= 1:
        return int(every)
    raise ValueError(f'{what} must be "step", "epoch" or a positive number of steps, got {every!r}.')


class Recorder:
    """Preallocated on-device storage of a trajectory: the flattened weights (and velocities) of chosen
    layers, every step, every k steps or every epoch.

    Spec (the ``record=`` argument of :func:`train_sgd`)::

        {"layers": ["dense_1"], "every": "step" | "epoch" | k,
         "velocities": True, "initial": True}

    A layer's vector is its trainable variables flattened and concatenated in the order of
    ``helpers.params.select_variables(model, layer)`` (kernel, then bias). Row 0 is the initial state when
    ``initial`` (velocity 0); with ``every="step"`` row t is the state after step t, so
    ``velocities[t] = weights[t] - weights[t-1]``.

    Used in chapters 1 and 2 (PCA of trajectories).
    """

    MAX_BYTES = 4 * 2**30

    def __init__(self, model, spec: Mapping, epochs: int, steps_per_epoch: int):
        from . import params

        if not isinstance(spec, Mapping):
            raise TypeError('record must be a dict like {"layers": ["dense_1"], "every": "step"}.')
        unknown = set(spec) - {"layers", "every", "velocities", "initial"}
        if unknown:
            raise ValueError(f"record has unknown keys {sorted(unknown)}; use layers, every, velocities, initial.")
        layers = spec.get("layers")
        if layers is None:
            raise ValueError('record needs "layers": a layer name or a list of names (see models.weight_layers).')
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.every_steps = every_steps(spec.get("every", "epoch"), 'record "every"')
        self.velocities = bool(spec.get("velocities", False))
        self.initial = bool(spec.get("initial", True))
        self.variables = {name: params.select_variables(model, name) for name in self.layers}
        self.sizes = {name: params.num_params(v) for name, v in self.variables.items()}
        total_steps = epochs * steps_per_epoch
        n_rows = (epochs if self.every_steps is None else total_steps // self.every_steps) + int(self.initial)
        self.n_rows = n_rows
        dtype = _model_dtype(model)
        need = n_rows * sum(self.sizes.values()) * dtype.size * (2 if self.velocities else 1)
        if need > self.MAX_BYTES:
            raise ValueError(f"recording {self.layers} for {n_rows} rows needs {need / 2**30:.1f} GiB; record "
                             "fewer layers or less often (every='epoch' or every=k steps).")
        self.w_buf = {n: tf.Variable(tf.zeros((n_rows, s), dtype), trainable=False) for n, s in self.sizes.items()}
        self.v_buf = ({n: tf.Variable(tf.zeros((n_rows, s), dtype), trainable=False) for n, s in self.sizes.items()}
                      if self.velocities else {})
        self.row = tf.Variable(0, dtype=tf.int32, trainable=False)

    def flat(self, name):
        return tf.concat([tf.reshape(v, [-1]) for v in self.variables[name]], axis=0)

    def write(self, velocity_of: Callable[[str], tf.Tensor] | None):
        """Write the current state into the next row (inside or outside a tf.function)."""
        r = self.row
        for name in self.layers:
            self.w_buf[name][r].assign(self.flat(name))
            if self.velocities and velocity_of is not None:
                self.v_buf[name][r].assign(velocity_of(name))
        self.row.assign_add(1)

    def result(self) -> dict:
        n = int(self.row.numpy())
        out = {"weights": {k: v.numpy()[:n] for k, v in self.w_buf.items()}}
        if self.velocities:
            out["velocities"] = {k: v.numpy()[:n] for k, v in self.v_buf.items()}
        return out


# ----------------------------------------------------------------------------------------------- training
def _projected(project_gradient, grads, variables):
    """Apply a ``project_gradient(grads, variables)`` hook inside the graph and check what it returns."""
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    out = list(project_gradient(list(grads), list(variables)))
    if len(out) != len(variables) or any(tuple(o.shape) != tuple(v.shape) for o, v in zip(out, variables)):
        raise ValueError("project_gradient must return one gradient per trainable variable, each shaped like its "
                         "variable (the list it was given, modified).")
    return out


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def train(model, loss_fn, data, epochs: int, batch_size: int | None, lr, optimizer: str = "sgd",
          momentum: float = 0.0, weight_decay: float = 0.0, weight_decay_layers: Sequence[str] | None = None,
          seed: int | None = None, record: Mapping | None = None, extra_loss: Callable | None = None,
          eval_data=None, eval_every: int = 1, drop_remainder: bool = False, on_epoch_end: Callable | None = None,
          adam_kwargs: Mapping | None = None, verbose: bool = False, monitors: Sequence = (),
          project_gradient: Callable | None = None) -> dict:
    """Train with SGD (000 eq. 2.5) or Adam; see :func:`train_sgd` for the arguments and the history.

    ``monitors`` are measuring objects written inside the training graph, with the interface of
    :class:`helpers.kernel_dynamics.KernelMonitor`: ``bind(epochs, steps_per_epoch)`` (allocate),
    ``every_steps`` (None: after every epoch; k: every k steps, inside the epoch's graph), ``initial``
    (also measure before the first step), ``write()`` (traceable) and ``result()``. Their results are returned
    under ``history["monitors"]``, a list in the same order.
    """
    monitors = list(monitors or ())
    for m in monitors:
        if not all(hasattr(m, a) for a in ("bind", "write", "result", "every_steps", "initial")):
            raise TypeError("each monitor needs bind(epochs, steps_per_epoch), write(), result(), every_steps and "
                            f"initial (see helpers.kernel_dynamics.KernelMonitor); got {type(m).__name__}.")
    with _quiet_tf():
        return _train(model, loss_fn, data, epochs, batch_size, lr, optimizer, momentum, weight_decay,
                      weight_decay_layers, seed, record, extra_loss, eval_data, eval_every, drop_remainder,
                      on_epoch_end, adam_kwargs, verbose, monitors, project_gradient)


_EPOCH_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _epoch_state(model, loss_fn, variables, decay_mask, lr0, dtype, n, batch_size, steps_per_epoch, momentum,
                 weight_decay, extra_loss, project_gradient, optimizer, adam_kwargs, recorder, monitors):
    st = types.SimpleNamespace()  # the variables and the compiled epoch of one training graph (see _train)
    st.keep = (loss_fn, extra_loss, project_gradient)  # alive, so the ids in the reuse key stay unique
    st.lr_var = lr_var = tf.Variable(lr0, dtype=dtype, trainable=False)
    st.step_var = step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    st.bad_step = bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
    beta = tf.constant(float(momentum), dtype)
    # lambda is a variable, so runs with other decay values share the graph; the term is in the graph whenever
    # some variable is decayed (with lambda = 0 it adds exact zeros, so the bits equal a graph without it)
    st.wd_var = lam = tf.Variable(float(weight_decay), dtype=dtype, trainable=False)
    st.velocities = velocities = [tf.Variable(tf.zeros(v.shape, dtype), trainable=False) for v in variables]
    step_monitors = [m for m in monitors if m.every_steps is not None]
    if recorder is not None:
        index_of = {id(v): i for i, v in enumerate(variables)}
        layer_idx = {name: [index_of[id(v)] for v in vs] for name, vs in recorder.variables.items()}
    st.opt = opt = None
    if optimizer == "adam":
        import keras

        st.opt = opt = keras.optimizers.Adam(learning_rate=lr0, **dict(adam_kwargs or {}))
        opt.build(variables)
        prev = [tf.Variable(tf.zeros(v.shape, dtype), trainable=False) for v in variables]

    model_ref = weakref.ref(model)  # the state lives with the model (a weak key), so it must not hold it

    def batch_loss(xb, yb):
        out = model_ref()(xb, training=True)
        loss = tf.reduce_mean(loss_fn(yb, out))
        total = loss
        if any(decay_mask):
            total = total + lam * tf.add_n([tf.reduce_sum(tf.square(v)) for v, m in zip(variables, decay_mask) if m])
        if extra_loss is not None:
            total = total + tf.cast(extra_loss(step_var, xb, yb), dtype)
        return loss, total

    def velocity_of(name):
        return tf.concat([tf.reshape(velocities[i], [-1]) for i in layer_idx[name]], axis=0)

    st.velocity_of = velocity_of

    @tf.function
    def run_epoch(perm, x_dev, y_dev):
        loss_sum = tf.constant(0.0, dtype)
        count = tf.constant(0.0, dtype)
        for i in tf.range(steps_per_epoch):
            idx = perm[i * batch_size: tf.minimum((i + 1) * batch_size, n)]
            xb, yb = tf.gather(x_dev, idx), tf.gather(y_dev, idx)
            with tf.GradientTape() as tape:
                loss, total = batch_loss(xb, yb)
            if not tf.math.is_finite(total):
                bad_step.assign(step_var)
                break
            grads = tape.gradient(total, variables)
            if project_gradient is not None:
                grads = _projected(project_gradient, grads, variables)
            if optimizer == "sgd":
                for v, vel, g in zip(variables, velocities, grads):
                    vel.assign(beta * vel - lr_var * g)   # v(t+1) = -eta grad + beta v(t)
                    v.assign_add(vel)                     # w(t+1) = w(t) + v(t+1)
            else:
                for p, v in zip(prev, variables):
                    p.assign(v)
                opt.apply_gradients(zip(grads, variables))
                for vel, p, v in zip(velocities, prev, variables):
                    vel.assign(v - p)
            step_var.assign_add(1)
            loss_sum += loss * tf.cast(tf.shape(idx)[0], dtype)
            count += tf.cast(tf.shape(idx)[0], dtype)
            if recorder is not None and recorder.every_steps is not None:
                if step_var % recorder.every_steps == 0:
                    recorder.write(velocity_of)
            for m in step_monitors:
                if step_var % m.every_steps == 0:
                    m.write()
        return loss_sum / tf.maximum(count, 1.0)

    st.run_epoch = run_epoch
    return st


def _train(model, loss_fn, data, epochs, batch_size, lr, optimizer, momentum, weight_decay, weight_decay_layers,
           seed, record, extra_loss, eval_data, eval_every, drop_remainder, on_epoch_end, adam_kwargs, verbose,
           monitors=(), project_gradient=None):
    from . import params

    if not hasattr(model, "trainable_variables") or not callable(model):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}.")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a per-example loss, e.g. helpers.losses.cross_entropy.")
    x, y = _split_data(data, "data")
    n = len(x)
    epochs = _check_int(epochs, "epochs")
    batch_size = n if batch_size is None else _check_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples; use batch_size=None for "
                         "full-batch gradient descent.")
    eval_every = _check_int(eval_every, "eval_every")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
        raise ValueError(f"momentum beta must be in [0, 1) (000 eq. 2.5), got {momentum!r}.")
    if not isinstance(weight_decay, numbers.Real) or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay lambda must be a finite number >= 0, got {weight_decay!r}.")
    if extra_loss is not None and not callable(extra_loss):
        raise TypeError("extra_loss must be a function (step, xb, yb) -> scalar tensor.")
    if project_gradient is not None and not callable(project_gradient):
        raise TypeError("project_gradient must be a function (grads, variables) -> grads, e.g. a "
                        "helpers.forgetting.GradientProjection.")
    schedule = _as_schedule(lr)
    _check_lr_value(schedule(0))
    seed = config.seed("train", model.name) if seed is None else _check_int(seed, "seed", minimum=0)

    dtype = _model_dtype(model)
    from .losses import check_labels

    check_labels(y, int(model(tf.constant(x[:1], dtype=dtype), training=False).shape[-1]), "data")
    variables = list(model.trainable_variables)
    decayed = (variables if weight_decay_layers is None else params.select_variables(model, weight_decay_layers))
    decayed_ids = {id(v) for v in decayed}
    decay_mask = [id(v) in decayed_ids for v in variables]
    steps_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)

    x_dev = tf.constant(np.asarray(x), dtype=dtype)
    y_dev = tf.constant(np.asarray(y).astype(np.int64))
    recorder = Recorder(model, record, epochs, steps_per_epoch) if record is not None else None
    for m in monitors:
        m.bind(epochs, steps_per_epoch)
    # The compiled epoch is kept with the model and reused by a later call with the same graph (same loss,
    # extra loss and projection objects, batch layout, momentum and decay): retraining a model, e.g. from
    # another initialisation or seed, then traces nothing. Recorders, monitors and Adam hold per-call state,
    # so those calls compile their own epoch.
    reusable = recorder is None and not monitors and optimizer == "sgd"
    key = (id(loss_fn), id(extra_loss), id(project_gradient), n, batch_size, steps_per_epoch, float(momentum),
           tuple(decay_mask), tuple(id(v) for v in variables), dtype.name,
           tuple(x_dev.shape[1:]))
    state = _EPOCH_FNS.get(model, {}).get(key) if reusable else None
    if state is None:
        state = _epoch_state(model, loss_fn, variables, decay_mask, schedule(0), dtype, n, batch_size,
                             steps_per_epoch, momentum, weight_decay, extra_loss, project_gradient, optimizer,
                             adam_kwargs, recorder, monitors)
        if reusable:
            _EPOCH_FNS.setdefault(model, {})[key] = state
    else:
        for vel in state.velocities:
            vel.assign(tf.zeros_like(vel))
        state.wd_var.assign(float(weight_decay))
    state.step_var.assign(0)
    state.bad_step.assign(-1)
    lr_var, step_var, bad_step, opt = state.lr_var, state.step_var, state.bad_step, state.opt
    velocity_of = state.velocity_of
    epoch_monitors = [m for m in monitors if m.every_steps is None]

    eval_pair = _eval_pair(eval_data)
    history = {k: [] for k in ("epoch", "lr", "batch_loss", "loss", "acc")}
    if eval_pair is not None:
        history.update(test_loss=[], test_acc=[])
    history["initial_loss"], history["initial_acc"] = evaluate(model, loss_fn, x, y)
    if eval_pair is not None:
        history["initial_test_loss"], history["initial_test_acc"] = evaluate(model, loss_fn, *eval_pair)
    if recorder is not None and recorder.initial:
        recorder.write(velocity_of)
    for m in monitors:
        if m.initial:
            m.write()
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        eta = _check_lr_value(schedule(epoch))
        lr_var.assign(eta)
        if optimizer == "adam":
            opt.learning_rate = eta
        perm = tf.constant(rng.permutation(n), dtype=tf.int32)
        mean_batch_loss = float(state.run_epoch(perm, x_dev, y_dev))
        if int(bad_step.numpy()) >= 0:
            raise TrainingDiverged(
                f"the training loss became non-finite (NaN or inf) at epoch {epoch + 1} (global step {int(bad_step.numpy())}, learning rate {eta:g}); the step is "
                "too large for this loss surface - use a smaller learning rate (or smaller momentum).")
        if recorder is not None and recorder.every_steps is None:
            recorder.write(velocity_of)
        for m in epoch_monitors:
            m.write()
        history["epoch"].append(epoch + 1)
        history["lr"].append(eta)
        history["batch_loss"].append(mean_batch_loss)
        last = epoch == epochs - 1
        if (epoch + 1) % eval_every == 0 or last:
            tl, ta = evaluate(model, loss_fn, x, y)
            if not math.isfinite(tl):
                raise TrainingDiverged(f"the training loss is {tl} after epoch {epoch + 1} (learning rate {eta:g}); "
                                       "use a smaller learning rate.")
            history["loss"].append(tl)
            history["acc"].append(ta)
            if eval_pair is not None:
                el, ea = evaluate(model, loss_fn, *eval_pair)
                history["test_loss"].append(el)
                history["test_acc"].append(ea)
        else:
            for k in ("loss", "acc") + (("test_loss", "test_acc") if eval_pair is not None else ()):
                history[k].append(np.nan)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: lr {eta:.3g} loss {history['loss'][-1]:.4g} acc {history['acc'][-1]:.4f}"
                  + (f" test_acc {history['test_acc'][-1]:.4f}" if eval_pair is not None else ""))
        if on_epoch_end is not None and on_epoch_end(epoch + 1, model, history):
            break
    out = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in history.items()}
    out["steps"] = int(step_var.numpy())
    out["steps_per_epoch"] = steps_per_epoch
    if recorder is not None:
        out.update(recorder.result())
    if monitors:
        out["monitors"] = [m.result() for m in monitors]
    return out


def train_sgd(model, loss_fn, data, epochs: int, batch_size: int | None, lr, momentum: float = 0.0,
              weight_decay: float = 0.0, seed: int | None = None, record: Mapping | None = None,
              extra_loss: Callable | None = None, eval_data=None, **kw) -> dict:
    """Train ``model`` in place with SGD, momentum and weight decay exactly as 000 eq. 2.5 (module docstring).

    Args:
        model: a Keras model producing logits; its variables are updated in place.
        loss_fn: per-example loss ``loss(y, f) -> (batch,)`` (:mod:`helpers.losses`).
        data: a :class:`helpers.data.Dataset` (its training part) or an ``(x, y)`` tuple.
        epochs: number of passes over the data. batch_size: S; ``None`` = full batch (gradient descent).
        lr: a number, or a schedule ``epoch -> eta`` (:func:`exponential_decay`, :func:`piecewise_constant`).
        momentum: beta in [0, 1). weight_decay: lambda >= 0 (adds lambda ||w||^2 to the loss).
        weight_decay_layers: layer names lambda applies to (None: all; miniAlexNet decays dense layers only).
        seed: seed of the minibatch order (None: derived from ``BOOK_SEED``).
        record: a :class:`Recorder` spec, e.g. ``{"layers": ["dense_2"], "every": "step", "velocities": True}``.
        extra_loss: ``extra_loss(step, xb, yb) -> scalar tensor`` added to the batch loss inside the tape
            (``step`` is the global step, an int64 tensor); e.g. the Hessian-trace regulariser.
        eval_data: a Dataset (its test part) or (x, y): adds ``test_loss`` and ``test_acc``.
        eval_every: evaluate every k epochs (others hold NaN). drop_remainder: skip the last partial batch.
        on_epoch_end: ``f(epoch, model, history) -> bool``; True stops training early.
        verbose: print one line per epoch.
        project_gradient: ``f(grads, variables) -> grads`` applied inside the graph to the gradients of the
            batch loss (one per trainable variable, in ``model.trainable_variables`` order) before the update;
            e.g. the gradient constraint of 000 eq. 7.12 (:class:`helpers.forgetting.GradientProjection`).
    Returns:
        history dict: per-epoch arrays ``epoch``, ``lr``, ``batch_loss`` (mean over the epoch's batches),
        ``loss`` and ``acc`` (the whole training set after the epoch, without the weight-decay term),
        ``test_loss``/``test_acc``; scalars ``initial_loss``, ``initial_acc``, ``steps``, ``steps_per_epoch``;
        with ``record``: ``weights`` (and ``velocities``) = {layer: array (T, n_layer)}.
    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names the epoch and step).
    Used in chapters 1-5.
    """
    return train(model, loss_fn, data, epochs, batch_size, lr, optimizer="sgd", momentum=momentum,
                 weight_decay=weight_decay, seed=seed, record=record, extra_loss=extra_loss, eval_data=eval_data, **kw)


def train_adam(model, loss_fn, data, epochs: int, batch_size: int | None, lr=1e-3, seed: int | None = None,
               record: Mapping | None = None, extra_loss: Callable | None = None, eval_data=None,
               adam_kwargs: Mapping | None = None, **kw) -> dict:
    """Train with Adam (``keras.optimizers.Adam``), same loop, arguments and history as :func:`train_sgd`
    (004 trains its networks with Adam). Recorded velocities are the steps w(t+1) - w(t).

    ``adam_kwargs`` go to ``keras.optimizers.Adam`` (e.g. ``beta_1``, ``epsilon``); ``weight_decay`` adds
    lambda ||w||^2 to the loss as for SGD.
    Used in chapters 1 and 7.
    """
    return train(model, loss_fn, data, epochs, batch_size, lr, optimizer="adam", seed=seed, record=record,
                 extra_loss=extra_loss, eval_data=eval_data, adam_kwargs=adam_kwargs, **kw)
