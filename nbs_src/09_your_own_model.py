# %% [markdown]
# # Use it on your own model
#
# The chapters build their networks with `helpers.models`; this page starts from a network the library has
# never seen: a small Keras convolutional network with batch normalisation and dropout, written here the way
# a Keras tutorial would write it, trained with `model.fit`. Two calls then measure its curvature: a
# per-layer table and a callback that follows the curvature while `fit` trains.
#
# **You will learn** how to get, for every weight layer of any Keras model and for the whole network, the
# top Hessian eigenvalues (with residuals and a converged flag), the Hessian trace (with its standard error),
# a spectral density (with its spread across probes) and the weight-spectrum metrics of chapter 3, in one
# call; how to log the largest eigenvalue and the trace of every layer during training; and which checks
# tell you that the numbers can be trusted.
#
# **It assumes** chapter 4 (Hessian-vector products, Lanczos, Hutch++, stochastic Lanczos quadrature and
# the layerwise Hessian of {cite}`sankar2021deeper`) and, for the weight metrics, chapter 3. It follows
# no source document of its own; the per-layer blocks are the layerwise Hessians of
# {cite:t}`sankar2021deeper`.
#
# **Checks.** Two inequalities that any correct per-layer table satisfies are asserted below: the network's
# trace is the sum of the layers' block traces, and no layer's block has a larger top eigenvalue than the
# whole Hessian. This page records no finding.

# %% tags=["hide-input"]
import time

import helpers  # first: sets TensorFlow's determinism options before TensorFlow is imported

cfg = helpers.setup("09_your_own_model",
    # the same small network in both profiles; paper: more data, probes and epochs
    quick=dict(epochs=6, batch_size=32, lr=3e-3, n_curvature=300, top_k=3, trace_probes=30,
               every=2, budget=40, slq_probes=6, slq_steps=40),
    paper=dict(epochs=20, batch_size=32, lr=3e-3, n_curvature=1347, top_k=5, trace_probes=90,
               every=2, budget=120, slq_probes=20, slq_steps=80),
)
page_start = time.time()

# %% tags=["hide-input"]
import keras
import matplotlib.pyplot as plt
import numpy as np

from helpers import callbacks, data, layerwise, losses

# %% [markdown]
# ## A model written without `helpers`
#
# The digits of scikit-learn (8×8 images, 10 classes) stand in for your data set. The network is what a
# Keras example would write, with one difference that matters: the last layer returns **logits** (no
# softmax), and the Keras loss is told so with `from_logits=True`. The curvature helpers need the values
# before the softmax; given a model that ends in a softmax together with `helpers.losses.cross_entropy`,
# they refuse it with a message saying what to pass, instead of returning numbers that are silently wrong.

# %%
ds = data.digits(test_fraction=0.25, image=True, seed=helpers.seed("ch9-digits"))
keras.utils.set_random_seed(helpers.seed("ch9-cnn"))

model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
    keras.layers.BatchNormalization(name="bn1"),
    keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
    keras.layers.Flatten(),
    keras.layers.Dropout(0.3),
    keras.layers.Dense(32, activation="relu", name="dense"),
    keras.layers.Dense(10, name="logits"),
])

# %%
model.compile(optimizer=keras.optimizers.Adam(cfg["lr"]), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
print(f"{ds.name}: {len(ds.x_train)} training and {len(ds.x_test)} test images; "
      f"{model.count_params()} parameters")

# %% [markdown]
# ## Following the curvature while `fit` trains
#
# `CurvatureCallback` measures, every `every` epochs, the largest eigenvalue $\lambda_{\max}$ and the trace of
# each layer's Hessian block $H_{ll} = \partial^2 L/\partial\theta_l^2$ and of the full Hessian, on a fixed
# subset of the training data, with a budget of Hessian-vector products per block (half for Lanczos, the
# rest for Hutch++). The values go into the `History` that `fit` returns, under `lambda_max/<layer>` and
# `trace/<layer>` (NaN on the epochs not measured), and into a CSV file. The model runs in inference mode
# for these measurements: dropout off and batch normalisation with its moving statistics.

# %%
x_c, y_c = ds.x_train[:cfg["n_curvature"]], ds.y_train[:cfg["n_curvature"]]
csv_path = helpers.config.cache_dir() / "09_your_own_model" / "curvature_log.csv"
kept = {}  # the operators, built once: they read the current weights at every product
follow = callbacks.CurvatureCallback(losses.cross_entropy, (x_c, y_c), every=cfg["every"],
                                     budget=cfg["budget"], csv_path=csv_path,
                                     seed=helpers.seed("ch9-callback"), operator_cache=kept)
fit_start = time.time()
history = model.fit(ds.x_train, ds.y_train, epochs=cfg["epochs"],
                    batch_size=cfg["batch_size"], validation_data=ds.test,
                    callbacks=[follow], verbose=0)
fit_seconds = time.time() - fit_start
print(f"trained {cfg['epochs']} epochs in {fit_seconds:.0f} s (curvature included); "
      f"test accuracy {history.history['val_accuracy'][-1]:.3f}; "
      f"{len(follow.reports)} evaluations logged in {csv_path.name}")

# %% mystnb={"figure": {"caption": "The curvature callback's log for your model: the largest Hessian eigenvalue (left) and the Hessian trace (right) of each layer's block, at the epochs where it was measured. Look for the layer whose curvature grows or dominates."}, "image": {"alt": "Two panels against epoch, one line with markers per layer: largest eigenvalue on a log axis and trace on a symmetric log axis."}}
epochs = np.arange(1, cfg["epochs"] + 1)
names = [r.name for r in follow.reports[-1][1]]
fig, axes = helpers.plotting.subplots(1, 2, width=8.6, height=3.3)
for name in names:
    lam = np.array(history.history[f"lambda_max/{name}"])
    tr = np.array(history.history[f"trace/{name}"])
    seen = np.isfinite(lam)
    axes[0].plot(epochs[seen], lam[seen], "o-", label=name)
    axes[1].plot(epochs[seen], tr[seen], "o-", label=name)
axes[0].set(xlabel="epoch", ylabel=r"$\lambda_{\max}$ of the block", yscale="log",
            title="Largest Hessian eigenvalue per layer")
axes[1].set(xlabel="epoch", ylabel="trace of the block", yscale="symlog",
            title="Hessian trace per layer (Hutch++)")
axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
plt.show()

# %% [markdown]
# Each point costs at most the budget of products per block; where Lanczos did not reach its tolerance
# within half of it, the History still holds its best estimate and the report of that evaluation
# (`follow.reports`) says which blocks did not converge.
#
# ## The per-layer table
#
# After training, one call measures every weight layer and the network with a larger budget: the top-$k$
# eigenvalues by Lanczos (exactly, by a dense eigendecomposition, for blocks of at most 128 parameters), the
# trace by Hutch++ with its standard error (exact for small blocks), a spectral density of the full Hessian
# by stochastic Lanczos quadrature, and, for layers with a weight matrix, chapter 3's metrics: the power-law
# exponent $\alpha$ of the eigenvalues of $W^\top W$, the stable rank $\|W\|_F^2/\|W\|_2^2$, the number of
# eigenvalues above the fitted Marchenko-Pastur bulk (spikes) and the spectrum class (LT, BT, HT, RC).

# %%
report_start = time.time()
report = layerwise.curvature_report(model, losses.cross_entropy, (x_c, y_c),
                                    top_k=cfg["top_k"], trace_probes=cfg["trace_probes"],
                                    slq=True,
                                    slq_probes=cfg["slq_probes"], slq_steps=cfg["slq_steps"],
                                    seed=helpers.seed("ch9-report"), operator_cache=kept)
report_seconds = time.time() - report_start
helpers.plotting.show_table(*report.table())
print(f"{report.num_products} Hessian-vector products in {report_seconds:.1f} s")

# %% [markdown]
# The same numbers are in `report.to_dict()` (a dict of NumPy arrays, one per column) and in each record
# (`report["conv2"].eigenvalues`, `.residuals`, `.converged`, `.trace_stderr`, `.density`); `print(report)`
# gives the table as plain text and names any block that did not converge.
#
# Two properties of a symmetric matrix and its diagonal blocks check the table. The trace of the Hessian is
# the sum of the traces of its diagonal blocks, and by Cauchy's interlacing theorem the top eigenvalue of a
# principal submatrix (a layer's block) is at most the top eigenvalue of the whole matrix. The estimates
# carry errors, so the first holds within four combined standard errors and the second within the Lanczos
# residuals.

# %%
layers = [r for r in report if r.name != layerwise.NETWORK]
net = report.network
block_sum = sum(r.trace for r in layers)
combined_se = np.sqrt(net.trace_stderr ** 2 + sum(r.trace_stderr ** 2 for r in layers))
gap = abs(net.trace - block_sum)
assert gap <= 4 * combined_se + 1e-6 * abs(block_sum), (net.trace, block_sum, combined_se)
top_block = max(layers, key=lambda r: r.lambda_max)
assert top_block.lambda_max <= net.lambda_max + net.residuals[0] + top_block.residuals[0]
print(f"trace of the network {net.trace:.4g} ± {net.trace_stderr:.2g}; "
      f"sum of the blocks' traces {block_sum:.4g}: difference {gap:.2g} = "
      f"{gap / combined_se:.1f} combined standard errors")
print(f"largest block eigenvalue {top_block.lambda_max:.4g} ({top_block.name}) <= network "
      f"{net.lambda_max:.4g}")

# %% [markdown]
# The spectral density of the full Hessian, with the band of two standard errors of the mean over the
# probes (the spread across probes: where the band is wide, more probes would change the picture):

# %% mystnb={"figure": {"caption": "The spectral density of the model's full Hessian from stochastic Lanczos quadrature, on a log axis, with a band of two standard errors over the probes. Where the band is wide, more probes would change the picture."}, "image": {"alt": "A density curve against eigenvalue on a logarithmic vertical axis with a shaded error band."}}
dens = net.density
fig, ax = helpers.plotting.subplots(1, 1, width=6.0, height=3.3)
ax.fill_between(dens.grid, np.maximum(dens.density - 2 * dens.stderr, 1e-12),
                dens.density + 2 * dens.stderr, alpha=0.3, label="± 2 standard errors")
ax.plot(dens.grid, np.maximum(dens.density, 1e-12), lw=1.2, label="SLQ density")
ax.set(xlabel=r"eigenvalue $\lambda$", ylabel=r"density $\phi_\sigma(\lambda)$", yscale="log",
       ylim=(1e-6, None), title=f"Hessian spectrum of the CNN ({dens.nodes.shape[0]} probes)")
ax.legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# ## When a number cannot be trusted
#
# Every estimate says how good it is. A Lanczos result that has not reached its tolerance is flagged in the
# `converged` column, printed as `NOT CONVERGED` and announced by a `NotConvergedWarning`; a trace comes with
# its standard error; an SLQ density with the spread across its probes. A single Lanczos run also sees only
# one copy of a repeated eigenvalue: `restarts=` repeats it with the found eigenvalues moved out of the way
# and reports whether the set is complete (`helpers.eigensolvers.lanczos`). A layer type the report does not
# know is named in an error, never skipped.
#
# When the data outgrow one device, `curvature_report(..., strategy=tf.distribute.MirroredStrategy())`
# splits them into one shard per replica and averages the shards' products, each on its own device
# (`helpers.distributed`); the results equal the one-device ones to float64 round-off (tested on two
# logical CPUs).
#
# ## Exercises
#
# 1. Measure the Gauss-Newton matrix instead of the Hessian (`curvature="gauss_newton"`). Which blocks change
#    most, and why is every Gauss-Newton eigenvalue non-negative?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# gn = layerwise.curvature_report(model, losses.cross_entropy, (x_c, y_c),
#                                 curvature="gauss_newton")
# print(gn)
# ```
# $G = \frac1N\sum_i J_i^\top \nabla_z^2\ell\, J_i$ with the softmax cross-entropy's output Hessian
# $\mathrm{diag}\,p - pp^\top \succeq 0$, so $G \succeq 0$. The difference Hess - G is the residual term of
# {cite:t}`sankar2021deeper`, weighted by the output gradients $\partial_z\ell = p - e_y$; it is largest for
# the layers far from the output, whose second derivatives $\nabla^2_\theta f$ are largest, and shrinks as the training loss falls.
# :::
#
# 2. The last layer `logits` is linear in its weights. Show that its Hessian block is
#    $\frac1N\sum_i (\mathrm{diag}\,p_i - p_ip_i^\top)\otimes \tilde h_i\tilde h_i^\top$ with $\tilde h_i = (h_i, 1)$
#    the layer's input and a one, and check the block's trace against it.
#
# :::{admonition} Solution
# :class: dropdown
# With $z = W^\top h + b$, $\partial^2 \ell/\partial W_{ja}\partial W_{kb} = h_j h_k\,(\mathrm{diag}\,p - pp^\top)_{ab}$;
# the trace is $\frac1N\sum_i \mathrm{tr}(\mathrm{diag}\,p_i - p_ip_i^\top)\,\|\tilde h_i\|^2$:
# ```python
# feat = keras.Model(model.inputs, model.get_layer("dense").output)
# feat = feat(x_c, training=False).numpy()
# p = keras.ops.softmax(model(x_c, training=False)).numpy()
# exact = np.mean((1 - np.sum(p ** 2, axis=1)) * (np.sum(feat ** 2, axis=1) + 1))
# print(exact, report["logits"].trace, report["logits"].trace_stderr)
# ```
# :::
#
# 3. Ask for the top 6 eigenvalues of `conv2` with `restarts=2`. Is any eigenvalue repeated?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# r = layerwise.curvature_report(model, losses.cross_entropy, (x_c, y_c), top_k=6, restarts=2,
#                                layers=["conv2"], include_network=False, dense_max=0)
# print(r["conv2"].eigenvalues, r["conv2"].converged)
# ```
# A trained network's top eigenvalues are usually distinct; the check (`complete` in
# `helpers.eigensolvers.lanczos`) would otherwise find the missing copies.
# :::

# %% [markdown]
# ## Summary
#
# - `helpers.layerwise.curvature_report(model, loss, data)` takes any Keras model (Sequential, functional,
#   subclassed, built lazily; Dense, convolution, batch and layer normalisation, Embedding) and returns one
#   table: top eigenvalues with residuals and converged flags, traces with standard errors, optional SLQ
#   densities with their spread, and chapter 3's weight-matrix metrics, per layer and for the network.
# - `helpers.callbacks.CurvatureCallback` logs $\lambda_{\max}$ and the trace of every layer into the
#   `History` of `model.fit` and a CSV file, with a budget of products per evaluation.
# - The table passed two checks that any correct one satisfies: block traces sum to the network's trace,
#   and no block's top eigenvalue exceeds the network's.

# %%
from IPython.display import Markdown, display

elapsed = time.time() - page_start
display(Markdown(
    f"**Measured in this run** ({cfg['profile']} profile, {model.count_params()} parameters, "
    f"{len(x_c)} examples for the curvature): the per-layer table above took "
    f"{report_seconds:.1f} s "
    f"({report.num_products} Hessian-vector products); training with the callback took "
    f"{fit_seconds:.0f} s; the page executed in {elapsed:.0f} s. Blocks not converged: "
    f"{', '.join(report.unconverged) or 'none'}."))
helpers.findings.table();
