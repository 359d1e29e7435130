"""AEVB against the wake-sleep algorithm (Hinton, Dayan, Frey & Neal 1995), as in
the paper's Figure 2.

Shows: two VAEs drawn alike, trained on the same minibatches with the same
Adagrad and weight prior (section 5), one by Algorithm 1, one by wake-sleep
with the same encoder as its recognition model.  Wake: z ~ q(z|x), then
ascend log p(x, z) in theta.  Sleep: dream z ~ p(z), x ~ p(x|z), then ascend
log q(z|x) in phi.  Both are measured after every epoch by the same test
lower bound, estimator B with L = 1 (eq. 7), in nats per image.

Run:    PYTHONPATH=. python examples/wake_sleep.py                 # ~2 min
        PYTHONPATH=. python examples/wake_sleep.py --epochs 1 --train-images 500
"""
import argparse

import numpy as np

from minivae.algorithms import GradientAscent, WakeSleep
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_objective
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adagrad


def learners(hidden, latent, n):
    """{name: learning rule} for AEVB and wake-sleep, each on its own VAE drawn
    from the same seed: N(0, 0.01^2) weights, Adagrad, the N(0, I) prior / N."""
    def adagrad(params):
        return Adagrad(params, lr=0.02, weight_decay=1.0 / n)
    aevb, ws = (VAE(x_dim=784, hidden=(hidden,), latent=latent,
                    rng=np.random.default_rng(0)) for _ in range(2))
    return {"AEVB": GradientAscent(aevb, ELBO("B", 1), adagrad(aevb.params)),
            "wake-sleep": WakeSleep(ws, adagrad)}      # one Adagrad per phase


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--latent", type=int, default=10)
    args = parser.parse_args()

    mnist = load_mnist()
    images = mnist.train_images[:args.train_images]
    x_test = binarize_static(mnist.test_images[:args.test_images], seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 100] for s in range(0, len(x_test), 100)]
    rules, rng = learners(args.hidden, args.latent, len(images)), np.random.default_rng(1)
    print(f"test lower bound (eq. 7, L = 1) on {len(x_test)} test images, nats per image")
    print(f"{'epoch':>5} " + " ".join(f"{name:>11}" for name in rules))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            x = binarize_dynamic(images[idx], rng, np.float32)    # both see the same X^M
            for rule in rules.values():
                rule.step(x, rng)
        bounds = {name: mean_objective(rule.model, rule.objective, test_batches,
                                       np.random.default_rng(epoch))
                  for name, rule in rules.items()}
        print(f"{epoch:5d} " + " ".join(f"{b:11.2f}" for b in bounds.values()))
    for name, bound in bounds.items():
        print(f"{name:<11} {bound:.2f}")


if __name__ == "__main__":
    main()
