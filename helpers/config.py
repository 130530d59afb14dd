"""Profile, global seed, determinism and paths: read in exactly one place.

Environment variables (the only knobs a reader needs):

- ``BOOK_PROFILE``: ``quick`` (default; laptop CPU, every chapter in under 3 minutes) or ``paper``
  (the source documents' networks, data and hyper-parameters; meant for a GPU).
- ``BOOK_SEED``: the global seed (default 0). Every random choice in the book derives from it.
- ``BOOK_DATA_DIR``: folder holding real MNIST / CIFAR-10 files for the paper profile
  (default ``<repo>/data``).
- ``BOOK_CACHE_DIR``: the result cache (default ``<repo>/.cache``).

Used by every chapter (first cell: ``cfg = helpers.setup(...)``).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

# Keep TensorFlow quiet. These must be set before TensorFlow is imported, which is why
# ``helpers/__init__.py`` imports this module first. TensorFlow's oneDNN kernels stay as TensorFlow sets
# them (on for x86 CPUs): they are deterministic run to run and 1.4-3x faster here (BENCHMARKS.md, 1b).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("PYTHONHASHSEED", "0")

PROFILES = ("quick", "paper")
REPO_ROOT = Path(__file__).resolve().parents[1]


def profile() -> str:
    """The active profile, from ``BOOK_PROFILE`` (``quick`` or ``paper``)."""
    value = os.environ.get("BOOK_PROFILE", "quick").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"BOOK_PROFILE={value!r} is not a profile; set it to one of {PROFILES}.")
    return value


def global_seed() -> int:
    """The global seed, from ``BOOK_SEED`` (default 0)."""
    raw = os.environ.get("BOOK_SEED", "0").strip()
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"BOOK_SEED={raw!r} is not an integer; set it to e.g. 0 or 1234.") from None


def seed(*offsets: int | str) -> int:
    """A seed derived from the global seed and a stream name/number, stable across runs and machines.

    ``seed("init", 3)`` gives a different, reproducible stream for each purpose, so two experiments
    never share random numbers by accident. Changing ``BOOK_SEED`` changes all of them.
    """
    import hashlib

    text = "|".join([str(global_seed()), *map(str, offsets)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def data_dir() -> Path:
    """Folder for real data sets (paper profile), from ``BOOK_DATA_DIR``."""
    return Path(os.environ.get("BOOK_DATA_DIR", REPO_ROOT / "data")).expanduser()


def cache_dir() -> Path:
    """Folder of the result cache, from ``BOOK_CACHE_DIR``; ``make clean`` removes it."""
    return Path(os.environ.get("BOOK_CACHE_DIR", REPO_ROOT / ".cache")).expanduser()


def findings_dir() -> Path:
    """Folder where chapters write their findings tables (gathered by the reproduction report)."""
    return Path(os.environ.get("BOOK_FINDINGS_DIR", REPO_ROOT / "_build" / "findings")).expanduser()


def set_determinism(seed_value: int | None = None) -> int:
    """Seed Python, NumPy, TensorFlow and Keras, and ask TensorFlow for deterministic kernels.

    Returns the seed used. CPU runs then give the same numbers twice.
    """
    import numpy as np
    import tensorflow as tf

    s = global_seed() if seed_value is None else int(seed_value)
    tf.get_logger().setLevel("ERROR")  # retracing and autograph warnings never reach a page
    tf.autograph.set_verbosity(0)
    random.seed(s)
    np.random.seed(s)
    tf.random.set_seed(s)
    try:
        import keras

        keras.utils.set_random_seed(s)
    except Exception:  # pragma: no cover - keras always present in the pinned environment
        pass
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
    return s


def pick(quick: dict, paper: dict) -> dict:
    """Return the configuration for the active profile. The only place a chapter sees the profile."""
    if not isinstance(quick, dict) or not isinstance(paper, dict):
        raise TypeError("pick(quick=..., paper=...) takes two dicts of settings.")
    missing = set(quick) ^ set(paper)
    if missing:
        raise ValueError(f"quick and paper configurations must have the same keys; differing: {sorted(missing)}")
    return dict(quick if profile() == "quick" else paper)


def setup(chapter: str, quick: dict | None = None, paper: dict | None = None, show: bool = True) -> dict:
    """Start a chapter: seed everything, pick the profile's configuration and print it.

    Args:
        chapter: the chapter id, e.g. ``"01_sgd_basics"`` (used to file its findings).
        quick, paper: the chapter's configurations (same keys).
    Returns:
        the configuration dict, with ``profile``, ``seed`` and ``chapter`` added.
    """
    from . import findings, plotting

    s = set_determinism()
    cfg = pick(quick or {}, paper or {})
    cfg.update(profile=profile(), seed=s, chapter=chapter)
    findings.start_chapter(chapter)
    plotting.use_book_style()
    if show:
        import tensorflow as tf

        devices = ", ".join(d.device_type for d in tf.config.list_physical_devices()) or "CPU"
        print(f"chapter {chapter} | profile {cfg['profile']} | seed {s} | devices: {devices}")
        for key, value in cfg.items():
            if key not in ("profile", "seed", "chapter"):
                print(f"  {key} = {value}")
    return cfg
