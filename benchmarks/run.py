"""Benchmark of the curvature library (helpers.operators, eigensolvers, estimators, ntk): `make bench`.

Prints one Markdown report and writes it to benchmarks/results/latest.md. Sections:

1. the cost of a Hessian product alone and inside Lanczos, Hutchinson and ``to_dense``, for both product
   forms, with the forward pass shared or recomputed, as a ratio to one gradient of the same model on the
   same data (three MLPs and a small CNN), on the CPU and on every GPU TensorFlow sees; the Gauss-Newton and
   Fisher products; and, where PyTorch is installed (it is not a dependency), the same MLPs in PyTorch;
1b. process-wide settings (oneDNN, inter-op threads, op determinism, XLA), each in its own process;
1c. the empirical NTK (optionally against an older revision, ``--baseline REV``);
2. top-10 Hessian eigenvalues of a 6k-parameter MLP: products and seconds for Lanczos, power iteration
   with deflation and SciPy's eigsh;
3. SLQ density error (Wasserstein-1 distance to the exact spectrum) and Hutchinson/Hutch++ trace errors
   against the number of products;
4. time and peak memory to materialise dense Hessians: the 6k-parameter MLP and MLP 50 (42,310
   parameters, float32) under a memory cap for the working set, the 6.7 GiB result written to a temporary
   file block by block (``--slab N`` times only N columns and extrapolates).

Timings are medians over repetitions in which the timed functions take turns; the machine load is printed
with them. Options: ``--quick`` (fewer repetitions, no MLP 50; a smoke test), ``--slab N``, ``--cap-gib``,
``--baseline REV``, ``--only products|settings|ntk``. The whole run takes 6-9 minutes on 2 cores.
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
# 1. cost of a product inside the solvers, relative to a gradient
# --------------------------------------------------------------------------------------------------------

def median_times(fns, reps: int) -> list[float]:
    """Median wall time of each function over ``reps`` rounds; the functions take turns within a round so that
    a burst of load from other processes hits all of them alike (the first two calls trace and warm up)."""
    for fn in fns:
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            out = fn()
            if hasattr(out, "numpy"):
                out.numpy()
            times[i].append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]


def peak_above(fn) -> float:
    """MiB by which the process's peak resident memory rises above its current size while fn runs (Linux)."""
    if not reset_peak_rss():
        return float("nan")
    before = rss_mib("VmRSS")
    fn()
    return max(0.0, rss_mib("VmHWM") - before)


def mlp50_data():
    """The digits upsampled to 28 x 28 and flattened (MNIST-sized inputs without a download)."""
    from scipy.ndimage import zoom

    x8, y = digits_images()
    return zoom(x8[..., 0], (1, 3.5, 3.5), order=1).reshape(len(x8), 784).astype(np.float32), y


def bench_models(quick: bool):
    out = [("MLP 64-24-24-10, digits", lambda: models.mlp(64, hidden=(24, 24), num_classes=10, seed=1), digits_flat),
           ("MLP 64-50-50-10, digits", mlp6k, digits_flat),
           ("CNN conv8-conv16-dense, digits 8x8", small_cnn, digits_images)]
    if not quick:
        out.insert(2, ("MLP 784-50-50-10, digits at 28x28",
                       lambda: models.mlp(784, hidden=(50, 50), num_classes=10, seed=1), mlp50_data))
    return out


def hessian_op(m, xy, method, reuse):
    op = operators.hessian(m, losses.cross_entropy, xy, method=method)
    if not reuse:
        op.reuse_max_bytes = 0
    return op


def loop_costs(device: str, reps: int, quick: bool):
    """Per-product time of the Hessian inside Lanczos (a graph loop of single products), Hutchinson (blocks of
    10 probes) and ``to_dense`` (blocks of unit vectors), for the three product forms with and without the shared
    forward/backward pass, and the default ("auto") without it, as a ratio to one gradient of the same model on
    the same data."""
    steps, probes = 10, 10
    rows = []
    with tf.device(device):
        for name, build, load_data in bench_models(quick):
            x, y = load_data()
            m = build()
            # the last row is the default where a loop cannot share (too many data batches or too much memory):
            # written out in blocks of vectors, double backward for single products
            variants = [(meth, reuse) for meth in ("layer_chain", "double_backward", "forward_over_reverse")
                        for reuse in (True, False)] + [("auto", False)]
            ops = {v: hessian_op(m, (x, y), *v) for v in variants}
            ref = ops[variants[0]]
            P = ref.size
            eye = tf.one_hot(tf.range(0, 32), P)
            v1 = tf.random.stateless_normal([1, P], seed=[0, 1])
            fns = [ref.gradient]
            for v in variants:
                op = ops[v]
                fns += [lambda op=op: op.rows_product(v1),
                        lambda op=op: eigensolvers.lanczos_tridiagonal(op, steps, seed=0)[1],
                        lambda op=op: tf.constant(estimators.hutchinson_trace(op, probes, seed=0,
                                                                              block_size=probes).value),
                        lambda op=op: op.rows_product(eye)]
            t = median_times(fns, reps)
            grad = t[0]
            for i, (meth, reuse) in enumerate(variants):
                one, lz, hu, dense = t[1 + 4 * i: 5 + 4 * i]
                per = [one, lz / steps, hu / probes, dense / 32]
                rows.append([name if i == 0 else "", f"{P:,}" if i == 0 else "", f"{grad * 1e3:.2f}" if i == 0 else "",
                             meth.replace("_", " ") + (", shared" if reuse else ", recomputed")]
                            + [f"{p * 1e3:.2f} ({p / grad:.2f}x)" for p in per]
                            + ["met" if max(per[1:]) / grad <= 1.2 else "not met"])
            mem = [peak_above(ref.gradient)] + [peak_above(lambda op=ops[v]: eigensolvers.lanczos_tridiagonal(op, steps))
                                                 for v in variants]
            for i in range(len(variants)):
                rows[-len(variants) + i].insert(-1, f"{mem[1 + i]:.0f} / {mem[0]:.0f}")
            first = hessian_op(build(), (x, y), "auto", True)
            t0 = time.perf_counter()
            eigensolvers.lanczos_tridiagonal(first, steps, seed=0)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            eigensolvers.lanczos_tridiagonal(first, steps, seed=1)
            warm = time.perf_counter() - t0
            rows[-len(variants)][-1] += (f"; default {first.method}; first Lanczos call {cold:.2f} s, second "
                                         f"{warm:.2f} s ({first.reuse_info})")
    header = ["model", "P", "gradient ms", "Hessian product", "single product ms (x gradient)",
              f"in Lanczos ({steps} steps)", f"in Hutchinson (block of {probes})", "in to_dense (block of 32)",
              "peak MiB above the resident set: Lanczos / gradient", "<= 1.2x in every loop"]
    return md_table(header, rows)


def ggn_fisher_costs(reps: int):
    """The Gauss-Newton and Fisher products in a Lanczos loop, shared against recomputed, on the digits MLP."""
    x, y = digits_flat()
    m = mlp6k()
    rows = []
    steps = 10
    builders = [("Gauss-Newton", lambda: operators.gauss_newton(m, losses.cross_entropy, (x, y))),
                ("true Fisher", lambda: operators.fisher(m, (x, y))),
                ("empirical Fisher", lambda: operators.fisher(m, (x, y), kind="empirical",
                                                             loss_fn=losses.cross_entropy))]
    ref = hessian_op(m, (x, y), "double_backward", True)
    fns, names = [ref.gradient], []
    for name, build in builders:
        for reuse in (True, False):
            op = build()
            if not reuse:
                op.reuse_max_bytes = 0
            fns.append(lambda op=op: eigensolvers.lanczos_tridiagonal(op, steps, seed=0)[1])
            names.append((name, reuse))
    t = median_times(fns, reps)
    for (name, reuse), ti in zip(names, t[1:]):
        rows.append([name, "shared" if reuse else "recomputed", f"{ti / steps * 1e3:.2f}", f"{ti / steps / t[0]:.2f}x"])
    return md_table(["operator (MLP 64-50-50-10)", "forward pass", "ms per product in Lanczos", "x gradient"], rows)


TORCH_PROBE = r"""
import json, sys, time
import numpy as np, torch
f = np.load(sys.argv[1])
n_layers, reps = int(f["n_layers"]), int(sys.argv[2])
# Keras kernels are (in, out); torch.nn.functional.linear wants (out, in)
params = [torch.tensor((f[f"k{i}"].T if k == "k" else f[f"b{i}"]).copy(), requires_grad=True)
          for i in range(n_layers) for k in "kb"]
x, y = torch.tensor(f["x"]), torch.tensor(f["y"], dtype=torch.long)
v = [torch.tensor((f[f"vk{i}"].T if k == "k" else f[f"vb{i}"]).copy()) for i in range(n_layers) for k in "kb"]

def loss():
    h = x
    for i in range(0, len(params), 2):
        h = torch.nn.functional.linear(h, params[i], params[i + 1])
        h = torch.relu(h) if i + 2 < len(params) else h
    return torch.nn.functional.cross_entropy(h, y)

def grad():
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss(), params)])

g_kept = torch.autograd.grad(loss(), params, create_graph=True)  # the gradient's graph, built once and kept

def hvp():
    dot = sum((g * w).sum() for g, w in zip(g_kept, v))
    return torch.autograd.grad(dot, params, retain_graph=True)

for fn in (grad, hvp, grad, hvp):
    fn()
tg, th = [], []
for _ in range(reps):
    t = time.perf_counter(); grad(); tg.append(time.perf_counter() - t)
    t = time.perf_counter(); hvp(); th.append(time.perf_counter() - t)
hv = [h.detach().numpy() for h in hvp()]
flat = np.concatenate([(h.T if h.ndim == 2 else h).reshape(-1) for h in hv])  # back in Keras order
np.save(sys.argv[3], flat)
print(json.dumps(dict(grad=tg, hvp=th, version=torch.__version__, threads=torch.get_num_threads())))
"""


def torch_costs(reps: int, quick: bool):
    """The same MLPs in PyTorch (weights copied, same data, same number of threads): a gradient, and a Hessian
    product that keeps the gradient's graph and only differentiates it again (the best PyTorch practice for
    many products on one batch), against our gradient and default product alone and inside Lanczos.

    PyTorch runs in its own process, in rounds alternating with ours, because two frameworks' thread pools
    in one process slow each other down (threads that keep spinning after their work)."""
    import importlib.util
    import json
    import subprocess

    if importlib.util.find_spec("torch") is None:
        return ("PyTorch is not installed, so this part is skipped (it is not a dependency of the book; "
                "`pip install torch` into `.venv` adds it).")
    steps, rows, info = 10, [], {}
    for name, build, load_data in [b for b in bench_models(quick) if b[0].startswith("MLP")]:
        x, y = load_data()
        m = build()
        op = hessian_op(m, (x, y), "auto", True)
        v = np.random.default_rng(0).normal(size=op.size).astype(np.float32)
        arrays, pos = {"x": x, "y": np.asarray(y), "n_layers": 0}, 0
        for i, layer in enumerate(layer for layer in m.layers if layer.get_weights()):
            kernel, bias = layer.get_weights()
            arrays.update({f"k{i}": kernel, f"b{i}": bias, "n_layers": i + 1})
            arrays[f"vk{i}"] = v[pos:pos + kernel.size].reshape(kernel.shape)
            arrays[f"vb{i}"] = v[pos + kernel.size:pos + kernel.size + bias.size]
            pos += kernel.size + bias.size
        v1 = tf.constant(v[None])
        ours = [op.gradient, lambda: op.rows_product(v1), lambda: eigensolvers.lanczos_tridiagonal(op, steps, seed=0)[1]]
        times = {"ours": [[] for _ in ours], "grad": [], "hvp": []}
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "in.npz", **arrays)
            for _ in range(2):  # two alternating rounds, so that a burst of load does not land on one framework
                for k, t in enumerate(median_times(ours, max(1, reps // 2))):
                    times["ours"][k].append(t)
                out = subprocess.run([sys.executable, "-c", TORCH_PROBE, str(Path(tmp) / "in.npz"),
                                      str(max(1, reps // 2)), str(Path(tmp) / "hv.npy")],
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                res = json.loads(out)
                times["grad"] += res["grad"]
                times["hvp"] += res["hvp"]
                info = {"version": res["version"], "threads": res["threads"]}
            theirs = np.load(Path(tmp) / "hv.npy")
        mine = op.matvec(v).numpy()
        agree = float(np.linalg.norm(mine - theirs) / np.linalg.norm(mine))
        g_tf, one, lz = (float(np.median(t)) for t in times["ours"])
        lz /= steps
        g_pt, hv_pt = float(np.median(times["grad"])), float(np.median(times["hvp"]))
        rows.append([name, f"{op.size:,}", f"{g_tf * 1e3:.2f}", f"{one * 1e3:.2f} ({one / g_tf:.2f}x)",
                     f"{lz * 1e3:.2f} ({lz / g_tf:.2f}x)", f"{g_pt * 1e3:.2f}", f"{hv_pt * 1e3:.2f} ({hv_pt / g_pt:.2f}x)",
                     f"{g_tf / g_pt:.2f}x", f"{lz / hv_pt:.2f}x", f"{agree:.1e}"])
    header = ["model", "P", "our gradient ms", "our product alone ms (x our gradient)",
              f"our product in Lanczos ({steps} steps) ms (x our gradient)", "PyTorch gradient ms",
              "PyTorch product, graph kept, ms (x its gradient)", "our gradient / PyTorch's",
              "our product in Lanczos / PyTorch's", "relative difference of the products"]
    note = (f"PyTorch {info['version']} ({info['threads']} intra-op threads) in its own process, TensorFlow "
            f"{tf.__version__} (default threads) in this one, two alternating rounds of {max(1, reps // 2)} "
            "repetitions each; float32, the whole training set in one batch; our product is the default "
            f"({op.method_info}; forward pass shared in a loop).")
    return md_table(header, rows) + "\n\n" + note


SETTINGS_PROBE = r"""
import os, sys, time, hashlib, json
sys.path.insert(0, sys.argv[1])
import helpers, numpy as np, tensorflow as tf
if os.environ.get("PROBE_INTER") : tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["PROBE_INTER"]))
if os.environ.get("PROBE_DETERMINISM"): tf.config.experimental.enable_op_determinism()
from helpers import data, losses, models, operators, eigensolvers
ds = data.digits(seed=0)
x, y = ds.x_train.astype(np.float32), ds.y_train
m = models.mlp(64, hidden=(24, 24), num_classes=10, seed=1)
op = operators.hessian(m, losses.cross_entropy, (x, y))
jit = bool(os.environ.get("PROBE_JIT"))
grad = tf.function(op._gradient_graph, jit_compile=jit)
lz = lambda: eigensolvers.lanczos_tridiagonal(op, 10, seed=0)[1]
for f in (grad, lz): f(); f()
tg, tl = [], []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); grad().numpy(); tg.append(time.perf_counter() - t)
    t = time.perf_counter(); np.asarray(lz()); tl.append(time.perf_counter() - t)
a, b = np.asarray(lz()), np.asarray(lz())
print(json.dumps(dict(grad=float(np.median(tg)), product=float(np.median(tl)) / 10, twice=bool(np.array_equal(a, b)),
                      digest=hashlib.sha1(a.tobytes()).hexdigest()[:12])))
"""


def settings_costs(reps: int):
    """The process-wide settings, each in its own process (they must be set before TensorFlow starts): the
    digits MLP's gradient and its Hessian product inside Lanczos, and whether two runs give the same bits."""
    import json
    import subprocess

    configs = [("as `import helpers` leaves it (oneDNN on, TF default threads)", {}),
               ("oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`)", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
               ("one inter-op thread", {"PROBE_INTER": "1"}),
               ("op determinism on (as `helpers.setup()` does)", {"PROBE_DETERMINISM": "1"}),
               ("gradient compiled with XLA (`jit_compile=True`)", {"PROBE_JIT": "1"})]
    results = []
    for _ in range(2):  # two rounds, alternating, so that a burst of load does not land on one configuration
        for i, (name, env) in enumerate(configs):
            e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
            if "TF_ENABLE_ONEDNN_OPTS" not in env:
                e.pop("TF_ENABLE_ONEDNN_OPTS", None)
            out = subprocess.run([sys.executable, "-c", SETTINGS_PROBE, str(ROOT), str(reps)], env=e,
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results.append((i, json.loads(out)))
    base_digest = {r["digest"] for i, r in results if i == 0}
    rows = []
    base_g = np.median([r["grad"] for i, r in results if i == 0])
    base_p = np.median([r["product"] for i, r in results if i == 0])
    for i, (name, _) in enumerate(configs):
        rs = [r for j, r in results if j == i]
        g, p = np.median([r["grad"] for r in rs]), np.median([r["product"] for r in rs])
        digests = {r["digest"] for r in rs}
        rows.append([name, f"{g * 1e3:.2f} ({g / base_g:.2f}x)", f"{p * 1e3:.2f} ({p / base_p:.2f}x)",
                     "yes" if all(r["twice"] for r in rs) and len(digests) == 1 else "no",
                     "yes" if digests == base_digest else "no"])
    return md_table(["setting", "gradient ms (x first row)", "Hessian product in Lanczos ms (x first row)",
                     "same bits twice (in a process and across two)", "same bits as the first row"], rows)


def ntk_costs(reps: int, baseline: str | None):
    """The empirical NTK of 200 inputs on an 8-16-16-3 MLP (float32): full tensor, trace mode, the kernel's
    trace and the Fisher trace (per-example gradients), against the implementation at git revision ``baseline``
    (loaded from ``git show``) in the same run, the functions taking turns."""
    import importlib.util
    import subprocess

    import keras

    from helpers import ntk

    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(16, activation="tanh")(inp)
    h = keras.layers.Dense(16, activation="tanh")(h)
    m = keras.Model(inp, keras.layers.Dense(3)(h))
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 200)
    impls = [("now", ntk)]
    if baseline:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{baseline}:helpers/ntk.py"], capture_output=True,
                             text=True, check=True).stdout
        path = Path(tempfile.mkdtemp()) / "ntk_before.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("helpers._ntk_before", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        impls.append((f"at {baseline}", old))
    fns = []
    for _, mod in impls:
        fns += [lambda mod=mod: mod.empirical_ntk(m, x), lambda mod=mod: mod.empirical_ntk(m, x, mode="trace"),
                lambda mod=mod: tf.constant(mod.ntk_trace(m, x)),
                lambda mod=mod: tf.constant(mod.fisher_trace(m, losses.cross_entropy, x, y))]
    k = len(fns) // len(impls)
    start = load()
    t = median_times(fns, reps)
    ref = impls[0][1]
    notes = []
    if baseline:
        for mode in ("full", "trace"):
            a, b = ref.empirical_ntk(m, x, mode=mode).numpy(), impls[1][1].empirical_ntk(m, x, mode=mode).numpy()
            notes.append(f"{mode} {np.abs(a - b).max() / np.abs(b).max():.1e}")
        a, b = ref.fisher_trace(m, losses.cross_entropy, x, y), impls[1][1].fisher_trace(m, losses.cross_entropy, x, y)
        notes.append(f"Fisher trace {abs(a - b) / abs(b):.1e}")
    rows = [[label] + [f"{v * 1e3:.2f}" for v in t[k * i: k * i + k]] for i, (label, _) in enumerate(impls)]
    if baseline:
        rows.append(["speed-up"] + [f"{t[k + j] / t[j]:.2f}x" for j in range(k)])
    table = md_table(["implementation", "full (200, 200, 3, 3) ms", "mode='trace' (200, 200) ms", "ntk_trace ms",
                      "fisher_trace ms"], rows)
    table += f"\n\nMedians of {reps} interleaved repetitions; load average {start} at the start, {load()} at the end."
    return table + (f"\n\nLargest relative differences between the two implementations (float32): "
                    f"{', '.join(notes)}." if baseline else "")


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
    ap.add_argument("--baseline", default=None,
                    help="git revision whose helpers/ntk.py section 1c times beside the current one")
    ap.add_argument("--only", choices=["products", "settings", "ntk"], default=None,
                    help="products: section 1 only; settings: sections 1b and 1c only; ntk: section 1c only")
    args = ap.parse_args()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    reps = 5 if args.quick else 20
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

    sec = [f"## 1. A Hessian product inside the solvers, against a gradient (median of {reps} interleaved "
           "repetitions, float32, the whole training set in one batch)", "",
           "`shared`: the forward pass and first backward pass over the data are computed once per loop and reused "
           "for every vector (`ModelOperator.prepare`); `recomputed`: every product repeats them (`reuse_max_bytes "
           "= 0`, the behaviour before). Ratios are to one gradient of the same model on the same data.", ""]
    for dev in ["/CPU:0"] + [g.name for g in gpus] if args.only not in ("settings", "ntk") else []:
        sec += [f"Device `{dev}`:", "", loop_costs(dev, reps, args.quick), ""]
    if args.only not in ("settings", "ntk"):
        sec += ["Other operators (Lanczos, 10 steps):", "", ggn_fisher_costs(reps), ""]
        sec += ["Against PyTorch (same weights, data and threads; PyTorch in its own process, in rounds "
                "alternating with ours):", "",
                torch_costs(reps, args.quick), ""]
        print("\n".join(sec), flush=True)
        parts += sec
    sec = ["## 1b. Process-wide settings (each in its own process; two alternating rounds)", "",
           settings_costs(5 if args.quick else 20), ""] if args.only in (None, "settings") else []
    print("\n".join(sec), flush=True)
    parts += sec
    sec = ["## 1c. Empirical NTK (200 inputs, MLP 8-16-16-3, float32)", "", ntk_costs(reps, args.baseline),
           ""] if args.only != "products" else []
    print("\n".join(sec), flush=True)
    parts += sec
    if args.only:
        OUT.write_text("\n".join(parts + [f"Load average at the end: {load()}.", ""]))
        return

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
