"""helpers.distributed: products averaged over data shards on the replicas of a MirroredStrategy over two
logical CPU devices equal the one-device products to float64 round-off; the report with strategy= equals
the one without. Logical devices must be configured before TensorFlow initialises, so the multi-device
check runs in a fresh subprocess."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import helpers  # noqa: F401
import numpy as np
import pytest

from helpers import distributed, operators

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    import helpers
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from helpers import distributed, layerwise, operators
    from test_operators import ce, mlp

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    m = mlp()
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(27, 5)), rng.integers(0, 3, 27)  # 27: shards of 14 and 13 examples
    one = operators.hessian(m, ce, (x, y))
    two = distributed.sharded(lambda d: operators.hessian(m, ce, d), (x, y), strategy=strategy)
    assert [s.num_examples for s in two.shards] == [14, 13]
    assert two.shards[1]._x.device.endswith("CPU:1"), two.shards[1]._x.device
    V = rng.normal(size=(one.size, 4))
    a, b = one.matmat(V).numpy(), two.matmat(V).numpy()
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert rel < 1e-13, rel
    r1 = layerwise.curvature_report(m, ce, (x, y), top_k=2, dense_max=0, tol=1e-10)
    r2 = layerwise.curvature_report(m, ce, (x, y), top_k=2, dense_max=0, tol=1e-10, strategy=strategy)
    e1, e2 = r1.to_dict()["eigenvalues"], r2.to_dict()["eigenvalues"]
    err = np.abs(e1 - e2).max() / np.abs(e1).max()
    assert err < 1e-11, err
    print("OK", rel, err)
''')


def test_two_logical_cpus_equal_one_device():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, env=env,
                         timeout=900, cwd=str(ROOT / "tests"))
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]


def test_sharded_on_one_device_and_errors():
    from test_operators import ce, mlp

    m = mlp()
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 5)), rng.integers(0, 3, 10)
    one = operators.hessian(m, ce, (x, y))
    three = distributed.sharded(lambda d: operators.hessian(m, ce, d), (x, y), devices=["/cpu:0"] * 3)
    np.testing.assert_allclose(three.to_dense(), one.to_dense(), rtol=1e-12, atol=1e-14)
    assert three.weights == [0.4, 0.3, 0.3]
    with pytest.raises(ValueError, match="exactly one"):
        distributed.sharded(lambda d: one, (x, y))
    with pytest.raises(TypeError, match="tf.distribute strategy"):
        distributed.sharded(lambda d: one, (x, y), strategy="mirrored")
    with pytest.raises(ValueError, match="cannot be split"):
        distributed.sharded(lambda d: one, (x[:1], y[:1]), devices=["/cpu:0", "/cpu:0"])
    with pytest.raises(ValueError, match="one weight and one device"):
        distributed.ShardedOperator([one], [1.0, 2.0], ["/cpu:0"])
