# %% [markdown]
# # Random matrix theory of weights
#
# **What you will learn.** How to read the singular values of a trained weight matrix against the null model
# of random matrix theory: the Marchenko-Pastur (MP) law for the bulk, outliers above it, and the Wigner
# surmise for the spacings; that a trained layer keeps its function when the bulk is removed; how the
# singular matrices of the outliers line up with the principal components of the training trajectory; the
# three spectral types of Meng and Yao (light tail, bulk transition, heavy tail) and how they follow the
# difficulty of the classification task; the phases of Martin and Mahoney with the weight-matrix metrics
# practitioners use; and a rule that stops training when a heavy tail appears, without test data.
#
# **What it assumes.** Chapter 1 (networks, SGD), the singular value decomposition, and, for one section,
# the PCA of weight trajectories of chapter 2.
#
# **Sources.** The thesis {cite}`haink2023hessian`, Ch. 4 (RMT and SVD of weight matrices), Sec. 6.1
# (singular matrices against principal components) and Sec. 7.3 (reshaping convolutions); the slides of
# Meng and Yao {cite}`meng2023impact` (Gaussian ANOVA data, spectral types, the spectral criterion); and the
# works they build on: Marchenko and Pastur {cite}`marchenko1967distribution`, Martin and Mahoney
# {cite}`martin2021implicit`, Thamm, Staats and Rosenow {cite}`thamm2022random,staats2023boundary`. The
# chapter checks the identities `I-MP`, `I-WIGNER` and `I-NULLSTAT` and the findings `F-BULK`, `F-WIGNERW`,
# `F-SVPC`, `F-DIFFICULTY`, `F-PHASES` and `F-EARLYSTOP` of the book's specification.

# %% tags=["hide-input"]
import helpers  # first: sets TensorFlow's determinism options before TensorFlow is imported

# quick: an MLP on the 8x8 digits and on MNIST-1D, Meng and Yao's Gaussian ANOVA at 1,000
# points per class with halved networks
QUICK = dict(null_c=[0.1, 0.25, 0.5], null_n=[200, 500, 1000], null_reps=50,
             svd_data="digits", svd_hidden=[256, 128], svd_layer="dense_2", svd_epochs=200,
             svd_lr=0.05, svd_batch=32, svd_window_epochs=10, svd_weight_decay=5e-3,
             anova_model="D1", n_per_class=1000, n_test_per_class=500,
             deltas=[0.15, 0.3, 0.6, 0.9], K_main=4, K_grid=[2, 4, 8], delta_for_K=0.3,
             nn1_dim=100, nn1=[512, 256, 128], nn2_dim=256, nn2=[512, 256],
             anova_epochs=40, anova_lr=0.1, anova_batch=64, C=[0.4, 0.6],
             real_runs=[["digits", "mlp", 32], ["mnist1d", "mlp", 32]],
             real_hidden=[256, 128], real_epochs=60, real_lr=0.05)

# %% tags=["hide-input"]
# paper: Haink's MLP 256 on CIFAR-10, Meng and Yao's NN1/NN2 at 7,500 points per class, and
# LeNet / miniAlexNet on MNIST and CIFAR-10 at Meng and Yao's batch sizes
PAPER = dict(null_c=[0.1, 0.25, 0.5], null_n=[500, 1000, 2000], null_reps=50,
             svd_data="cifar10", svd_hidden=[256, 128, 64], svd_layer="dense_3",
             svd_epochs=200, svd_lr=0.01, svd_batch=32, svd_window_epochs=10,
             svd_weight_decay=5e-4, anova_model="D1", n_per_class=7500, n_test_per_class=1500,
             deltas=[0.15, 0.2, 0.3, 0.6, 0.9], K_main=4, K_grid=[2, 4, 8], delta_for_K=0.3,
             nn1_dim=100, nn1=[1024, 512, 384, 192], nn2_dim=2048, nn2=[1024, 512],
             anova_epochs=250, anova_lr=0.01, anova_batch=64, C=[0.4, 0.6],
             real_runs=[[d, n, b] for d in ("mnist", "cifar10")
                        for n in ("lenet", "minialexnet") for b in (16, 32, 64, 128, 256)],
             real_hidden=[], real_epochs=250, real_lr=0.01)
cfg = helpers.setup("03_random_matrix_theory", quick=QUICK, paper=PAPER)

# %% tags=["hide-input"]
import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from helpers import cache, data, findings, losses, models, plotting, training, widgets
from helpers import random_matrix as rmt, trajectories as tj, weight_spectra as ws
from helpers.plotting import PALETTE, show_table, subplots
from matplotlib.ticker import NullFormatter

# axis label of Meng and Yao's scaled statistic
SCALED = r"$\hat s_n\, n^{1/3} / \sqrt{\log n}$"

# %% tags=["hide-input"]
LOADERS = {"digits": data.digits, "mnist1d": data.mnist1d, "mnist": data.mnist,
           "cifar10": data.cifar10}
DATA, missing = {}, []
for name in dict.fromkeys([cfg["svd_data"], *(run[0] for run in cfg["real_runs"])]):
    # every data set the configuration needs, read now (the paper profile's real files are
    # checked here)
    try:
        DATA[name] = LOADERS[name]()
    except FileNotFoundError as exc:
        missing.append(str(exc))
if missing:
    raise FileNotFoundError("\n".join(missing))
ds_svd = DATA[cfg["svd_data"]]
print(*DATA.values(), sep="\n")

# %% [markdown]
# ## The Marchenko-Pastur law (`I-MP`)
#
# Write a layer's weights as a matrix $W$ and orient it $n \times N$ with $n \le N$ (a dense kernel as it
# is; a convolution kernel $k_h \times k_w \times c_{\mathrm{in}} \times c_{\mathrm{out}}$ with its first two
# and last two dimensions together, $k_h k_w \times c_{\mathrm{in}} c_{\mathrm{out}}$, which gives the
# largest number of singular values, {cite}`haink2023hessian{Sec. 7.3}`). Its singular value decomposition is
# $W = U \Sigma V^T$, $\Sigma = \mathrm{diag}(\nu_1, \dots, \nu_n)$ in decreasing order {cite}`haink2023hessian{eq. 4.1}`. We
# study the $n$ eigenvalues $\lambda_i = \nu_i^2 / N$ of $W W^T / N$ ({cite}`meng2023impact` rescales $W$ by $1/\sqrt N$).
# If the entries are independent with variance $\sigma^2$, then as $n, N \to \infty$ with $c = n/N$ fixed
# the eigenvalues follow the MP law ({cite}`meng2023impact`; {cite}`haink2023hessian{eq. 4.2}` writes the same law in $Q = 1/c$)
#
# $$ p_{c,\sigma^2}(x) = \frac{\sqrt{(b - x)(x - a)}}{2\pi c \sigma^2 x}, \qquad
#    a = \sigma^2 (1 - \sqrt c)^2, \quad b = \sigma^2 (1 + \sqrt c)^2 . $$
#
# For $W$ with Gaussian entries at $n = 500$ and three aspect ratios, the Kolmogorov-Smirnov distance
# between the empirical distribution of the eigenvalues and the MP law is at most 0.05 (`I-MP`).

# %%
rng = np.random.default_rng(helpers.seed("ch3-imp"))
mp_samples = {}
for c in (0.1, 0.3, 0.7):
    _, ev, ratio = ws.matrix_spectrum(rng.standard_normal((500, int(round(500 / c)))))
    mp_samples[c] = (ev, rmt.mp_ks_distance(ev, ratio))
    print(f"c = {ratio:.2f}: KS distance to MP = {mp_samples[c][1]:.4f}")
    assert mp_samples[c][1] <= 0.05  # I-MP

# %% mystnb={"figure": {"caption": "Eigenvalue histograms of $WW^T/N$ for Gaussian random matrices of three aspect ratios $c$, with the Marchenko-Pastur density (red). The histograms fill the law's support and follow its shape; the titles give the Kolmogorov-Smirnov distance (I-MP)."}, "image": {"alt": "Three histograms of eigenvalues, one per aspect ratio, each overlaid with a red Marchenko-Pastur density curve."}}
fig, axes = subplots(1, 3, width=2.9, height=2.7)
for ax, (c, (ev, ks)) in zip(axes, mp_samples.items()):
    ax.hist(ev, bins=40, density=True, color=PALETTE[0], alpha=0.6, label="eigenvalues")
    x = np.linspace(*rmt.mp_edges(c), 400)
    ax.plot(x, rmt.marchenko_pastur_pdf(x, c), color=PALETTE[3], lw=2, label="MP law")
    ax.set(xlabel="eigenvalue λ of WWᵀ/N", title=f"c = {c}, KS = {ks:.3f}")
axes[0].set_ylabel("density")
axes[0].legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# The smaller $c$ (the more rectangular the matrix), the narrower the bulk around $\sigma^2 = 1$; as
# $c \to 1$ the lower edge moves to zero and the density piles up there.
#
# ## Level spacings and the Wigner surmise (`I-WIGNER`)
#
# The positions of eigenvalues carry a second signature of randomness: their *correlations*. Unfold the
# spectrum (map each eigenvalue through a smooth fit of the counting function, so the mean spacing is one,
# `random_matrix.unfold`) and take nearest-neighbour spacings $s$. For random real symmetric matrices (the
# Gaussian orthogonal ensemble, GOE) their distribution is close to the Wigner surmise {cite}`haink2023hessian{eq. 4.3}`
#
# $$ p(s) = \frac{\pi s}{2}\, e^{-\pi s^2 / 4} , $$
#
# which vanishes at $s = 0$: eigenvalues repel. Uncorrelated levels would have Poisson spacings $e^{-s}$.

# %%
goe = np.linalg.eigvalsh(rmt.goe_matrix(600, seed=helpers.seed("ch3-goe")))
s_goe = rmt.level_spacings(goe, degree=9, trim=0.05)
ks_goe = rmt.spacing_ks_test(s_goe)
print(f"GOE, n = 600: {ks_goe.n} spacings, KS = {ks_goe.statistic:.3f}, p = "
      f"{ks_goe.pvalue:.3f}")
assert ks_goe.pvalue > 0.05  # I-WIGNER

# %% [markdown]
# ## Meng and Yao's distance to the MP law and its null distribution (`I-NULLSTAT`)
#
# Meng and Yao measure how far a spectrum $X_1 \le \dots \le X_n$ is from *some* MP law without knowing
# $c$ and $\sigma^2$: the extremes $\hat a = X_{(1)}$ and $\hat b = X_{(n)}$ estimate the edges, which
# fixes $\hat\sigma = (\sqrt{\hat a} + \sqrt{\hat b})/2$ and
# $\sqrt{\hat c} = (\sqrt{\hat b} - \sqrt{\hat a}) / (\sqrt{\hat b} + \sqrt{\hat a})$. A histogram
# $\hat p_M$ with $M = 2 \lfloor n^{1/3} \rfloor$ equal bins on $[\hat a, \hat b]$ is compared with the MP
# density,
#
# $$ \hat s_n = \int_{\hat a}^{\hat b} \big| \hat p_M(x) - p_{\hat c, \hat\sigma^2}(x) \big|\, dx . $$
#
# Under the null hypothesis (the spectrum is MP) $\hat s_n = O_P(n^{-1/3} + M^{-1} + \sqrt{M \log n / n})$,
# so {cite}`meng2023impact` scales it as $\hat s_n n^{1/3} / \sqrt{\log n}$ and reports that this always lies in
# $[0.15, 0.25]$. We draw 50 spectra of $W W^T / N$ for Gaussian $W$ at each of nine $(c, n)$ (exactly,
# with the tridiagonal model of Dumitriu and Edelman {cite}`dumitriu2002matrix`,
# `random_matrix.wishart_eigenvalues`, which costs $O(n^2)$ instead of forming $W$), and assert that the
# scaled statistic lies in $[0.1, 0.3]$ in at least 90% of the repetitions for each (`I-NULLSTAT`).

# %% tags=["hide-input"]
def null_statistics(c, n):
    """The scaled Meng-Yao statistic of `null_reps` Wishart spectra of shape n x n/c."""
    eigs = [rmt.wishart_eigenvalues(n, int(round(n / c)),
                                    seed=helpers.seed("ch3-null", c, n, r))
            for r in range(cfg["null_reps"])]
    return np.array([ws.meng_yao_statistic(e).scaled for e in eigs])


null = {(c, n): null_statistics(c, n) for c in cfg["null_c"] for n in cfg["null_n"]}

# %% tags=["hide-input"]
rows = [[f"{c:g}", str(n), f"{v.min():.3f}", f"{np.median(v):.3f}", f"{v.max():.3f}",
         f"{np.mean((v >= 0.1) & (v <= 0.3)):.2f}",
         f"{np.mean((v >= 0.15) & (v <= 0.25)):.2f}"]
        for (c, n), v in null.items()]
show_table(["c", "n", "min", "median", "max", "share in [0.1, 0.3]", "share in [0.15, 0.25]"],
           rows)
for (c, n), v in null.items():
    assert np.mean((v >= 0.1) & (v <= 0.3)) >= 0.9, (c, n)  # I-NULLSTAT

# %% mystnb={"figure": {"caption": "The scaled Meng-Yao statistic of matrices drawn from the null model, 50 repetitions for each size $n$ and aspect ratio $c$. Almost all values fall between 0.1 and 0.3 (I-NULLSTAT); the grey band is the range Meng and Yao report."}, "image": {"alt": "Histograms of the scaled statistic, one panel per aspect ratio, one colour per matrix size, over a grey band from 0.15 to 0.25."}}
fig, axes = subplots(1, len(cfg["null_c"]), width=2.9, height=2.7, sharey=True)
for ax, c in zip(axes, cfg["null_c"]):
    for n, col in zip(cfg["null_n"], PALETTE):
        ax.hist(null[(c, n)], bins=np.linspace(0.1, 0.3, 26), color=col, alpha=0.55,
                label=f"n = {n}")
    ax.axvspan(0.15, 0.25, color="0.85", zorder=0)
    ax.set(xlabel=SCALED, title=f"c = {c:g}")
axes[0].set_ylabel("repetitions (of 50)")
axes[-1].legend(fontsize=8, loc="upper right")
fig.suptitle(
    "Null distribution of the scaled statistic; grey: Meng and Yao's range [0.15, 0.25]"
)
plt.show()

# %% [markdown]
# The statistic is small and slowly shrinking with $n$, as the rate above says. It is not free of $c$: when
# $c$ approaches one the lower edge $a$ moves to zero, the density rises steeply within the first bin, and
# the histogram's discretisation error alone pushes the scaled value above 0.3 (try $c = 0.8$ in
# Exercise 1). The criterion below uses $C \ge 0.4$, well above the null values for the aspect ratios we
# meet.
#
# ## A trained network: bulk, outliers and what the bulk carries (`F-BULK`)
#
# We train an MLP with hidden layers of the widths below on the data set of the configuration
# (SGD, Haink's set-up of chapter 1), and then continue for a window of a few epochs while recording the
# chosen layer at every step (for the PCs further down). The same is done with weight decay on all layers.
# `weight_spectra.model_spectra` returns the spectrum of every weight layer in one call: kernel and matrix
# shape, aspect ratio, the MP fit of the bulk (the entry variance $\sigma^2$ is fitted to the eigenvalues
# below the upper edge, `random_matrix.mp_fit`), and the eigenvalues above it, the outliers.

# %% tags=["hide-input"]
LAYER = cfg["svd_layer"]


def make_net(kind, ds, seed_name):
    seed = helpers.seed(seed_name)
    if kind == "mlp":
        return models.mlp(ds.input_shape, cfg["real_hidden"] or cfg["svd_hidden"],
                          ds.num_classes, seed=seed)
    return models.build(kind, input_shape=ds.input_shape, num_classes=ds.num_classes,
                        seed=seed)


# %% tags=["hide-input"]
def train_and_record(weight_decay):
    model = models.mlp(ds_svd.input_shape, cfg["svd_hidden"], ds_svd.num_classes,
                       seed=helpers.seed("ch3-svd"))
    common = dict(batch_size=cfg["svd_batch"], lr=cfg["svd_lr"], weight_decay=weight_decay,
                  eval_data=ds_svd)
    training.train_sgd(model, losses.cross_entropy, ds_svd, epochs=cfg["svd_epochs"],
                       seed=helpers.seed("ch3-svd-train"), **common)
    h = training.train_sgd(model, losses.cross_entropy, ds_svd,
                           epochs=cfg["svd_window_epochs"],
                           seed=helpers.seed("ch3-svd-window"),
                           record={"layers": LAYER, "every": "step"}, **common)
    return {**cache.pack_weights(model.get_weights()), "W": h["weights"][LAYER],
            "test_acc": h["test_acc"], "acc": h["acc"]}


# %% tags=["hide-input"]
svd_runs = {wd: cache.cached("ch3-svd", {**cfg, "run_weight_decay": wd},
                             lambda wd=wd: train_and_record(wd),
                             verbose=False) for wd in (0.0, cfg["svd_weight_decay"])}


def svd_network(wd):
    model = models.mlp(ds_svd.input_shape, cfg["svd_hidden"], ds_svd.num_classes)
    model.set_weights(cache.unpack_weights(svd_runs[wd]))
    return model

# %%
net = svd_network(0.0)
spectra = ws.model_spectra(net)
show_table(*ws.spectra_table(spectra))

# %% tags=["hide-input"]
def draw_esd(ax, spec, title, bins=50):
    """Histogram of a layer's eigenvalues with the fitted MP density and its upper edge."""
    ev = spec.eigenvalues
    bulk = ev[ev <= spec.mp.upper]
    ax.hist(ev, bins=bins, density=True, color=PALETTE[0], alpha=0.6)
    x = np.linspace(spec.mp.lower, spec.mp.upper, 400)
    ax.plot(x, rmt.marchenko_pastur_pdf(x, spec.ratio, spec.mp.sigma2), color=PALETTE[3],
            lw=2)
    ax.axvline(spec.mp.upper, color="k", ls=":", lw=1)
    ax.set(xlabel="eigenvalue λ = ν²/N", ylabel="density", title=title, yscale="log")
    ax.set_ylim(0.5 / (len(ev) * (ev.max() - ev.min()) / bins), None)
    ax.yaxis.set_minor_formatter(NullFormatter())
    return bulk

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Eigenvalue densities of two trained layers on a log scale with the fitted Marchenko-Pastur bulk (red) and its upper edge (dotted). The eigenvalues to the right of the edge are the outliers counted in the titles (F-BULK)."}, "image": {"alt": "Two histograms of layer eigenvalues on a logarithmic density axis with a red fitted density and a dotted vertical line at its edge."}}
fig, axes = subplots(1, 2, width=4.2, height=3.2)
for ax, name in zip(axes, [n for n in spectra if min(spectra[n].matrix_shape) >= 20][:2]):
    s = spectra[name]
    m_rows, m_cols = s.matrix_shape
    draw_esd(ax, s, f"{name} ({m_rows}×{m_cols}): {s.mp.num_outliers} outliers")
fig.suptitle("Trained layers: MP bulk (red) and outliers beyond the edge (dotted)")
plt.show()

# %% [markdown]
# Most eigenvalues fill an MP bulk, a handful stand out to the right. {cite}`haink2023hessian{Ch. 4}` (citing Staats, Thamm and
# Rosenow {cite}`staats2023boundary`) states that these outliers hold almost all the information: setting
# the bulk singular values to zero does not hurt the accuracy. `weight_spectra.remove_bulk` zeroes every
# $\nu_i$ with $\nu_i^2/N$ inside the fitted bulk and returns the edited network. `F-BULK` asks for a layer
# with an MP bulk (we use the book's MP tolerance of `I-MP`: a KS distance of the bulk to its fit
# $\le 0.05$) plus outliers, whose bulk removal costs at most 2 points of test accuracy. We measure it on the
# network trained with weight decay, where {cite}`haink2023hessian{Sec. 6.1}` sees the clearest boundary between bulk and
# outliers, and give the network without weight decay beside it: there, at this size, some of the class
# directions of the layer (a classifier of $K$ classes needs about $K - 1$) may still sit inside the bulk,
# and removing them then costs accuracy.

# %% tags=["hide-input"]
def bulk_removal(model):
    spec = ws.layer_spectrum(model.get_layer(LAYER).kernel.numpy())
    edited, kept = ws.remove_bulk(model, LAYER)
    before = training.evaluate(model, losses.cross_entropy, *ds_svd.test)[1]
    after = training.evaluate(edited, losses.cross_entropy, *ds_svd.test)[1]
    return {"outliers": spec.mp.num_outliers, "bulk_ks": spec.mp.ks_distance, "kept": kept,
            "test_acc": before, "test_acc_bulk_removed": after,
            "cost_points": 100 * (before - after)}


# %% tags=["hide-input"]
net_wd = svd_network(cfg["svd_weight_decay"])
cut, cut_wd = bulk_removal(net), bulk_removal(net_wd)
bulk_m = {"layer": LAYER, "weight_decay": cfg["svd_weight_decay"], **cut_wd,
          "of": len(spectra[LAYER].eigenvalues),
          **{f"{k}_no_wd": v for k, v in cut.items()}}

# %% tags=["hide-input"]
f_bulk = findings.record(
    "F-BULK", source="000 Ch. 4 (citing Staats, Thamm, Rosenow)", measured=bulk_m,
    criterion="a trained network's layer has a MP bulk plus outliers; zeroing the bulk "
              "singular values of that "
              "layer costs ≤ 2 percentage points of test accuracy",
    rule=lambda m: m["outliers"] >= 1 and m["bulk_ks"] <= 0.05 and m["cost_points"] <= 2)

# %% tags=["remove-input"]
def bulk_sentence(c, what):
    return (f"{what}, keeping {c['kept']} of {bulk_m['of']} singular values of `{LAYER}` changes the test accuracy "
            f"from {c['test_acc']:.3f} to {c['test_acc_bulk_removed']:.3f} ({c['cost_points']:.1f} points lost; "
            f"KS distance of the bulk to its MP fit {c['bulk_ks']:.3f})")

# %% tags=["remove-input"]
text = (bulk_sentence(cut_wd, f"With weight decay λ = {cfg['svd_weight_decay']:g}") + ". "
        + bulk_sentence(cut, "Without weight decay") + f", with {cut['outliers']} outliers for the "
        f"K − 1 = {ds_svd.num_classes - 1} directions a {ds_svd.num_classes}-class problem needs. "
        f"Verdict for F-BULK: **{f_bulk.verdict}**.")
if not f_bulk.reproduced:
    why = []
    if cut_wd["bulk_ks"] > 0.05:
        why.append("the bulk of the weight-decay layer is not MP within the tolerance of I-MP")
    if cut_wd["cost_points"] > 2:
        why.append("its bulk carries more than 2 points of accuracy")
    if cut_wd["outliers"] < 1:
        why.append("no eigenvalue lies above the fitted edge")
    text += " It fails because " + " and ".join(why) + "."
display(Markdown(text))

# %% [markdown]
# ## Spacings of trained singular values (`F-WIGNERW`)
#
# {cite}`haink2023hessian{Ch. 4}` (after Thamm, Staats and Rosenow {cite}`thamm2022random`) reports that the unfolded spacings of
# the singular values of trained layers follow the Wigner surmise: the bulk is still a random matrix in its
# correlations. We unfold the singular values inside the MP bulk of every layer with at least 50 of them
# (the outliers are too few and too far apart to unfold with the bulk), with a degree-5 polynomial and 5%
# trimmed at each end, and test the spacings against the surmise. `F-WIGNERW` asks for KS $p > 0.01$.

# %%
wig = {}
for name, s in spectra.items():
    if min(s.matrix_shape) >= 50:
        nu_bulk = s.singular_values[s.eigenvalues[::-1] <= s.mp.upper]
        sp = rmt.level_spacings(nu_bulk, degree=5, trim=0.05)
        wig[name] = (sp, rmt.spacing_ks_test(sp))
wig_m = {f"p_{n}": r.pvalue for n, (_, r) in wig.items()} | {f"spacings_{n}": r.n for n,
                                                             (_, r) in wig.items()}
f_wig = findings.record(
    "F-WIGNERW", source="000 Ch. 4 (citing Thamm, Staats, Rosenow)", measured=wig_m,
    criterion="unfolded singular-value spacings of trained weight matrices agree with the "
              "Wigner surmise (KS p > 0.01)",
    rule=lambda m: all(v > 0.01 for k, v in m.items() if k.startswith("p_")))

# %% mystnb={"figure": {"caption": "Histograms of unfolded level spacings, for a random GOE matrix (control, left) and for trained weight matrices, against the Wigner surmise (red) and the Poisson law (dashed). Spacings that follow the red curve show level repulsion (F-WIGNERW); the titles give the KS p-values."}, "image": {"alt": "Several histograms of spacings from 0 to 3.5, each with a red Wigner surmise curve and a dashed exponential curve."}}
fig, axes = subplots(1, len(wig) + 1, width=2.9, height=2.7, sharey=True)
x = np.linspace(0, 3.5, 200)
for ax, (name, (sp, r)) in zip(axes, [("GOE control", (s_goe, ks_goe)), *wig.items()]):
    ax.hist(sp, bins=np.linspace(0, 3.5, 22), density=True, color=PALETTE[0], alpha=0.6)
    ax.plot(x, rmt.wigner_surmise_pdf(x), color=PALETTE[3], lw=2, label="Wigner surmise")
    ax.plot(x, np.exp(-x), color="0.4", ls="--", lw=1.2, label="Poisson")
    ax.set(xlabel="unfolded spacing s", title=f"{name}: p = {r.pvalue:.2f}")
axes[0].set_ylabel("density")
axes[-1].legend(fontsize=8, loc="upper right")
plt.show()

# %% tags=["remove-input"]
display(Markdown(
    "KS p-values of the trained layers' bulk spacings: " + ", ".join(f"`{n}` {r.pvalue:.3f} ({r.n} spacings)"
    for n, (_, r) in wig.items()) + f". Verdict for F-WIGNERW: **{f_wig.verdict}**. " +
    ("The trained bulk repels its levels like a random matrix." if f_wig.reproduced else
     "At least one layer's spacings depart from the surmise at this size; with so few levels the test also "
     "reacts to the unfolding, which a degree-5 polynomial does only approximately.")))

# %% [markdown]
# ## Singular matrices and principal components (`F-SVPC`)
#
# Each singular value has its *singular matrix* $W_i = U \Sigma_i V^T$ with
# $\Sigma_i = \mathrm{diag}(0, \dots, \nu_i, \dots, 0)$ {cite}`haink2023hessian{eq. 6.1}`; the $W_i$ sum to $W$. Flattened into
# vectors $w_i$ they live in the same space as the layer's weight trajectory, whose principal components
# $p_i$ come from `trajectories.pca` (chapter 2). {cite}`haink2023hessian` compares them by the overlaps (eq. 6.2)
#
# $$ S_{ij} = \frac{|p_i \cdot w_j|}{\lVert w_j \rVert} $$
#
# and finds that the leading PCs overlap most with the singular matrices outside the bulk {cite}`haink2023hessian{Figs. 6.1-6.2}`. With weight decay the boundary between the two groups is sharper, but the first PC is then spread
# over the bulk singular matrices: weight decay keeps shrinking the bulk, and that shrinking is the drift.
# `F-SVPC` asks that the mean overlap of the outliers' singular matrices with the top 5 PCs exceed that of the
# bulk singular matrices; we test it on the run without weight decay, Haink's main setting, and report the run
# with weight decay beside it.

# %% tags=["hide-input"]
svpc, S_of = {}, {}
for wd, run in svd_runs.items():
    kernel = (net if wd == 0 else net_wd).get_layer(LAYER).kernel.numpy()
    pc = tj.pca(run["W"], num_components=50)
    nu, S = ws.singular_matrix_pc_overlaps(kernel, pc.components)
    k_out = ws.layer_spectrum(kernel).mp.num_outliers
    S_of[wd] = (S, k_out)
    tag = "no_wd" if wd == 0 else "wd"
    svpc[f"outliers_{tag}"] = k_out
    svpc[f"mean_top5_outliers_{tag}"] = float(S[:5, :k_out].mean()) if k_out else float("nan")
    svpc[f"mean_top5_bulk_{tag}"] = float(S[:5, k_out:].mean())

# %% tags=["hide-input"]
f_svpc = findings.record(
    "F-SVPC", source="000 Sec. 6.1, Figs. 6.1-6.2", measured=svpc,
    criterion="singular matrices of outlier singular values overlap most with the leading "
              "PCs (mean overlap of "
              "outliers with the top 5 PCs exceeds that of bulk singular matrices)",
    rule=lambda m: m["outliers_no_wd"] >= 1 and m["mean_top5_outliers_no_wd"]
    > m["mean_top5_bulk_no_wd"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Top: overlaps of the first 30 principal components of the trajectory (rows) with the layer's singular matrices ordered by singular value (columns), without and with weight decay; the dashed line separates outliers (left of it) from the bulk. Bottom: the overlaps of the top 5 components. Look for weight concentrated left of the line (F-SVPC)."}, "image": {"alt": "A two-by-two grid: two heat maps of overlaps, PC index against singular value index, and below them line plots of the overlaps of five PCs, each with a vertical line at the MP edge."}}
fig, axes = subplots(2, 2, width=4.2, height=3.0)
for (top, bottom), (wd, (S, k_out)) in zip(axes.T, S_of.items()):
    label = "no weight decay" if wd == 0 else f"weight decay λ = {wd:g}"
    im = top.imshow(S[:30], aspect="auto", cmap="magma", origin="lower", vmin=0)
    top.axvline(k_out - 0.5, color="w", ls="--", lw=1)
    top.set(xlabel="singular value index j", ylabel="PC index i", title=f"Sᵢⱼ, {label}")
    top.grid(False)
    fig.colorbar(im, ax=top, shrink=0.9)
    for i, c in zip(range(5), PALETTE):
        bottom.plot(S[i], color=c, lw=1.2, label=f"PC {i + 1}")
    bottom.axvline(k_out - 0.5, color="k", ls=":", lw=1)
    bottom.set(xlabel="singular value index j", ylabel="overlap Sᵢⱼ",
               title="Top 5 PCs (dotted: MP edge)")
axes[1, 1].legend(fontsize=8, ncol=2, loc="upper right")
plt.show()

# %% tags=["remove-input"]
display(Markdown(
    f"Without weight decay the top 5 PCs overlap the {svpc['outliers_no_wd']} outlier singular matrices by "
    f"{svpc['mean_top5_outliers_no_wd']:.3f} on average and the bulk ones by {svpc['mean_top5_bulk_no_wd']:.3f}; "
    f"with weight decay {svpc['mean_top5_outliers_wd']:.3f} against {svpc['mean_top5_bulk_wd']:.3f} "
    f"({svpc['outliers_wd']} outliers). Verdict for F-SVPC: **{f_svpc.verdict}**. "
    + ("The directions in which the trained layer still moves are those that carry its function."
       if f_svpc.reproduced else "At this scale the leading PCs do not single out the outliers.")))

# %% [markdown]
# ## Classification difficulty shapes the spectra (`F-DIFFICULTY`, `F-PHASES`)
#
# {cite}`meng2023impact` trains networks on a Gaussian ANOVA model: $K$ classes, $h_{i,k} = \mu_k + \varepsilon_{i,k}$ with
# $\varepsilon \sim \mathcal N(0, \sigma^2 I_p)$, $\sigma = 1$. In model $\mathcal D_1(\delta)$ each class mean
# is $m = -0.2$ on a random half $I_k$ of the coordinates and $m + \delta$ on the other half; $\mathcal
# D_2(t)$ puts the means on a simplex (`data.gaussian_anova`). The difficulty is tuned by the SNR, the
# average of $\lVert \mu_k - \mu_{k'} \rVert / \sigma$ over pairs of classes. Its findings: as the SNR
# falls, the final spectra of the hidden layers go from a light tail (LT, the MP law) through a *bulk
# transition* (BT: the $K - 1$ spikes move away and the bulk deforms) to a heavy tail (HT); at fixed SNR more
# classes push the same way.
#
# **Our scale, and why.** {cite}`meng2023impact` trains NN1 ($100 \to 1024 \to 512 \to 384 \to 192 \to K$) and NN2
# ($2048 \to 1024 \to 512 \to K$) for 250 epochs on 7,500 points per class at learning rate 0.01 and batch
# 64, over $10^5$ SGD steps per run. In the quick profile we keep the input dimension of NN1, halve the
# widths and drop a layer (NN1-like $100 \to 512 \to 256 \to 128 \to K$, NN2-like
# $256 \to 512 \to 256 \to K$), and use 1,000 training points per class, 40 epochs and learning rate 0.1
# at batch 64 (about 2,500 SGD steps for $K = 4$), which fits the profile's three minutes. Two things guided
# the choice. The larger learning rate compresses Meng and Yao's slow evolution of the weights into fewer steps. And
# the number of points per class sets the order of events: with many points the network first learns what
# generalises and only then starts memorising the noise, which is when the spectrum leaves MP, as in {cite}`meng2023impact`;
# with a few hundred points per class (which we tried first) memorisation, the spikes and the firing of the
# criterion come while the test accuracy is still rising. The layers keep aspect ratios like Meng and Yao's and at
# least 128 eigenvalues, so
# $\hat s_n$ stays in the range where its null distribution is known. The SNR levels are Meng and Yao's
# $\delta \in \{0.15, 0.3, 0.6, 0.9\}$ at $K = 4$, and $K \in \{2, 4, 8\}$ at $\delta = 0.3$. The test sets
# have 500 points per class, so an accuracy near 40% at $K = 4$ has a standard error of about one point: the
# one-point margin of `F-EARLYSTOP` is of the size of that noise.
#
# **The classification rule** (`weight_spectra.classify_spectrum`), applied to the eigenvalues of a layer.
# Write $\mathrm{sc}(X) = \hat s_n n^{1/3} / \sqrt{\log n}$ for Meng and Yao's scaled statistic of a set $X$ of
# eigenvalues, call the eigenvalues below the upper edge $\lambda_+$ of the MP fit the *bulk* and those
# above it the *spikes*, and let $\alpha$ be the power-law exponent of the upper tail (maximum likelihood,
# $x_{\min}$ by the KS distance, Clauset, Shalizi and Newman {cite}`clauset2009power`, over a tail of at
# least a tenth of the eigenvalues). In this order:
#
# 1. **RC**, rank collapse, if more than half of the eigenvalues are below $10^{-4} \lambda_{\max}$;
# 2. **LT** if Meng and Yao's criterion does not fire on the whole spectrum: $\mathrm{sc}(\text{all}) \le C = 0.4$;
# 3. **HT** if the bulk itself has left MP and the tail is a power law: $\mathrm{sc}(\text{bulk}) > C$ and
#    $\alpha < 4$, Martin and Mahoney's boundary of the heavy-tailed phases;
# 4. **BT** otherwise: spikes moved away from an MP bulk, or the bulk deformed without a power-law tail.
#
# The unit tests check the rule on built spectra: an MP sample is LT, the same with three far spikes BT, a
# Pareto sample with $\alpha = 2.5$ HT, a matrix with three quarters of its eigenvalues at zero RC. A few
# spikes alone can pull a power-law fit below 4 (they are the largest values of any tail), which is why step
# 3 asks the bulk, not only the tail.
#
# The findings read one layer, the same at every seed and SNR: `dense_3` of NN1-like, Meng and Yao's FC3 (here the
# last hidden layer, $256 \times 128$); the tables also report FC2 (`dense_2`), as Meng and Yao's do, and FC1 and FC2
# of NN2-like.

# %% tags=["hide-input"]
NETS = {"NN1": (cfg["nn1_dim"], cfg["nn1"]), "NN2": (cfg["nn2_dim"], cfg["nn2"])}
WATCH = {"NN1": ["dense_2", "dense_3"], "NN2": ["dense_1", "dense_2"]}
MEASURED = ("NN1", "dense_3")
Cs = cfg["C"]


def anova_data(net, K, delta):
    return data.gaussian_anova(K, NETS[net][0], cfg["n_per_class"], cfg["anova_model"],
                               delta=delta, t=delta,
                               n_test_per_class=cfg["n_test_per_class"],
                               seed=helpers.seed("ch3-anova", net, K))


# %% tags=["hide-input"]
def anova_run(net, K, delta):
    ds = anova_data(net, K, delta)
    model = models.mlp(NETS[net][0], NETS[net][1], K,
                       seed=helpers.seed("ch3-anova-init", net, K))
    out = ws.train_with_spectral_criterion(model, ds, WATCH[net], cfg["anova_epochs"],
                                           cfg["anova_batch"], cfg["anova_lr"], Cs,
                                           seed=helpers.seed("ch3-anova-sgd", net, K))
    return {**out, "snr": ds.info["snr"]}

# %% tags=["hide-input"]
grid = [("NN1", cfg["K_main"], d) for d in cfg["deltas"]]
grid += [("NN1", K, cfg["delta_for_K"]) for K in cfg["K_grid"] if K != cfg["K_main"]]
grid += [("NN2", cfg["K_main"], d) for d in (min(cfg["deltas"]), max(cfg["deltas"]))]
anova = {key: cache.cached("ch3-anova", {**cfg, "run": list(key)},
                           lambda key=key: anova_run(*key), verbose=False)
         for key in grid}
crits = {key: ws.SpectralCriterion.from_arrays(r, WATCH[key[0]], Cs) for key,
         r in anova.items()}


# %% tags=["hide-input"]
def final_class(key, name, C=0.4):
    r = anova[key]
    return ws.classify_spectrum(r[f"ev_{name}"], C=C, ratio=float(r[f"ratio_{name}"]))


def final_s(key, name):
    return ws.meng_yao_statistic(anova[key][f"ev_{name}"]).s_hat

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Final eigenvalue spectra of the watched layer of the NN1-like network on Gaussian ANOVA data, from the easiest task (highest SNR) to the hardest, with the fitted Marchenko-Pastur density. The titles give the spectral type assigned to each (F-PHASES)."}, "image": {"alt": "Four histograms of eigenvalues on a logarithmic density axis, one per signal-to-noise ratio, each with a red fitted density curve."}}
K0, net0, layer0 = cfg["K_main"], *MEASURED
# from high to low SNR
snr_keys = [(net0, K0, d) for d in sorted(cfg["deltas"], reverse=True)]
fig, axes = subplots(2, 2, width=3.6, height=2.6)
for ax, key in zip(axes.ravel(), snr_keys):
    r, label = anova[key], final_class(key, layer0).label
    plotting.esd_with_mp_fit(ax, r[f"ev_{layer0}"], float(r[f"ratio_{layer0}"]),
                             title=f"SNR {r['snr']:.2f}: {label}")
fig.suptitle(f"{net0}-like, {layer0}, K = {K0}: final spectra from the easiest to the "
             "hardest task")
plt.show()

# %% [markdown]
# `F-DIFFICULTY` asks that $\hat s_n$ of the hidden layer grow as the SNR falls (monotone over the four
# levels) and, at fixed SNR, grow with $K$; `F-PHASES` that the final spectrum be LT at the highest SNR and
# HT at the lowest.

# %% tags=["hide-input"]
s_by_snr = [final_s(k, layer0) for k in snr_keys]                    # high SNR first
K_keys = [(net0, K, cfg["delta_for_K"]) for K in sorted(cfg["K_grid"])]
s_by_K = [final_s(k, layer0) for k in K_keys]
diff_m = {"snr_levels": [float(anova[k]["snr"]) for k in snr_keys],
          "s_hat_by_falling_snr": s_by_snr,
          "K": sorted(cfg["K_grid"]), "s_hat_by_K": s_by_K}

# %% tags=["hide-input"]
f_diff = findings.record(
    "F-DIFFICULTY", source="002 (Gaussian ANOVA experiments)", measured=diff_m,
    criterion="on Gaussian ANOVA data, the distance ŝ_n of a hidden layer's spectrum from MP "
              "grows as the SNR falls "
              "(monotone over ≥ 4 SNR levels) and, at fixed SNR, grows with K",
    rule=lambda m: len(m["s_hat_by_falling_snr"]) >= 4
    and all(np.diff(m["s_hat_by_falling_snr"]) > 0)
    and all(np.diff(m["s_hat_by_K"]) > 0))

# %% tags=["hide-input"]
hi, lo = snr_keys[0], snr_keys[-1]
c_hi, c_lo = final_class(hi, layer0), final_class(lo, layer0)
phase_m = {"snr_high": float(anova[hi]["snr"]), "class_high": c_hi.label,
           "scaled_high": c_hi.scaled, "alpha_high": c_hi.alpha,
           "snr_low": float(anova[lo]["snr"]), "class_low": c_lo.label,
           "scaled_low": c_lo.scaled, "scaled_bulk_low": c_lo.scaled_bulk,
           "alpha_low": c_lo.alpha, "spikes_low": c_lo.num_spikes,
           "NN2_classes_high_low": [final_class(("NN2", K0, d), WATCH["NN2"][-1]).label
                                    for d in (max(cfg["deltas"]), min(cfg["deltas"]))]}

# %% tags=["hide-input"]
f_ph = findings.record(
    "F-PHASES", source="002 (spectral types LT / BT / HT)", measured=phase_m,
    criterion="at high SNR the final spectrum is classified LT and at low SNR HT "
              "(classification rule stated in the chapter)",
    rule=lambda m: m["class_high"] == "LT" and m["class_low"] == "HT")

# %% mystnb={"figure": {"caption": "The distance of the final spectrum from Marchenko-Pastur, $\\hat s_n$, against the signal-to-noise ratio (left) and the number of classes $K$ (right), for two layers. F-DIFFICULTY asks that it rise as the SNR falls and as $K$ grows."}, "image": {"alt": "Two line plots of the statistic s-hat for two layers: against SNR and against the number of classes."}}
fig, (ax1, ax2) = subplots(1, 2, width=4.2, height=3.2)
ax1.plot(diff_m["snr_levels"], s_by_snr, "o-", color=PALETTE[0], label=f"{layer0}")
ax1.plot(diff_m["snr_levels"], [final_s(k, "dense_2") for k in snr_keys], "s--",
         color=PALETTE[1], label="dense_2")
ax1.set(xlabel="SNR", ylabel="ŝₙ of the final spectrum", title=f"{net0}-like, K = {K0}")
ax1.legend(fontsize=8, loc="upper right")
ax2.plot(diff_m["K"], s_by_K, "o-", color=PALETTE[0], label=f"{layer0}")
ax2.plot(diff_m["K"], [final_s(k, "dense_2") for k in K_keys], "s--", color=PALETTE[1],
         label="dense_2")
ax2.set(xlabel="number of classes K", ylabel="ŝₙ of the final spectrum",
        title=f"δ = {cfg['delta_for_K']}")
ax2.set_xticks(diff_m["K"])
ax2.legend(fontsize=8, loc="upper left")
plt.show()

# %% tags=["remove-input"]
text = (f"From the highest to the lowest SNR, ŝₙ of `{layer0}` is "
        + ", ".join(f"{v:.3f}" for v in s_by_snr) + "; for K = " + ", ".join(map(str, diff_m["K"])) + " at δ = "
        + f"{cfg['delta_for_K']} it is " + ", ".join(f"{v:.3f}" for v in s_by_K)
        + f". Verdict for F-DIFFICULTY: **{f_diff.verdict}**. The final spectrum is {c_hi.label} at SNR "
        f"{phase_m['snr_high']:.2f} (scaled statistic {c_hi.scaled:.2f}, α = {c_hi.alpha:.1f}) and {c_lo.label} at SNR "
        f"{phase_m['snr_low']:.2f} (scaled statistic {c_lo.scaled:.2f}, α = {c_lo.alpha:.1f}); verdict for "
        f"F-PHASES: **{f_ph.verdict}**. NN2-like's last hidden layer is "
        f"{phase_m['NN2_classes_high_low'][0]} at high and {phase_m['NN2_classes_high_low'][1]} at low SNR.")

# %% tags=["remove-input"]
if not f_ph.reproduced and c_lo.label == "BT":
    text += (f" At the lowest SNR the spectrum is far from MP as a whole, but the departure sits in "
             f"{c_lo.num_spikes} spikes (K − 1 = {K0 - 1}): without them the bulk's scaled statistic is "
             f"{c_lo.scaled_bulk:.2f}" + (" (at most C, still MP)" if c_lo.scaled_bulk <= 0.4 else "")
             + (f", and the tail exponent is {c_lo.alpha:.1f}" + (" (not below 4)" if c_lo.alpha >= 4 else
                " (below 4, but driven by the spikes)")) + ". The network memorises its training set with a low-rank change of the weights; the heavy-tailed bulk Meng and Yao 2023 see after 10⁵ steps on "
             "7,500 points per class does not form within the quick profile's steps; the paper profile is the test.")
if not f_ph.reproduced and c_hi.label != "LT":
    text += f" At the highest SNR the spectrum is already {c_hi.label}, not LT."
display(Markdown(text))

# %% [markdown]
# ## The spectral criterion during training (`F-EARLYSTOP`)
#
# Meng and Yao's idea: a heavy tail is the moment training has extracted what the data offer, so stop there, without
# test data. **Spectral criterion:** with $M = 2 \lfloor n^{1/3} \rfloor$ and
# $s_* = C \sqrt{\log n} / n^{1/3}$, compute $\hat s_n$ after every epoch and stop when $\hat s_n > s_*$;
# any $C \in [0.4, 0.6]$ is recommended. `weight_spectra.SpectralCriterion` is a hook for the
# `on_epoch_end` argument of `training.train_sgd`; here it only records, so that we can compare the test
# accuracy where it fires with that at the last epoch, as Meng and Yao's tables do. `F-EARLYSTOP` (with $C = 0.4$):
# at the lowest SNR the criterion fires before the last epoch with a test accuracy within one point of (or
# above) the final one; at the highest SNR it never fires.

# %% tags=["hide-input"]
def stop_table(net, C):
    rows = []
    for key in [k for k in grid if k[0] == net and k[1] == K0]:
        cr, acc = crits[key], anova[key]["test_acc"]
        row = [f"{key[2]:g}", f"{anova[key]['snr']:.2f}"]
        for name in WATCH[net]:
            e = cr.fired(name, C)
            row += [str(e), f"{100 * acc[e - 1]:.2f}%"] if e else ["–", ""]
        rows.append(row + [final_class(key, n).label for n in WATCH[net]]
                    + [f"{100 * acc[-1]:.2f}%"])
    head = ["δ", "SNR"] + sum([[f"epoch ({n})", "test acc"] for n in WATCH[net]], [])
    return head + [f"final {n}"
                   for n in WATCH[net]] + [f"test acc, epoch {cfg['anova_epochs']}"], rows

# %% tags=["hide-input"]
for net in NETS:
    for C in Cs:
        display(Markdown(f"**{net}-like + $\\mathcal D_1$, spectral criterion C = {C}**"))
        show_table(*stop_table(net, C))

# %% tags=["hide-input"]
e_lo, e_hi = crits[lo].fired(layer0, 0.4), crits[hi].fired(layer0, 0.4)
acc_lo = anova[lo]["test_acc"]
stop_m = {"fired_epoch_low_snr": e_lo or 0, "last_epoch": cfg["anova_epochs"],
          "test_acc_at_fire": float(acc_lo[e_lo - 1]) if e_lo else float("nan"),
          "test_acc_final": float(acc_lo[-1]),
          "fired_epoch_high_snr": e_hi or 0,
          "max_scaled_high_snr": float(max(crits[hi].scaled[layer0])),
          "fired_epoch_low_snr_C0.6": crits[lo].fired(layer0, 0.6) or 0}

# %% tags=["hide-input"]
f_stop = findings.record(
    "F-EARLYSTOP", source="002 (spectral criterion, tables of NN1/NN2 + D1/D2)",
    measured=stop_m,
    criterion="on a low-SNR setting the criterion stops training before the last epoch with "
              "test accuracy within "
              "1 point of (or above) the final one; on the high-SNR setting it never fires",
    rule=lambda m: 0 < m["fired_epoch_low_snr"] < m["last_epoch"]
    and m["test_acc_at_fire"] >= m["test_acc_final"] - 0.01 and m["fired_epoch_high_snr"]
    == 0)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The spectral early-stopping criterion during training. Left: the scaled statistic for each SNR, with the thresholds $C$ (dotted). Right: the test accuracy, with a triangle where the criterion fires at $C = 0.4$. F-EARLYSTOP asks that it fire on the hard task near its best accuracy and never on the easy one."}, "image": {"alt": "Two panels against epoch, one colour per SNR: the scaled statistic with two horizontal threshold lines, and test accuracy with triangle markers."}}
fig, (ax1, ax2) = subplots(1, 2, width=4.2, height=3.2)
for key, c in zip(snr_keys, PALETTE):
    cr, test_acc = crits[key], anova[key]["test_acc"]
    ax1.plot(cr.epochs, cr.scaled[layer0], color=c, lw=1.4,
             label=f"SNR {anova[key]['snr']:.2f}")
    ax2.plot(np.arange(1, len(test_acc) + 1), test_acc, color=c, lw=1.4)
    e = cr.fired(layer0, 0.4)
    if e:
        ax2.plot(e, test_acc[e - 1], "v", color=c, ms=8)
for C in Cs:
    ax1.axhline(C, color="k", ls=":", lw=1)
ax1.set(xlabel="epoch", ylabel=SCALED, title=f"{layer0}: the criterion fires above C")
fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=9)
ax2.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy (▼: fires at C = 0.4)")
plt.show()

# %% tags=["remove-input"]
if e_lo:
    text = (f"At the lowest SNR the criterion fires at epoch {e_lo} of {cfg['anova_epochs']}, with test accuracy "
            f"{stop_m['test_acc_at_fire']:.3f} against {stop_m['test_acc_final']:.3f} at the end")
else:
    text = "At the lowest SNR the criterion never fires"
text += (f"; at the highest SNR the scaled statistic peaks at {stop_m['max_scaled_high_snr']:.2f} and the criterion "
         + (f"fires at epoch {e_hi}" if e_hi else "never fires") + f". Verdict for F-EARLYSTOP: **{f_stop.verdict}**.")
if f_stop.reproduced:
    text += (" Stopping there saves most of the training time without losing accuracy: on a hard task the "
             "network has learnt what generalises long before it finishes memorising its training set.")
display(Markdown(text))

# %% [markdown]
# ## Martin and Mahoney's phases and the metrics of a layer
#
# Martin and Mahoney {cite}`martin2021implicit` follow the ESD of $W^T W$ during training through five
# phases plus one: *random-like* (a pure MP bulk), *bleeding-out* (a few eigenvalues leak past the edge),
# *bulk + spikes* (separated spikes, an MP bulk; Meng and Yao's LT with its $K-1$ spikes), *bulk-decay* (the bulk
# loses its edge and spreads; Meng and Yao's BT), *heavy-tailed* (the whole ESD becomes a power law,
# $\rho(\lambda) \sim \lambda^{-\alpha}$ with $2 \le \alpha \le 4$ moderately, $\alpha < 2$ very heavy; Meng and Yao's
# HT), and *rank collapse* (most eigenvalues vanish; Meng and Yao's RC, seen with exploding training). They read the
# phase off measurable quantities, which `weight_spectra.quality_metrics` computes: the tail exponent $\alpha$
# (with its standard error $(\alpha - 1)/\sqrt{k}$ over the $k$ tail values), the weighted
# $\hat\alpha = \alpha \log_{10} \lambda_{\max}$, the stable rank $\lVert W \rVert_F^2 / \lVert W \rVert_2^2$,
# the MP soft rank $\lambda_+ / \lambda_{\max}$ (1 when nothing leaves the bulk), and the number of spikes
# above the MP edge. Below, every layer of the digits network above and of the same MLP on MNIST-1D, the
# harder data set; in the paper profile, LeNet and miniAlexNet on MNIST and CIFAR-10 at Meng and Yao's batch sizes.

# %% tags=["hide-input"]
def real_run(name, kind, batch):
    ds = DATA[name]
    model = make_net(kind, ds, f"ch3-real-{name}-{kind}")
    h = training.train_sgd(model, losses.cross_entropy, ds, epochs=cfg["real_epochs"],
                           batch_size=batch,
                           lr=cfg["real_lr"], eval_data=ds,
                           seed=helpers.seed("ch3-real", name, batch))
    return {**cache.pack_weights(model.get_weights()), "test_acc": h["test_acc"]}


# %% tags=["hide-input"]
real = {}
for name, kind, batch in cfg["real_runs"]:
    arrays = cache.cached("ch3-real", {**cfg, "run": [name, kind, batch]},
                          lambda: real_run(name, kind, batch), verbose=False)
    model = make_net(kind, DATA[name], f"ch3-real-{name}-{kind}")
    model.set_weights(cache.unpack_weights(arrays))
    real[(name, kind, batch)] = (model, float(arrays["test_acc"][-1]))

# %% tags=["hide-input"]
rows = []
for (name, kind, batch), (model, acc) in real.items():
    for lname, s in ws.model_spectra(model).items():
        if min(s.matrix_shape) < 10:
            continue
        q = ws.quality_metrics(ws.layer_matrix(model.get_layer(lname).kernel.numpy()))
        rows.append([f"{kind} / {name} (S = {batch}, {100 * acc:.1f}%)", lname,
                     f"{s.matrix_shape[0]}×{s.matrix_shape[1]}",
                     f"{q['alpha']:.2f} ± {q['alpha_se']:.2f}", f"{q['alpha_weighted']:.2f}",
                     f"{q['stable_rank']:.1f}", f"{q['mp_soft_rank']:.2f}",
                     str(q["num_spikes"]),
                     ws.classify_spectrum(s.eigenvalues, ratio=s.ratio).label])
show_table(["network / data (batch, test acc)", "layer", "n×N", "α ± se", "α̂", "stable rank",
            "MP soft rank", "spikes", "class"], rows)

# %% tags=["hide-input"]
tails = {}  # per run: (layer, colour, sorted eigenvalues of WᵀW, power-law fit) of each layer
for run, (model, acc) in real.items():
    tails[run] = []
    for (lname, s), c in zip(ws.model_spectra(model).items(), PALETTE):
        if min(s.matrix_shape) >= 10:
            lam = np.sort(s.singular_values ** 2)
            tails[run].append((lname, c, lam, ws.power_law_alpha(lam)))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Tails of the eigenvalue distributions of networks trained on real data: the share of eigenvalues at least $\\lambda$ (dots, one colour per layer) and the fitted power laws above $x_{\\min}$ (lines). A straight tail on these log-log axes is a heavy, power-law tail."}, "image": {"alt": "Log-log complementary distribution plots of layer eigenvalues, one panel per network, with straight power-law fit lines."}}
fig, axes = subplots(1, len(real), width=4.2, height=3.2, squeeze=False)
for ax, ((name, kind, batch), layers) in zip(axes[0], tails.items()):
    for lname, c, lam, pl in layers:
        ax.loglog(lam[::-1], np.arange(1, len(lam) + 1) / len(lam), ".", ms=3, color=c,
                  label=lname)
        x = np.geomspace(pl["xmin"], lam[-1], 20)
        share = pl["num_tail"] / len(lam)
        ax.loglog(x, share * (x / pl["xmin"]) ** (1 - pl["alpha"]), "-", color=c, lw=1)
    ax.set(xlabel="eigenvalue λ of WᵀW", ylabel="share of eigenvalues ≥ λ",
           title=f"{kind} on {name}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, loc="lower left")
fig.suptitle("Tails of the ESDs (dots) and their power-law fits above x_min (lines)")
plt.show()

# %% [markdown]
# On a complementary cumulative plot a power-law tail is a straight line of slope $1 - \alpha$; an MP bulk
# falls off a cliff at its edge. The table's classes use the rule above.
#
# ## Explore: the spectrum for a chosen SNR and $K$
#
# Pick the ANOVA level $\delta$ and the number of classes $K$ of a precomputed run of the NN1-like network:
# the left panel shows the final spectrum of its last hidden layer with the MP fit, the right one the scaled
# statistic during training with the thresholds $C = 0.4$ and $0.6$. The book shows three runs; run the
# notebook for the controls (combinations that were not trained say so).

# %% tags=["hide-input"]
def draw_run(axes, delta, K):
    key = (net0, K, delta)
    if key not in anova:
        for ax in axes:
            ax.text(0.5, 0.5, f"δ = {delta}, K = {K}\nnot in the precomputed grid",
                    ha="center", transform=ax.transAxes)
        return
    r, label = anova[key], final_class(key, layer0).label
    plotting.esd_with_mp_fit(axes[0], r[f"ev_{layer0}"], float(r[f"ratio_{layer0}"]),
                             title=f"SNR {r['snr']:.2f}, K = {K}: {label}")
    cr = crits[key]
    axes[1].plot(cr.epochs, cr.scaled[layer0], color=PALETTE[0])
    for C in Cs:
        axes[1].axhline(C, color="k", ls=":", lw=1)
    axes[1].set(xlabel="epoch", ylabel=SCALED, title="Scaled statistic during training")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The explorer drawn for three runs (one row each): high SNR, low SNR, and the largest number of classes. Left: the final spectrum with its Marchenko-Pastur fit and spectral type. Right: the scaled statistic during training, with the thresholds $C = 0.4$ and $0.6$."}, "image": {"alt": "One of three runs, two panels: an eigenvalue histogram with a fitted density, and the scaled statistic against epoch with two horizontal threshold lines."}}
widgets.explore(draw_run, {"delta": sorted(cfg["deltas"]), "K": sorted(cfg["K_grid"])},
                [{"delta": max(cfg["deltas"]), "K": K0},
                 {"delta": min(cfg["deltas"]), "K": K0},
                 {"delta": cfg["delta_for_K"], "K": max(cfg["K_grid"])}], panels=2, width=4.2,
                height=3.0)

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Repeat the null simulation for $c = 0.8$ and $n = 500$. Where does the scaled statistic
# lie now, and why? Which bins contribute most to $\hat s_n$?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# v = [ws.meng_yao_statistic(rmt.wishart_eigenvalues(500, 625, seed=r)).scaled
#      for r in range(50)]
# print(np.percentile(v, [5, 50, 95]))
# ```
# Around 0.36 (0.34 to 0.38 over the 50 draws), above Meng and Yao's range. At $c = 0.8$ the lower edge is $a = (1 - \sqrt{0.8})^2 \approx 0.011$
# while a bin is $(b - a)/M \approx 0.2$ wide: the density rises from zero to its maximum (near $2a$)
# and falls again inside the first bin, whose flat histogram cannot follow it. Most of $\hat s_n$ comes from
# that bin; the statistic assumes the density varies slowly on the scale of a bin.
# :::
#
# **Exercise 2.** Derive $\hat\sigma$ and $\hat c$ from $\hat a$ and $\hat b$. Then add one spike of size
# $5 b$ to an MP spectrum of $n = 400$ eigenvalues: what happens to $\hat c$, $\hat\sigma^2$ and $\hat s_n$?
#
# :::{admonition} Solution
# :class: dropdown
# $\sqrt a = \sigma (1 - \sqrt c)$ and $\sqrt b = \sigma (1 + \sqrt c)$; adding and subtracting gives
# $\sigma = (\sqrt a + \sqrt b)/2$ and $\sqrt c = (\sqrt b - \sqrt a)/(\sqrt b + \sqrt a)$.
# ```python
# ev = rmt.wishart_eigenvalues(400, 1000, seed=1)
# print(ws.meng_yao_statistic(ev), ws.meng_yao_statistic(np.r_[ev, 5 * ev.max()]), sep="\n")
# ```
# The spike becomes $\hat b$: $\hat c$ and $\hat\sigma^2$ grow (to about 0.66 and 3.9), the fitted MP density
# spreads over five times the range, while the histogram keeps the bulk in the first few bins; $\hat s_n$ jumps
# from about 0.07 to about 1 (an L1 distance of densities is at most 2), and the scaled value from 0.2 to 3.
# One outlier is enough to fire the criterion, which is why the $K - 1$ spikes that move away in the bulk
# transition already count against the MP law.
# :::
#
# **Exercise 3.** The unfolding of `F-WIGNERW` uses a degree-5 polynomial. Recompute the p-values with
# degrees 3, 5, 9 and with `method="local"`. How sensitive is the test?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# s = spectra[LAYER]
# nu_bulk = s.singular_values[s.eigenvalues[::-1] <= s.mp.upper]
# for kw in ({"degree": 3}, {"degree": 5}, {"degree": 9}, {"method": "local"}):
#     print(kw, rmt.spacing_ks_test(rmt.level_spacings(nu_bulk, trim=0.05, **kw)).pvalue)
# ```
# With about a hundred levels the p-value moves by a factor of several between unfoldings: too low a degree
# leaves the density's variation in the spacings (too many small and large ones), too high a degree starts to
# follow the fluctuations themselves. The surmise is a statement about local correlations, and the honest
# report gives the unfolding with it.
# :::
#
# ## Summary
#
# - A layer's spectrum is read in Meng and Yao's convention: the eigenvalues $\nu_i^2/N$ of $WW^T/N$, convolutions
#   reshaped as $k_h k_w \times c_{\mathrm{in}} c_{\mathrm{out}}$; `weight_spectra.model_spectra` gives every
#   layer's shape, aspect ratio, MP bulk and outliers in one call. Gaussian matrices follow the MP law
#   (`I-MP`), GOE spacings the Wigner surmise (`I-WIGNER`).
# - Meng and Yao's distance $\hat s_n$ compares a histogram on $[X_{(1)}, X_{(n)}]$ with the MP law fitted to the
#   extremes; under the null its scaled form lies in $[0.1, 0.3]$ for the aspect ratios tested (`I-NULLSTAT`),
#   and it grows when $c \to 1$.
# - In a trained layer a few outliers stand above an MP bulk; removing the bulk (`F-BULK`), the spacings of the
#   bulk (`F-WIGNERW`) and the overlap of the outliers' singular matrices with the leading PCs (`F-SVPC`) test
#   what the bulk and the outliers carry.
# - On Meng and Yao's Gaussian ANOVA data the spectra move away from MP as the task gets harder (`F-DIFFICULTY`), and the
#   rule LT / BT / HT / RC of this chapter classifies them (`F-PHASES`); the spectral criterion stops training
#   where the spectrum leaves MP (`F-EARLYSTOP`).
# - The table gives every verdict of this run; the reproduction report gathers them for all chapters.

# %%
findings.table()
