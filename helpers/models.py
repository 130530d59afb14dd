"""The networks of 000 Table 5.1 (MLP 50, MLP 256, LeNet, miniAlexNet, ResNet20) and small quick variants.

Every model is a Keras 3 functional model :math:`x \\mapsto f(x; w)` whose output is the logits (no softmax:
the losses of :mod:`helpers.losses` apply it). Weights are initialised as 000 Sec. 5.2 states (Glorot uniform
for the MLPs and miniAlexNet, Glorot normal for LeNet and ResNet20; 000 eqs. 5.1-5.2), biases are zero, and
every initialiser is seeded, so the same ``seed`` gives the same network.

Layer names are fixed so chapters can address layers: dense layers ``dense_1, dense_2, ...`` (the last one is
the output layer), convolutions ``conv_1, conv_2, ...``; ResNet blocks are ``s{stage}b{block}_conv_a/_b``,
their batch norms ``..._bn_a/_b``, projection shortcuts ``s{stage}_proj``.

Parameter counts at the paper's input shapes (I-PARAMS, chapter 1):

=======================  ===========  ===============================================
network                  input        trainable parameters
=======================  ===========  ===============================================
MLP 50 [50, 50, 10]      28x28 MNIST  42,310
MLP 256 [256,128,64,10]  32x32x3      828,490
LeNet                    32x32x3      136,886
miniAlexNet              32x32x3      1,022,584 (second convolution 3x3, see below)
ResNet20                 32x32x3      273,066 (+ 1,376 batch-norm moving statistics)
=======================  ===========  ===============================================

000 Sec. 5.2 says miniAlexNet's second convolution is 5x5, but its layer listing (10x10x300 -> 8x8x150) and
the 1,023k parameters of Table 5.1 require 3x3; we use 3x3.

Used in chapters 1-5 (and 7 through :func:`mlp`).
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from . import config

__all__ = ["mlp", "lenet", "minialexnet", "resnet", "build", "count_params", "weight_layers", "NAMES",
           "PAPER_INPUT_SHAPES"]

#: networks :func:`build` knows: the five of 000 Table 5.1 and small variants for the quick profile
NAMES = ("mlp50", "mlp256", "lenet", "minialexnet", "resnet20",
         "mlp_small", "lenet_small", "minialexnet_small", "resnet8")

#: the input shapes of 000 Table 5.1 (MLP 50 on MNIST, the others on CIFAR-10)
PAPER_INPUT_SHAPES = {"mlp50": (28, 28, 1), "mlp256": (32, 32, 3), "lenet": (32, 32, 3),
                      "minialexnet": (32, 32, 3), "resnet20": (32, 32, 3)}


def _keras():
    import keras

    return keras


class _Init:
    """Hands out seeded initialisers: layer i gets seed base + i, so layers differ but runs repeat."""

    def __init__(self, seed: int, kind: str):
        if kind not in ("glorot_uniform", "glorot_normal"):
            raise ValueError(f"init must be 'glorot_uniform' or 'glorot_normal', got {kind!r}.")
        self.seed, self.kind, self.count = int(seed), kind, 0

    def __call__(self):
        keras = _keras()
        self.count += 1
        cls = keras.initializers.GlorotUniform if self.kind == "glorot_uniform" else keras.initializers.GlorotNormal
        return cls(seed=(self.seed * 1009 + self.count) % (2**31 - 1))


def _check_seed(seed, purpose: str) -> int:
    if seed is None:
        return config.seed("models", purpose)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer (e.g. helpers.seed('init', 0)) or None, got {seed!r}.")
    return int(seed)


def _check_shape(input_shape, what: str, rank: int | None = None) -> tuple:
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (int(input_shape),)
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"{what}: input_shape must be a tuple of positive ints, e.g. (64,) or (32, 32, 3); "
                        f"got {input_shape!r}.") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{what}: input_shape must be a non-empty tuple of positive ints, got {input_shape!r}.")
    if rank is not None and len(shape) != rank:
        raise ValueError(f"{what} needs an image input_shape (height, width, channels), got {shape}; reshape "
                         "flat data first (e.g. the 8x8 digits as (8, 8, 1) with helpers.data.digits(image=True)).")
    return shape


def _check_dtype(dtype) -> str:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return dtype


def _check_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    return int(num_classes)


def mlp(input_dim, hidden: Sequence[int] = (50,), num_classes: int = 10, activation: str = "relu",
        seed: int | None = None, name: str | None = None, init: str = "glorot_uniform", dtype: str = "float32"):
    """A multilayer perceptron ``input -> hidden... -> num_classes`` logits (000 eq. 2.6 per layer).

    Args:
        input_dim: an int (flat inputs) or an input shape tuple, flattened first.
        hidden: widths of the hidden layers (each followed by ``activation``); MLP 50 is ``(50, 50)``.
        num_classes: number of outputs C (logits).
        activation: any Keras activation name for the hidden layers.
        seed: initialisation seed (None: derived from ``BOOK_SEED``).
        init: ``"glorot_uniform"`` (000 eq. 5.1) or ``"glorot_normal"`` (000 eq. 5.2); biases are zero.
        dtype: ``"float32"`` or ``"float64"`` (float64 for exact curvature checks).
    Returns:
        a ``keras.Model``; dense layers are named ``dense_1 ... dense_{len(hidden)+1}``.
    Used in chapters 1, 2, 3, 4, 5, 7.
    """
    keras = _keras()
    shape = _check_shape(input_dim, "mlp")
    num_classes = _check_classes(num_classes)
    try:
        hidden = tuple(int(h) for h in hidden)
    except TypeError:
        raise TypeError(f"hidden must be a sequence of layer widths such as (50, 50), got {hidden!r}.") from None
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden layer widths must be positive, got {hidden}.")
    _check_dtype(dtype)
    inits = _Init(_check_seed(seed, "mlp"), init)
    inputs = keras.Input(shape=shape, dtype=dtype, name="input")
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(inputs) if len(shape) > 1 else inputs
    for i, width in enumerate(hidden, start=1):
        x = keras.layers.Dense(width, activation=activation, kernel_initializer=inits(), bias_initializer="zeros",
                               name=f"dense_{i}", dtype=dtype)(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=inits(), bias_initializer="zeros",
                                 name=f"dense_{len(hidden) + 1}", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name or "mlp_" + "_".join(map(str, hidden)))


def lenet(input_shape=(32, 32, 3), num_classes: int = 10, filters=(6, 16), dense=(120, 84), seed: int | None = None,
          name: str | None = None, dtype: str = "float32"):
    """LeNet as in 000 Sec. 5.2: conv 5x5 (same) -> max-pool 2 -> conv 5x5 (same) -> max-pool 2 -> dense.

    ReLU everywhere except the pools, the flatten and the output; Glorot normal weights, zero biases.
    With the defaults and a 32x32x3 input it has 136,886 parameters (000 Table 5.1: 137k).

    Args:
        input_shape: (height, width, channels); even sizes down to 8x8 work (the digits as (8, 8, 1)).
        num_classes: outputs C. filters, dense: widths (smaller for the quick variant).
        seed, dtype: as :func:`mlp`.
    Used in chapters 1, 3, 4.
    """
    keras = _keras()
    shape = _check_shape(input_shape, "lenet", rank=3)
    num_classes = _check_classes(num_classes)
    _check_dtype(dtype)
    inits = _Init(_check_seed(seed, "lenet"), "glorot_normal")
    L = keras.layers
    inputs = keras.Input(shape=shape, dtype=dtype, name="input")
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = L.Conv2D(f, 5, padding="same", activation="relu", kernel_initializer=inits(), name=f"conv_{i}",
                     dtype=dtype)(x)
        x = L.MaxPooling2D(2, padding="valid", name=f"pool_{i}", dtype=dtype)(x)
    x = L.Flatten(name="flatten", dtype=dtype)(x)
    for i, width in enumerate(dense, start=1):
        x = L.Dense(width, activation="relu", kernel_initializer=inits(), name=f"dense_{i}", dtype=dtype)(x)
    outputs = L.Dense(num_classes, kernel_initializer=inits(), name=f"dense_{len(dense) + 1}", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name or "lenet")


def minialexnet(input_shape=(32, 32, 3), num_classes: int = 10, filters=(300, 150), kernels=(5, 3),
                dense=(384, 192), padding: str = "valid", seed: int | None = None, name: str | None = None,
                dtype: str = "float32"):
    """miniAlexNet as in 000 Sec. 5.2: conv 5x5 -> max-pool 3 -> conv 3x3 -> max-pool 3 -> dense [384, 192, C].

    On 32x32x3 the feature maps are 28x28x300 -> 10x10x300 -> 8x8x150 -> 3x3x150 (000's listing): the
    convolutions are unpadded, the pools have size 3 and stride 3 and pad the border (ceil(28/3) = 10).
    The second kernel is 3x3 (000 writes 5x5, which contradicts its own listing and parameter count);
    with the defaults it has 1,022,584 parameters (000 Table 5.1: 1023k). Glorot uniform, zero biases.

    Args:
        input_shape: (height, width, channels). For small images use ``padding="same"`` (the quick variant).
        filters, kernels, dense: the layer sizes. padding: of the convolutions, "valid" as in 000.
        num_classes, seed, dtype: as :func:`mlp`.
    Used in chapters 1, 3, 4.
    """
    keras = _keras()
    shape = _check_shape(input_shape, "minialexnet", rank=3)
    num_classes = _check_classes(num_classes)
    _check_dtype(dtype)
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    inits = _Init(_check_seed(seed, "minialexnet"), "glorot_uniform")
    L = keras.layers
    inputs = keras.Input(shape=shape, dtype=dtype, name="input")
    x = inputs
    for i, (f, k) in enumerate(zip(filters, kernels), start=1):
        if padding == "valid" and min(x.shape[1], x.shape[2]) < k:
            raise ValueError(f"minialexnet: input {shape} is too small for an unpadded {k}x{k} convolution at "
                             f"layer {i}; use padding='same' or build('minialexnet_small', ...).")
        x = L.Conv2D(f, k, padding=padding, activation="relu", kernel_initializer=inits(), name=f"conv_{i}",
                     dtype=dtype)(x)
        x = L.MaxPooling2D(3, strides=3, padding="same", name=f"pool_{i}", dtype=dtype)(x)
    x = L.Flatten(name="flatten", dtype=dtype)(x)
    for i, width in enumerate(dense, start=1):
        x = L.Dense(width, activation="relu", kernel_initializer=inits(), name=f"dense_{i}", dtype=dtype)(x)
    outputs = L.Dense(num_classes, kernel_initializer=inits(), name=f"dense_{len(dense) + 1}", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name or "minialexnet")


def resnet(depth: int = 20, input_shape=(32, 32, 3), num_classes: int = 10, base_filters: int = 16,
           seed: int | None = None, name: str | None = None, dtype: str = "float32"):
    """A CIFAR ResNet of depth 6n+2 (000 Sec. 5.2, He et al. 2016); depth 20 is 000's ResNet20.

    conv 3x3 (16) + BN + ReLU, then three stages of n residual blocks with 16, 32, 64 filters. A block is
    conv 3x3 + BN + ReLU + conv 3x3 + BN, plus the shortcut (000 eq. 2.10), then ReLU. The first block of
    stages 2 and 3 halves the resolution (stride 2) and its shortcut is a 1x1 convolution (these two
    projections make the 22 layers with weights of 000 Table 5.1). Then global average pooling and a dense
    output. Glorot normal, zero biases.

    Parameter count (convolutions and the dense layer carry biases): stem 3*9*16+16 = 448; stage 1:
    2n*(9*16*16+16); stage 2: (9*16*32+32) + (2n-1)*(9*32*32+32) + (16*32+32); stage 3 likewise with
    32 -> 64; dense 64*10+10; batch norms 2*(16*(2n+1) + 32*2n + 64*2n) trainable (gamma, beta) and as many
    moving statistics. For n = 3 on CIFAR-10: 271,690 convolution/dense parameters (000 Table 5.1: 272k)
    + 1,376 batch-norm = 273,066 trainable.

    Args:
        depth: 6n+2 (8, 14, 20, ...). base_filters: filters of stage 1 (16 in 000).
        input_shape, num_classes, seed, dtype: as :func:`lenet`.
    Used in chapters 1, 4.
    """
    keras = _keras()
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}.")
    n = (depth - 2) // 6
    shape = _check_shape(input_shape, "resnet", rank=3)
    num_classes = _check_classes(num_classes)
    _check_dtype(dtype)
    inits = _Init(_check_seed(seed, "resnet"), "glorot_normal")
    L = keras.layers

    def conv(x, f, k, stride, lname):
        return L.Conv2D(f, k, strides=stride, padding="same", kernel_initializer=inits(), name=lname, dtype=dtype)(x)

    def bn(x, lname):
        return L.BatchNormalization(name=lname, dtype=dtype)(x)

    inputs = keras.Input(shape=shape, dtype=dtype, name="input")
    x = L.Activation("relu", name="stem_relu", dtype=dtype)(bn(conv(inputs, base_filters, 3, 1, "conv_1"), "bn_1"))
    filters = base_filters
    for stage in (1, 2, 3):
        for block in range(1, n + 1):
            stride = 2 if (stage > 1 and block == 1) else 1
            tag = f"s{stage}b{block}"
            y = L.Activation("relu", name=f"{tag}_relu_a", dtype=dtype)(
                bn(conv(x, filters, 3, stride, f"{tag}_conv_a"), f"{tag}_bn_a"))
            y = bn(conv(y, filters, 3, 1, f"{tag}_conv_b"), f"{tag}_bn_b")
            shortcut = x if stride == 1 else conv(x, filters, 1, stride, f"s{stage}_proj")
            x = L.Activation("relu", name=f"{tag}_relu", dtype=dtype)(L.Add(name=f"{tag}_add", dtype=dtype)([y, shortcut]))
        filters *= 2
    x = L.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    outputs = L.Dense(num_classes, kernel_initializer=inits(), name="dense_1", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def build(name: str, input_shape=None, num_classes: int = 10, seed: int | None = None, dtype: str = "float32"):
    """Build a network by name: the five of 000 Table 5.1 or a small variant for the quick profile.

    Names: ``"mlp50"`` ([50, 50, C]), ``"mlp256"`` ([256, 128, 64, C]), ``"lenet"``, ``"minialexnet"``,
    ``"resnet20"`` (000 Sec. 5.2); quick variants ``"mlp_small"`` ([32, 32, C]), ``"lenet_small"`` (4 and 8
    filters, dense [32, 16]), ``"minialexnet_small"`` (32 and 16 filters, same padding, dense [64, 32]) and
    ``"resnet8"`` (one block per stage, 8 base filters).

    Args:
        name: one of :data:`NAMES`.
        input_shape: the input shape; None uses the paper's (:data:`PAPER_INPUT_SHAPES`; the quick
            variants need it given).
        num_classes, seed, dtype: as :func:`mlp`.
    Returns:
        a ``keras.Model`` producing logits.
    Used in chapters 1-5.
    """
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NAMES)}.")
    key = name.lower()
    if input_shape is None:
        if key not in PAPER_INPUT_SHAPES:
            raise ValueError(f"build({name!r}) needs an input_shape (the quick variants have no paper default).")
        input_shape = PAPER_INPUT_SHAPES[key]
    common = dict(num_classes=num_classes, seed=seed, dtype=dtype, name=key)
    if key == "mlp50":
        return mlp(input_shape, hidden=(50, 50), init="glorot_uniform", **common)
    if key == "mlp256":
        return mlp(input_shape, hidden=(256, 128, 64), init="glorot_uniform", **common)
    if key == "mlp_small":
        return mlp(input_shape, hidden=(32, 32), init="glorot_uniform", **common)
    if key == "lenet":
        return lenet(input_shape, **common)
    if key == "lenet_small":
        return lenet(input_shape, filters=(4, 8), dense=(32, 16), **common)
    if key == "minialexnet":
        return minialexnet(input_shape, **common)
    if key == "minialexnet_small":
        return minialexnet(input_shape, filters=(32, 16), dense=(64, 32), padding="same", **common)
    if key == "resnet20":
        return resnet(20, input_shape, **common)
    return resnet(8, input_shape, base_filters=8, **common)  # resnet8


def count_params(model, trainable_only: bool = True) -> int:
    """Number of parameters of a Keras model: trainable ones (the default), or all, including batch-norm
    moving statistics with ``trainable_only=False``.

    Used in chapter 1 (I-PARAMS).
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"count_params needs a keras.Model, got {type(model).__name__}.")
    variables = model.trainable_variables if trainable_only else model.variables
    return int(sum(int(np.prod(v.shape)) for v in variables))


def weight_layers(model) -> list[str]:
    """Names of the layers that own trainable variables, input to output (e.g. ``['dense_1', 'dense_2',
    'dense_3']`` for MLP 50). Used in chapters 1, 2, 4."""
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"weight_layers needs a keras.Model, got {type(model).__name__}.")
    return [layer.name for layer in model.layers if layer.trainable_weights]
