"""A denoising autoencoder learns the score of the smoothed density (Bishop, Deep Learning, 19.1.4).

Shows: 2-D points from a mixture of three Gaussians, corrupted by
x~ = x + sigma eps with eps ~ N(0, I), and an autoencoder y trained to
return the clean x (eq. 19.5).  The best y is E[x | x~], and for Gaussian
corruption (Tweedie's formula, the link to score matching in 19.1.4)

    (y(x~) - x~) / sigma^2  =  grad log p_sigma(x~),

with p_sigma the data density convolved with N(0, sigma^2 I): for a mixture
of N(mu_k, s^2 I) that is the mixture of N(mu_k, (s^2 + sigma^2) I), whose
score is known in closed form.  It prints, before and after training, the
mean cosine similarity between the learned field and that score on the grid
points where p_sigma exceeds 1 % of its maximum, and the median relative
error |f - score| / |score| of the learned field f; score_field.png
(in --out, default runs/denoising_score/) shows both.

Run:    PYTHONPATH=. python examples/denoising_score.py    # ~6 s on two idle cores
        PYTHONPATH=. python examples/denoising_score.py --epochs 2 --points 2000
"""
import argparse
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minivae.algorithms import GradientAscent
from minivae.autograd import no_grad
from minivae.corruptions import GaussianNoise
from minivae.data import minibatch_indices
from minivae.models.autoencoder import Autoencoder
from minivae.objectives import Reconstruction
from minivae.optim import Adam

WEIGHTS = np.array([0.3, 0.3, 0.4])                    # pi_k
# mu_k: three points 120 degrees apart on a circle of radius 2
MEANS = 2.0 * np.array([[1.0, 0.0], [-0.5, 0.75 ** 0.5], [-0.5, -0.75 ** 0.5]])
STD = 0.5                                               # s: each component is N(mu_k, s^2 I)
GRID = np.linspace(-3.5, 3.5, 29)
DENSE = 0.01     # grid points where p_sigma > DENSE * its maximum are compared


def smoothed_score(x, sigma):
    """grad log p_sigma(x) (n, 2) and p_sigma(x) (n,), p_sigma the mixture convolved with
    N(0, sigma^2 I): the score is sum_k r_k(x) (mu_k - x) / v, with v = s^2 + sigma^2
    and r_k(x) the responsibilities of the smoothed components."""
    v = STD ** 2 + sigma ** 2
    diff = MEANS - x[:, None, :]                                            # (n, K, 2)
    log_terms = np.log(WEIGHTS) - 0.5 * np.sum(diff ** 2, axis=2) / v - np.log(2 * np.pi * v)
    density = np.exp(log_terms).sum(axis=1)
    r = np.exp(log_terms - log_terms.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", r, diff) / v, density


def learned_score(model, x, sigma):
    """(y(x) - x) / sigma^2, (n, 2)."""
    with no_grad():
        return (model.decode_mean(model.code(x)).data - x) / sigma ** 2


def compare(model, x, score, sigma):
    """Mean cosine similarity and median relative error |f - s| / |s| of the learned field f."""
    f = learned_score(model, x, sigma)
    norm_f, norm_s = np.linalg.norm(f, axis=1), np.linalg.norm(score, axis=1)
    cosine = np.sum(f * score, axis=1) / (norm_f * norm_s)
    return cosine.mean(), np.median(np.linalg.norm(f - score, axis=1) / norm_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=0.3, help="std of the corruption")
    parser.add_argument("--points", type=int, default=20000, help="training points drawn")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/denoising_score"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sigma, rng = args.sigma, np.random.default_rng(args.seed)

    component = rng.choice(len(WEIGHTS), size=args.points, p=WEIGHTS)
    points = MEANS[component] + STD * rng.standard_normal((args.points, 2))
    grid = np.stack(np.meshgrid(GRID, GRID), axis=-1).reshape(-1, 2)
    score, density = smoothed_score(grid, sigma)
    dense = density > DENSE * density.max()
    where = f"on the {dense.sum()} grid points where p_sigma > {DENSE:.0%} of its maximum"

    model = Autoencoder(x_dim=2, hidden=(64, 64), latent=8, decoder="squared",
                        activation="tanh", init="xavier", dtype=np.float64, rng=rng)
    untrained = compare(model, grid[dense], score[dense], sigma)
    optimizer, lr = Adam(model.params), 3e-3
    learn = GradientAscent(model, Reconstruction(corruption=GaussianNoise(sigma)), optimizer)
    batches = [idx for _ in range(args.epochs)
               for idx in minibatch_indices(rng.permutation(args.points), 64)]
    for step, idx in enumerate(batches):
        # constant, then down to 0 over the second half: the target x is spread
        # by ~sigma around E[x | x~], and a falling step size averages that out
        optimizer.lr = lr * min(1.0, 2.0 * (1 - step / len(batches)))
        learn.step(points[idx], rng)
    for when, (cosine, relative) in (("before", untrained),
                                     ("after", compare(model, grid[dense], score[dense], sigma))):
        print(f"{when} training:  mean cosine similarity with grad log p_sigma {cosine:.3f}, "
              f"median relative error {relative:.2f}, {where} (sigma = {sigma:g})")

    field = learned_score(model, grid, sigma)
    fig = Figure(figsize=(11, 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, vectors, title in zip(fig.subplots(1, 2, sharey=True), (score, field),
                                  ("analytic $\\nabla \\log p_\\sigma(\\tilde{x})$",
                                   "learned $(y(\\tilde{x}) - \\tilde{x}) / \\sigma^2$")):
        ax.contour(GRID, GRID, density.reshape(len(GRID), -1), levels=6, colors="0.85")
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # direction only
        for keep, color in ((dense, "C0"), (~dense, "0.7")):   # arrows 0.8 grid steps long
            ax.quiver(*grid[keep].T, *unit[keep].T, color=color, angles="xy",
                      scale_units="xy", scale=1 / (0.8 * (GRID[1] - GRID[0])), width=0.003)
        ax.scatter(*points[:300].T, s=3, color="C3", alpha=0.5)
        ax.set(title=title, xlabel="$\\tilde{x}_1$", aspect="equal")
    fig.axes[0].set_ylabel("$\\tilde{x}_2$")
    fig.suptitle(f"Directions of the two fields, $\\sigma$ = {sigma:g} (blue: where "
                 f"$p_\\sigma$ > {DENSE:.0%} of its maximum; contours: $p_\\sigma$; dots: data)")
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "score_field.png")
    print(f"wrote {args.out / 'score_field.png'}")


if __name__ == "__main__":
    main()
