"""Figures of what a model learned and how training went, as PNG and GIF files.

Each figure is a pure function of a model (or of metrics rows and data):
it evaluates the model under `no_grad`, draws one `matplotlib.figure.Figure`
on an Agg canvas (no pyplot, so nothing is left open and no display is
needed), saves it at `path` and returns it, so callers and tests can inspect
titles and axes.  Every file has a fixed pixel size, `SIZES[name]` (width,
height): figure size in inches times DPI, with no tight bounding box.
"""
from statistics import NormalDist

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minivae import data
from minivae.autograd import no_grad

DPI = 100
SIZES = {"manifold": (800, 800), "latent_scatter": (800, 700), "reconstructions": (1000, 300),
         "image_rows": (1000, 320),
         "samples": (700, 700), "learning_curves": (800, 500), "latent_animation": (600, 600),
         "latent_activity": (800, 600), "class_grid": (740, 720), "inference_gaps": (800, 500)}
GRIDS = ("normal", "uniform")


def image_grid(images, cols=None):
    """Tile images (n, h, w) with values in [0, 1] into one (rows*h, cols*w) array."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.ones((rows * h, cols * w), images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return grid


def normal_quantile(p):
    """Phi^-1(p), the inverse CDF of N(0, 1), elementwise for p in (0, 1)."""
    p = np.asarray(p, dtype=np.float64)
    if not np.all((p > 0) & (p < 1)):
        raise ValueError("normal_quantile: p must lie strictly between 0 and 1")
    return np.vectorize(NormalDist().inv_cdf, otypes=[np.float64])(p)


def manifold_grid(n, grid="normal"):
    """The n latent values, increasing, along each axis of the manifold figure.

    'normal': Phi^-1 of the unit-square points (i + 0.5) / n, which avoid 0
    and 1, so that each tile covers an equal share of the prior's mass
    (Figure 4's construction).  'uniform': evenly spaced in [-3, 3].
    """
    if grid not in GRIDS:
        raise ValueError(f"manifold: unknown grid {grid!r}; expected one of {GRIDS}")
    if n < 2:
        raise ValueError(f"manifold: n must be at least 2, got {n}")
    if grid == "normal":
        return normal_quantile((np.arange(n) + 0.5) / n)
    return np.linspace(-3.0, 3.0, n)


def codes(model, x, labels=None):
    """model.code(x) for x (B, D) -> (B, J) array, the encoder mean mu for a VAE;
    uint8 x is read as pixel / 255; a conditional model also reads `labels` (B,)."""
    with no_grad():
        return model.code(_as_x(model, x, labels)).data


def manifold(model, path, n=20, grid="normal", image_shape=(28, 28)):
    """The learned 2-D manifold (Figure 4): E[x|z] on an n x n grid of z.

    z1 grows from left to right and z2 from bottom to top, as in
    `latent_scatter`; see `manifold_grid` for the values.
    """
    if model.latent != 2:
        raise ValueError(f"manifold: needs a model with a 2-D latent space, this one has "
                         f"latent={model.latent} (train with --latent 2)")
    if not model.has_prior:
        raise ValueError("manifold: the grid is placed by the prior N(0, I); this model has "
                         "no prior")
    values = manifold_grid(n, grid)
    # tile (row r, column c) shows z = (values[c], values[n - 1 - r])
    z = np.stack([np.tile(values, n), np.repeat(values[::-1], n)], axis=1)
    images = _decode(model, z, image_shape)
    h, w = images.shape[1:]
    fig, ax = _figure("manifold")
    ax.imshow(image_grid(images, n), cmap="gray", vmin=0, vmax=1)
    ticks = np.unique(np.linspace(0, n - 1, 5).round().astype(int))
    ax.set_xticks(ticks * w + w / 2, [f"{values[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks * h + h / 2, [f"{values[::-1][i]:.2f}" for i in ticks])
    ax.set(xlabel="$z_1$", ylabel="$z_2$")
    how = "$\\Phi^{-1}$ of an even grid" if grid == "normal" else "evenly spaced in [-3, 3]"
    ax.set_title(f"Learned manifold: E[x|z] on a {n}x{n} grid of z, {how}")
    return _save(fig, path)


def latent_scatter(model, x, labels, path, title=None):
    """The encoder means mu of x (B, D), one dot per image, coloured by its
    class labels (B,) in 0..9, or all in one colour for labels None (a data set
    without labels).  For latent > 2, mu is projected onto its top two
    principal components, and the title says so."""
    labels = None if labels is None else np.asarray(labels)
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"latent_scatter: {len(x)} images but {len(labels)} labels")
    mu = codes(model, x, labels)
    points, projection = _to_2d(mu, mu)
    fig, ax = _figure("latent_scatter")
    _scatter(ax, points, labels, projection)
    ax.set_title((title or f"Encoder means $\\mu$ of {len(x)} images") + projection)
    return _save(fig, path)


def reconstructions(model, x, path, n=10, rng=None, image_shape=(28, 28), labels=None):
    """The first n images of x (B, D) above their reconstructions E[x|z].

    z = mu, the encoder mean, by default (a clean picture of what the code
    keeps); with a random generator `rng`, z ~ q(z|x) is sampled, mu + sigma * eps
    (eq. 10) as in training.  Rows of 10 pairs: input row, reconstruction row.
    A conditional model reads the images' `labels` (B,) too: E[x|z, y].
    """
    labels = None if labels is None else np.asarray(labels)[:n]
    x = _as_x(model, np.asarray(x)[:n], labels)
    n = len(x)
    if rng is not None and not model.has_prior:
        raise ValueError("reconstructions: a sampled z needs a model with a posterior")
    with no_grad():
        z = model.code(x).data
        if rng is not None:
            mu, scale = model.posterior(x)
            z = model.q.sample(mu, scale, model.q.noise(rng, z.shape, model.dtype)).data
    inputs = x[:, :model.x_dim].reshape(n, *image_shape)
    outputs = _decode(model, z, image_shape, labels)
    cols = min(n, 10)
    rows = []
    for start in range(0, n, cols):
        rows += [image_grid(inputs[start:start + cols], cols),
                 image_grid(outputs[start:start + cols], cols)]
    h = image_shape[0]
    fig, ax = _figure("reconstructions")
    ax.imshow(np.clip(np.vstack(rows), 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks(np.arange(len(rows)) * h + h / 2, ["input", "recon."] * (len(rows) // 2))
    which = "sampled z ~ q(z|x)" if rng is not None else (
        "z = $\\mu$ (encoder mean)" if model.has_prior else "z = f(x), the code")
    ax.set_title(f"Inputs and reconstructions E[x|z], {which}")
    return _save(fig, path)


def image_rows(rows, names, path, title, n=10, image_shape=(28, 28), size="image_rows"):
    """Rows of images, one per entry of `rows` (each (B, D) in [0, 1]), the first n
    of each side by side, named at the left by `names`: e.g. clean, corrupted and
    reconstructed digits, or an image, its masked input and the reconstruction.
    `size` names the figure's entry in SIZES."""
    if len(rows) != len(names):
        raise ValueError(f"image_rows: {len(rows)} rows but {len(names)} names")
    h = image_shape[0]
    grids = [image_grid(np.clip(np.asarray(r)[:n], 0, 1).reshape(-1, *image_shape), cols=n)
             for r in rows]
    fig, ax = _figure(size)
    ax.imshow(np.vstack(grids), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks(np.arange(len(rows)) * h + h / 2, names)
    ax.set_title(title)
    return _save(fig, path)


def samples(model, path, rng, n=64, image_shape=(28, 28), digit=None):
    """Samples from the generative model (Figure 5): E[x|z] for n draws
    z ~ N(0, I) from `rng`, tiled in a square grid; a conditional model's are
    of class y = `digit`, or of the classes 0..C-1 in turn, one per column."""
    if not model.has_prior:
        raise ValueError("samples: this model has no prior p(z) to draw z from")
    if digit is not None and not model.classes:
        raise ValueError("samples: this model is not conditional, it draws no given digit")
    z = rng.standard_normal((n, model.latent), dtype=model.dtype)
    labels, cols, given = None, None, ""
    if model.classes:   # a column per class, or the one digit asked for
        labels, cols, given = (np.arange(n) % model.classes, model.classes, ", y by column") \
            if digit is None else (np.full(n, digit), None, f", y = {digit}")
    images = _decode(model, z, image_shape, labels)
    fig, ax = _figure("samples")
    ax.imshow(image_grid(images, cols), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"E[x|z{', y' if model.classes else ''}] for {n} samples z ~ N(0, I){given}, "
                 f"latent={model.latent}")
    return _save(fig, path)


def class_grid(model, path, rng, n=10, image_shape=(28, 28)):
    """A conditional model's E[x|z, y] with one row per class y = 0..C-1 and one
    column per draw z ~ N(0, I) from `rng`, the same z down each column: the
    style held fixed, the class varied (Bishop 19.2)."""
    if not model.classes:
        raise ValueError("class_grid: this model is not conditional (classes = 0)")
    z = rng.standard_normal((n, model.latent), dtype=model.dtype)
    rows = [_decode(model, z, image_shape, np.full(n, y)).reshape(n, -1)
            for y in range(model.classes)]
    return image_rows(rows, [f"y = {y}" for y in range(model.classes)], path,
                      "E[x|z, y]: one row per class y, the same z ~ N(0, I) in each column",
                      n, image_shape, size="class_grid")


def learning_curves(runs, path, key="elbo"):
    """Train (solid) and test (dashed) ELBO per datapoint against training
    samples seen, on a log axis, like Figure 2.  `runs` maps a label to a
    list of metrics rows (`runs.RunDir.read_metrics`); `key` names the
    objective in them (train_<key>, test_<key>): 'elbo', or 'objective' for
    the autoencoders."""
    if not runs:
        raise ValueError("learning_curves: no runs given")
    fig, ax = _figure("learning_curves")
    for i, (label, rows) in enumerate(runs.items()):
        if not rows:
            raise ValueError(f"learning_curves: run {label!r} has no metrics rows")
        rows = sorted(rows, key=lambda row: row["samples_seen"])
        seen = [row["samples_seen"] for row in rows]
        ax.plot(seen, [row[f"train_{key}"] for row in rows], "o-", color=f"C{i}", ms=3,
                label=f"{label} train")
        ax.plot(seen, [row[f"test_{key}"] for row in rows], "o--", color=f"C{i}", ms=3,
                label=f"{label} test")
    ax.set_xscale("log")
    if key == "elbo":
        ax.set(ylabel="ELBO per datapoint (nats)", title="Lower bound during training (cf. "
                                                         "Figure 2)")
    else:
        ax.set(ylabel=f"{key} per datapoint", title="Training objective during training")
    ax.set(xlabel="training samples evaluated")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def latent_animation(snapshots, labels, path, fps=2):
    """An animated GIF of the latent scatter over training, one frame per
    (epoch, mu) snapshot, mu (n, 2) or (n, J).  For J > 2 every frame is
    projected onto the top two principal components of the last snapshot.
    Dots are coloured by labels (n,), or all alike for labels None.  Axis
    limits are the same in every frame, so motion is real motion."""
    if not snapshots:
        raise ValueError("latent_animation: no snapshots given")
    labels = None if labels is None else np.asarray(labels)
    shape = (len(snapshots[0][1] if labels is None else labels), np.shape(snapshots[0][1])[-1])
    last = np.asarray(snapshots[-1][1])
    frames = []
    for epoch, mu in snapshots:
        mu = np.asarray(mu)
        if mu.shape != shape:
            raise ValueError(f"latent_animation: epoch {epoch} has mu of shape {mu.shape}, "
                             f"expected {shape} (one row per label, as in the first snapshot)")
        points, projection = _to_2d(mu, last)
        frames.append((epoch, points))
    everything = np.concatenate([points for _, points in frames])
    low, high = everything.min(axis=0), everything.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-6)
    fig, ax = _figure("latent_animation", layout=None)
    fig.subplots_adjust(left=0.12, right=0.8, bottom=0.1, top=0.9)
    dots = _scatter(ax, frames[0][1], labels, projection)
    ax.set(xlim=(low[0] - margin[0], high[0] + margin[0]),
           ylim=(low[1] - margin[1], high[1] + margin[1]))
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi=DPI):
        for epoch, points in frames:
            dots.set_offsets(points)
            ax.set_title(f"Encoder means $\\mu$, epoch {epoch}{projection}")
            writer.grab_frame()
    return fig


def latent_activity(activity, path):
    """Latent usage, one bar per dimension sorted by activity (`activity.LatentActivity`):
    above, A_u = Var_x[mu_u] on a log axis with the active-unit threshold
    (Burda et al. 2016, 5.2); below, the mean KL(q(z_u|x) || p(z_u)) in nats."""
    a, order = activity, np.argsort(-activity.activity, kind="stable")
    colours, ranks = np.where(a.activity[order] > a.threshold, "C0", "0.6"), np.arange(a.latent)
    floor = a.threshold / 1000   # a collapsed A_u can be 0: draw it at the axis floor
    fig, _ = _figure("latent_activity")
    fig.clear()   # two panels that share the dimensions' order
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(ranks, np.maximum(a.activity[order], floor), color=colours)
    top.axhline(a.threshold, color="k", ls="--", lw=1, label=f"threshold {a.threshold:g}")
    top.set(yscale="log", ylim=(floor, 30 * max(a.activity.max(), a.threshold)),  # legend room
            ylabel="$A_u = \\mathrm{Var}_x[\\mu_u]$", title=f"Latent usage over {a.images} "
            f"images: {a.count} of {a.latent} dimensions active (grey: inactive)")
    top.legend(loc="upper right")
    bottom.bar(ranks, a.kl[order], color=colours)
    bottom.set(ylabel="mean KL$(q(z_u|x)\\,\\|\\,p(z_u))$ (nats)",
               xlabel="latent dimension u, sorted by $A_u$")
    bottom.set_xticks(ranks, order, fontsize=8, rotation=90 if a.latent > 24 else 0)
    return _save(fig, path)


def inference_gaps(gaps, path, bins=30):
    """The local optimization of each q(z|x_i) with the decoder fixed (`gaps.Gaps`),
    the E-step of EM done by gradient ascent: the ELBO less the datapoint's log p(x),
    one thin line per datapoint and their mean in bold, rising from the
    encoder's ELBO towards log p(x) (0).  Each step's L-sample estimate is
    noisy, so the trace (steps, N) is averaged within `bins` log-spaced bins
    of steps: step 1 alone, the last steps by the dozen."""
    steps = len(gaps.trace)
    starts = np.unique(np.geomspace(1, steps, bins + 1)[:-1].astype(int)) - 1   # 0, 1, ...
    sizes = np.diff(np.append(starts, steps))
    trace = np.add.reduceat(gaps.trace - gaps.log_px, starts, axis=0) / sizes[:, None]
    at = starts + (sizes + 1) / 2                                            # bin centre, from 1
    fig, ax = _figure("inference_gaps")
    ax.plot(at, trace, color="0.5", lw=0.6, alpha=0.3)
    ax.plot(at, trace.mean(axis=1), color="C0", lw=3, zorder=3, label="mean over datapoints")
    encoder, local = (float(np.mean(v - gaps.log_px)) for v in (gaps.encoder_elbo,
                                                                gaps.local_elbo))
    ax.axhline(0.0, color="k", lw=1.2, label=f"log p(x), importance-sampled (K={gaps.k})")
    ax.axhline(local, color="C2", ls="--", lw=1.5,
               label=f"local optimum L[q*]: approximation gap {-local:.2f}")
    ax.axhline(encoder, color="C3", ls=":", lw=2,
               label=f"encoder L[$q_\\phi$]: amortization gap {local - encoder:.2f}")
    low = min(np.percentile(trace[0], 10), encoder)        # a few bad encodings off-scale
    ax.set_ylim(low - 0.1 * abs(low), max(0.05 * abs(low), 0.5))
    ax.set(xscale="log",
           xlabel="step of the local optimization (Adam on $\\mu_i$, $\\log\\sigma^2_i$)",
           ylabel="ELBO $-$ log p(x) per datapoint (nats)",
           title=f"Each image's own q(z|x) from the encoder's start: {trace.shape[1]} images")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def _as_x(model, x, labels=None):
    """x (B, D) in the model's dtype; uint8 pixels are read as pixel / 255.  A
    conditional model's rows end with the one-hot `labels` (B,): (B, D + C)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != model.x_dim:
        raise ValueError(f"expected images of shape (B, {model.x_dim}), got {x.shape}")
    x = data.intensities(x, model.dtype) if x.dtype == np.uint8 else \
        x.astype(model.dtype, copy=False)
    return np.hstack([x, _one_hot(model, labels, len(x))]) if model.classes else x


def _decode(model, z, image_shape, labels=None):
    """E[x|z] for z (B, J) as images (B, h, w), clipped to [0, 1] for display;
    a conditional model's decoder reads [z, y], y the one-hot `labels` (B,)."""
    if int(np.prod(image_shape)) != model.x_dim:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold the model's "
                         f"{model.x_dim} pixels")
    z = np.asarray(z, model.dtype)
    z = np.hstack([z, _one_hot(model, labels, len(z))]) if model.classes else z
    with no_grad():
        mean = model.decode_mean(z).data
    return np.clip(mean, 0, 1).reshape(len(z), *image_shape)


def _one_hot(model, labels, n):
    """The n labels as one-hot rows y (n, C) in the model's dtype."""
    if labels is None or len(labels) != n:
        raise ValueError(f"a conditional model reads each image with its class: expected "
                         f"{n} labels, got {'none' if labels is None else len(labels)}")
    return data.one_hot(np.asarray(labels), model.classes).astype(model.dtype)


def _to_2d(mu, fit_on):
    """(points (n, 2), title suffix): mu itself for J = 2, otherwise mu projected
    on the top two principal directions of `fit_on` (numpy SVD)."""
    if mu.shape[1] < 2:
        raise ValueError(f"a latent scatter needs latent >= 2, got latent={mu.shape[1]}")
    if mu.shape[1] == 2:
        return mu, ""
    center = fit_on.mean(axis=0)
    _, s, vt = np.linalg.svd(fit_on - center, full_matrices=False)
    basis = vt[:2].T
    # an SVD's signs are arbitrary; fix them so that the picture does not flip
    basis *= np.sign(basis[np.abs(basis).argmax(axis=0), [0, 1]])
    share = (s[:2] ** 2).sum() / max((s ** 2).sum(), np.finfo(float).tiny)
    note = f"\nPCA projection of the {mu.shape[1]}-D latent ({share:.0%} of the variance)"
    return (mu - center) @ basis, note


def _scatter(ax, points, labels, projection):
    """Dots coloured by class (tab10), a legend of the classes to the right,
    and axes named z_1, z_2 or, for a projection, PC 1, PC 2; labels None
    (no classes) draws every dot in one colour, with no legend."""
    colour = {} if labels is None else dict(c=labels, cmap="tab10", vmin=-0.5, vmax=9.5)
    dots = ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.8, linewidths=0, **colour)
    if labels is not None:
        ax.legend(*dots.legend_elements(), title="class", loc="center left",
                  bbox_to_anchor=(1, 0.5))
    ax.set(xlabel="PC 1" if projection else "$z_1$", ylabel="PC 2" if projection else "$z_2$")
    return dots


def _figure(name, layout="constrained"):
    """A Figure of SIZES[name] pixels on its own Agg canvas, and its one Axes."""
    width, height = SIZES[name]
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path):
    fig.savefig(path, dpi=DPI)
    return fig
