"""Profile and seed handling, errors on bad values, derived seeds, determinism."""
import numpy as np
import pytest

import helpers
from helpers import config


def test_profile_from_env(monkeypatch):
    monkeypatch.delenv("BOOK_PROFILE", raising=False)
    assert config.profile() == "quick"
    monkeypatch.setenv("BOOK_PROFILE", " Paper ")
    assert config.profile() == "paper"
    monkeypatch.setenv("BOOK_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick"):
        config.profile()


def test_seed_from_env(monkeypatch):
    monkeypatch.delenv("BOOK_SEED", raising=False)
    assert config.global_seed() == 0
    monkeypatch.setenv("BOOK_SEED", "17")
    assert config.global_seed() == 17
    monkeypatch.setenv("BOOK_SEED", "seventeen")
    with pytest.raises(ValueError, match="integer"):
        config.global_seed()


def test_derived_seeds(monkeypatch):
    monkeypatch.setenv("BOOK_SEED", "0")
    a, b = config.seed("init", 1), config.seed("init", 2)
    assert a == config.seed("init", 1) and a != b and 0 <= a < 2**31
    monkeypatch.setenv("BOOK_SEED", "1")
    assert config.seed("init", 1) != a


def test_pick(monkeypatch):
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    assert config.pick({"n": 1}, {"n": 2}) == {"n": 2}
    with pytest.raises(ValueError, match="same keys"):
        config.pick({"n": 1}, {"m": 2})
    with pytest.raises(TypeError):
        config.pick([1], {"n": 2})


def test_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "c"))
    assert config.data_dir() == tmp_path / "d" and config.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BOOK_DATA_DIR")
    assert config.data_dir() == config.REPO_ROOT / "data"


def test_setup_and_determinism(monkeypatch, tmp_path, capsys):
    import tensorflow as tf

    from helpers import models

    monkeypatch.setenv("BOOK_FINDINGS_DIR", str(tmp_path))
    monkeypatch.setenv("BOOK_PROFILE", "quick")
    monkeypatch.setenv("BOOK_SEED", "5")
    runs = []
    for _ in range(2):
        cfg = helpers.setup("99_test", quick={"epochs": 3}, paper={"epochs": 100})
        m = models.mlp(4, hidden=(3,), seed=None)
        runs.append((np.random.random(3), tf.random.uniform((2,)).numpy(), m.get_weights()[0]))
    assert cfg == {"epochs": 3, "profile": "quick", "seed": 5, "chapter": "99_test"}
    assert "profile quick" in capsys.readouterr().out
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


_TRAIN_TWICE = """
import hashlib, sys
import helpers
import numpy as np
from helpers import losses, models, training
helpers.set_determinism(3)
rng = np.random.default_rng(0)
x, y = rng.normal(size=(96, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 96)
m = models.build("lenet_small", (8, 8, 1), 10, seed=1)
training.train_sgd(m, losses.cross_entropy, (x, y), epochs=2, batch_size=32, lr=0.05, momentum=0.9, seed=2)
print(hashlib.sha1(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
"""


def test_cpu_training_gives_the_same_bits_in_two_processes():
    """With the kernels `import helpers` leaves on (oneDNN included), a CNN trains to the same bits twice."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    digests = [subprocess.run([sys.executable, "-c", _TRAIN_TWICE], env=env, capture_output=True, text=True,
                              check=True).stdout.split()[-1] for _ in range(2)]
    assert digests[0] == digests[1]
