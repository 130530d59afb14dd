# %% [markdown]
# # Curvature of a two-parameter network
#
# A network with two weights is small enough that every quantity of the previous chapters can be drawn as a
# surface over its whole parameter plane: the loss, the Fisher metric, the trace of the neural tangent
# kernel and the scalar curvature of the statistical manifold. This chapter does that for the single sigmoid
# neuron of {cite}`sauter2023fisher` (Sec. 5.1-5.2), for three losses, with the gradient-descent path on top.
#
# **You will learn** how the Fisher metric of a network is built from per-example loss gradients; why the
# Fisher trace and the NTK trace are exactly proportional for the L2-norm loss and not for the others; how to
# evaluate a curvature on a whole grid in a few vectorised calls without losing values to overflow; and what
# the curvature looks like along a training path.
#
# **It assumes** chapter 6 (Fisher metric, Christoffel symbols, Ricci scalar; `helpers.geometry`) and
# chapter 7 (the NTK and the Fisher-trace identity, {cite:t}`sauter2023fisher` eq. 5.1.2).
#
# **Checks.** Identities I-FINITE, I-2D, I-L2EXACT are asserted below; findings F-CLASSIFY, F-VALLEY, F-RNEG,
# F-NARROW are measured and recorded, with the verdict computed from the measurement.
#
# The source's figures had holes: {cite:t}`sauter2023fisher` Sec. 5.2.3 notes that some of its heat maps miss parts because the
# computation failed there. Ours must not: every value is computed in float64 with numerically stable formulas, and
# I-FINITE asserts it.

# %% tags=["hide-input"]
import helpers

GD = {"mean_power2": [0.5, 12000], "l2_norm": [0.5, 3000], "cross_entropy": [0.2, 6000]}
cfg = helpers.setup(
    "08_two_parameter_curvature",
    quick={"n_points": 1000, "grid": 141, "theta1": [-10.0, 4.0], "theta2": [-4.0, 10.0],
           "check_every": 4, "chunk": 4096, "path_samples": 601, "section_points": 1001,
           "further_samples": 5, "gd": GD},
    paper={"n_points": 1000, "grid": 401, "theta1": [-10.0, 4.0], "theta2": [-4.0, 10.0],
           "check_every": 8, "chunk": 4096, "path_samples": 2001, "section_points": 2001,
           "further_samples": 5, "gd": GD},
)

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from scipy.stats import spearmanr

from helpers import geometry
from helpers import neuron2d as nd

LOSSES = nd.LOSSES
LABEL = nd.LOSS_LABELS

# %% [markdown]
# ## The network and the data
#
# The network is one neuron with two inputs $x = (x_1, x_2)$, two weights and no bias ({cite:t}`sauter2023fisher` eq. 5.2.1):
#
# $$ f_\theta(x) = \sigma\big(5(\theta_1 x_1 + \theta_2 x_2)\big), \qquad \sigma(z) = \frac{1}{1 + e^{-z}}. $$
#
# The factor 5 makes the sigmoid steeper. The data are points drawn uniformly in the unit square, with label
# $y = 1$ above the diagonal ($x_2 > x_1$) and $y = 0$ below it ({cite:t}`sauter2023fisher` Sec. 5.2.2; {cite:t}`sauter2023fisher` does not state how many
# points it used). We draw them with `helpers.data.unit_square` from a seed derived from the book's global
# seed. Since the true boundary $x_2 = x_1$ passes through the origin, a neuron without bias can represent it:
# any $\theta$ on the ray $\theta_1 = -\theta_2 < 0$ puts the boundary $\theta \cdot x = 0$ exactly on the
# diagonal, and the larger $|\theta|$, the sharper the output's step.

# %%
data_seed = helpers.seed("ch8-unit-square")
ds = helpers.data.unit_square(cfg["n_points"], seed=data_seed)
x, y = ds.x_train.astype(np.float64), ds.y_train.astype(np.float64)
N = len(y)
print(
    f"{N} points (seed {data_seed}), {int(y.sum())} with label 1; closest point to the"
    f" diagonal at distance {np.min(np.abs(x[:, 1] - x[:, 0])) / np.sqrt(2):.2e}"
)

# %% mystnb={"figure": {"caption": "The training data: points drawn uniformly in the unit square, blue below the diagonal (label 0) and orange above it (label 1); the dashed line is the true boundary $x_2 = x_1$."}, "image": {"alt": "Scatter plot of many points filling the unit square, split by the dashed diagonal into a blue lower-right triangle and an orange upper-left triangle."}}
fig, ax = helpers.plotting.subplots(1, 1, width=4.2, height=4.0)
for label, colour in ((0, helpers.plotting.PALETTE[0]), (1, helpers.plotting.PALETTE[1])):
    ax.scatter(*x[y == label].T, s=3, color=colour, label=f"y = {label}")
ax.plot([0, 1], [0, 1], "k--", lw=1, label="$x_2 = x_1$")
ax.set(
    xlabel="$x_1$",
    ylabel="$x_2$",
    title=f"The data: {N} uniform points",
    xlim=(0, 1),
    ylim=(0, 1),
    aspect="equal",
)
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
plt.show()

# %% [markdown]
# ## Three losses, written so they never overflow
#
# Training minimises $L(\theta) = \frac1N \sum_i \ell_i(\theta)$ with a per-example loss $\ell_i$. {cite:t}`sauter2023fisher`
# (eqs. 5.1.5-5.1.7) uses three, which with a single output ($N_O = 1$) become
#
# | loss | $\ell(f, y)$ | $\partial\ell/\partial f$ |
# |---|---|---|
# | mean-power, $n = 2$ | $(f - y)^2$ | $2(f - y)$ |
# | L2-norm ($L_p$-norm, $p = 2$) | $\sqrt{(f - y)^2} = \lvert f - y\rvert$ | $\operatorname{sign}(f - y)$ |
# | cross-entropy | $-y \log f - (1 - y)\log(1 - f)$ | $\dfrac{f - y}{f(1 - f)}$ |
#
# The L2-*norm* loss is the norm itself, not its square: for one output it is the absolute error. {cite:t}`sauter2023fisher` writes
# the cross-entropy with a softmax, $-\sum_j y_j \log \operatorname{softmax}_j(f)$; over a single output the
# softmax is the constant 1 and that loss would be identically zero, so for one sigmoid output the
# cross-entropy is the binary one above.
#
# **Stable forms.** Write $z = 5\theta \cdot x$ for the logit, $s = 2y - 1 \in \{-1, +1\}$ and $u = s z$ for
# the margin (positive when the example is on the right side). Then $\lvert f - y\rvert = \sigma(-u)$ exactly,
# so the three losses are $\sigma(-u)^2$, $\sigma(-u)$ and $\operatorname{softplus}(-u) = \log(1 + e^{-u})$.
# Each of these is evaluated without cancellation or overflow for every finite $u$; the naive
# $\log(1 - \sigma(z))$ is not: in float32, $\sigma(z)$ rounds to 1 once $z \gtrsim 17$ and the logarithm
# returns $-\infty$. The next cell evaluates the naive float32 cross-entropy on this chapter's grid and
# counts what it loses; a plausible reason for {cite:t}`sauter2023fisher`'s holes.

# %%
t1, t2, TH = nd.theta_grid(cfg["theta1"], cfg["theta2"], cfg["grid"])


# one row of the grid at a time keeps memory small
def naive_float32_cross_entropy(theta_row):
    f32 = 1.0 / (1.0 + np.exp(-(5.0 * theta_row @ x.T).astype(np.float32)))
    return np.mean(-y * np.log(f32) - (1 - y) * np.log(1 - f32), axis=-1)


# %%
with np.errstate(all="ignore"):
    naive = np.stack([naive_float32_cross_entropy(row) for row in TH])
stable = nd.mean_loss("cross_entropy", TH, x, y).numpy()
print(f"naive float32 cross-entropy: {np.mean(~np.isfinite(naive)):.1%} of the"
      f" {TH.shape[0]}x{TH.shape[1]} grid is not finite; stable float64 form:"
      f" {np.mean(~np.isfinite(stable)):.1%}")

# %% [markdown]
# ## Gradient descent from (0.5, 0.5)
#
# As in {cite:t}`sauter2023fisher`, every training starts at $\theta = (0.5, 0.5)$ and runs full-batch gradient descent
# $\theta \leftarrow \theta - \eta \nabla L(\theta)$. {cite:t}`sauter2023fisher` adjusted the learning rate and the number of steps to
# each loss without stating them. We chose, per loss, a learning rate whose path is smooth (consecutive steps
# never turn by more than 90°: the column "min cos(turn)" stays positive) and a number of steps that brings
# the three paths to about the same distance from the origin (the column "final θ"), inside the plotted
# window. The gradients differ a lot between the losses (the mean-power loss has the smallest), hence the
# different budgets.

# %% tags=["hide-input"]
paths, rows = {}, []
for loss in LOSSES:
    lr, steps = cfg["gd"][loss]
    p = nd.gradient_descent(loss, x, y, (0.5, 0.5), lr, int(steps))
    d = np.diff(p, axis=0)
    turn = np.min(np.sum(d[1:] * d[:-1], 1) / np.linalg.norm(d[1:], axis=1)
                  / np.linalg.norm(d[:-1], axis=1))
    diag = nd.classification_diagnostics(p[-1], x, y)
    paths[loss] = p
    rows.append([LABEL[loss], lr, steps, f"({p[-1, 0]:.2f}, {p[-1, 1]:.2f})", f"{turn:.2f}",
                 f"{float(nd.mean_loss(loss, p[-1], x, y)):.2e}",
                 f"{diag['direction']:+.3f}°", f"{diag['smallest_margin']:+.1e}",
                 diag["misclassified"]])
helpers.plotting.show_table(["loss", "η", "steps", "final θ", "min cos(turn)", "final loss",
                             "direction − 135°", "smallest margin", "misclassified"], rows);

# %% [markdown]
# The last three columns say how well each trained neuron classifies. The boundary $\theta\cdot x = 0$ is a
# line through the origin at the angle of $\theta$ plus 90°; it lies exactly on the diagonal when $\theta$
# points at 135°. The *smallest margin* is the signed distance of the worst example to the boundary
# (negative: some example is on the wrong side). A direction $\delta$ away from 135° misclassifies exactly
# the points inside the thin wedge between its boundary and the diagonal. Which directions classify *every*
# point is a property of the sample: an example of label 1 at polar angle $\alpha$ needs the angle of
# $\theta$ below $\alpha + 90°$, one of label 0 above it, so the separating directions form an interval
# (`nd.separating_directions`), with the maximum-margin direction inside:

# %% tags=["hide-input"]
cone = nd.separating_directions(x, y)
print(f"directions that classify all {N} points: 135° {cone['low'] - 135:+.4f}° to 135°"
      f" {cone['high'] - 135:+.4f}° (width {cone['high'] - cone['low']:.4f}°); maximum margin"
      f" {cone['margin']:.2e} at 135° {cone['max_margin'] - 135:+.4f}°")

# %% [markdown]
# With a thousand points the interval is only about a tenth of a degree wide. On separable data gradient
# descent turns towards the maximum-margin direction, but only at a logarithmic rate
# {cite}`soudry2018implicit`, and here slower still: so many points lie close to the diagonal that the loss
# falls only like $1/|\theta|$ and $|\theta|$ grows like the cube root of the number of steps. As long as
# $5|\theta|$ times the spacing of the nearest margins (about $10^{-3}$) is small, the direction is set by
# the balance of the *many* points near the diagonal, not by the few nearest ones. Does it settle within a
# longer budget? We continue each training to 16 times its steps and follow the direction (a cached run of
# about 20 s):

# %% tags=["hide-input"]
LONGER = 16


def longer_directions(loss):
    lr, steps = cfg["gd"][loss]
    p = nd.gradient_descent(loss, x, y, (0.5, 0.5), lr, LONGER * int(steps))
    k = np.unique(np.geomspace(1, len(p) - 1, 200).round().astype(int))
    return {"step": k, "direction": np.degrees(np.arctan2(p[k, 1], p[k, 0])) - 135.0,
            "norm": np.linalg.norm(p[k], axis=1), "last": p[-1]}


# %% tags=["hide-input"]
longer_key = {"n_points": N, "gd": cfg["gd"], "longer": LONGER, "data_seed": data_seed}
longer = {loss: helpers.cache.cached(f"ch8-longer-{loss}", dict(longer_key, loss=loss),
                                     lambda loss=loss: longer_directions(loss))
          for loss in LOSSES}
helpers.plotting.show_table(
    ["loss", "steps", "|θ|", "direction − 135°", "smallest margin", "misclassified"],
    [[LABEL[loss], LONGER * cfg["gd"][loss][1], f"{d['norm']:.1f}", f"{d['direction']:+.3f}°",
      f"{d['smallest_margin']:+.1e}", d["misclassified"]]
     for loss in LOSSES for d in [nd.classification_diagnostics(longer[loss]["last"], x, y)]],
);

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The direction of $\\theta$ minus 135° against the GD step (logarithmic axis), continued to 16 times each training's budget (dotted: the chapter's budget). Grey band: the directions that classify every training point; dashed: the maximum-margin direction. A path classifies every point while it is inside the band."}, "image": {"alt": "Three line plots of the direction offset against the training step on a logarithmic axis, each with a thin grey horizontal band and a dashed line inside it; the curves wander near the band."}}
fig, axes = helpers.plotting.subplots(2, 2, width=3.75, height=3.0, sharey=True)
axes = axes.ravel()
axes[3].axis("off")
for ax, loss in zip(axes, LOSSES):
    d = longer[loss]
    ax.axhspan(cone["low"] - 135, cone["high"] - 135, color="0.8", label="separating")
    ax.axhline(cone["max_margin"] - 135, color="k", ls="--", lw=1, label="maximum margin")
    ax.semilogx(d["step"], d["direction"], color=helpers.plotting.PALETTE[0], label="GD")
    ax.axvline(cfg["gd"][loss][1], color="gray", ls=":", lw=1)
    ax.set(xlabel="GD step", ylabel="direction − 135° (degrees)", title=LABEL[loss],
           ylim=(-0.5, 0.5))
axes[3].legend(*axes[0].get_legend_handles_labels(), loc="center")
fig.suptitle("Does the direction of θ settle? (grey: classifies every point)")
plt.show()

# %% [markdown]
# Every path starts pointing at 45° and turns towards 135° from below; during the chapter's budget (dotted)
# it is still turning, and it crosses the band, so whether the last step lies inside the band depends on
# where the sample's few nearest points put the band's edges. The next cell measures how much the direction
# still moves over the last doubling of the longer runs, in units of the band's width:

# %% tags=["hide-input"]
width, moved = cone["high"] - cone["low"], {}
for loss in LOSSES:
    d = longer[loss]
    half = np.searchsorted(d["step"], d["step"][-1] // 2)
    moved[loss] = abs(d["direction"][-1] - d["direction"][half]) / width
    print(f"{LABEL[loss]:>20}: direction − 135° at {d['step'][half]} steps"
          f" {d['direction'][half]:+.3f}°, at {d['step'][-1]} steps"
          f" {d['direction'][-1]:+.3f}°: moved"
          f" {moved[loss]:.2f} band widths")

# %% [markdown]
# At the chapter's budgets (dotted) every path is still turning, often near an edge of the band, so whether
# its last step lies inside the band depends on where the budget stops it. Over the last doubling of the
# longer runs the direction moves by only a fraction of the band's width (printed above), so a further
# factor of two in the budget rarely changes the count; it has not converged, though: it drifts slowly on a
# direction set by the balance of the many points near the diagonal, which need not lie inside the band.
# The theoretical limit, the maximum-margin direction, takes over only once $5|\theta|$ times the spacing
# of the nearest margins (about $10^{-3}$) is
# large, i.e. at $|\theta|$ in the hundreds, of the order of $10^{9}$ steps at these learning rates
# ($|\theta| \propto t^{1/3}$), which no affordable budget reaches. {cite:t}`sauter2023fisher` gives
# neither its learning rates, its numbers of steps nor its number of points. We therefore measure
# F-CLASSIFY, with the spec's criterion, at the end of the three trainings *continued to 16 times their
# budget*, where it depends much less on where we stop; the smallest margin, the direction, the
# movement over the last doubling and the separating band are reported beside the verdict, not in the rule.
# (The surfaces and the other findings use the paths at the chapter's budgets.)

# %%
final = {loss: nd.classification_diagnostics(longer[loss]["last"], x, y) for loss in LOSSES}
misclassified = {loss: final[loss]["misclassified"] for loss in LOSSES}
measured = {f"{k.replace('_', ' ')} {LABEL[loss]}": v for k in ("misclassified",
            "smallest_margin", "direction") for loss in LOSSES for v in [final[loss][k]]}
measured.update({f"moved last doubling {LABEL[k]} (band widths)": v
                 for k, v in moved.items()})
measured.update({f"separating band {e} (deg)": cone[e] - 135.0 for e in ("low", "high")})

# %%
helpers.findings.record(
    "F-CLASSIFY",
    source="004 Sec. 5.2.3",
    criterion="every training point is classified correctly at the end of each of the three"
              " trainings",
    measured=measured,
    rule=lambda m: all(v == 0 for k, v in m.items() if k.startswith("misclassified")),
    note=(
        f"at the end of the trainings continued to {LONGER}x their budget; margins,"
        " directions - 135 (deg), movement and band are diagnostics, not in the rule"
    ),
);

# %% [markdown]
# ## Loss surfaces
#
# The whole grid is evaluated as one batch of $\theta$ of shape `(grid, grid, 2)` in float64 TensorFlow (split
# into chunks only to bound memory), and the results go through the result cache so a second execution is
# fast. `nd.surfaces` returns the loss, the Fisher components, both traces and the Ricci scalar $R$. On the
# full grid $R$ comes from Brioschi's 2-D formula with closed-form derivatives of the metric (below), one
# vectorised expression per point. The general routine `helpers.geometry.ricci_scalar`, which differentiates
# the metric twice by automatic differentiation, costs much more per point with $N$ examples in the metric;
# it is evaluated at every path point and on a sub-grid (every `check_every`-th grid point in each
# direction), where the two routes are compared (I-2D).

# %% tags=["hide-input"]
def compute(loss):
    lr, steps = cfg["gd"][loss]
    path = nd.gradient_descent(loss, x, y, (0.5, 0.5), lr, int(steps))
    idx = np.unique(np.linspace(0, int(steps), cfg["path_samples"]).round().astype(int))
    ricci = nd.in_orthonormal_coordinates(geometry.ricci_scalar)
    k = cfg["check_every"]
    out = {"idx": idx, "grid": nd.surfaces(loss, TH, x, y, chunk=cfg["chunk"]),  # Brioschi
           "check": nd.surfaces(loss, TH[::k, ::k], x, y, ricci_fn=ricci, chunk=cfg["chunk"]),
           "path": nd.surfaces(loss, path[idx], x, y, ricci_fn=ricci, chunk=cfg["chunk"])}
    raw = nd.surfaces(loss, path[idx], x, y, ricci_fn=geometry.ricci_scalar)  # raw θ coords
    out["path"]["R_raw"] = raw["R"]
    parts = [(part, d) for part, d in out.items() if part != "idx"]
    return dict({f"{part}_{k}": v for part, d in parts for k, v in d.items()}, idx=idx)


# %% tags=["hide-input"]
names = ("n_points", "grid", "theta1", "theta2", "check_every", "path_samples", "gd")
key = {k: cfg[k] for k in names}
res = {loss: helpers.cache.cached(f"ch8-surfaces-{loss}",
                                  dict(key, loss=loss, data_seed=data_seed),
                                  lambda loss=loss: compute(loss))
       for loss in LOSSES}
grid, check, along = (
    {loss: {k[len(part) + 1:]: v for k, v in r.items() if k.startswith(part + "_")}
     for loss, r in res.items()}
    for part in ("grid", "check", "path")
)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Loss surfaces of the three losses over the $(\\theta_1, \\theta_2)$ plane on a logarithmic colour scale, with the gradient-descent path from $(0.5, 0.5)$ (circle: start, star: end). Look for the dark valley along the anti-diagonal $\\theta_1 = -\\theta_2$ that the path follows (F-VALLEY)."}, "image": {"alt": "Three heat maps of the loss, dark along a valley from the centre towards the upper left, each with a white path line running into the valley."}}
fig, axes = helpers.plotting.subplots(2, 2, width=3.75, height=3.4)
axes = axes.ravel()
axes[3].axis("off")
for ax, loss in zip(axes, LOSSES):
    nd.plot_surface(ax, t1, t2, grid[loss]["loss"], "log", path=paths[loss],
                    title=LABEL[loss], label=r"$L(\theta)$ (log scale)", clip=100)
fig.suptitle("Loss surfaces with the gradient-descent path from $\\theta = (0.5, 0.5)$\n"
             "(○ start, ★ end)")
plt.show()

# %% [markdown]
# Each surface has a valley running from the start towards the upper left. The network output exceeds ½
# where $\theta\cdot x > 0$; points above the diagonal (label 1) want $\theta_1 x_1 + \theta_2 x_2 > 0$ and
# points below want it negative, which holds for every point when $\theta_1 = -\theta_2 < 0$, the more
# sharply the larger $|\theta|$. ({cite:t}`sauter2023fisher`'s text states the inequality the other way round; its conclusion, the
# valley along $\theta_1 = -\theta_2$ deepening towards large $\theta_2$, is right.) The three losses differ
# in the shape of the valley: the mean-power and L2-norm losses saturate on both sides (an example can cost at
# most 1), the cross-entropy grows linearly away from it.
#
# **Measuring the valley's direction (F-VALLEY).** On each horizontal line $\theta_2 = c$ for 19 values
# $c \in [1, 10]$ we find the $\theta_1$ that minimises $L$ (on a line of 3001 points in $[-20, 10]$), and
# measure the angle between the minimiser $(\theta_1^*, c)$ and the direction $(-1, 1)$. We call the valley
# "along $\theta_1 = -\theta_2$" when every such angle is at most 5°.

# %% tags=["hide-input"]
cs = np.linspace(1.0, 10.0, 19)
valley = {}
for loss in LOSSES:
    t1star = nd.valley_floor(loss, x, y, cs)
    angle = np.degrees(np.abs(np.arctan2(cs, t1star) - 0.75 * np.pi))
    valley[loss] = {"t1": t1star, "max_angle": float(angle.max()),
                    "slope": float(np.polyfit(cs, t1star, 1)[0])}
    print(f"{LABEL[loss]:>20}: max angle to (-1, 1) {angle.max():.2f}°, "
          f"fitted slope dθ1*/dθ2 = {valley[loss]['slope']:.3f}")

# %% tags=["hide-input"]
helpers.findings.record(
    "F-VALLEY",
    source="004 Sec. 5.2.3, Fig. 5.3",
    criterion="the loss valleys lie along θ₁ = −θ₂",
    measured={f"max angle {LABEL[k]} (deg)": v["max_angle"] for k, v in valley.items()},
    rule=lambda m: all(v <= 5.0 for v in m.values()),
    note=(
        "minimiser of L on 19 lines θ₂ = c ∈ [1, 10]; reproduced when every minimiser is"
        " within 5° of (−1, 1)"
    ),
);

# %% [markdown]
# ## The Fisher metric of the network and the NTK trace
#
# With $p_\theta = e^{-\ell}$ ({cite:t}`sauter2023fisher` Sec. 3.2.5) the Fisher metric is the *empirical* Fisher of the training
# data, built from per-example loss gradients and averaged over the data ({cite:t}`sauter2023fisher` eqs. 3.2.11, 5.1.1):
#
# $$ I_{ab}(\theta) = \frac1N \sum_{i=1}^N \partial_a \ell_i \,\partial_b \ell_i
#   = \frac1N \sum_{i=1}^N w_i\, x_{ia} x_{ib}, \qquad w_i = \Big(5\,\frac{\partial \ell_i}{\partial z_i}\Big)^2 . $$
#
# Because $\ell_i$ depends on $\theta$ only through $z_i = 5\theta\cdot x_i$, the metric is a weighted sum of
# the outer products $x_i x_i^\top$, and its derivatives are the same sums with $w'(z_i)$ and $w''(z_i)$
# (`nd.fisher_metric_and_derivatives` has them in closed form). The NTK of a one-output network is
# $\Lambda_{ij} = \nabla_\theta f_i \cdot \nabla_\theta f_j$, and its trace sums over the examples:
# $\operatorname{tr}\Lambda = \sum_i \lvert\nabla_\theta f_i\rvert^2 = \sum_i 25\,\sigma(z_i)^2\sigma(-z_i)^2 \lvert x_i\rvert^2$.
#
# **Why the L2-norm traces are proportional.** {cite:t}`sauter2023fisher` eq. 5.1.2 with one output reads
#
# $$ \operatorname{tr} I = \frac1N \sum_i \Big(\frac{\partial \ell}{\partial f_i}\Big)^2 \Lambda_{ii}. $$
#
# For the L2-norm loss $\partial\ell/\partial f = \operatorname{sign}(f - y) = \pm 1$ for every example, so
# $\operatorname{tr} I = \operatorname{tr}\Lambda / N$ *exactly*, at every $\theta$ (I-L2EXACT): the loss factor
# drops out and only the network part is left. For the mean-power loss the factor is $4(f_i - y_i)^2$ and for
# the cross-entropy $(f_i - y_i)^2/(f_i(1 - f_i))^2$; both differ from example to example, so
# $N\operatorname{tr} I / \operatorname{tr}\Lambda$ is a $\Lambda_{ii}$-weighted average of them that changes as
# $\theta$ moves. We check I-L2EXACT along the whole path through an independent route: per-example gradients
# and output Jacobians by automatic differentiation, not the closed forms.

# %% tags=["hide-input"]
p = paths["l2_norm"]
G = nd.per_example_gradients("l2_norm", p, x, y).numpy()  # (T, N, 2)
J = nd.output_jacobian(p, x).numpy()  # (T, N, 2)
trI_ad, trL_ad = np.mean(np.sum(G**2, -1), -1), np.sum(J**2, axis=(1, 2))
err_l2 = np.max(np.abs(trI_ad - trL_ad / N) / (trL_ad / N))
print(f"I-L2EXACT: max relative |tr I - tr Λ/N| / (tr Λ/N) over {len(p)} path points ="
      f" {err_l2:.1e}")
assert err_l2 <= 1e-8
for loss in ("mean_power2", "cross_entropy"):
    ratio = N * along[loss]["trI"] / along[loss]["trNTK"]
    print(f"{LABEL[loss]:>20}: N tr I / tr Λ along the path ranges over [{ratio.min():.3g},"
          f" {ratio.max():.3g}]")

# %% [markdown]
# ## The curvature, and two independent routes to it
#
# The Ricci scalar $R$ of the Fisher metric comes from `helpers.geometry.ricci_scalar`, which differentiates
# the metric function twice by automatic differentiation and contracts Christoffel symbols and the Riemann
# tensor (chapter 6; conventions of the notation page, a sphere has $R = 2/r^2$). In two dimensions there is
# a route that shares nothing with it: $R = 2K$ with $K$ the Gaussian curvature, and Brioschi's formula
# gives $K$ from $E = I_{11}$, $F = I_{12}$, $G = I_{22}$ and their first and second derivatives (subscripts
# $u = \theta_1$, $v = \theta_2$):
#
# $$ K = \frac{1}{(EG - F^2)^2}\left(
#   \begin{vmatrix} -\tfrac12 E_{vv} + F_{uv} - \tfrac12 G_{uu} & \tfrac12 E_u & F_u - \tfrac12 E_v \\
#   F_v - \tfrac12 G_u & E & F \\ \tfrac12 G_v & F & G \end{vmatrix}
#   - \begin{vmatrix} 0 & \tfrac12 E_v & \tfrac12 G_u \\ \tfrac12 E_v & E & F \\ \tfrac12 G_u & F & G \end{vmatrix}
#   \right). $$
#
# `nd.ricci_scalar_brioschi` evaluates it with the closed-form derivatives of the metric: for all points of a
# batch at once, a few products of $(\text{points}, N)$ arrays and sums over the examples.
#
# **Conditioning.** Deep in the valley a few examples near the boundary carry almost all the weight $w_i$,
# and $I(\theta)$ becomes ill-conditioned (the cell below prints the largest condition number met). Evaluated in
# the raw coordinates $\theta$, both routes then lose digits: inverting $I$ and the cancellations between the
# terms of $R$ amplify the rounding errors of float64. Since $R$ is a scalar it is the same in every
# coordinate system, so at each point $\theta_0$ we evaluate it in the linear coordinates $\varphi$ with
# $\theta = \theta_0 + I(\theta_0)^{-1/2}\varphi$, in which the metric is the identity at the point
# (`nd.in_orthonormal_coordinates` wraps `geometry.ricci_scalar` this way; the Brioschi route does the same
# with its closed-form derivatives). The surfaces below use these orthonormal coordinates; along the paths we
# also keep $R$ from the raw coordinates to show the difference.
#
# I-2D asks the two routes to agree to a relative $10^{-8}$. We assert it pointwise at every point of the
# sub-grid and every path point, $\lvert R_\text{geometry} - R_\text{Brioschi}\rvert \le 10^{-8}\lvert R_\text{Brioschi}\rvert +
# 10^{-12}\max\lvert R_\text{Brioschi}\rvert$ (the second term, rounding at the scale of the surface, only
# matters where $R$ passes through zero, e.g. at $\theta = 0$ for the L2-norm loss), and report the relative
# error in the maximum norm.

# %% tags=["hide-input"]
finite = {f"{loss}:{part}:{k}": bool(np.all(np.isfinite(v))) for loss in LOSSES
          for part, d in (("grid", grid[loss]), ("check", check[loss]), ("path", along[loss]))
          for k, v in d.items()}
assert all(finite.values()), [k for k, v in finite.items() if not v]
print(f"I-FINITE: all {sum(v.size for l in LOSSES for v in grid[l].values())} grid values "
      f"({len(finite)} surfaces and path curves) are finite")

# %% tags=["hide-input"]
rel2d, raw2d, cond = {}, {}, {}
for loss in LOSSES:
    for where, S in (("sub-grid", check[loss]), ("path", along[loss])):
        diff, ref = np.abs(S["R"] - S["R_brioschi"]), np.abs(S["R_brioschi"])
        bound = 1e-8 * ref + 1e-12 * ref.max()
        assert np.all(diff <= bound), (loss, where, np.max(diff / ref))
        rel2d[loss, where] = diff.max() / ref.max()
    A = along[loss]
    raw2d[loss] = np.max(np.abs(A["R_raw"] - A["R_brioschi"]) / np.abs(A["R_brioschi"]))
    g = np.stack([grid[loss][k] for k in ("I11", "I12", "I12", "I22")], -1).reshape(-1, 2, 2)
    cond[loss] = np.linalg.cond(g).max()
    print(f"I-2D {LABEL[loss]:>20}: max-norm relative error sub-grid"
          f" {rel2d[loss, 'sub-grid']:.1e} ({check[loss]['R'].size} points), path"
          f" {rel2d[loss, 'path']:.1e}; raw coordinates on the path: pointwise up to"
          f" {raw2d[loss]:.1e}; largest condition number of I on the grid {cond[loss]:.1e}")

# %% tags=["hide-input"]
routes = (("sub-grid", "R", "sub-grid, orthonormal coords"),
          ("path", "R", "path, orthonormal coords"), ("path", "R_raw", "path, raw coords"))
agreement = {}  # (loss, route) -> condition numbers of I, relative differences
for loss in LOSSES:
    for where, key, name in routes:
        S = check[loss] if where == "sub-grid" else along[loss]
        g = np.stack([S["I11"], S["I12"], S["I12"], S["I22"]], -1).reshape(-1, 2, 2)
        ref = np.maximum(np.abs(S["R_brioschi"]).ravel(), 1e-300)
        rel = np.abs(S[key] - S["R_brioschi"]).ravel() / ref
        rel = np.clip(rel, 1e-17, None)
        agreement[loss, name] = np.linalg.cond(g), rel

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Pointwise relative difference between the general curvature routine and Brioschi's formula against the condition number of the Fisher metric, on the sub-grid and on the path, in orthonormal and in raw coordinates (dashed: the $10^{-8}$ of I-2D). Raw coordinates lose accuracy as the metric becomes ill-conditioned; orthonormal ones do not."}, "image": {"alt": "Three log-log scatter plots, one per loss, of relative difference against condition number, with a dashed horizontal line at one in a hundred million; the raw-coordinate points rise with the condition number."}}
fig, axes = helpers.plotting.subplots(2, 2, width=3.75, height=3.2, sharey=True)
axes = axes.ravel()
for ax, loss in zip(axes, LOSSES):
    for *_, name in routes:
        ax.loglog(*agreement[loss, name], ".", ms=2, alpha=0.5, label=name)
    ax.axhline(1e-8, color="k", ls="--", lw=1)
    ax.set(xlabel=r"condition number of $I(\theta)$", title=LABEL[loss])
for ax in axes[[0, 2]]:
    ax.set_ylabel("relative difference,\ngeometry vs Brioschi")
axes[3].axis("off")
axes[3].legend(*axes[0].get_legend_handles_labels(), loc="center", markerscale=4)
fig.suptitle("Two routes to R: pointwise agreement versus the conditioning of the metric")
plt.show()

# %% [markdown]
# In orthonormal coordinates every point satisfies the bound asserted above. A point can still lie far above the
# dashed line where $R$ itself vanishes to rounding (at $\theta = 0$ for the L2-norm loss, for instance): the
# ratio then compares two rounding errors, and this is what the absolute term of the I-2D assertion allows
# for. In the raw coordinates the automatic-differentiation route drifts away from Brioschi as the condition
# number grows, by up to the figure printed above: no bug, only float64 rounding amplified by a nearly
# singular metric, which the change of coordinates removes.
#
# ## Surfaces of the Fisher metric, the traces and the curvature
#
# One figure per loss: the three components of $I$, its trace, the NTK trace and $R$, with the path (thin and
# dashed on $R$, so that it does not hide a narrow valley along it). Positive
# quantities use logarithmic colours (they span many decades); $R$ uses a symmetric logarithmic scale, blue for
# negative and red for positive, linear within $\pm 1$, saturating beyond the 99.5th percentile of $|R|$ so the
# rare extreme values at the grid's corners do not swallow the colour range.

# %% tags=["hide-input"]
panels = [("I11", "log", r"$I_{11}$"), ("I12", "log", r"$I_{12}$"),
          ("I22", "log", r"$I_{22}$"), ("trI", "log", r"$\mathrm{tr}\, I$"),
          ("trNTK", "log", r"$\mathrm{tr}\, \Lambda$"), ("R", "symlog", "$R$")]


def thin_path(ax, path):  # on R a thin dashed path, which does not hide a narrow valley
    ax.plot(*path.T, color="k", lw=0.7, ls=(0, (3, 3)))
    ax.plot(*path[0], "o", ms=6, mfc="white", mec="black")
    ax.plot(*path[-1], "*", ms=11, mfc="white", mec="black")


# %% tags=["hide-input"] mystnb={"figure": {"caption": "Mean-power loss: the Fisher metric components $I_{11}$, $I_{12}$, $I_{22}$, its trace and the NTK trace on logarithmic colours, and the scalar curvature $R$ on a symmetric logarithmic scale (blue negative, red positive), with the gradient-descent path (thin and dashed on $R$)."}, "image": {"alt": "Six heat maps over the parameter plane for the mean-power loss: five positive quantities in viridis colours, bright where the decision boundary cuts through the data, and the curvature in blue and red, each with the training path drawn on top."}}
def metric_figure(loss):
    fig, axes = helpers.plotting.subplots(3, 2, width=3.75, height=3.3)
    for ax, (k, scale, name) in zip(axes.ravel(), panels):
        path = None if k == "R" else paths[loss]
        nd.plot_surface(ax, t1, t2, grid[loss][k], scale, path=path, title=name, label=name,
                        clip=100 if scale == "log" else 99.5)
    thin_path(axes.ravel()[-1], paths[loss])
    title = f"{LABEL[loss]} loss: Fisher metric, traces and scalar curvature"
    fig.suptitle(f"{title}\n({N} points)")
    plt.show()


metric_figure("mean_power2")

# %% mystnb={"figure": {"caption": "L2-norm loss: the Fisher metric components $I_{11}$, $I_{12}$, $I_{22}$, its trace and the NTK trace on logarithmic colours, and the scalar curvature $R$ on a symmetric logarithmic scale (blue negative, red positive), with the gradient-descent path (thin and dashed on $R$)."}, "image": {"alt": "Six heat maps over the parameter plane for the L2-norm loss: five positive quantities in viridis colours, bright where the decision boundary cuts through the data, and the curvature in blue and red, each with the training path drawn on top."}}
metric_figure("l2_norm")

# %% mystnb={"figure": {"caption": "Cross-entropy loss: the Fisher metric components $I_{11}$, $I_{12}$, $I_{22}$, its trace and the NTK trace on logarithmic colours, and the scalar curvature $R$ on a symmetric logarithmic scale (blue negative, red positive), with the gradient-descent path (thin and dashed on $R$)."}, "image": {"alt": "Six heat maps over the parameter plane for the cross-entropy loss: five positive quantities in viridis colours, bright where the decision boundary cuts through the data, and the curvature in blue and red, each with the training path drawn on top."}}
metric_figure("cross_entropy")

# %% [markdown]
# What the surfaces show:
#
# - **The NTK trace is the same for all three losses** (it does not know the loss), and for the L2-norm loss
#   $\operatorname{tr} I$ is the same picture divided by $N$ (I-L2EXACT).
# - The Fisher components are small where every example sits deep on one side of the boundary (weights $w_i$
#   decay like $e^{-2|u_i|}$ or faster) and large where the boundary $\theta\cdot x = 0$ cuts through the data.
#   The thin rays fanning out from the origin are directions $\theta$ whose boundary passes through a single
#   data point: that point then dominates the sum.
# - Blue marks negative $R$, red $R > 0$. As $\theta$ turns, the boundary sweeps across individual data points,
#   and each crossing can leave a ridge or a furrow in $R$; the more points, the finer and denser these
#   features. {cite:t}`sauter2023fisher` saw the L2-norm valley of $R$ only in the curve along the path, not in
#   its heat map. Whether a path ever enters a red region is measured below (F-RNEG).
#
# On these maps the colour range spans many decades of $|R|$, and a valley of $R$ that is narrow compared with
# the plotted window hardly shows. A close-up in coordinates that follow the path
# (horizontal: position along the training, vertical: signed distance $s$ from the path, perpendicular to it,
# as in the F-NARROW cross-sections below), with the colour range set by the values in this band:

# %% tags=["hide-input"]
def r_band(loss, num_along=40, half_width=1.5, num_across=161):  # R on lines across the path
    p, fracs, lines = paths[loss], np.linspace(0.025, 1.0, num_along), []
    for frac in fracs:
        k = int(round(frac * (len(p) - 1)))
        tangent = p[k] - p[max(k - 50, 0)]
        s, line = nd.cross_section(p[k], [tangent[1], -tangent[0]], half_width, num_across)
        lines.append(line)
    return fracs, s, nd.surfaces(loss, np.stack(lines), x, y)["R"]  # (num_along, num_across)


band = {loss: r_band(loss) for loss in LOSSES}

# %% tags=["hide-input"]
colors = plt.matplotlib.colors


def band_colours(R_band):  # the values to draw, colour map, norm and colour-bar label
    if R_band.max() < 0:  # all negative: the colour range for |R|, darker = more negative
        return -R_band, "Blues", colors.LogNorm(), "$-R$ (log scale)"
    top = np.abs(R_band).max()
    norm = colors.SymLogNorm(linthresh=1.0, vmin=-top, vmax=top)
    return R_band, "RdBu_r", norm, "$R$ (symmetric log scale)"


# %% tags=["hide-input"] mystnb={"figure": {"caption": "Close-up of $R$ in a band around each path: horizontal the fraction of training, vertical the signed distance $s$ across the path, which runs along $s = 0$. The colour range is set by the values in the band; a horizontal trench along $s = 0$ is a valley of $R$ that follows the path."}, "image": {"alt": "Three heat maps with the fraction of training on the horizontal axis and the distance across the path on the vertical axis, shaded by the curvature, with horizontal and oblique bands."}}
fig, axes = helpers.plotting.subplots(2, 2, width=3.75, height=3.2)
axes = axes.ravel()
axes[3].axis("off")
for ax, loss in zip(axes, LOSSES):
    fracs, s_band, R_band = band[loss]
    values, cmap, norm, label = band_colours(R_band)
    mesh = ax.pcolormesh(fracs, s_band, values.T, cmap=cmap, shading="auto", norm=norm,
                         rasterized=True)
    fig.colorbar(mesh, ax=ax, pad=0.02, label=label)
    ax.set(xlabel="fraction of training", ylabel="s (across the path)", title=LABEL[loss])
    ax.grid(False)
fig.suptitle("Close-up of R around the path (the path is the line s = 0)")
plt.show()

# %% [markdown]
# A dark horizontal trench centred on $s = 0$ is a valley of $R$ that follows the path; the ridges and furrows
# that run obliquely come from individual data points whose boundary crossings the path passes. Whether the
# trench is there, and how narrow it is compared with the loss valley, F-NARROW below measures on four
# cross-sections.
#
# ## Along the paths
#
# The same quantities at evenly spaced points of each path (a logarithmic step axis shows the fast start and the slow
# end). The dashed line is $\operatorname{tr}\Lambda / N$.

# %% mystnb={"figure": {"caption": "Along each path, against the GD step on a logarithmic axis: the Fisher trace and the NTK trace divided by $N$ (left; they coincide for the L2-norm loss, I-L2EXACT) and the scalar curvature $R$ (right; the dotted line marks half of the training, over which F-RNEG asks for a decrease)."}, "image": {"alt": "Three rows of two line plots: on the left two trace curves per loss, identical for the L2-norm loss; on the right the curvature against the training step."}}
fig, axes = helpers.plotting.subplots(3, 2, width=3.75, height=2.6, sharex="row")
for j, loss in enumerate(LOSSES):
    steps = res[loss]["idx"] + 1
    A = along[loss]
    axes[j, 0].loglog(steps, A["trI"], label=r"$\mathrm{tr}\, I$")
    axes[j, 0].loglog(steps, A["trNTK"] / N, "--", label=r"$\mathrm{tr}\, \Lambda / N$")
    axes[j, 0].set(title=f"{LABEL[loss]}: traces", ylabel="trace", xlabel="GD step + 1")
    axes[j, 1].semilogx(steps, A["R"], color=helpers.plotting.PALETTE[3])
    axes[j, 1].axvline(steps[-1] / 2, color="gray", ls=":", lw=1)
    axes[j, 1].set(title=f"{LABEL[loss]}: $R$", xlabel="GD step + 1", ylabel="$R$")
axes[0, 0].legend(loc="lower left")
fig.suptitle("Fisher trace, NTK trace and scalar curvature along the paths\n"
             "(dotted: half of training)")
plt.show()

# %% [markdown]
# For the L2-norm loss the two trace curves coincide (they are the same function up to the factor $N$);
# for the other two they follow different shapes, because the loss factor $(\partial\ell/\partial f_i)^2$
# shrinks with the errors as training proceeds. {cite:t}`sauter2023fisher` reports (F-RNEG) that $R$ is always negative along the paths
# and descends roughly linearly at first. We measure the largest $R$ on each path and, over the first half of
# the steps, Spearman's rank correlation between step and $R$. The verdict reads "decreases during the first
# half" as the specification words it, with no threshold of our own: $R$ at half time is below $R$ at the
# start. Two diagnostics stand beside it and say what kind of decrease it is: $\rho$ ($-1$ for a curve that
# falls at every step) and the largest *rise* within the first half, $\max_{t < t'} (R(t') - R(t))$, which
# is 0 for a curve that never goes up. (On the
# logarithmic axis above, the L2-norm curve rises briefly during the first few dozen steps.)

# %% tags=["hide-input"]
rneg = {}
for loss in LOSSES:
    idx, R = res[loss]["idx"], along[loss]["R"]
    first = idx <= idx[-1] // 2
    rise = np.max(np.maximum.accumulate(R[first][::-1])[::-1] - R[first])
    rneg[loss] = {"max R": float(R.max()),
                  "rho": float(spearmanr(idx[first], R[first]).correlation),
                  "drop": float(R[first][-1] - R[0]), "rise": float(rise)}
    print(f"{LABEL[loss]:>20}: max R on path {R.max():.3g}; first half: rho ="
          f" {rneg[loss]['rho']:.3f}, R(T/2) - R(0) = {rneg[loss]['drop']:.3g}; R at the end"
          f" {R[-1]:.3g}; largest rise within the first half {rneg[loss]['rise']:.3g}")

# %% tags=["hide-input"]
helpers.findings.record(
    "F-RNEG", source="004 Sec. 5.2.3, Figs. 5.8-5.10",
    criterion=("R is negative everywhere along the three paths and decreases during the"
               " first half of training"),
    measured={**{f"max R {LABEL[k]}": v["max R"] for k, v in rneg.items()},
              **{f"rho first half {LABEL[k]}": v["rho"] for k, v in rneg.items()},
              **{f"R(T/2) - R(0) {LABEL[k]}": v["drop"] for k, v in rneg.items()},
              **{f"largest rise first half {LABEL[k]}": v["rise"] for k, v in rneg.items()}},
    rule=lambda m: all(v < 0 for k, v in m.items() if k.startswith(("max R", "R(T/2)"))),
    note=("decrease: R(T/2) < R(0); Spearman rho(step, R) over the first half and the largest"
          " rise (max over t < t' of R(t') - R(t)) are diagnostics"),
);

# %% [markdown]
# ## How narrow is the valley of R? (F-NARROW)
#
# {cite:t}`sauter2023fisher` observes that the path runs down into a valley of strongly negative curvature, and that
# this valley is narrower than the valley of the loss. We measure widths at half depth on cross-sections: at 25%,
# 50%, 75% and 100% of each training, on the line through the path point perpendicular to the path (the
# direction of the last 50 steps), for $s \in [-5, 5]$ (`section_points` points, see the configuration). For a
# profile $v(s)$ the *floor* is its minimum, the *rim* the median of $v$ on the flanks $|s| \ge 2.5$, and the
# *width at half depth* the length of the interval around the floor where $v$ stays below (floor + rim)/2
# (`nd.valley_width`). For $R$ the floor is searched around the path, inside the loss valley's half-depth
# interval (`nd.path_cross_section`). When the rim is not above the floor, the profile has no valley there and
# its width is undefined (NaN).
#
# The finding is reproduced when, on every cross-section of every loss, the R valley is narrower than the loss
# valley, i.e. when the largest ratio R width / loss width is below 1: the specification's criterion, nothing
# more. A cross-section where R has no valley around the path cannot show a narrower one, so its ratio is NaN
# and the largest ratio is NaN too (`nd.largest_width_ratio` uses NumPy's maximum, which keeps a NaN, where
# Python's `max` would silently skip it); NaN is not below 1, and the finding is then *not reproduced*.
#
# Beside the verdict, not inside it, we report the *prominence* of the R valley, (rim − floor)/|rim|: it says
# how far the floor lies below the level of the flanks, relative to that level. It is negative when the
# lowest point near the path lies above the flanks' median (no valley), and a valley barely deeper than the
# ripples beside it (small prominence) has a width that means little. The table lists every cross-section.
# (For the L2-norm loss {cite:t}`sauter2023fisher` itself notes that the valley of $R$ does not show in its heat
# map; the table says whether our profiles across that path have one.)

# %% tags=["hide-input"]
fractions = (0.25, 0.5, 0.75, 1.0)
sections = {
    loss: [nd.path_cross_section(loss, paths[loss], f, x, y, 5.0, cfg["section_points"])
           for f in fractions]
    for loss in LOSSES
}
rows = [[LABEL[loss], f"{c['fraction']:.0%}", f"{c['wl']['width']:.3g}",
         f"{c['wr']['width']:.3g}", f"{c['ratio']:.3g}", f"{c['prominence']:.3g}"]
        for loss in LOSSES for c in sections[loss]]
helpers.plotting.show_table(
    ["loss", "training", "loss width", "R width", "R / loss", "R prominence"], rows
);

# %% tags=["hide-input"]
red = helpers.plotting.PALETTE[3]


def draw_section(ax, c, title):  # R on ax, the loss on a twin axis
    ax.plot(c["s"], c["S"]["R"], color=red, lw=1.2)
    if np.isfinite(c["wr"]["width"]):
        ax.axhspan(c["wr"]["level"], c["wr"]["floor"], color=red, alpha=0.2)
        ax.axhline(c["wr"]["rim"], color=red, ls="--", lw=1)
    ax.set(xlabel="s (across the path)", ylabel="$R$", title=title)
    tw = ax.twinx()
    tw.plot(c["s"], c["S"]["loss"], color="k", lw=1.5)
    tw.axhline(c["wl"]["level"], color="k", ls=":", lw=1)
    tw.set_ylabel("loss $L$")
    tw.grid(False)


# %% tags=["hide-input"] mystnb={"figure": {"caption": "The cross-section at half of each training: the loss (black, right axis; dotted: its half-depth level) and $R$ (red, left axis; dashed: the rim, shaded: from the floor to the half-depth level when $R$ has a valley there) against the signed distance $s$ across the path. Compare the width of the red valley with that of the black one."}, "image": {"alt": "Three line plots against the distance across the path, each with a U-shaped black loss curve and a red curvature curve on a second axis."}}
fig, axes = helpers.plotting.subplots(2, 2, width=3.75, height=3.2)
axes = axes.ravel()
axes[3].axis("off")
for ax, loss in zip(axes, LOSSES):
    draw_section(ax, sections[loss][1], f"{LABEL[loss]}, half of training")
fig.suptitle("Across the path: loss (black) and R (red)")
plt.show()

# %% tags=["hide-input"]
narrow = {
    loss: {
        "max width ratio R/loss": nd.largest_width_ratio(
            [c["ratio"] for c in sections[loss]]
        ),
        "min prominence": float(np.min([c["prominence"] for c in sections[loss]])),
    }
    for loss in LOSSES
}

# %% tags=["hide-input"]
_ = helpers.findings.record(
    "F-NARROW",
    source="004 Sec. 5.2.3",
    criterion=(
        "the valley of R around the path is narrower than the loss valley (width at half"
        " depth across the path)"
    ),
    measured={f"{k} {LABEL[loss]}": v for loss in LOSSES for k, v in narrow[loss].items()},
    rule=lambda m: all(v < 1 for k, v in m.items() if k.startswith("max width ratio")),
    note=(
        "4 cross-sections per path (25/50/75/100% of training), s in [-5, 5]; NaN: a"
        " section where R has no valley; the prominences are diagnostics, not in the rule"
    ),
)

# %% tags=["hide-input"]
def describe_narrow(loss):
    r, prom = narrow[loss]["max width ratio R/loss"], narrow[loss]["min prominence"]
    if np.isnan(r):
        what = "has no valley around the path on at least one cross-section (width NaN)"
    else:
        what = ("is narrower than the loss valley on every section" if r < 1
                else "is not narrower than the loss valley on some section")
    return (f"- **{LABEL[loss]}**: the R profile {what}; largest width ratio {r:.3g},"
            f" smallest prominence {prom:.3g}.")


# %% tags=["hide-input"]
ridge = {loss: [(c["S"]["R"][len(c["s"]) // 2], c["wr"]["rim"]) for c in sections[loss]]
         for loss in LOSSES}
wide = {loss: nd.path_cross_section(loss, paths[loss], 0.5, x, y, 12.0, 1201)
        for loss in LOSSES}
for loss in LOSSES:
    print(f"{LABEL[loss]:>20}: R on the path / median of R on the flanks, per section: "
          + ", ".join(f"{r:.3g} / {rim:.3g}" for r, rim in ridge[loss])
          + "; window s in [-12, 12] at half training: R width"
          f" {wide[loss]['wr']['width']:.3g},"
          f" loss width {wide[loss]['wl']['width']:.3g}")

# %% tags=["hide-input"]
verdict = helpers.findings.get("F-NARROW").verdict
display(Markdown("\n".join(describe_narrow(loss) for loss in LOSSES)
                 + f"\n\nVerdict for F-NARROW: **{verdict}**."))

# %% [markdown]
# The criterion is applied as the specification states it: widths at half depth across the path, on the
# line perpendicular to it, at four points of each training including its mid-point and its end. For the
# mean-power and cross-entropy losses R has a sharp trench on the path, about a tenth as wide as the loss
# valley. For the L2-norm loss the printed cross-section says why its width is NaN: R on the path is
# *higher* than the median of R on the flanks (a low ridge between two lower slopes, with ripples where the
# boundary crosses single points) on at least one section; on others, depending on the sample, R may show a
# shallow dip (small prominence). A window more than twice as wide ($s \in [-12, 12]$, printed above) tells
# whether a wider view changes this. This matches {cite:t}`sauter2023fisher`'s own remark that for the L2-norm loss the
# valley of R is not visible in its heat map; what it saw for that loss is the descent of R *along* the path
# (F-RNEG), not a valley across it. Why the L2-norm metric, which is the NTK's ($w_i = 25\,p_i^2 q_i^2$, the
# same weight on both sides of the boundary, I-L2EXACT), has no trench while the other two do, we have not
# worked out; the finding, read for all three losses, is not reproduced because of this loss.

# %% [markdown]
# ## How robust are the verdicts?
#
# The verdicts above come from one data sample. The book's global seed can be changed, and a verdict that
# flips with it says more about the sample than about the network. The last column of the findings table at
# the end of the chapter gives the recorded verdicts at seeds 0, 1 and 2 (`make robustness`) and, for a
# verdict that flips, its key figure at each seed; for F-CLASSIFY that is the number of misclassified points
# after the continued training, which can differ by a single point near the boundary. The reproduction
# report gives every seed's figures. Within this page, the next cell repeats the four
# measurements (same definitions and rules, with the Brioschi route for $R$, no grids) on further samples of
# the same size, drawn from other seeds. To keep the page fast, "misclassified" is counted here at the
# chapter's budgets, not after the 16-fold continuation that F-CLASSIFY above uses.

# %% tags=["hide-input"]
robust, others = {}, range(1, 1 + cfg["further_samples"])
for k in others:
    other = helpers.data.unit_square(N, seed=helpers.seed("ch8-unit-square", k))
    xo, yo = other.x_train.astype(np.float64), other.y_train.astype(np.float64)
    for loss in LOSSES:
        robust[k, loss] = nd.finding_measurements(loss, xo, yo, *cfg["gd"][loss],
                                                  section_points=cfg["section_points"])
helpers.plotting.show_table(
    ["sample", "loss", "misclassified", "valley angle (°)", "max R on path", "ρ first half",
     "R(T/2) − R(0)", "R/loss width", "prominence"],
    [[k, LABEL[loss], m["misclassified"], f"{m['valley_angle']:.2f}", f"{m['max_R']:.3g}",
      f"{m['rho']:.3f}", f"{m['drop']:.3g}", f"{m['width_ratio']:.3g}",
      f"{m['prominence']:.3g}"] for (k, loss), m in robust.items()],
);

# %% tags=["hide-input"]
criteria = {
    "F-CLASSIFY": lambda m: m["misclassified"] == 0,
    "F-VALLEY": lambda m: m["valley_angle"] <= 5.0,
    "F-RNEG": lambda m: m["max_R"] < 0 and m["drop"] < 0,
    "F-NARROW": lambda m: m["width_ratio"] < 1,
}
held = {fid: sum(all(rule(robust[k, loss]) for loss in LOSSES) for k in others)
        for fid, rule in criteria.items()}
display(Markdown(
    f"On the {len(others)} further samples the criteria (same rules as above, all three"
    " losses at once) hold for: "
    + ", ".join(f"{fid} {n} of {len(others)}" for fid, n in held.items())
    + ". A finding that holds on some samples and not on others is a property of the sample"
    " as much as of the model; the findings table reports the book's own sample."
))

# %% [markdown]
# ## Explore a point of the plane
#
# Pick a loss and a point $\theta$. Left: the network's output over the unit square (grey level, white for 0,
# dark for 1), its decision boundary $\theta\cdot x = 0$ (black) and the data (blue $y = 0$, orange $y = 1$;
# misclassified points ringed in red). Middle: the loss surface with
# the point and the metric ellipse $\{v : v^\top I(\theta) v = \text{const}\}$, drawn at a fixed size (its
# orientation and axis ratio are the metric's; it is long in directions where a step changes the per-example
# losses little). Right: $R$ with the point. In the static book the panels are drawn for a few preset points.

# %% tags=["hide-input"]
def show_point(axes, loss="cross_entropy", theta1=-3.0, theta2=3.0):
    nd.draw_point(axes, loss, (theta1, theta2), x, y, t1, t2, grid[loss]["loss"],
                  grid[loss]["R"], path=paths[loss], palette=helpers.plotting.PALETTE[:2])


# %% tags=["hide-input"] mystnb={"figure": {"caption": "One row per preset point $\\theta$: the neuron's output over the unit square with its decision boundary and the misclassified points ringed (left), the loss surface with the point and the shape of the metric there as an ellipse (middle), and the curvature $R$ with the point (right)."}, "image": {"alt": "Rows of three panels: a grey-shaded unit square with a black boundary line and coloured data points, a loss heat map with a red ellipse around a red marker, and a blue-red curvature heat map with the same marker."}}
helpers.widgets.explore(
    show_point,
    controls={"loss": list(LOSSES), "theta1": (-10.0, 4.0, 0.25, -3.0),
              "theta2": (-4.0, 10.0, 0.25, 3.0)},
    presets=[{"loss": "cross_entropy", "theta1": 0.5, "theta2": 0.5},
             {"loss": "cross_entropy", "theta1": -5.0, "theta2": 5.25},
             {"loss": "mean_power2", "theta1": -3.0, "theta2": 6.0},
             {"loss": "l2_norm", "theta1": 2.0, "theta2": -2.0}],
    panels=3, width=4.4, height=3.8,
    title=lambda v: f"{LABEL[v['loss']]} loss at θ = ({v['theta1']:.2f}, {v['theta2']:.2f})",
)

# %% [markdown]
# ## Exercises
#
# **1. A bias.** Give the neuron a bias, $f = \sigma(5(\theta_1 x_1 + \theta_2 x_2 + b))$, and train it on the
# same data with the cross-entropy from $(0.5, 0.5, 0)$. Where does $b$ go? Why can the Ricci scalar no longer
# be drawn as a single surface, and how would you compute it?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# xb = np.hstack([x, np.ones((N, 1))])               # inputs with a constant 1 for the bias
# theta = tf.Variable([0.5, 0.5, 0.0], dtype=tf.float64)
# for step in range(6000):
#     with tf.GradientTape() as tape:
#         u = (2 * y - 1) * 5.0 * tf.linalg.matvec(xb, theta)
#         loss = tf.reduce_mean(tf.math.softplus(-u))
#     theta.assign_sub(0.2 * tape.gradient(loss, theta))
# print(theta.numpy(), theta.numpy()[2] / np.linalg.norm(theta.numpy()[:2]))
# ```
# The weights run along the same valley as before. The bias does not stay at 0: with it the neuron can place
# its boundary on the maximum-margin line of *this sample*, which need not pass through the origin, so $b$
# settles at a small value; the boundary's offset from the origin is $|b| / |(\theta_1, \theta_2)|$ (a small
# fraction of the square's size). With three parameters the manifold is three-dimensional: $R$ is still one number per
# point, but a point is now $(\theta_1, \theta_2, b)$, so a picture needs a slice, and Brioschi's formula
# (a 2-D result) no longer applies; `helpers.geometry.ricci_scalar` does, with a `metric_fn` returning
# $3 \times 3$ matrices:
# ```python
# def metric3(theta):                                 # theta (B, 3) -> (B, 3, 3)
#     u = (2 * y - 1) * 5.0 * tf.einsum("bk,nk->bn", theta, xb)
#     w = 25.0 * tf.math.sigmoid(-u) ** 2             # cross-entropy: (5 dℓ/dz)²
#     return tf.einsum("bn,na,nc->bac", w, xb, xb) / N
# geometry.ricci_scalar(metric3, np.array([[-3.0, 3.0, 0.0]]))
# ```
# :::
#
# **2. Data that cannot be separated.** Flip the labels of 10% of the points at random and retrain each loss
# for four times as many steps. Which paths stop, which keep going, what happens to F-CLASSIFY and to $R$?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# rng = np.random.default_rng(1)
# y_noisy = np.where(rng.random(N) < 0.1, 1 - y, y)
# for loss in LOSSES:
#     lr, steps = cfg["gd"][loss]
#     p = nd.gradient_descent(loss, x, y_noisy, (0.5, 0.5), lr, 4 * steps)
#     wrong = (~nd.classified_correctly(p[-1], x, y_noisy)).sum()
#     print(loss, np.linalg.norm(p[[steps, -1]], axis=1), wrong,
#           nd.ricci_scalar_brioschi(loss, p[-1], x, y_noisy).numpy())
# ```
# No line through the origin classifies every point now, so F-CLASSIFY must fail (roughly the flipped points
# stay misclassified). The cross-entropy has a finite minimiser: a misclassified point costs about $|u|$, which
# grows with $|\theta|$, so its path stops at a small $|\theta|$ (the solution prints it) where several points keep
# sizeable weights $w_i$; the curvature there is small and need not be negative. The mean-power and L2-norm
# losses saturate at 1 per point, so the flipped points' penalty stays bounded and their paths keep creeping
# outwards along the valley, slowly, with $R$ staying negative.
# :::
#
# **3. How fast does the direction settle?** Continue the L2-norm training for 10 and 100 times as many steps
# and print the direction's offset from 135° and $|\theta|$. Compare with the maximum-margin direction of the
# sample (no bias), the angle $\varphi$ that maximises $\min_i s_i (x_{i1}\cos\varphi + x_{i2}\sin\varphi)$.
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# for factor in (1, 10, 100):
#     p = nd.gradient_descent("l2_norm", x, y, (0.5, 0.5), 0.5, 3000 * factor)
#     print(factor, np.degrees(np.arctan2(p[-1, 1], p[-1, 0])) - 135, np.linalg.norm(p[-1]))
# phi = np.radians(np.linspace(130, 140, 200001))
# proj = np.cos(phi)[:, None] * x[:, 0] + np.sin(phi)[:, None] * x[:, 1]
# margin = np.min((2 * y - 1) * proj, axis=1)
# print("maximum-margin direction - 135:", np.degrees(phi[np.argmax(margin)]) - 135)
# ```
# $|\theta|$ grows only logarithmically with the number of steps (each step's gradient shrinks like
# $e^{-\text{margin}\cdot|\theta|}$), and the direction approaches the maximum-margin direction (whose wedge
# holds no point) only like $1/\log t$ {cite}`soudry2018implicit`: a hundred times more steps may barely move
# it. This is why F-CLASSIFY, with a fixed budget of steps, can depend on how close the sample's nearest
# points lie to the diagonal.
# :::

# %% [markdown]
# ## Summary
#
# - One sigmoid neuron with two weights makes the geometry of a network visible: loss, Fisher metric, NTK
#   trace and scalar curvature over the whole parameter plane, computed in a few vectorised float64 calls,
#   with no value lost (I-FINITE) and with stable formulas instead of $\log\sigma$.
# - Two independent routes to $R$ (automatic differentiation of the metric through Christoffel symbols, and
#   Brioschi's formula with closed-form derivatives) agree (I-2D) on every path point and a sub-grid; the cheap
#   closed form then draws the full grid.
# - For the L2-norm loss the Fisher trace is the NTK trace divided by $N$, exactly (I-L2EXACT); for the others
#   the loss factor of {cite:t}`sauter2023fisher` eq. 5.1.2 varies between examples and the traces part ways.
# - The findings of {cite:t}`sauter2023fisher` Sec. 5.2 are measured below; the text above states each measurement rule next to the
#   spec's criterion, and the verdicts follow from the numbers. Repeating the measurements on other data
#   samples shows which verdicts are robust and which depend on the sample: whether every point is classified
#   after a fixed budget of steps, for instance, is decided by the few examples closest to the diagonal, which
#   gradient descent separates only at a logarithmic rate.

# %% tags=["hide-input"]
display(Markdown(
    f"**Measured in this run** ({cfg['profile']} profile, {N} points,"
    f" {cfg['grid']}×{cfg['grid']} grid): I-L2EXACT max relative error {err_l2:.1e}; I-2D"
    f" max-norm relative error {max(rel2d.values()):.1e} on the sub-grid and the paths"
    f" (raw coordinates on the paths:"
    f" pointwise up to {max(raw2d.values()):.1e}); every grid value finite (I-FINITE)."
    f" Misclassified at the end of the {LONGER}x longer trainings: "
    + ", ".join(f"{LABEL[k]} {v}" for k, v in misclassified.items())
    + "; largest valley angle "
    + ", ".join(f"{LABEL[k]} {v['max_angle']:.2f}°" for k, v in valley.items())
    + "; largest R on the paths "
    + ", ".join(f"{LABEL[k]} {v['max R']:.3g}" for k, v in rneg.items())
    + "."
))

# %% tags=["hide-input"]
helpers.findings.table();
