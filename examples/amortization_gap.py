"""Amortized against per-datapoint inference: what the VAE's encoder costs
(Cremer, Li & Duvenaud 2018; Bishop, Deep Learning, 19.2.1).

Shows: a VAE trained by AEVB (or the model of a run, with --run), and on N
test images, with the decoder fixed: the encoder's ELBO L[q_phi]; the ELBO
L[q*] of each image's own q(z|x_i), found by Adam on (mu_i, logvar_i)
started at the encoder's output, as mean-field variational inference does;
and the importance-sampled log p(x).  Their differences are the
approximation gap, log p(x) - L[q*], what the family of q (Gaussian by default) cannot
express, and the amortization gap, L[q*] - L[q_phi], what one network for
all images costs.  gaps.png (in --out, default runs/amortization_gap/)
draws each image's ELBO as its own q climbs, EM-like.

Run:    PYTHONPATH=. python examples/amortization_gap.py         # ~2.5 min on two shared cores
        PYTHONPATH=. python examples/amortization_gap.py --run runs/RUN --images 100
        PYTHONPATH=. python examples/amortization_gap.py --epochs 1 --train-images 500 \\
            --images 10 --steps 20 --k 100
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import data, plots
from minivae.algorithms import GradientAscent
from minivae.gaps import measure_gaps
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam
from minivae.runs import RunDir


def trained_vae(inputs, epochs, images, rng):
    """A 784-500-20 VAE (Appendix C) ascending the ELBO (estimator B, L = 1) by Adam, M = 100."""
    model = VAE(x_dim=784, hidden=(500,), latent=20, init="xavier", rng=rng)
    learn = GradientAscent(model, ELBO(), Adam(model.params, lr=1e-3))
    for _ in range(epochs):
        for idx in data.minibatch_indices(rng.permutation(len(inputs.train[:images])), 100):
            learn.step(inputs.train_batch(idx, rng), rng)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="measure this run's model instead of training")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--images", type=int, default=100, help="N test images to measure")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps of each local q")
    parser.add_argument("--k", type=int, default=5000, help="samples behind each bound")
    parser.add_argument("--out", type=Path, default=Path("runs/amortization_gap"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    if args.run:
        trained = RunDir.of(args.run).load()
        model, c = trained.model, trained.config
        inputs = data.Inputs(data.load_mnist(c.data.data), model.likelihood.pixels,
                             c.data.binarize, c.run.seed, c.run.dtype, c.data.intensities,
                             model.classes)
    else:
        inputs = data.Inputs(data.load_mnist(), "binary", "dynamic", 0, np.float32)
        model = trained_vae(inputs, args.epochs, args.train_images, rng)
    x = np.concatenate(list(inputs.test_batches(limit=args.images)))
    gaps = measure_gaps(model, x, rng, steps=args.steps, k=args.k)
    print(f"{len(x)} test images, {args.steps} local Adam steps, K={gaps.k}; nats per image, "
          f"mean +- SE across images (Monte Carlo SE)")
    for name, (mean, across, mc) in gaps.summary().items():
        print(f"{name:<20s}{mean:9.2f} +- {across:.2f}  ({mc:.3f})")
    print(f"q* was the better proposal for log p(x) on {gaps.by_local.sum()} of {len(x)} images")
    args.out.mkdir(parents=True, exist_ok=True)
    plots.inference_gaps(gaps, args.out / "gaps.png")
    print(f"wrote {args.out / 'gaps.png'}")


if __name__ == "__main__":
    main()
