"""The result cache: round trip, keying by configuration and code, atomic writes, corrupted entries."""
import os

import numpy as np
import pytest

from helpers import cache


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _counter():
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": 3.5, "name": np.array("mlp")}

    return compute, calls


def test_round_trip_and_hit(tmp_cache):
    compute, calls = _counter()
    first = cache.cached("entry", {"lr": 0.1, "layers": [1, 2]}, compute, verbose=False)
    second = cache.cached("entry", {"layers": [1, 2], "lr": 0.1}, compute, verbose=False)  # key order irrelevant
    assert len(calls) == 1
    np.testing.assert_array_equal(first["a"], second["a"])
    assert second["a"].dtype == np.float32 and float(second["s"]) == 3.5 and str(second["name"]) == "mlp"
    assert len(list(tmp_cache.glob("*.npz"))) == 1 and not list(tmp_cache.glob("*.tmp"))


def test_key_changes_with_config_name_version_and_code(monkeypatch):
    base = cache.cache_key("x", {"lr": 0.1})
    assert cache.cache_key("x", {"lr": 0.2}) != base
    assert cache.cache_key("y", {"lr": 0.1}) != base
    assert cache.cache_key("x", {"lr": 0.1}, version="2") != base
    assert cache.cache_key("x", {"w": np.zeros(3)}) != cache.cache_key("x", {"w": np.ones(3)})
    monkeypatch.setattr(cache, "code_version", lambda: "edited-helpers")
    assert cache.cache_key("x", {"lr": 0.1}) != base
    compute, calls = _counter()
    cache.cached("e", {"lr": 0.1}, compute, verbose=False)
    cache.cached("e", {"lr": 0.2}, compute, verbose=False)
    assert len(calls) == 2


def test_interrupted_write_leaves_nothing_trusted(tmp_cache, monkeypatch):
    compute, calls = _counter()
    real_replace = os.replace

    def crash(*args, **kw):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(cache.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.cached("entry", {"k": 1}, compute, verbose=False)
    monkeypatch.setattr(cache.os, "replace", real_replace)
    assert not list(tmp_cache.glob("*.npz")) and not list(tmp_cache.glob("*.tmp"))
    cache.cached("entry", {"k": 1}, compute, verbose=False)
    assert len(calls) == 2  # recomputed, then stored


def test_stray_tmp_file_is_ignored(tmp_cache):
    compute, calls = _counter()
    key = cache.cache_key("entry", {"k": 1})
    path = cache._entry_path("entry", key)
    tmp_cache.mkdir(parents=True, exist_ok=True)
    (tmp_cache / (path.name + ".abc.tmp")).write_bytes(b"PK\x03\x04 half a zip")  # a write killed by power loss
    cache.cached("entry", {"k": 1}, compute, verbose=False)
    assert len(calls) == 1 and path.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_entry_is_recomputed(tmp_cache, damage):
    compute, calls = _counter()
    cache.cached("entry", {"k": 2}, compute, verbose=False)
    path = next(tmp_cache.glob("*.npz"))
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(blob[: len(blob) // 2]))
    else:  # same size, a payload byte changed: only the checksum can tell
        import io, json

        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["a"] = arrays["a"] + 1
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path.write_bytes(buf.getvalue())
    with pytest.warns(UserWarning, match="recomputing"):
        out = cache.cached("entry", {"k": 2}, compute, verbose=False)
    assert len(calls) == 2
    np.testing.assert_array_equal(out["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert cache.load(path, None) is not None  # rewritten intact


def test_pack_unpack_weights():
    ws = [np.ones((2, 3)), np.zeros(3), np.arange(4.0)]
    back = cache.unpack_weights(cache.pack_weights(ws))
    assert len(back) == 3 and all(np.array_equal(a, b) for a, b in zip(ws, back))


def test_errors():
    with pytest.raises(TypeError, match="function"):
        cache.cached("x", {}, 3)
    with pytest.raises(TypeError, match="dict"):
        cache.cached("x", {}, lambda: [1, 2], verbose=False)
    with pytest.raises(TypeError, match="configuration"):
        cache.cache_key("x", {"f": object()})


def test_seed_and_profile_always_reach_the_key(tmp_cache, monkeypatch):
    """One cache folder, two seeds: the second run recomputes instead of reusing the first seed's entry."""
    def compute():
        from helpers import config
        return {"draw": np.random.default_rng(config.global_seed()).standard_normal(3)}

    monkeypatch.setenv("BOOK_SEED", "0")
    first = cache.cached("seeded", {"n": 3}, compute, verbose=False)  # the cfg does not name the seed
    monkeypatch.setenv("BOOK_SEED", "1")
    second = cache.cached("seeded", {"n": 3}, compute, verbose=False)
    assert not np.array_equal(first["draw"], second["draw"])
    assert len(list(tmp_cache.glob("seeded-*.npz"))) == 2
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    paper_key = cache.cache_key("seeded", {"n": 3})
    monkeypatch.setenv("BOOK_PROFILE", "quick")
    assert cache.cache_key("seeded", {"n": 3}) != paper_key
