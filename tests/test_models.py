"""Networks of 000 Table 5.1: parameter counts (I-PARAMS), shapes, seeding, initialisation, errors."""
import numpy as np
import pytest

from helpers import models


def _dense(i, o):
    return i * o + o


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def resnet_trainable(n, base=16, channels=3, classes=10):
    """Trainable parameters of the 6n+2 CIFAR ResNet with 1x1 projection shortcuts, from the architecture."""
    f1, f2, f3 = base, 2 * base, 4 * base
    convs = _conv(3, channels, f1)
    convs += 2 * n * _conv(3, f1, f1)
    convs += _conv(3, f1, f2) + (2 * n - 1) * _conv(3, f2, f2) + _conv(1, f1, f2)
    convs += _conv(3, f2, f3) + (2 * n - 1) * _conv(3, f3, f3) + _conv(1, f2, f3)
    bn = 2 * (f1 * (2 * n + 1) + f2 * 2 * n + f3 * 2 * n)
    return convs + _dense(f3, classes) + bn, bn


def test_table_5_1_counts():
    # I-PARAMS: each count from the layer sizes of 000 Sec. 5.2, then compared with the Table 5.1 numbers.
    mlp50 = _dense(784, 50) + _dense(50, 50) + _dense(50, 10)
    mlp256 = _dense(3072, 256) + _dense(256, 128) + _dense(128, 64) + _dense(64, 10)
    lenet = _conv(5, 3, 6) + _conv(5, 6, 16) + _dense(8 * 8 * 16, 120) + _dense(120, 84) + _dense(84, 10)
    alex = _conv(5, 3, 300) + _conv(3, 300, 150) + _dense(3 * 3 * 150, 384) + _dense(384, 192) + _dense(192, 10)
    assert (mlp50, mlp256, lenet, alex) == (42_310, 828_490, 136_886, 1_022_584)
    res, bn = resnet_trainable(3)
    assert res == 273_066 and res - bn == 271_690  # 272k in Table 5.1 counts convolution/dense parameters
    assert models.count_params(models.build("mlp50")) == mlp50
    assert models.count_params(models.build("mlp256")) == mlp256
    assert models.count_params(models.build("lenet")) == lenet
    assert models.count_params(models.build("minialexnet")) == alex
    r20 = models.build("resnet20")
    assert models.count_params(r20) == res
    assert models.count_params(r20, trainable_only=False) == res + bn  # moving mean and variance


def test_resnet_layer_structure():
    r20 = models.build("resnet20")
    with_kernels = [l for l in r20.layers if l.__class__.__name__ in ("Conv2D", "Dense")]
    assert len(with_kernels) == 22  # 000 Table 5.1: 22 layers with weights
    assert r20.output_shape == (None, 10)


def test_minialexnet_shapes_follow_000_listing():
    m = models.build("minialexnet")
    shapes = {l.name: l.output.shape[1:] for l in m.layers}
    assert shapes["conv_1"] == (28, 28, 300) and shapes["pool_1"] == (10, 10, 300)
    assert shapes["conv_2"] == (8, 8, 150) and shapes["pool_2"] == (3, 3, 150)


@pytest.mark.parametrize("name,shape", [("mlp_small", (64,)), ("lenet_small", (8, 8, 1)),
                                         ("minialexnet_small", (8, 8, 1)), ("resnet8", (8, 8, 1)),
                                         ("mlp50", (40,)), ("lenet", (8, 8, 1))])
def test_quick_variants_run(name, shape):
    m = models.build(name, input_shape=shape, num_classes=10, seed=1)
    out = m(np.zeros((3,) + shape, np.float32))
    assert out.shape == (3, 10)


def test_seeded_and_initialisation():
    a = models.mlp(20, hidden=(30,), seed=3)
    b = models.mlp(20, hidden=(30,), seed=3)
    c = models.mlp(20, hidden=(30,), seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(a.get_weights()[0], c.get_weights()[0])
    k, bias = a.get_layer("dense_1").get_weights()
    assert np.all(bias == 0)
    limit = np.sqrt(6 / (20 + 30))  # Glorot uniform bound, 000 eq. 5.1
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.8 * limit
    assert models.weight_layers(a) == ["dense_1", "dense_2"]


def test_float64_model():
    m = models.mlp(5, hidden=(4,), num_classes=3, seed=0, dtype="float64")
    out = m(np.ones((2, 5)))
    assert out.dtype.name == "float64"
    assert all(v.dtype == "float64" for v in m.trainable_variables)


def test_errors():
    with pytest.raises(ValueError, match="unknown network"):
        models.build("vgg16")
    with pytest.raises(ValueError, match="input_shape"):
        models.build("resnet8")
    with pytest.raises(ValueError, match="image"):
        models.build("lenet", input_shape=(64,))
    with pytest.raises(ValueError, match="6n\\+2"):
        models.resnet(depth=10)
    with pytest.raises(ValueError, match="too small"):
        models.build("minialexnet", input_shape=(8, 8, 1))
    with pytest.raises(TypeError, match="seed"):
        models.mlp(4, seed="a")
    with pytest.raises(ValueError, match="num_classes"):
        models.mlp(4, num_classes=0)
    with pytest.raises(TypeError):
        models.count_params("model")


def test_glorot_normal_for_lenet_and_resnet():
    # 000 Sec. 5.2: LeNet and ResNet20 use Glorot normal (eq. 5.2, variance 2 / (fan_in + fan_out)),
    # the MLPs and miniAlexNet Glorot uniform (eq. 5.1, bound sqrt(6 / (fan_in + fan_out)))
    lenet = models.build("lenet", seed=0)
    k = lenet.get_layer("dense_1").kernel.numpy()  # 1024 x 120
    assert abs(k.var() / (2 / (1024 + 120)) - 1) < 0.05
    assert np.abs(k).max() > np.sqrt(6 / (1024 + 120))  # beyond the uniform bound: not Glorot uniform
    r = models.build("resnet8", input_shape=(8, 8, 1), seed=0)
    k = r.get_layer("s3b1_conv_b").kernel.numpy()  # 3x3, 32 -> 32 channels
    fan = 9 * 32 + 9 * 32
    assert abs(k.var() / (2 / fan) - 1) < 0.1
    alex = models.build("minialexnet_small", input_shape=(8, 8, 1), seed=0)
    k = alex.get_layer("dense_1").kernel.numpy()
    bound = np.sqrt(6 / (k.shape[0] + k.shape[1]))
    assert np.abs(k).max() <= bound and abs(k.var() / (bound**2 / 3) - 1) < 0.1
    for m in (lenet, r, alex):
        assert all(np.all(l.bias.numpy() == 0) for l in m.layers if getattr(l, "bias", None) is not None)


def test_dtype_validated_everywhere():
    for build in (lambda: models.mlp(4, dtype="float16"), lambda: models.lenet((8, 8, 1), dtype="int32"),
                  lambda: models.minialexnet((8, 8, 1), padding="same", dtype="half"),
                  lambda: models.resnet(8, (8, 8, 1), dtype="bfloat16")):
        with pytest.raises(ValueError, match="dtype"):
            build()
