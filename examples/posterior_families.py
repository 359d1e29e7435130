"""Section 2.4 of the paper: which posteriors q(z|x) can be reparameterized.

Shows: for each family the VAE here can use (a Gaussian and a Laplace by the
location-scale route, z = mu + b eps, and a logistic by the inverse CDF,
z = mu + s log(u / (1 - u)), u ~ U(0, 1)),

1. that the sampler's gradient is right: the Monte Carlo gradient of
   E[(z - c)^2] through z = g(eps; mu, b) against the closed form
   d/dmu = 2 (mu - c), d/dlog b = 2 v b^2 (v: the variance of the family's
   standard member), with its standard error;
2. that each trains: VAEs with the same architecture, data, seed and steps,
   one per family, scored by the test ELBO and the importance-sampled log p(x).

Run:    PYTHONPATH=. python examples/posterior_families.py                 # ~1.5 min
        PYTHONPATH=. python examples/posterior_families.py --epochs 1 --train-images 500
"""
import argparse
import math

import numpy as np

from minivae.algorithms import GradientAscent
from minivae.autograd import Tensor
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import log_likelihood, mean_objective
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adagrad
from minivae.posteriors import POSTERIORS


def gradient_check(q, mu=0.3, b=0.8, c=1.5, n=100_000, seed=0):
    """Per-draw gradients of (z - c)^2 with respect to mu and log b (the encoder
    outputs logvar = log(v b^2), so d/dlog b = 2 d/dlogvar): their means and
    standard errors, beside the closed form."""
    m = Tensor(np.full((n, 1), mu), requires_grad=True)
    logvar = Tensor(np.full((n, 1), math.log(q.variance * b ** 2)), requires_grad=True)
    z = q.sample(m, logvar, q.noise(np.random.default_rng(seed), (n, 1), np.float64))
    ((z - c) ** 2).sum().backward()
    return [(g.mean(), g.std() / math.sqrt(n), exact)
            for g, exact in ((m.grad[:, 0], 2 * (mu - c)),
                             (2 * logvar.grad[:, 0], 2 * q.variance * b ** 2))]


def trained(posterior, images, epochs, seed=0):
    """The paper's 784-500-20 VAE with q(z|x) of the family, Adagrad, M = 100."""
    rng = np.random.default_rng(seed)
    model = VAE(posterior=posterior, rng=rng)
    learn = GradientAscent(model, ELBO("B"), Adagrad(model.params, lr=0.02,
                                                      weight_decay=1 / len(images)))
    for _ in range(epochs):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--test-images", type=int, default=1000)
    args = parser.parse_args()

    print("d/dmu and d/dlog b of E[(z - 1.5)^2] at mu = 0.3, b = 0.8: Monte Carlo (SE) | exact")
    for name, q in POSTERIORS.items():
        (gm, sm, em), (gb, sb, eb) = gradient_check(q)
        print(f"{name:<9} {q.route:<15} {gm:8.4f} ({sm:.4f}) | {em:8.4f}   "
              f"{gb:8.4f} ({sb:.4f}) | {eb:8.4f}")

    mnist = load_mnist()
    images = mnist.train_images[:args.train_images]
    x = binarize_static(mnist.test_images[:args.test_images], seed=0).astype(np.float32)
    batches = [x[s:s + 100] for s in range(0, len(x), 100)]
    print(f"{len(images)} training images, {args.epochs} epochs; {len(x)} test images, nats")
    print(f"{'q(z|x)':<9} {'test ELBO':>10} {'log p(x)':>10}")
    for name in POSTERIORS:
        model = trained(name, images, args.epochs)
        bound = mean_objective(model, ELBO("B"), batches, np.random.default_rng(1))
        log_px = log_likelihood(model, batches, np.random.default_rng(2), k=1000)
        print(f"{name:<9} {bound:10.2f} {log_px:10.2f}")


if __name__ == "__main__":
    main()
