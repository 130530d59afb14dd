"""A result cache for expensive computations (trained weights, dense spectra, training curves).

Entries are keyed by a name, the configuration that produced them, the code version (a hash of the
``helpers`` sources plus an optional version string of the caller), the global seed and the profile, so a
change to any of them recomputes. Each entry is one ``.npz`` file holding the arrays plus a JSON header with the key and a
SHA-256 of the payload. Writes go to a temporary file in the same folder and are moved into place with
``os.replace`` (atomic on POSIX), so an interrupted run never leaves an entry a later run trusts; an
entry whose checksum does not match is reported and recomputed.

Used by every chapter that trains a network (chapters 1-5, 7).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from . import config

_HEADER = "__cache_header__"


def code_version() -> str:
    """Hash of every ``helpers/*.py`` source file: editing the library invalidates the cache."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _canonical(obj):
    """Turn a configuration into something JSON can serialise deterministically."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"ndarray": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(), "shape": list(obj.shape)}
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise TypeError(
        f"cache configuration values must be numbers, strings, lists, dicts or arrays; got {type(obj).__name__}. "
        "Pass a plain description of the configuration instead."
    )


def cache_key(name: str, cfg: Mapping, version: str = "") -> str:
    """The key of an entry: name, configuration, code version, and always the global seed and the profile.

    The seed (``BOOK_SEED``) and the profile (``BOOK_PROFILE``) enter every key whether or not ``cfg``
    names them, so a cache filled at one seed or profile is never reused at another.
    """
    blob = json.dumps({"name": name, "config": _canonical(cfg), "code": code_version(), "version": version,
                       "global_seed": config.global_seed(), "profile": config.profile()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _payload_digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _entry_path(name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return config.cache_dir() / f"{safe}-{key}.npz"


def save(path: Path, arrays: Mapping[str, np.ndarray], header: dict) -> None:
    """Write an entry atomically: temporary file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"cache value {k!r} is an object array; store numbers or strings only.")
    header = dict(header, digest=_payload_digest(arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)})
    write_atomic(path, buf.getvalue())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part:
    a temporary file in the same folder, fsync, ``os.replace``; the temporary file is removed on any error.

    Used by :func:`save` and by ``helpers.callbacks`` (the CSV log).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path, expected_key: str | None = None) -> dict[str, np.ndarray] | None:
    """Read an entry; ``None`` if it is missing, unreadable, for another key, or fails its checksum."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data[_HEADER]).decode())
            arrays = {k: data[k] for k in data.files if k != _HEADER}
    except Exception as exc:  # truncated or garbled file
        warnings.warn(f"cache entry {path.name} is unreadable ({type(exc).__name__}); recomputing it.")
        return None
    if expected_key is not None and header.get("key") != expected_key:
        return None
    if header.get("digest") != _payload_digest(arrays):
        warnings.warn(f"cache entry {path.name} fails its checksum; recomputing it.")
        return None
    return arrays


def cached(name: str, cfg: Mapping, compute: Callable[[], Mapping[str, np.ndarray]], version: str = "",
           verbose: bool = False) -> dict[str, np.ndarray]:
    """Return ``compute()``'s arrays, from the cache when an entry for (name, cfg, code) exists.

    Args:
        name: a short label for the computation (``"ch1-mlp-trained"``).
        cfg: everything that determines the result (hyper-parameters, data sizes, seed, profile).
        compute: a function returning a dict of NumPy arrays (or scalars).
        version: bump to invalidate entries when the chapter's computation changes.
        verbose: print whether the entry was loaded or computed (off by default: no cache log lines on
            the page).
    Returns:
        dict name -> np.ndarray.
    """
    if not callable(compute):
        raise TypeError("cached(name, cfg, compute): compute must be a function returning a dict of arrays.")
    key = cache_key(name, cfg, version)
    path = _entry_path(name, key)
    hit = load(path, key)
    if hit is not None:
        if verbose:
            print(f"[cache] {name}: loaded")
        return hit
    result = compute()
    if not isinstance(result, Mapping):
        raise TypeError(f"compute() for cache entry {name!r} must return a dict of arrays, got {type(result).__name__}.")
    arrays = {str(k): np.asarray(v) for k, v in result.items()}
    save(path, arrays, {"key": key, "name": name})
    if verbose:
        print(f"[cache] {name}: computed and stored")
    return load(path, key) or arrays


def pack_weights(weights: list[np.ndarray], prefix: str = "w") -> dict[str, np.ndarray]:
    """Turn a list of weight arrays (``model.get_weights()``) into cache-ready named arrays."""
    return {f"{prefix}{i:03d}": np.asarray(w) for i, w in enumerate(weights)}


def unpack_weights(arrays: Mapping[str, np.ndarray], prefix: str = "w") -> list[np.ndarray]:
    """Inverse of :func:`pack_weights`."""
    keys = sorted(k for k in arrays if k.startswith(prefix) and k[len(prefix):].isdigit())
    return [arrays[k] for k in keys]
