"""A Gaussian decoder that learns its variance, on data where that is well posed.

Shows: the Gaussian-decoder VAE trained with each place its log-variance can
come from (`--variance`: output, a decoder head per pixel and image; pixel,
one learned per pixel; scalar, one learned for all) on uniformly dequantized
MNIST, x = (pixel + u) / 256, and, for contrast, the per-pixel heads on
pixel / 255.  Per epoch it prints the test ELBO in nats.  On dequantized x
every density is bounded, E_u[log p(x)] <= D log 256, and the ELBO is also
shown in bits per dimension, -(ELBO - D log 256) / (D log 2), an upper
bound on the model's bits/dim since ELBO <= log p(x).  On pixel / 255 the
exact zeros let the variance shrink without limit and the ELBO runs away
(it passes D log 256 with longer training; see the walkthrough).

Run:    PYTHONPATH=. python examples/learned_variance.py                # ~3 min
        PYTHONPATH=. python examples/learned_variance.py --epochs 1 --train-images 500
"""
import argparse

import numpy as np

from minivae.algorithms import GradientAscent
from minivae.data import bits_per_dim, dequantize, intensities, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam

RUNS = (("output", "dequantized"), ("pixel", "dequantized"), ("scalar", "dequantized"),
        ("output", "scaled"))


def pixels_as_x(images, kind, rng):
    """(pixel + u) / 256 with a fresh u from rng, or pixel / 255."""
    return dequantize(images, rng, np.float32) if kind == "dequantized" else \
        intensities(images, np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--test-images", type=int, default=1000)
    args = parser.parse_args()
    mnist = load_mnist()
    train, test = mnist.train_images[:args.train_images], mnist.test_images[:args.test_images]
    D = mnist.dim
    print(f"D log 256 = {D * np.log(256):.1f} nats: no density on dequantized x beats it")
    for variance, kind in RUNS:
        rng = np.random.default_rng(0)
        model = VAE(x_dim=D, hidden=(200,), latent=20, decoder="gaussian", variance=variance,
                    rng=rng)
        learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=3e-3))
        x_test = pixels_as_x(test, kind, np.random.default_rng(1))   # one fixed u
        elbos = []
        for _ in range(args.epochs):
            for idx in minibatch_indices(rng.permutation(len(train)), 100):
                learn.step(pixels_as_x(train[idx], kind, rng), rng)
            elbos.append(mean_elbo(model, [x_test], np.random.default_rng(2)))
        line = f"{variance:>6s} variance, {kind:>11s}: test ELBO by epoch " + \
            " ".join(f"{e:.1f}" for e in elbos) + " nats"
        if kind == "dequantized":
            line += f";  <= {bits_per_dim(elbos[-1], D):.3f} bits/dim"
        if model.shared:
            logvar = model.params["decoder.logvar"].data
            line += f";  learned logvar in [{logvar.min():.2f}, {logvar.max():.2f}]"
        print(line)


if __name__ == "__main__":
    main()
