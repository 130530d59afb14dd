"""Data sets of the book. Nothing is downloaded: the quick profile uses data that ship with installed packages
or are generated; real MNIST and CIFAR-10 are read from local files in their official formats.

- :func:`digits`: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), the MNIST stand-in;
- :func:`mnist1d`: MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package (never fetched);
- :func:`gaussian_anova`: the Gaussian ANOVA model of 002 (class means D1(delta) or D2(t), SNR, K classes);
- :func:`unit_square`: uniform points of the unit square labelled by y > x (004 Sec. 5.2.2);
- :func:`split_tasks`: the two halves of the classes, for catastrophic forgetting (000 Sec. 7.7);
- :func:`mnist`, :func:`cifar10`: real data from IDX files and the CIFAR-10 *binary* version (no unpickling),
  in ``BOOK_DATA_DIR`` (``helpers.config.data_dir()``) or a folder you name.

Every function returns a :class:`Dataset` of float32 inputs and int64 labels.
Used in chapters 1-5, 7, 8.
"""
from __future__ import annotations

import gzip
import numbers
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import config

__all__ = ["Dataset", "digits", "mnist1d", "gaussian_anova", "anova_snr", "unit_square", "split_tasks", "mnist",
           "cifar10", "read_idx", "read_cifar10_bin", "MNIST_FILES", "CIFAR10_FILES"]


@dataclass
class Dataset:
    """A classification data set: float32 inputs, integer labels, train and test parts.

    Attributes:
        x_train (N, *input_shape), y_train (N,), x_test (M, *input_shape), y_test (M,);
        num_classes; name; info (a dict of extra facts, e.g. the SNR of a Gaussian ANOVA set).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.x_train = np.ascontiguousarray(self.x_train, dtype=np.float32)
        self.x_test = np.ascontiguousarray(self.x_test, dtype=np.float32)
        self.y_train = np.asarray(self.y_train, dtype=np.int64)
        self.y_test = np.asarray(self.y_test, dtype=np.int64)
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError(f"{self.name}: inputs and labels differ in length "
                             f"({len(self.x_train)} vs {len(self.y_train)}, {len(self.x_test)} vs {len(self.y_test)}).")

    @property
    def input_shape(self) -> tuple:
        """Shape of one input, e.g. ``(64,)`` or ``(32, 32, 3)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int | None = None) -> "Dataset":
        """A random subset (same class balance in expectation) of ``n_train`` training and ``n_test`` test
        examples; None keeps all. ``seed`` None derives one from ``BOOK_SEED``."""
        rng = np.random.default_rng(config.seed("subset", self.name) if seed is None else seed)

        def pick(x, y, n, part):
            if n is None:
                return x, y
            if not isinstance(n, numbers.Integral) or n < 1 or n > len(x):
                raise ValueError(f"{self.name}: {part} subset size must be an integer in [1, {len(x)}], got {n!r}.")
            idx = np.sort(rng.choice(len(x), size=int(n), replace=False))
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train, "train")
        xte, yte = pick(self.x_test, self.y_test, n_test, "test")
        return Dataset(xtr, ytr, xte, yte, self.num_classes, self.name, dict(self.info))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{self.num_classes} classes)")


def _seed(seed, purpose: str) -> int:
    if seed is None:
        return config.seed("data", purpose)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer or None, got {seed!r}.")
    return int(seed)


def _check_fraction(test_fraction, allow_zero: bool = False):
    low_ok = (lambda f: 0 <= f) if allow_zero else (lambda f: 0 < f)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not (
            low_ok(test_fraction) and test_fraction < 1):
        where = "in [0, 1) (0: no test set)" if allow_zero else "strictly between 0 and 1"
        raise ValueError(f"test_fraction must be a number {where}, got {test_fraction!r}.")


def _stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Indices of a split keeping the class proportions."""
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


def digits(test_fraction: float = 0.25, seed: int | None = None, image: bool = False) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (shipped with the package), standardised, split with a seed.

    Pixels (0-16) are divided by 16, centred with the training set's per-pixel mean and divided by the
    training set's overall standard deviation (one number, so blank border pixels stay small).

    Args:
        test_fraction: share of each class put in the test set (stratified); 0 puts all 1,797 images in the
            training part (the test part is empty) and standardises with all of them.
        seed: seed of the split; None derives it from ``BOOK_SEED``.
        image: False gives inputs of shape (64,), True (8, 8, 1) for the convolutional networks.
    Returns:
        a :class:`Dataset` with 10 classes (about 1,347 training and 450 test images at 0.25).
    Used in chapters 1-5.
    """
    from sklearn.datasets import load_digits

    _check_fraction(test_fraction, allow_zero=True)
    raw = load_digits()
    x = raw.data.astype(np.float64) / 16.0
    y = raw.target.astype(np.int64)
    rng = np.random.default_rng(_seed(seed, "digits-split"))
    tr, te = _stratified_split(y, float(test_fraction), rng)
    mean = x[tr].mean(axis=0)
    scale = (x[tr] - mean).std()
    x = (x - mean) / scale
    if image:
        x = x.reshape(-1, 8, 8, 1)
    return Dataset(x[tr], y[tr], x[te], y[te], 10, "digits", {"source": "sklearn.datasets.load_digits"})


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42, channel: bool = False) -> Dataset:
    """MNIST-1D generated locally: ``mnist1d.data.make_dataset`` with the package's default arguments.

    Nothing is downloaded (the package's ``get_dataset`` would fetch a pickle; it is not used). The
    generator reseeds NumPy's global random state; this function restores it afterwards.

    Args:
        num_samples: total number of sequences (train + test), a multiple of 10.
        train_split: share used for training.
        seed: generator seed (42 gives the standard MNIST-1D).
        channel: False gives inputs (40,), True (40, 1).
    Returns:
        a :class:`Dataset` with 10 classes, inputs standardised by the generator.
    Used in chapters 2-5 (the harder stand-in for CIFAR-10).
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    if not isinstance(num_samples, numbers.Integral) or num_samples < 20 or num_samples % 10:
        raise ValueError(f"num_samples must be a multiple of 10 and at least 20, got {num_samples!r}.")
    _check_fraction(train_split)
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.train_split = float(train_split)
    args.seed = _seed(seed, "mnist1d")
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    xtr, xte = raw["x"], raw["x_test"]
    if channel:
        xtr, xte = xtr[..., None], xte[..., None]
    return Dataset(xtr, raw["y"], xte, raw["y_test"], 10, "mnist1d", {"seed": args.seed})


def anova_snr(means: np.ndarray, sigma: float = 1.0) -> float:
    """002's signal-to-noise ratio: the average over class pairs {k, k'} of ||mu_k - mu_k'|| / sigma.

    Args:
        means: class means (K, p). sigma: the noise standard deviation.
    Used in chapter 3.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"means must have shape (K, p) with K >= 2, got {means.shape}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    k, kp = np.triu_indices(len(means), 1)
    return float(np.linalg.norm(means[k] - means[kp], axis=1).mean() / sigma)


def gaussian_anova(num_classes: int = 4, dim: int = 100, n_per_class: int = 500, model: str = "D1",
                   delta: float | None = None, t: float | None = None, m: float = -0.2, sigma: float = 1.0,
                   n_test_per_class: int | None = None, seed: int | None = None) -> Dataset:
    """The Gaussian ANOVA model of 002: class k has inputs h = mu_k + eps, eps ~ N(0, sigma^2 I_p).

    Class means (002, "Settings of numeric experiments"):

    - ``"D1"`` (needs ``delta``): a random subset I_k of {1..p} of size p/2 per class and
      mu_k = m 1_{I_k} + (m + delta) 1_{I_k^c}, with m = -0.2;
    - ``"D2"`` (needs ``t``): the simplex ETF, mu_k = t v_k with (v_k)_j = 1{j = k} - 1/K for j <= K and 0
      beyond (requires p >= K).

    ``info["snr"]`` holds the SNR of :func:`anova_snr`; ``info["means"]`` the means (K, p).

    Args:
        num_classes: K >= 2. dim: p. n_per_class: training examples per class (002: 7,500).
        n_test_per_class: test examples per class (default: a fifth of n_per_class, at least 10).
        seed: None derives one from ``BOOK_SEED``.
    Used in chapter 3.
    """
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes (K) must be an integer >= 2, got {num_classes!r}.")
    if not isinstance(dim, numbers.Integral) or dim < 2:
        raise ValueError(f"dim (p) must be an integer >= 2, got {dim!r}.")
    if not isinstance(n_per_class, numbers.Integral) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    K, p = int(num_classes), int(dim)
    rng = np.random.default_rng(_seed(seed, f"anova-{model}-{K}-{p}"))
    if model == "D1":
        if delta is None:
            raise ValueError("model 'D1' needs delta (the mean shift on the complement of I_k), e.g. delta=0.5.")
        means = np.empty((K, p))
        for k in range(K):
            inside = np.zeros(p, bool)
            inside[rng.choice(p, size=p // 2, replace=False)] = True
            means[k] = np.where(inside, m, m + delta)
    elif model == "D2":
        if t is None:
            raise ValueError("model 'D2' needs t (the ETF scale), e.g. t=2.0.")
        if p < K:
            raise ValueError(f"model 'D2' needs dim >= num_classes, got dim={p}, K={K}.")
        means = np.zeros((K, p))
        means[:, :K] = t * (np.eye(K) - 1.0 / K)
    else:
        raise ValueError(f"model must be 'D1' or 'D2' (002's two class-mean models), got {model!r}.")
    if n_test_per_class is not None and (not isinstance(n_test_per_class, numbers.Integral)
                                         or n_test_per_class < 0):
        raise ValueError(f"n_test_per_class must be a non-negative integer or None, got {n_test_per_class!r}.")
    n_test = max(10, n_per_class // 5) if n_test_per_class is None else int(n_test_per_class)

    def sample(n):
        y = np.repeat(np.arange(K), n)
        x = means[y] + sigma * rng.standard_normal((len(y), p))
        perm = rng.permutation(len(y))
        return x[perm], y[perm]

    xtr, ytr = sample(int(n_per_class))
    xte, yte = sample(n_test)
    info = {"snr": anova_snr(means, sigma), "means": means, "model": model, "delta": delta, "t": t,
            "m": m, "sigma": sigma}
    return Dataset(xtr, ytr, xte, yte, K, f"gaussian_anova_{model}", info)


def unit_square(n: int = 100, seed: int | None = None, n_test: int = 0) -> Dataset:
    """Uniform points (x, y) in the unit square with label 1 when y > x, else 0 (004 Sec. 5.2.2).

    Args:
        n: number of training points. n_test: number of test points (default none).
        seed: None derives one from ``BOOK_SEED``.
    Returns:
        a :class:`Dataset` with inputs (n, 2) and 2 classes.
    Used in chapter 8.
    """
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if not isinstance(n_test, numbers.Integral) or n_test < 0:
        raise ValueError(f"n_test must be a non-negative integer, got {n_test!r}.")
    rng = np.random.default_rng(_seed(seed, "unit-square"))
    pts = rng.uniform(0.0, 1.0, size=(int(n) + int(n_test), 2))
    lab = (pts[:, 1] > pts[:, 0]).astype(np.int64)
    return Dataset(pts[:n], lab[:n], pts[n:], lab[n:], 2, "unit_square")


def split_tasks(ds: Dataset, first_classes: int | Sequence[int] = 5) -> tuple[Dataset, Dataset]:
    """Split a data set into task A (the ``first_classes``) and task B (the other classes).

    Labels keep their values and ``num_classes`` is unchanged, so one network with C outputs learns both
    tasks in sequence (000 Sec. 7.7: classes 0-4, then 5-9).

    Args:
        ds: a :class:`Dataset`. first_classes: an int k (classes 0..k-1) or a list of class labels.
    Returns:
        ``(task_a, task_b)``.
    Used in chapter 5.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"split_tasks needs a helpers.data.Dataset, got {type(ds).__name__}.")
    if isinstance(first_classes, numbers.Integral):
        first = np.arange(int(first_classes))
    else:
        first = np.asarray(list(first_classes), dtype=np.int64)
    if len(first) == 0 or len(first) >= ds.num_classes or first.min() < 0 or first.max() >= ds.num_classes:
        raise ValueError(f"first_classes must name between 1 and {ds.num_classes - 1} of the classes "
                         f"0..{ds.num_classes - 1}, got {first_classes!r}.")

    def part(mask_tr, mask_te, tag):
        return Dataset(ds.x_train[mask_tr], ds.y_train[mask_tr], ds.x_test[mask_te], ds.y_test[mask_te],
                       ds.num_classes, f"{ds.name}:{tag}", dict(ds.info))

    in_tr, in_te = np.isin(ds.y_train, first), np.isin(ds.y_test, first)
    return part(in_tr, in_te, "A"), part(~in_tr, ~in_te, "B")


# ---------------------------------------------------------------------------------------------- real data
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format; plain or ``.gz``): magic 0x0000 + type + rank, big-endian sizes.

    Used by :func:`mnist`.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            blob = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path.name} in {path.parent} is a truncated or corrupt gzip file ({type(exc).__name__}: "
                         f"{exc}); download it again, or put the uncompressed file there instead.") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number); expected the official MNIST files.")
    rank = blob[3]
    header = 4 + 4 * rank
    if len(blob) < header:
        raise ValueError(f"{path} is truncated (header cut short).")
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    dtype = np.dtype(_IDX_DTYPES[blob[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(blob) - header != need:
        raise ValueError(f"{path} holds {len(blob) - header} data bytes but its header announces {need} "
                         f"(shape {shape}); the file is truncated or corrupt - download it again.")
    return np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, names: Sequence[str], subfolders: Sequence[str], what: str, how: str,
          gz: bool = True) -> list[Path]:
    """Locate every file of ``names`` (plain, or .gz when ``gz``) in ``folder`` or one of its ``subfolders``."""
    candidates = [folder] + [folder / s for s in subfolders]
    suffixes = ("", ".gz") if gz else ("",)
    for base in candidates:
        found = []
        for name in names:
            hit = next((base / (name + s) for s in suffixes if (base / (name + s)).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    # report the first missing file in the most complete candidate folder
    def present(b, n):
        return any((b / (n + s)).is_file() for s in suffixes)

    best = max(candidates, key=lambda b: sum(present(b, n) for n in names))
    missing = [n for n in names if not present(best, n)]
    raise FileNotFoundError(
        f"{what}: file {missing[0]} not found in {best}"
        + (f" (also looked in {', '.join(str(c) for c in candidates if c != best)})" if len(candidates) > 1 else "")
        + f". Missing: {', '.join(missing)}. {how} Put the files in {folder} (or set BOOK_DATA_DIR to the folder "
          "that holds them), then run again.")


def mnist(folder: str | Path | None = None, flatten: bool = False) -> Dataset:
    """Real MNIST from the four official IDX files (plain or gzipped) in ``folder``.

    Looks in ``folder`` and ``folder/mnist``; ``folder`` defaults to ``BOOK_DATA_DIR``. Pixels are divided
    by 255. A missing file raises FileNotFoundError naming it, the folder, and where to get it.

    Args:
        folder: the data folder. flatten: inputs (784,) instead of (28, 28, 1).
    Returns:
        a :class:`Dataset` (60,000 training, 10,000 test images, 10 classes).
    Used in the paper profile of chapters 1, 2, 4, 5.
    """
    folder = config.data_dir() if folder is None else Path(folder).expanduser()
    how = ("Get them from the MNIST database page (LeCun, Cortes and Burges; files train-images-idx3-ubyte.gz, "
           "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz).")
    paths = dict(zip(MNIST_FILES, _find(folder, list(MNIST_FILES.values()), ["mnist", "MNIST"], "MNIST", how)))
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for part in ("train", "test"):
        labels, path = arrays[f"{part}_labels"], paths[f"{part}_labels"]
        if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() > 9)):
            bad = labels[(labels < 0) | (labels > 9)] if labels.ndim == 1 else labels
            raise ValueError(f"{path.name} in {path.parent} is not an MNIST label file: MNIST labels are digits "
                             f"0-9 in one dimension, found shape {labels.shape} and values such as "
                             f"{bad.ravel()[:3].tolist()}; check that the files are the official ones.")
    for part in ("train", "test"):
        if len(arrays[f"{part}_images"]) != len(arrays[f"{part}_labels"]):
            raise ValueError(f"MNIST {part}: {len(arrays[f'{part}_images'])} images but "
                             f"{len(arrays[f'{part}_labels'])} labels in {folder}.")

    def prep(x):
        x = x.astype(np.float32) / 255.0
        return x.reshape(len(x), -1) if flatten else x[..., None]

    return Dataset(prep(arrays["train_images"]), arrays["train_labels"], prep(arrays["test_images"]),
                   arrays["test_labels"], 10, "mnist", {"folder": str(folder)})


def read_cifar10_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of CIFAR-10's binary version: records of 1 label byte + 3,072 pixel bytes (1,024 red,
    1,024 green, 1,024 blue, row-major). Returns images (n, 32, 32, 3) uint8 and labels (n,).

    Used by :func:`cifar10`.
    """
    path = Path(path)
    blob = np.fromfile(path, dtype=np.uint8)
    record = 1 + 3 * 32 * 32
    if blob.size == 0 or blob.size % record:
        raise ValueError(f"{path} has {blob.size} bytes, not a multiple of the {record}-byte CIFAR-10 record; "
                         "is it the binary version (cifar-10-binary.tar.gz), complete?")
    blob = blob.reshape(-1, record)
    labels = blob[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} outside 0-9; not a CIFAR-10 binary file.")
    images = blob[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def cifar10(folder: str | Path | None = None) -> Dataset:
    """Real CIFAR-10 from the official binary version (``cifar-10-batches-bin/data_batch_1.bin`` ...
    ``data_batch_5.bin``, ``test_batch.bin``); never unpickles anything.

    Looks in ``folder`` and ``folder/cifar-10-batches-bin``; ``folder`` defaults to ``BOOK_DATA_DIR``. Pixels
    are divided by 255. A missing file raises FileNotFoundError naming it, the folder and where to get it.

    Returns:
        a :class:`Dataset` with inputs (32, 32, 3), 50,000 training and 10,000 test images, 10 classes.
    Used in the paper profile of chapters 2, 3, 4.
    """
    folder = config.data_dir() if folder is None else Path(folder).expanduser()
    how = ("Get the 'CIFAR-10 binary version (suitable for C programs)', cifar-10-binary.tar.gz, from the CIFAR "
           "page of Alex Krizhevsky (University of Toronto) and unpack it (tar xzf) - the Python (pickle) version "
           "is not read.")
    paths = _find(folder, CIFAR10_FILES, ["cifar-10-batches-bin"], "CIFAR-10", how, gz=False)
    parts = [read_cifar10_bin(p) for p in paths]
    xtr = np.concatenate([p[0] for p in parts[:5]]).astype(np.float32) / 255.0
    ytr = np.concatenate([p[1] for p in parts[:5]])
    xte, yte = parts[5][0].astype(np.float32) / 255.0, parts[5][1]
    return Dataset(xtr, ytr, xte, yte, 10, "cifar10", {"folder": str(folder)})
