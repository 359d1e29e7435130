"""SGVB estimator A (eq. 6) against estimator B (eq. 7): their means, and the
variance of their gradients.

Shows: after brief training, one fixed minibatch of test images and many
draws of eps ~ N(0, I) with L = 1.  For each draw, both estimators are
computed with the same eps:
  - the minibatch ELBO; its mean over draws, with standard error, should be
    the same for A and B (both are unbiased estimates of the same bound);
  - the gradient of the loss -ELBO with respect to the encoder's parameters
    phi, and its variance over draws, which the paper (Section 2.3) says is
    typically lower for B: B takes the KL term analytically (Appendix B).
The decoder's gradient is the same for A and B given the same eps: the terms
in which they differ, log p(z) - log q(z|x) against -KL, do not involve theta.
The variance ratio is also computed in disjoint groups of draws, to show
how much it moves from one set of draws to another.

Run:    PYTHONPATH=. python examples/estimators.py                  # ~1.5 min
        PYTHONPATH=. python examples/estimators.py --epochs 0       # at initialization
        PYTHONPATH=. python examples/estimators.py --epochs 1 --train-images 500 --draws 20
"""
import argparse

import numpy as np

from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.models.vae import VAE
from minivae.objectives import ELBO, elbo
from minivae.optim import Adagrad

GROUPS = 10   # disjoint groups of draws, for the spread of the variance ratio


def train_briefly(model, images, epochs, rng):
    """A few epochs of AEVB (Algorithm 1) with estimator B and Adagrad, as in the paper."""
    learn = GradientAscent(model, ELBO("B"),
                           Adagrad(model.params, lr=0.02, weight_decay=1.0 / len(images)))
    for _ in range(epochs):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)


def elbo_and_gradients(model, x, eps, estimator):
    """The minibatch-mean ELBO (a float) and the gradients of -ELBO (name -> float64 array)."""
    for p in model.params.values():
        p.grad = None
    bound = elbo(model, x, eps, estimator).mean()
    (-bound).backward()
    return bound.item(), {name: p.grad.astype(np.float64) for name, p in model.params.items()}


class Moments:
    """Sums of g and of ||g||^2 per parameter over draws: enough for the variance."""

    def __init__(self):
        self.draws, self.sum, self.sum_sq = 0, {}, {}

    def add(self, grads):
        self.draws += 1
        for name, g in grads.items():
            self.sum[name] = self.sum.get(name, 0.0) + g
            self.sum_sq[name] = self.sum_sq.get(name, 0.0) + float(np.vdot(g, g))

    def total_variance(self, names):
        """The unbiased variance over draws, summed over every element of `names`:
        sum_i Var(g_i) = (sum_r ||g_r||^2 - ||sum_r g_r||^2 / R) / (R - 1)."""
        R = self.draws
        return sum((self.sum_sq[n] - float(np.vdot(self.sum[n], self.sum[n])) / R) / (R - 1)
                   for n in names)


def report_means(elbos, batch_size):
    R = len(elbos["A"])
    print(f"ELBO of one minibatch of {batch_size} test images, {R} draws of eps, L = 1 "
          f"(nats per image)")
    for e in "AB":
        std = elbos[e].std(ddof=1)
        print(f"  estimator {e}: mean {elbos[e].mean():9.3f}   standard error "
              f"{std / np.sqrt(R):.3f}   (std of one draw {std:.3f})")
    diff = elbos["A"] - elbos["B"]
    se = diff.std(ddof=1) / np.sqrt(R)
    if abs(diff.mean()) <= 3 * se:
        verdict = "within 3 standard errors of 0: consistent with equal means"
    else:
        verdict = f"{abs(diff.mean()) / se:.1f} standard errors from 0: the means differ"
    print(f"  A - B, same eps: {diff.mean():.3f} +- {se:.3f} (standard error), {verdict}")


def report_variances(model, moments, groups):
    encoder = [n for n in model.params if n.startswith("encoder.")]
    print("\nVariance over draws of d(-ELBO)/d(phi), the encoder's gradient, summed over elements")
    print(f"  {'parameter':<20} {'elements':>9} {'variance A':>12} {'variance B':>12} {'A / B':>8}")
    for n in encoder:
        a, b = (moments[e].total_variance([n]) for e in "AB")
        print(f"  {n:<20} {model.params[n].size:9d} {a:12.4e} {b:12.4e} {a / b:8.2f}")
    size = sum(model.params[n].size for n in encoder)
    a, b = (moments[e].total_variance(encoder) for e in "AB")
    print(f"  {'all encoder':<20} {size:9d} {a:12.4e} {b:12.4e} {a / b:8.2f}")
    print(f"  per element (mean):  A {a / size:.4e}   B {b / size:.4e}")
    ratios = [g["A"].total_variance(encoder) / g["B"].total_variance(encoder) for g in groups]
    print(f"  A / B in {len(groups)} disjoint groups of {groups[0]['A'].draws} draws: "
          f"min {min(ratios):.2f}, median {np.median(ratios):.2f}, max {max(ratios):.2f}")
    if min(ratios) > 1:
        print("  -> B's encoder gradient has lower variance than A's, in every group")
    elif max(ratios) < 1:
        print("  -> A's encoder gradient has lower variance than B's, in every group")
    else:
        print("  -> the groups disagree on which estimator has the lower variance")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1,
                        help="training epochs before measuring (0: at initialization)")
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--draws", type=int, default=300, help="draws of eps (a multiple of 10)")
    parser.add_argument("--batch-size", type=int, default=100, help="size of the fixed minibatch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.draws < 2 * GROUPS or args.draws % GROUPS:
        parser.error(f"--draws must be a multiple of {GROUPS}, at least {2 * GROUPS}")

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    model = VAE(x_dim=784, hidden=(500,), latent=20, rng=rng)
    train_briefly(model, mnist.train_images[:args.train_images], args.epochs, rng)
    x = binarize_static(mnist.test_images[:args.batch_size], seed=0).astype(model.dtype)

    encoder = [n for n in model.params if n.startswith("encoder.")]
    decoder = [n for n in model.params if n.startswith("decoder.")]
    elbos = {"A": [], "B": []}
    moments = {"A": Moments(), "B": Moments()}
    groups = [{"A": Moments(), "B": Moments()} for _ in range(GROUPS)]
    decoder_gap = 0.0
    for r in range(args.draws):
        eps = rng.standard_normal((1, len(x), model.latent), dtype=model.dtype)   # L = 1
        grads = {}
        for e in "AB":                                       # the same eps for both
            elbo, grads[e] = elbo_and_gradients(model, x, eps, e)
            elbos[e].append(elbo)
            phi = {n: grads[e][n] for n in encoder}
            moments[e].add(phi)
            groups[r % GROUPS][e].add(phi)
        decoder_gap = max(decoder_gap, *(np.abs(grads["A"][n] - grads["B"][n]).max()
                                         for n in decoder))

    report_means({e: np.array(v) for e, v in elbos.items()}, len(x))
    report_variances(model, moments, groups)
    print(f"Decoder (theta) gradients of A and B with the same eps: largest difference "
          f"{decoder_gap:.2e}")


if __name__ == "__main__":
    main()
