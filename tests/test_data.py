"""Data sets: shapes, seeding, the ANOVA and unit-square definitions, and the real-data loaders on tiny files
written in the official formats (IDX for MNIST, the binary version of CIFAR-10)."""
import gzip

import numpy as np
import pytest

from helpers import data


def test_digits_standardised_and_seeded():
    a = data.digits(seed=1)
    b = data.digits(seed=1)
    c = data.digits(seed=2)
    assert a.input_shape == (64,) and a.num_classes == 10
    assert len(a.x_train) + len(a.x_test) == 1797
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)
    np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)
    assert abs(a.x_train.std() - 1) < 1e-4
    # stratified: every class in both parts, in proportion
    counts = np.bincount(a.y_test, minlength=10) / np.bincount(np.r_[a.y_train, a.y_test], minlength=10)
    assert np.all(np.abs(counts - 0.25) < 0.02)
    img = data.digits(seed=1, image=True)
    assert img.input_shape == (8, 8, 1)
    np.testing.assert_array_equal(img.x_train.reshape(len(img.x_train), -1), a.x_train)


def test_mnist1d_local_and_restores_global_rng():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    ds = data.mnist1d(num_samples=200)
    assert np.random.random() == expected  # the generator's reseeding does not leak
    assert ds.input_shape == (40,) and len(ds.x_train) == 160 and len(ds.x_test) == 40
    assert set(np.unique(ds.y_train)) <= set(range(10))
    again = data.mnist1d(num_samples=200)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert data.mnist1d(num_samples=200, channel=True).input_shape == (40, 1)


def test_gaussian_anova_models():
    d1 = data.gaussian_anova(num_classes=3, dim=10, n_per_class=50, model="D1", delta=1.0, seed=0)
    means = d1.info["means"]
    for mu in means:  # half the coordinates at m, half at m + delta
        assert np.sum(np.isclose(mu, -0.2)) == 5 and np.sum(np.isclose(mu, 0.8)) == 5
    assert d1.x_train.shape == (150, 10) and np.all(np.bincount(d1.y_train) == 50)
    pairs = [np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)]
    assert np.isclose(d1.info["snr"], np.mean(pairs))
    d2 = data.gaussian_anova(num_classes=4, dim=6, n_per_class=2000, model="D2", t=3.0, seed=0)
    # the ETF: ||mu_k - mu_k'|| = t sqrt(2) for every pair
    assert np.isclose(d2.info["snr"], 3.0 * np.sqrt(2))
    emp = np.stack([d2.x_train[d2.y_train == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(emp, d2.info["means"], atol=0.1)  # noise has mean zero, variance sigma^2
    assert abs(np.var(d2.x_train - d2.info["means"][d2.y_train]) - 1.0) < 0.05
    with pytest.raises(ValueError, match="delta"):
        data.gaussian_anova(model="D1")
    with pytest.raises(ValueError, match="D1"):
        data.gaussian_anova(model="D3", delta=1)
    with pytest.raises(ValueError, match="dim >= num_classes"):
        data.gaussian_anova(num_classes=5, dim=3, model="D2", t=1.0)


def test_unit_square():
    ds = data.unit_square(200, seed=3)
    x, y = ds.train
    assert x.shape == (200, 2) and np.all((x >= 0) & (x <= 1))
    np.testing.assert_array_equal(y, (x[:, 1] > x[:, 0]).astype(int))
    assert 60 < y.sum() < 140 and len(ds.x_test) == 0
    with pytest.raises(ValueError):
        data.unit_square(0)


def test_split_tasks_and_subset():
    ds = data.digits(seed=0)
    a, b = data.split_tasks(ds, 5)
    assert set(np.unique(a.y_train)) == set(range(5)) and set(np.unique(b.y_test)) == set(range(5, 10))
    assert len(a.x_train) + len(b.x_train) == len(ds.x_train) and a.num_classes == 10
    a2, _ = data.split_tasks(ds, [1, 3])
    assert set(np.unique(a2.y_train)) == {1, 3}
    with pytest.raises(ValueError):
        data.split_tasks(ds, 10)
    sub = ds.subset(100, 20, seed=0)
    assert len(sub.x_train) == 100 and len(sub.x_test) == 20
    with pytest.raises(ValueError, match="subset size"):
        ds.subset(10_000)


def _write_idx(path, arr, gz=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    blob = header + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(blob)
    else:
        path.write_bytes(blob)


def test_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    ytr, yte = np.array([0, 1, 2, 3, 9], np.uint8), np.array([4, 5, 6], np.uint8)
    sub = tmp_path / "mnist"
    sub.mkdir()
    _write_idx(sub / "train-images-idx3-ubyte", tr, gz=True)
    _write_idx(sub / "train-labels-idx1-ubyte", ytr, gz=True)
    _write_idx(sub / "t10k-images-idx3-ubyte", te)
    _write_idx(sub / "t10k-labels-idx1-ubyte", yte)
    ds = data.mnist(tmp_path)
    assert ds.input_shape == (28, 28, 1)
    np.testing.assert_allclose(ds.x_train[..., 0], tr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert data.mnist(sub, flatten=True).input_shape == (784,)


def test_mnist_missing_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        data.mnist()
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg and "MNIST database" in msg
    assert "BOOK_DATA_DIR" in msg
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(tmp_path / "x")
    _write_idx(tmp_path / "y", np.zeros((4, 2), np.uint8))
    (tmp_path / "y").write_bytes((tmp_path / "y").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "y")


def _write_cifar(path, images, labels):
    rec = np.concatenate([labels[:, None].astype(np.uint8),
                          images.transpose(0, 3, 1, 2).reshape(len(images), -1)], axis=1)
    path.write_bytes(rec.astype(np.uint8).tobytes())


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    all_imgs = []
    for name in data.CIFAR10_FILES:
        imgs = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
        labs = rng.integers(0, 10, size=2)
        _write_cifar(folder / name, imgs, labs)
        all_imgs.append((imgs, labs))
    ds = data.cifar10(tmp_path)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(ds.x_train[:2], all_imgs[0][0] / 255.0, rtol=1e-6)  # channel order kept
    np.testing.assert_array_equal(ds.y_test, all_imgs[5][1])
    (folder / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.cifar10(tmp_path)
    assert "test_batch.bin" in str(err.value) and str(folder) in str(err.value)
    assert "binary version" in str(err.value)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="multiple"):
        data.cifar10(tmp_path)


def test_mnist1d_never_touches_the_network(monkeypatch):
    import mnist1d.data
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("helpers.data.mnist1d must generate MNIST-1D locally, never download it")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)
    ds = data.mnist1d(num_samples=100)
    assert len(ds.x_train) + len(ds.x_test) == 100


def test_more_error_paths():
    with pytest.raises(ValueError, match="multiple of 10"):
        data.mnist1d(num_samples=105)
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.5)
    with pytest.raises(TypeError, match="seed"):
        data.digits(seed="a")
    with pytest.raises(ValueError, match="t "):
        data.gaussian_anova(model="D2")
    with pytest.raises(ValueError, match="num_classes"):
        data.gaussian_anova(num_classes=1, delta=1.0)
    with pytest.raises(ValueError, match="sigma"):
        data.gaussian_anova(delta=1.0, sigma=0.0)
    with pytest.raises(ValueError, match="\\(K, p\\)"):
        data.anova_snr(np.zeros(5))
    with pytest.raises(ValueError, match="n_test"):
        data.unit_square(10, n_test=-1)
    with pytest.raises(TypeError, match="Dataset"):
        data.split_tasks((np.zeros((2, 2)), np.zeros(2)), 1)
    with pytest.raises(ValueError, match="label"):
        data.Dataset(np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1), 2, "bad")


def test_anova_test_size():
    ds = data.gaussian_anova(num_classes=2, dim=4, n_per_class=30, delta=1.0, n_test_per_class=7, seed=0)
    assert np.all(np.bincount(ds.y_test) == 7)
    with pytest.raises(ValueError, match="n_test_per_class"):
        data.gaussian_anova(delta=1.0, n_test_per_class=-1)


def test_digits_all_images_without_a_split():
    ds = data.digits(test_fraction=0, seed=3)
    assert ds.x_train.shape == (1797, 64) and ds.x_test.shape == (0, 64) and len(ds.y_test) == 0
    assert np.bincount(ds.y_train).sum() == 1797 and set(np.unique(ds.y_train)) == set(range(10))
    # standardised with all images: per-pixel mean zero, overall standard deviation one
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert ds.x_train.std() == pytest.approx(1.0, rel=1e-5)
    assert data.digits(test_fraction=0, image=True).input_shape == (8, 8, 1)
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="test_fraction"):
            data.digits(test_fraction=bad)


def test_mnist_corrupt_gzip_and_bad_labels(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    for name, arr in (("train-images-idx3-ubyte", imgs), ("t10k-images-idx3-ubyte", imgs)):
        _write_idx(tmp_path / name, arr)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 12, 3], np.uint8))  # 12 is no digit
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte in .*digits 0-9.*12"):
        data.mnist(tmp_path)
    # a truncated .gz file: the error names the file and its folder
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8), gz=True)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    gz = tmp_path / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-6])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz in " + str(tmp_path) + ".*truncated or corrupt"):
        data.mnist(tmp_path)
    gz.write_bytes(b"\x1f\x8b" + b"garbage-not-deflate" * 3)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.read_idx(gz)
