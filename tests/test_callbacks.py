"""helpers.callbacks.CurvatureCallback inside model.fit: History entries per epoch (NaN where not measured),
the CSV file (atomic rewrite, append), agreement with a direct curvature_report, and argument errors."""
import csv
import math

import helpers  # noqa: F401
import numpy as np
import pytest
import keras

from helpers import callbacks, layerwise, losses


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh", name="h"),
                             keras.layers.Dropout(0.2), keras.layers.Dense(3, name="out")])


def data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


def test_fit_logs_history_and_csv(tmp_path):
    x, y = data()
    m = small_model()
    m.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = tmp_path / "curv" / "log.csv"
    cb = callbacks.CurvatureCallback(losses.cross_entropy, (x, y), every=2, budget=30, csv_path=path)
    hist = m.fit(x, y, epochs=4, batch_size=10, verbose=0, shuffle=False, callbacks=[cb])
    names = ["h", "out", layerwise.NETWORK]
    for name in names:
        lam = hist.history[f"lambda_max/{name}"]
        assert len(lam) == 4 and math.isnan(lam[0]) and math.isnan(lam[2])
        assert np.isfinite(lam[1]) and np.isfinite(lam[3]) and lam[3] > 0
        assert len(hist.history[f"trace/{name}"]) == 4
    assert [e for e, _ in cb.reports] == [1, 3]
    # the last evaluation equals a direct report on the final weights with the same settings
    direct = layerwise.curvature_report(m, losses.cross_entropy, (x, y), budget=30, top_k=1, weight_spectra=False)
    for r in direct:
        assert hist.history[f"lambda_max/{r.name}"][3] == pytest.approx(r.lambda_max, rel=1e-5)
        assert hist.history[f"trace/{r.name}"][3] == pytest.approx(r.trace, rel=1e-5)
    # the operators the callback kept read the final weights too
    assert cb._ops
    reused = layerwise.curvature_report(m, losses.cross_entropy, (x, y), budget=30, top_k=1,
                                        weight_spectra=False, operator_cache=cb._ops)
    np.testing.assert_allclose(reused.to_dict()["eigenvalues"], direct.to_dict()["eigenvalues"], rtol=1e-5)
    rows = list(csv.DictReader(open(path)))
    assert [(int(r["epoch"]), r["layer"]) for r in rows] == [(e, n) for e in (1, 3) for n in names]
    assert float(rows[-1]["lambda_max"]) == hist.history[f"lambda_max/{layerwise.NETWORK}"][3]
    assert not list(path.parent.glob(".*.tmp")), "no temporary file is left behind"
    # a second run appends to the same file
    cb2 = callbacks.CurvatureCallback(losses.cross_entropy, (x, y), every=1, budget=30, csv_path=path,
                                      append=True, layers=["out"], include_network=False)
    h2 = m.fit(x, y, epochs=1, verbose=0, callbacks=[cb2])
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 7 and rows[-1]["layer"] == "out" and "lambda_max/out" in h2.history


def test_argument_errors(tmp_path):
    x, y = data()
    with pytest.raises(ValueError, match="every"):
        callbacks.CurvatureCallback(losses.cross_entropy, (x, y), every=0)
    with pytest.raises(ValueError, match="budget"):
        callbacks.CurvatureCallback(losses.cross_entropy, (x, y), budget=3)
    with pytest.raises(TypeError, match="per-example loss"):
        callbacks.CurvatureCallback("ce", (x, y))
    with pytest.raises(TypeError, match="data must be"):
        callbacks.CurvatureCallback(losses.cross_entropy, x)
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    m = small_model()
    m.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = callbacks.CurvatureCallback(losses.cross_entropy, (x, y), csv_path=bad, append=True)
    with pytest.raises(ValueError, match="columns"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
