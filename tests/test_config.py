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
