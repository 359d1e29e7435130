"""beta and KL warm-up (Bishop 19.2): weigh the KL term of the ELBO,

    E_q[log p(x|z)] - beta KL(q(z|x) || p(z)),

by a beta that rises linearly from 0 to 1 over the first epochs, against
the plain ELBO (beta = 1 throughout).

Shows: after each epoch of two runs from the same initial parameters, beta,
the training objective and the true ELBO (beta = 1) on the test set, and at
the end the active units (Burda et al.: Cov_x E_q[z_u] > 0.01).  While
beta < 1 the objective is not a lower bound on log p(x) and may exceed it;
only the ELBO column compares the two runs fairly.

Run:    PYTHONPATH=. python examples/kl_warmup.py                      # ~3 min
        PYTHONPATH=. python examples/kl_warmup.py --epochs 2 --warmup 2 --train-images 500
"""
import argparse
import math

import numpy as np

from minivae.activity import active_units
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_measures
from minivae.models.vae import VAE
from minivae.objectives import KLWarmUp, WeightedELBO
from minivae.optim import Adam


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--warmup", type=float, default=4, help="epochs of the warm-up")
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    args = parser.parse_args()

    mnist = load_mnist()
    images = mnist.train_images[:args.train_images]
    x = binarize_static(mnist.test_images[:2000], seed=0).astype(np.float32)
    batches = [x[s:s + 500] for s in range(0, len(x), 500)]
    steps = math.ceil(len(images) / 100) * args.warmup     # updates of the warm-up
    for name, schedule in (("no warm-up", None),
                           (f"warm-up over {args.warmup:g} epochs",
                            KLWarmUp(WeightedELBO(beta=1.0), start=0.0, steps=round(steps)))):
        rng = np.random.default_rng(0)                       # the same start for both
        model = VAE(x_dim=784, hidden=(200,), latent=50, init="xavier", rng=rng)
        learn = GradientAscent(model, WeightedELBO(beta=1.0), Adam(model.params, lr=1e-3),
                               schedule)
        print(f"{name}:\n  epoch  beta  test objective  test ELBO")
        for epoch in range(1, args.epochs + 1):
            for idx in minibatch_indices(rng.permutation(len(images)), 100):
                learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)
            objective = learn.objective                     # beta where training stands
            test = mean_measures(model, objective, batches, np.random.default_rng(epoch))
            print(f"  {epoch:5d}  {objective.beta:4.2f}  {test['objective']:14.2f}  "
                  f"{test['elbo']:9.2f}")
        usage = active_units(model, batches)
        print(f"  active units {usage.count} of {usage.latent}")


if __name__ == "__main__":
    main()
