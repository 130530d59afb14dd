"""Benchmark of the curvature library (helpers.operators, eigensolvers, estimators): `make bench`.

Prints one Markdown report and writes it to benchmarks/results/latest.md. Sections:

1. cost of one gradient, one Hessian-vector product (forward-over-reverse and double backward) and one
   Gauss-Newton product, and their ratios, for an MLP on the digits and a small CNN, on the CPU and on
   every GPU TensorFlow sees (targets: HVP <= 2x gradient for the MLP, <= 3x for the CNN);
2. top-10 Hessian eigenvalues of a 6k-parameter MLP to relative accuracy 1e-4: products and seconds for
   Lanczos, power iteration with deflation and SciPy's eigsh (target: Lanczos >= 5x fewer products than
   power iteration);
3. SLQ density error (Wasserstein-1 distance to the exact spectrum) and Hutchinson/Hutch++ trace errors
   against the number of products;
4. time and peak memory to materialise dense Hessians: the 6k-parameter MLP (target < 30 s on 2 cores)
   and MLP 50 (42,310 parameters, float32) under a memory cap for the working set, the 6.7 GiB result
   written to a temporary file block by block (``--slab N`` times only N columns and extrapolates).

Timings are the minimum over repetitions (the least disturbed by other processes); the machine load is
printed with them. Options: ``--quick`` (fewer repetitions, no MLP 50; a smoke test), ``--slab N``,
``--cap-gib``. The whole run takes about 8 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402  (quiets TensorFlow before it is imported)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from helpers import data, eigensolvers, estimators, losses, models, operators  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "latest.md"


# --------------------------------------------------------------------------------------------------------
# measurement utilities
# --------------------------------------------------------------------------------------------------------

def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def best_times(fns, reps: int) -> list[float]:
    """Minimum wall time of each function over ``reps`` rounds; the functions take turns within a round so
    that a burst of load from other processes hits all of them alike."""
    for fn in fns:
        fn()
        fn()  # trace and warm up
    times = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            out = fn()
            if hasattr(out, "numpy"):
                out.numpy()
            times[i].append(time.perf_counter() - t)
    return [float(np.min(t)) for t in times]


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# models and data
# --------------------------------------------------------------------------------------------------------

def digits_flat():
    ds = data.digits(seed=0)
    return ds.x_train.astype(np.float32), ds.y_train


def digits_images():
    ds = data.digits(seed=0, image=True)
    return ds.x_train.astype(np.float32), ds.y_train


def mlp6k(seed=1):
    return models.mlp(64, hidden=(50, 50), num_classes=10, seed=seed)  # 6,310 parameters


def small_cnn(seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, name="out")(h)
    return keras.Model(inp, out)


def train_briefly(model, x, y, epochs):
    """A few epochs of SGD so that the Hessian has the outlier structure of a trained network."""
    from helpers import training

    training.train_sgd(model, losses.cross_entropy, (x, y), epochs=epochs, batch_size=64, lr=0.05, seed=0)
    return model


# --------------------------------------------------------------------------------------------------------
# 1. cost of one product
# --------------------------------------------------------------------------------------------------------

def product_costs(device: str, reps: int):
    rows = []
    with tf.device(device):
        for name, build, xy, target in (("MLP 64-50-50-10, digits", mlp6k, digits_flat(), 2.0),
                                        ("CNN conv8-conv16-dense, digits 8x8", small_cnn, digits_images(), 3.0)):
            x, y = xy
            m = build()
            fwd = operators.hessian(m, losses.cross_entropy, (x, y), method="forward_over_reverse")
            dbl = operators.hessian(m, losses.cross_entropy, (x, y), method="double_backward")
            ggn = operators.gauss_newton(m, losses.cross_entropy, (x, y))
            v = tf.random.stateless_normal([1, fwd.size], seed=[0, 1])
            t_grad, t_fwd, t_dbl, t_ggn = best_times(
                [fwd.gradient, lambda: fwd.rows_product(v), lambda: dbl.rows_product(v), lambda: ggn.rows_product(v)],
                reps)
            best = min(t_fwd, t_dbl)
            rows.append([name, f"{fwd.size:,}", f"{len(x):,}", f"{t_grad * 1e3:.2f}",
                         f"{t_fwd * 1e3:.2f} ({t_fwd / t_grad:.2f}x)", f"{t_dbl * 1e3:.2f} ({t_dbl / t_grad:.2f}x)",
                         f"{t_ggn * 1e3:.2f} ({t_ggn / t_grad:.2f}x)", f"<= {target:g}x",
                         "met" if t_fwd / t_grad <= target else "not met",
                         "met" if best / t_grad <= target else "not met"])
    header = ["model", "P", "N", "gradient ms", "HVP fwd-over-rev ms (ratio)", "HVP double-backward ms (ratio)",
              "GGN product ms (ratio)", "target", "default (fwd-over-rev)", "best form"]
    return md_table(header, rows)


# --------------------------------------------------------------------------------------------------------
# 2.-4. spectra on the 6k MLP
# --------------------------------------------------------------------------------------------------------

def dense_6k(op):
    reset_ok = reset_peak_rss()
    before = rss_mib("VmRSS")
    t = time.perf_counter()
    H = op.to_dense(max_bytes=1 << 30)
    secs = time.perf_counter() - t
    peak = rss_mib("VmHWM")
    return H, secs, peak, before, reset_ok


def eigen_section(op, w_exact, reps_note):
    top = w_exact[::-1][:10]
    rows = []

    def err(vals):
        vals = np.sort(np.asarray(vals, dtype=np.float64))[::-1][:10]
        return float(np.max(np.abs(vals - top) / np.abs(top)))

    def timed(fn):
        """(result, seconds of the first call including graph tracing, seconds of a second call)."""
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        t = time.perf_counter()
        res = fn()
        return res, first, time.perf_counter() - t

    # Lanczos: stop on the relative residual 1e-3 (eigenvalue errors ~ residual^2 / gap, far below 1e-4)
    r, first, secs = timed(lambda: eigensolvers.lanczos(op, 10, which="LA", tol=1e-3, seed=0))
    rows.append(["Lanczos (full re-orthogonalisation), tol 1e-3 on residuals", r.num_products, f"{secs:.2f}",
                 f"{first:.2f}", f"{err(r.eigenvalues):.1e}", int(r.converged.sum())])
    lanczos_products = r.num_products
    # the fewest Lanczos steps that would have reached 1e-4 (from the tridiagonal matrices of a longer run)
    long = eigensolvers.lanczos(op, 10, which="LA", tol=1e-7, seed=0)
    a, b = long.alphas, long.betas
    steps_needed = None
    for m in range(10, len(a) + 1):
        T = np.diag(a[:m]) + np.diag(b[:m - 1], 1) + np.diag(b[:m - 1], -1)
        if err(np.linalg.eigvalsh(T)) <= 1e-4:
            steps_needed = m
            break
    rows.append(["Lanczos, fewest steps reaching 1e-4 (oracle, from the tridiagonal)",
                 steps_needed if steps_needed is not None else "-", "-", "-",
                 "<= 1e-4" if steps_needed else "-", "-"])
    p, first, secs = timed(lambda: eigensolvers.power_iteration(op, 10, tol=1e-6, max_iter=3000, seed=0))
    rows.append(["power iteration + deflation, tol 1e-6 on eigenvalue change", p.num_products, f"{secs:.2f}",
                 f"{first:.2f}", f"{err(p.eigenvalues):.1e}", int(p.converged.sum())])
    e, first, secs = timed(lambda: eigensolvers.eigsh(op, 10, which="LA", tol=1e-4, seed=0))
    rows.append(["scipy eigsh (ARPACK), tol 1e-4", e.num_products, f"{secs:.2f}", f"{first:.2f}",
                 f"{err(e.eigenvalues):.1e}", int(e.converged.sum())])
    ratio = p.num_products / lanczos_products
    table = md_table(["method", "products", "seconds", "seconds, first call (with tracing)",
                      "max rel. error of top 10", "pairs converged"], rows)
    verdict = (f"Power iteration needs {ratio:.1f}x the products of Lanczos (target >= 5x: "
               f"{'met' if ratio >= 5 else 'not met'}).")
    return table + "\n\n" + verdict


def slq_trace_section(op, w_exact, trace_exact):
    from scipy.stats import wasserstein_distance

    width = float(w_exact.max() - w_exact.min())
    rows = []
    for probes, steps in ((1, 20), (4, 30), (8, 60), (16, 90)):
        t = time.perf_counter()
        d = eigensolvers.slq_density(op, num_probes=probes, num_steps=steps, seed=0)
        secs = time.perf_counter() - t
        dist = wasserstein_distance(d.nodes.ravel(), w_exact, u_weights=d.weights.ravel())
        rows.append([probes, steps, d.num_products, f"{secs:.2f}", f"{100 * dist / width:.3f}%"])
    slq = md_table(["probes", "Lanczos steps", "products", "seconds", "W1 distance / spectral width"], rows)
    rows = []
    seeds = range(10)
    for budget in (12, 30, 99, 300):
        eh = [abs(estimators.hutchinson_trace(op, budget, seed=s, block_size=32).value - trace_exact) / abs(trace_exact)
              for s in seeds]
        eg = [abs(estimators.hutchinson_trace(op, budget, distribution="gaussian", seed=s, block_size=32).value
                  - trace_exact) / abs(trace_exact) for s in seeds]
        ep = [abs(estimators.hutchpp_trace(op, budget, seed=s, block_size=32).value - trace_exact) / abs(trace_exact)
              for s in seeds]
        rows.append([budget, f"{100 * np.mean(eh):.2f}%", f"{100 * np.mean(eg):.2f}%", f"{100 * np.mean(ep):.2f}%"])
    tr = md_table(["products", "Hutchinson (Rademacher)", "Hutchinson (Gaussian)", "Hutch++ (Rademacher)"], rows)
    return slq, tr


class RowFile:
    """A (P, P) float32 matrix stored row-major in a file, written by row blocks (``out[a:b] = rows``).

    Plain file writes keep the result out of the process's resident memory (a memmap's pages would count
    towards it), so the peak RSS reported is the working memory of the materialisation alone.
    """

    def __init__(self, path, size):
        self.shape = (size, size)
        self.file = open(path, "wb+")

    def __setitem__(self, rows, block):
        block = np.ascontiguousarray(block, dtype=np.float32)
        self.file.seek(rows.start * self.shape[1] * 4)
        self.file.write(block.tobytes())

    def row(self, i):
        self.file.flush()
        self.file.seek(i * self.shape[1] * 4)
        return np.frombuffer(self.file.read(self.shape[1] * 4), dtype=np.float32)


def mlp50_dense(cap_bytes: int, slab: int | None):
    """MLP 50 (784-50-50-10, 42,310 parameters, float32) on the digits upsampled to 28 x 28."""
    from scipy.ndimage import zoom

    x8, y = digits_images()
    x = zoom(x8[..., 0], (1, 3.5, 3.5), order=1).reshape(len(x8), 784).astype(np.float32)
    m = models.mlp(784, hidden=(50, 50), num_classes=10, seed=1)
    op = operators.hessian(m, losses.cross_entropy, (x, y))
    P = op.size
    block = op.block_size(cap_bytes)
    op.rows_product(tf.one_hot(tf.range(0, block), P))  # trace once outside the timing
    with tempfile.TemporaryDirectory(dir=str(ROOT / "benchmarks" / "results")) as tmp:
        out = RowFile(Path(tmp) / "hessian_mlp50.f32", P)
        done = P if slab is None else min(P, slab)
        reset_peak_rss()
        t = time.perf_counter()
        if done == P:
            op.to_dense(max_bytes=cap_bytes, out=out)
        else:  # the first `slab` rows, block by block, exactly as to_dense does
            for start in range(0, done, block):
                stop = min(done, start + block)
                out[start:stop] = op.rows_product(tf.one_hot(tf.range(start, stop), P)).numpy()
        secs = time.perf_counter() - t
        peak = rss_mib("VmHWM")
        # spot check: a stored row equals a fresh product with the unit vector
        i = done // 2
        fresh = op.matvec(tf.one_hot(i, P)).numpy()
        err = float(np.abs(out.row(i) - fresh).max() / max(np.abs(fresh).max(), 1e-30))
        out.file.close()
    return P, len(x), block, done, secs, peak, err


# --------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and no MLP 50 section (smoke test)")
    ap.add_argument("--slab", type=int, default=None,
                    help="time only this many columns of the MLP 50 Hessian and extrapolate (default: all 42,310)")
    ap.add_argument("--cap-gib", type=float, default=2.0, help="memory cap for the MLP 50 materialisation (GiB)")
    args = ap.parse_args()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    reps = 5 if args.quick else 40
    t_start = time.perf_counter()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpus = tf.config.list_logical_devices("GPU")
    parts = ["# Benchmark of the curvature library", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {os.cpu_count()} cores ({cpu}), TensorFlow {tf.__version__}, "
             f"GPUs seen: {len(gpus)} {[g.name for g in gpus]}",
             f"- load average at start (1, 5, 15 min): {load()}", ""]
    print("\n".join(parts), flush=True)

    sec = ["## 1. Cost of one product (minimum over %d repetitions, float32, whole training set in one batch)" % reps, ""]
    for dev in ["/CPU:0"] + [g.name for g in gpus]:
        sec += [f"Device `{dev}`:", "", product_costs(dev, reps), ""]
    print("\n".join(sec), flush=True)
    parts += sec

    # the 6k MLP, trained briefly, in float32: its dense Hessian is the reference for sections 2 and 3
    x, y = digits_flat()
    m = train_briefly(mlp6k(), x, y, epochs=3 if args.quick else 20)
    op = operators.hessian(m, losses.cross_entropy, (x, y))
    H, dense_secs, dense_peak, rss_before, reset_ok = dense_6k(op)
    H64 = (H.astype(np.float64) + H.T.astype(np.float64)) / 2
    w_exact = np.linalg.eigvalsh(H64)
    trace_exact = float(np.trace(H64))
    sec = ["## 2. Top-10 eigenvalues of the 6,310-parameter MLP's Hessian (digits, 1,347 examples, float32)", "",
           f"Reference: `numpy.linalg.eigh` of the materialised Hessian (largest eigenvalue {w_exact[-1]:.4g}, "
           f"10th {w_exact[-10]:.4g}, smallest {w_exact[0]:.4g}).", "", eigen_section(op, w_exact, reps), ""]
    print("\n".join(sec), flush=True)
    parts += sec

    slq, tr = slq_trace_section(op, w_exact, trace_exact)
    sec = ["## 3. Spectral density and trace estimates (same Hessian)", "",
           "SLQ with Rademacher probes, Gaussian smoothing; error = Wasserstein-1 distance between the SLQ "
           "quadrature measure and the exact eigenvalues, relative to the spectral width:", "", slq, "",
           f"Relative error of trace estimates (mean over 10 seeds; exact trace {trace_exact:.5g}):", "", tr, ""]
    print("\n".join(sec), flush=True)
    parts += sec

    header = ["network", "P", "dtype", "memory cap", "columns computed", "seconds", "seconds for all P",
              "peak RSS of the process", "target"]
    rows = [["MLP 64-50-50-10 (digits)", f"{op.size:,}", "float32", "1 GiB", f"{op.size:,}", f"{dense_secs:.1f}",
             f"{dense_secs:.1f}", f"{dense_peak:,.0f} MiB (before: {rss_before:,.0f} MiB)" if reset_ok else "n/a",
             "< 30 s: " + ("met" if dense_secs < 30 else "not met")]]
    notes = []
    if not args.quick:
        cap = int(args.cap_gib * 2**30)
        P, n, block, done, secs, peak, err = mlp50_dense(cap, args.slab)
        total = secs * P / done
        rows.append(["MLP 50 (784-50-50-10, digits upsampled to 28x28)", f"{P:,}", "float32",
                     f"{args.cap_gib:g} GiB working memory; the {P * P * 4 / 2**30:.1f} GiB result written to disk",
                     f"{done:,} ({block} per block)", f"{secs:.1f}", f"{total:.0f} ({total / 60:.1f} min)",
                     f"{peak:,.0f} MiB", "-"])
        how = ("all columns were computed and written block by block to a file" if done == P else
               f"{done:,} of {P:,} columns were timed and the total extrapolated linearly (`--slab`)")
        notes = [f"MLP 50: {how}; N = {n:,} examples in one batch; a stored row agrees with a fresh product "
                 f"to {err:.1e} (relative).", ""]
    sec = ["## 4. Dense Hessians (materialised in blocks of unit vectors)", "", md_table(header, rows), ""] + notes
    print("\n".join(sec), flush=True)
    parts += sec
    tail = [f"Load average at the end: {load()}; total benchmark time {time.perf_counter() - t_start:.0f} s.", ""]
    print("\n".join(tail), flush=True)
    parts += tail
    OUT.write_text("\n".join(parts))
    print(f"(written to {OUT.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
