"""Exact Hessian-vector products of a chain of standard layers, written out layer by layer.

A network that is a chain ``Dense``/``Conv2D`` -> activation -> max-pooling -> ... -> logits has a Hessian
whose product with a tangent :math:`v = (V_l, c_l)_l` follows from the chain rule in three sweeps
(Pearlmutter's R-operator, 000 Sec. 5.4, with :math:`R\\{\\cdot\\}` the derivative along v):

- forward: :math:`R\\{z_l\\} = R\\{a_{l-1}\\} * W_l + a_{l-1} * V_l + c_l` (``*`` a matrix product or a
  convolution), :math:`R\\{a_l\\} = \\phi'(z_l)\\,R\\{z_l\\}`, and a max-pool passes the tangent of the
  entry it selects;
- at the logits: :math:`R\\{g_z\\} = \\nabla_z^2\\ell\\,R\\{z\\}/N`;
- backward: :math:`R\\{g_{a_{l-1}}\\} = R\\{g_{z_l}\\} * W_l^T + g_{z_l} * V_l^T`,
  :math:`R\\{g_{z_l}\\} = \\phi'(z_l)\\,R\\{g_{a_l}\\} + \\phi''(z_l)\\,g_{a_l}R\\{z_l\\}`, and the products
  :math:`(\\mathrm{Hess}\\,v)_{W_l} = a_{l-1}^T R\\{g_{z_l}\\} + R\\{a_{l-1}\\}^T g_{z_l}`,
  :math:`(\\mathrm{Hess}\\,v)_{b_l} = \\sum R\\{g_{z_l}\\}`.

Automatic differentiation computes the same sums. Written out, the two terms of a convolution's pair run as
one operation on concatenated operands (one convolution with twice the channels instead of two), the pooling
indices, the activations' derivatives and the first backward pass are plain tensors that do not depend on v
(the operators compute them once per loop, ``ModelOperator.prepare``), and no second derivative of a
pooling or ReLU kernel is traced: a max-pool's tangent is a gather at the indices of its maxima and its
adjoint a repeat over the windows times a mask of the maxima. A convolution of the data (few channels,
``PATCH_MAX_CHANNELS``) is applied to its tangent as one matrix product with the data's windows, which are
shared too; when a max-pool follows it, only the windows of the pooled maxima are kept and the convolution
is evaluated there only. On the book's small CNN a product inside Lanczos costs about 1.1-1.25 gradients
instead of 1.9-2.1 with ``method="double_backward"``, and 0.9-1.0 instead of 1.6-1.7 in blocks of Hutchinson
probes; on MLPs the two forms cost the same (BENCHMARKS.md). It is ``helpers.operators.hessian``'s
``method="layer_chain"``; the default ``method="auto"`` uses it when :func:`plan` accepts the model and a
convolution's kernel is among the variables (:meth:`LayerChain.convolves`), except for single products that
share nothing with others.

Accepted: Sequential and functional models whose layers form one chain of ``Dense`` (on flat inputs),
``Conv2D`` (channels last, no dilation, one group), ``MaxPooling2D`` (stride equal to the pool size),
``Flatten``, ``Reshape``, ``Dropout`` (off: the operators run in inference mode), ``Activation`` and
``ReLU``, with the activations linear, ReLU, tanh, sigmoid and softplus. Anything else is refused with the
reason, and :func:`plan` checks that its forward pass reproduces the model's outputs.
Used through ``helpers.operators`` in chapters 2, 4, 5 and 6.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from . import params

__all__ = ["LayerChain", "plan", "hessian_product"]


#: A convolution whose input does not depend on the tangent (the data) and has at most this many channels (gray,
#: RGB, RGBA images) is applied to the tangent as one matrix product with the input's shared windows.
PATCH_MAX_CHANNELS = 4


class Unsupported(ValueError):
    """The model is not a chain of the layers this module writes out (the message says which layer)."""


# --- the stages of a chain ----------------------------------------------------------------------------------

def _activation(fn) -> str:
    import keras

    table = {keras.activations.linear: "linear", keras.activations.relu: "relu",
             keras.activations.tanh: "tanh", keras.activations.sigmoid: "sigmoid",
             keras.activations.softplus: "softplus"}
    for f, name in table.items():
        if fn is f:
            return name
    raise Unsupported(f"activation {getattr(fn, '__name__', fn)!r} (written out: linear, relu, tanh, sigmoid, "
                      "softplus)")


def _derivatives(kind: str, z):
    """(phi(z), phi'(z), phi''(z) or None when it vanishes)."""
    if kind == "relu":
        d = tf.cast(z > 0, z.dtype)
        return z * d, d, None
    if kind == "tanh":
        a = tf.tanh(z)
        d = 1.0 - a * a
        return a, d, -2.0 * a * d
    s = tf.sigmoid(z)
    d = s * (1.0 - s)
    if kind == "softplus":  # softplus' = sigmoid
        return tf.nn.softplus(z), s, d
    return s, d, d * (1.0 - 2.0 * s)  # sigmoid


@dataclass
class _Linear:
    kind: str  # "dense" or "conv"
    kernel: tf.Variable
    bias: tf.Variable | None
    strides: tuple = (1, 1)
    padding: str = "VALID"

    @property
    def fused(self) -> bool:
        """Whether the two terms of a pair run as one operation on concatenated operands: one convolution
        with twice the channels beats two on the CPU, two small matrix products beat copying into one
        (measured, BENCHMARKS.md)."""
        return self.kind == "conv"

    def apply(self, a, w):
        if self.kind == "dense":
            return tf.matmul(a, w)
        return tf.nn.conv2d(a, w, strides=self.strides, padding=self.padding)

    def transpose(self, g, w, in_shape):
        if self.kind == "dense":
            return tf.matmul(g, w, transpose_b=True)
        return tf.nn.conv2d_transpose(g, w, in_shape, strides=self.strides, padding=self.padding)

    def patches(self, a):
        """The (n, oh, ow, kh*kw*cin) windows of a convolution's input a, ordered as ``kernel.reshape(-1, cout)``:
        copied by slicing, so that a convolution with a becomes one matrix product (see :func:`hessian_product`)."""
        kh, kw = (int(d) for d in self.kernel.shape[:2])
        (sh, sw), h, w = self.strides, int(a.shape[1]), int(a.shape[2])
        if self.padding == "SAME":
            oh, ow = -(-h // sh), -(-w // sw)
            th, tw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
            a = tf.pad(a, [[0, 0], [th // 2, th - th // 2], [tw // 2, tw - tw // 2], [0, 0]])
        else:
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        return tf.concat([a[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
                          for i in range(kh) for j in range(kw)], -1)

    def apply_windows(self, p, w):
        """The convolution with kernel w of the input whose :meth:`patches` are p."""
        K, cout = int(p.shape[-1]), int(w.shape[-1])
        return tf.reshape(tf.matmul(tf.reshape(p, [-1, K]), tf.reshape(w, [K, cout])),
                          tf.concat([tf.shape(p)[:-1], [cout]], 0))

    def kernel_grad_windows(self, p, g):
        """:meth:`kernel_grad` of the input whose :meth:`patches` are p."""
        K, cout = int(p.shape[-1]), int(g.shape[-1])
        return tf.reshape(tf.matmul(tf.reshape(p, [-1, K]), tf.reshape(g, [-1, cout]), transpose_a=True),
                          tf.shape(self.kernel))

    def kernel_grad(self, a, g):
        if self.kind == "dense":
            return tf.matmul(a, g, transpose_a=True)
        return tf.compat.v1.nn.conv2d_backprop_filter(a, tf.shape(self.kernel), g, (1,) + self.strides + (1,),
                                                     self.padding)


@dataclass
class _Act:
    kind: str
    folded: bool = False  # a ReLU whose derivative the following max-pool's mask carries


@dataclass
class _Pool:
    """Max-pooling with stride equal to the window (non-overlapping windows). Its saved tensors are the flat
    index (batch included) of the entry each window's maximum selects, the same entry TensorFlow's max-pool
    gradient picks, after a ReLU (``after_relu``) the ReLU's derivative at that entry, the input's shape, and
    a mask of the input's shape holding that derivative (or 1) at the selected entries. The tangent is a
    gather at the indices; the adjoint repeats each value over its window and multiplies by the mask
    (summing masked 6-D windows for the tangent instead made the CNN's product in Lanczos 1.60x a gradient
    instead of 1.49x; a segment sum for the adjoint cost twice the repeat, BENCHMARKS.md)."""
    size: tuple
    padding: str  # "VALID" or "SAME"
    after_relu: bool = False

    def forward(self, a):
        """(pooled map, saved tensors (index, ReLU derivative or None, input shape))."""
        p, index = tf.nn.max_pool_with_argmax(a, self.size, self.size, self.padding, include_batch_in_index=True)
        # each output through its own identity: splitting a graph between two outputs of one operation (the
        # shared pass of helpers.operators feeds one and not the other) fails in TensorFlow's graph pruning
        p, index = tf.identity(p), tf.identity(index)
        d = tf.cast(p > 0, p.dtype) if self.after_relu else None
        shape = tf.shape(a)
        # 1 (or the ReLU's derivative) at each window's selected entry, 0 elsewhere
        mask = self._segment_sum(tf.ones_like(p) if d is None else d, index, shape)
        return p, (index, d, shape, mask)

    def select(self, t, index, d, shape, mask):
        """The tangent of the pooled map: the entry of t each window's maximum selects."""
        out = tf.gather(tf.reshape(t, [-1]), index)
        return out if d is None else out * d

    def spread(self, g, index, d, shape, mask):
        """The adjoint of :meth:`select`: each window's value goes back to its selected entry. Each value is
        repeated over its window and multiplied by the mask (the same numbers as a segment sum, whose
        scattered writes cost twice as much, BENCHMARKS.md)."""
        (ph, pw), (ho, wo, c) = self.size, g.shape[1:]
        h, w = mask.shape[1:3]
        if None in (ho, wo, c, h, w):  # shapes known only at run time
            return self._segment_sum(g if d is None else g * d, index, shape)
        n = tf.shape(g)[0]
        up = tf.reshape(tf.tile(tf.reshape(g, [n, ho, 1, wo, 1, c]), [1, 1, ph, 1, pw, 1]), [n, ho * ph, wo * pw, c])
        if self.padding == "VALID":  # the last rows and columns no window covers
            up = tf.pad(up, [[0, 0], [0, h - ho * ph], [0, w - wo * pw], [0, 0]])
        else:  # SAME: the windows start (ho * ph - h) // 2 rows before the map
            top, left = (ho * ph - h) // 2, (wo * pw - w) // 2
            up = up[:, top:top + h, left:left + w]
        return up * mask

    @staticmethod
    def _segment_sum(g, index, shape):
        return tf.reshape(tf.math.unsorted_segment_sum(g, index, tf.reduce_prod(shape)), shape)


class _PooledConv:
    """A convolution of the data (at most ``PATCH_MAX_CHANNELS`` channels; the lowest stage with a tangent),
    its activation and the max-pooling after it, written out together: the pooling keeps one entry per window
    and channel, so the convolution's tangent is needed there only, and its filter gradient sums only there.
    The data windows those entries read are gathered once per loop (shared), and both run as batched
    matrix-vector products with them: a quarter of the convolution's multiply-adds, and no pooling gather or
    scatter (BENCHMARKS.md)."""

    def __init__(self, conv: _Linear, x, act: _Act, z, pool_saved):
        index, d_pool = pool_saved[:2]
        self.conv, self.cout = conv, int(conv.kernel.shape[-1])
        patches = conv.patches(x)
        self.K = int(patches.shape[-1])
        # entry (example, row, column, channel) of the pooled map reads the windows at its maximum's position
        windows = tf.gather(tf.reshape(patches, [-1, self.K]), index // self.cout)
        # (channel, window entry, pooled entry): both products below then run along rows of the pooled entries,
        # 2x faster than (channel, pooled entry, window entry) with its rows of K values (BENCHMARKS.md)
        windows = tf.reshape(tf.transpose(windows, [3, 4, 0, 1, 2]), [self.cout, self.K, -1])
        self.shape = tf.shape(index)
        self.d1 = self.d2 = None
        if act.folded:  # a ReLU: its derivative at the maxima is the pooling's saved 0/1
            self.d1 = d_pool
        elif act.kind != "linear":
            _, d1, d2 = _derivatives(act.kind, z)
            self.d1 = tf.gather(tf.reshape(d1, [-1]), index)
            self.d2 = None if d2 is None else tf.gather(tf.reshape(d2, [-1]), index)
        # a bias is one more window entry, always 1; a derivative that is 0/1 (ReLU) or 1 (no activation)
        # multiplies the windows once, so that each product is one matrix product and one transpose
        self.has_bias = conv.bias is not None
        if self.has_bias:
            windows = tf.concat([windows, tf.ones_like(windows[:, :1])], 1)
        self.folded = self.d2 is None and (act.folded or act.kind == "linear")
        if self.folded and self.d1 is not None:
            windows = windows * self._per_channel(self.d1)[:, None, :, 0]
        self.windows = windows

    def _per_channel(self, t):  # (n, H, W, c) -> (c, n*H*W, 1)
        return tf.reshape(tf.transpose(tf.reshape(t, [-1, self.cout])), [self.cout, -1, 1])

    def tangent(self, V, c):
        """The tangent of the pooled map for kernel tangent V and bias tangent c (or None)."""
        w = tf.transpose(tf.reshape(V, [self.K, self.cout]))
        if self.has_bias:
            w = tf.concat([w, (tf.zeros_like(w[:, :1]) if c is None else c[:, None])], 1)
        rz = tf.matmul(w[:, None, :], self.windows)
        self.rz = tf.reshape(tf.transpose(tf.reshape(rz, [self.cout, -1])), self.shape)
        return self.rz if self.folded else self.rz * self.d1

    def gradients(self, Rg, g):
        """(kernel, bias) parts of the product from the pooled map's R{gradient} and gradient."""
        r = Rg if self.folded else Rg * self.d1
        if self.d2 is not None:
            r = r + self.d2 * g * self.rz
        k = tf.reshape(tf.matmul(self.windows, self._per_channel(r)), [self.cout, -1])
        kernel = tf.reshape(tf.transpose(k[:, :self.K]), tf.shape(self.conv.kernel))
        return kernel, (k[:, self.K] if self.has_bias else None)


@dataclass
class _Reshape:
    shape: tuple  # per example

    def apply(self, t):
        return tf.reshape(t, tf.concat([tf.shape(t)[:1], self.shape], 0))


@dataclass
class LayerChain:
    """The stages of a model written out by this module (see :func:`plan`)."""
    stages: list
    variables: list  # the tf.Variables of the chain, in stage order

    def convolves(self, variables) -> bool:
        """Whether the kernel of a convolution is among ``variables`` (the products' variables)."""
        ids = {id(v) for v in variables}
        return any(isinstance(s, _Linear) and s.kind == "conv" and id(s.kernel) in ids for s in self.stages)


# --- planning ---------------------------------------------------------------------------------------------

def _stages_of(layer) -> list:
    import keras

    L = keras.layers
    t = type(layer)
    if t is L.InputLayer or (t is L.Dropout):
        return []
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        raise Unsupported(f"layer {layer.name!r} is quantised or has LoRA weights")
    if t is L.Dense:
        in_shape = layer.input.shape if _has_input(layer) else None
        if in_shape is not None and len(in_shape) != 2:
            raise Unsupported(f"Dense layer {layer.name!r} acts on inputs of rank {len(in_shape)} (written out: "
                              "flat inputs)")
        out = [_Linear("dense", params.tf_variable(layer.kernel),
                       params.tf_variable(layer.bias) if layer.use_bias else None)]
        return out + [_Act(_activation(layer.activation))]
    if t is L.Conv2D:
        if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            raise Unsupported(f"Conv2D layer {layer.name!r} is not channels-last with no dilation and one group")
        out = [_Linear("conv", params.tf_variable(layer.kernel),
                       params.tf_variable(layer.bias) if layer.use_bias else None,
                       tuple(int(s) for s in layer.strides), layer.padding.upper())]
        return out + [_Act(_activation(layer.activation))]
    if t is L.MaxPooling2D:
        if tuple(layer.strides) != tuple(layer.pool_size) or layer.data_format != "channels_last":
            raise Unsupported(f"MaxPooling2D layer {layer.name!r} has overlapping windows or channels first")
        return [_Pool(tuple(int(s) for s in layer.pool_size), layer.padding.upper())]
    if t is L.Flatten:
        return [_Reshape((-1,))]
    if t is L.Reshape:
        return [_Reshape(tuple(int(d) for d in layer.target_shape))]
    if t is L.Activation:
        return [_Act(_activation(layer.activation))]
    if t is L.ReLU:
        if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise Unsupported(f"ReLU layer {layer.name!r} is clipped, leaky or shifted")
        return [_Act("relu")]
    raise Unsupported(f"layer {layer.name!r} of type {t.__name__}")


def _has_input(layer) -> bool:
    try:
        layer.input
        return True
    except Exception:
        return False


def plan(model, x_example=None, rtol: float = 1e-5) -> LayerChain:
    """The model as a chain of written-out stages, or :class:`Unsupported` (a ValueError) saying why not.

    Args:
        model: a Keras model (Sequential or functional, with ``layers``).
        x_example: a batch of inputs (n, ...); when given, the chain's forward pass must reproduce
            ``model(x_example, training=False)`` to ``rtol`` (relative to the largest output), which also
            catches functional graphs that are not one chain.
        rtol: tolerance of that check.
    Returns:
        a :class:`LayerChain`.
    Used by ``helpers.operators.hessian``.
    """
    import keras

    if not isinstance(model, keras.Model) or not hasattr(model, "layers"):
        raise Unsupported(f"{type(model).__name__} is not a Keras model with a list of layers")
    if type(model).__name__ not in ("Functional", "Sequential") or not type(model).__module__.startswith("keras"):
        raise Unsupported(f"subclassed model {type(model).__name__} (its call() may do anything)")
    stages = []
    for layer in model.layers:
        stages += _stages_of(layer)
    variables = [v for s in stages if isinstance(s, _Linear) for v in (s.kernel, s.bias) if v is not None]
    ids = {id(v) for v in variables}
    if len(ids) != len(variables) or {id(params.tf_variable(v)) for v in model.trainable_variables} != ids:
        raise Unsupported("the chain's weights are not exactly the model's trainable variables (a shared, "
                          "frozen or extra weight)")
    for before, after in zip(stages, stages[1:]):
        if isinstance(before, _Act) and before.kind == "relu" and isinstance(after, _Pool):
            before.folded = after.after_relu = True
    chain = LayerChain(stages, variables)
    if x_example is not None:
        x = tf.convert_to_tensor(x_example)
        want = tf.cast(model(x, training=False), x.dtype)
        try:
            got = _forward(chain, tf.cast(x, variables[0].dtype))[0]
        except (ValueError, tf.errors.InvalidArgumentError) as exc:
            raise Unsupported(f"the chain's forward pass failed ({str(exc).splitlines()[0][:120]})") from exc
        if got.shape != want.shape:
            raise Unsupported(f"the chain's outputs have shape {tuple(got.shape)}, the model's {tuple(want.shape)}")
        scale = float(tf.reduce_max(tf.abs(want))) + 1e-30
        if float(tf.reduce_max(tf.abs(tf.cast(got, want.dtype) - want))) > rtol * scale:
            raise Unsupported("the chain's forward pass does not reproduce the model's outputs (not one chain)")
    return chain


def _pooled_after(chain: LayerChain, i: int) -> bool:
    """Whether stage i (a convolution) is followed by its activation and a max-pooling whose gathered windows
    (pooled entries x channels, against the data's windows: channels / window size) take at most twice the
    memory of the data's windows."""
    st = chain.stages
    if not (i + 2 < len(st) and isinstance(st[i + 1], _Act) and isinstance(st[i + 2], _Pool)):
        return False
    return int(st[i].kernel.shape[-1]) <= 2 * st[i + 2].size[0] * st[i + 2].size[1]


# --- the three sweeps -----------------------------------------------------------------------------------------

# The sweeps branch on the stages (Python objects), never on tensor values: autograph has nothing to convert, and
# inside tf.vectorized_map (blocks of products without shared tensors) converting the stages' methods failed.
@tf.autograph.experimental.do_not_convert
def _forward(chain: LayerChain, x):
    """Logits and, per stage, what the sweeps need: (input, pre-activation or pooling mask)."""
    a, saved = x, []
    for s in chain.stages:
        if isinstance(s, _Linear):
            saved.append(a)
            a = s.apply(a, s.kernel)
            if s.bias is not None:
                a = a + s.bias
        elif isinstance(s, _Act):
            saved.append(a)
            if s.kind != "linear":
                a = _derivatives(s.kind, a)[0]
        elif isinstance(s, _Pool):
            a, keep = s.forward(a)
            saved.append(keep)
        else:
            saved.append(a)
            a = s.apply(a)
    return a, saved


@tf.autograph.experimental.do_not_convert
def hessian_product(chain: LayerChain, x, loss_grad_and_hvp, tangents: dict, scale) -> dict:
    """(Hess v) for the variables in ``tangents`` (id(variable) -> tangent; absent variables have a zero
    tangent and no output), on the inputs x.

    ``loss_grad_and_hvp(z, u)`` returns (d loss/dz, d^2 loss/dz^2 u) for the summed per-example loss at the
    logits z; ``scale`` multiplies both (1/N for the mean over N examples).
    Returns id(variable) -> product, for the variables in ``tangents``.
    """
    z, saved = _forward(chain, x)
    n = len(chain.stages)
    # the lowest stage whose variables have a tangent to return: below it nothing is needed
    lowest = min(i for i, s in enumerate(chain.stages) if isinstance(s, _Linear)
                 and (id(s.kernel) in tangents or (s.bias is not None and id(s.bias) in tangents)))
    # tangents of every stage's output (None: zero)
    Ra, R_in, patches, pooled = None, [], {}, None
    for i, (s, keep) in enumerate(zip(chain.stages, saved)):
        R_in.append(Ra)
        if pooled is not None and i <= lowest + 2:  # the activation and pooling of a _PooledConv
            continue
        if isinstance(s, _Linear):
            V = tangents.get(id(s.kernel))
            c = tangents.get(id(s.bias)) if s.bias is not None else None
            few = s.kind == "conv" and Ra is None and int(keep.shape[-1]) <= PATCH_MAX_CHANNELS
            if few and V is not None and i == lowest and _pooled_after(chain, i):
                pooled = _PooledConv(s, keep, chain.stages[i + 1], saved[i + 1], saved[i + 2])
                Ra = pooled.tangent(V, c)
                continue
            if few and V is not None:
                # an input that does not depend on v (the data) with few channels: its windows are shared by
                # every product of a loop, and a matrix product with them beats the convolution (BENCHMARKS.md)
                patches[i] = s.patches(keep)
                out = s.apply_windows(patches[i], V)
            elif Ra is not None and V is not None and s.fused:
                out = s.apply(tf.concat([Ra, keep], -1), tf.concat([s.kernel, V], -2))
            elif Ra is not None and V is not None:
                out = s.apply(Ra, s.kernel) + s.apply(keep, V)
            elif Ra is not None:
                out = s.apply(Ra, s.kernel)
            elif V is not None:
                out = s.apply(keep, V)
            else:
                out = None
            if c is not None:
                # saved[i + 1]: this stage's output (a _Linear is always followed by its _Act)
                out = c + (tf.zeros_like(saved[i + 1]) if out is None else out)
            Ra = out
        elif Ra is None:
            continue
        elif isinstance(s, _Act):
            if s.kind != "linear" and not s.folded:
                Ra = _derivatives(s.kind, keep)[1] * Ra
        elif isinstance(s, _Pool):
            Ra = s.select(Ra, *keep)
        else:
            Ra = s.apply(Ra)
    g, Hz = loss_grad_and_hvp(z, Ra)
    g, Rg = g * scale, Hz * scale
    out = {}
    # Rg before the last pooling's spread, while only a folded ReLU lies between: a bias's product is the sum
    # of Rg over positions, which the spread keeps, so the pooled map (a quarter of the entries) gives it
    pooled_Rg = None
    for i in range(n - 1, lowest - 1, -1):
        s, keep, Rx = chain.stages[i], saved[i], R_in[i]
        if pooled is not None and i <= lowest + 2:
            if i == lowest:
                kernel, bias = pooled.gradients(Rg, g)
                out[id(s.kernel)] = kernel
                if s.bias is not None and id(s.bias) in tangents:
                    out[id(s.bias)] = bias
            continue
        if isinstance(s, _Linear):
            V = tangents.get(id(s.kernel))
            if id(s.kernel) in tangents:
                if i in patches:
                    out[id(s.kernel)] = s.kernel_grad_windows(patches[i], Rg)
                elif Rx is not None and s.fused:
                    out[id(s.kernel)] = s.kernel_grad(tf.concat([keep, Rx], 0), tf.concat([Rg, g], 0))
                elif Rx is not None:
                    out[id(s.kernel)] = s.kernel_grad(keep, Rg) + s.kernel_grad(Rx, g)
                else:
                    out[id(s.kernel)] = s.kernel_grad(keep, Rg)
            if s.bias is not None and id(s.bias) in tangents:
                summed = Rg if pooled_Rg is None else pooled_Rg
                out[id(s.bias)] = tf.reduce_sum(summed, axis=list(range(summed.shape.rank - 1)))
            if i > lowest:
                shape = tf.shape(keep)
                if V is not None and s.fused:
                    Rg = s.transpose(tf.concat([Rg, g], -1), tf.concat([s.kernel, V], -1), shape)
                elif V is not None:
                    Rg = s.transpose(Rg, s.kernel, shape) + s.transpose(g, V, shape)
                else:
                    Rg = s.transpose(Rg, s.kernel, shape)
                g = s.transpose(g, s.kernel, shape)
            pooled_Rg = None
        elif isinstance(s, _Act):
            if s.kind == "linear" or s.folded:
                continue
            pooled_Rg = None
            _, d1, d2 = _derivatives(s.kind, keep)
            Rg_new = d1 * Rg
            if d2 is not None and Rx is not None:
                Rg_new = Rg_new + d2 * g * Rx
            Rg, g = Rg_new, d1 * g
        elif isinstance(s, _Pool):
            pooled_Rg = Rg if keep[1] is None else Rg * keep[1]
            Rg, g = s.spread(Rg, *keep), s.spread(g, *keep)
        else:
            pooled_Rg = None
            shape = tf.shape(keep)
            Rg, g = tf.reshape(Rg, shape), tf.reshape(g, shape)
    return out
