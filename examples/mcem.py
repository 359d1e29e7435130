"""Monte Carlo EM with an HMC sampler: the baseline of the paper's section 5.

Shows: the generative model of a 784-100-3 VAE fitted to 1000 MNIST training
images by Monte Carlo EM, as in the paper's figure 3: each image keeps its
own Markov chain z_i; per minibatch, each chain takes one HMC transition
(10 leapfrog steps of a size shared by all chains, tuned towards 90% mean
acceptance at every minibatch) targeting p(z|x_i), then theta takes 5
Adagrad steps (with the weight prior) on log p(x_i, z_i) at the new z_i.
The chains target fixed images, so the training images are binarized once.
A recognition model q(z|x) is fitted alongside by the ELBO for evaluation
only; the chains never read it.  Every few epochs it prints the mean
acceptance probability, step size and log p(x, z) of the epoch's
transitions and the test lower bound; at the end the importance-sampled
log p(x) of the test images, with q as the proposal.

Run:    PYTHONPATH=. python examples/mcem.py                 # minutes
        PYTHONPATH=. python examples/mcem.py --epochs 2 --train-images 200 --test-images 100
"""
import argparse

import numpy as np

from minivae.data import binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.mcem import MonteCarloEM
from minivae.models.vae import VAE
from minivae.optim import Adagrad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="print every this many epochs")
    parser.add_argument("--train-images", type=int, default=1000, help="use the first N")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.02, help="Adagrad's, for theta and phi")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train = binarize_static(mnist.train_images[:args.train_images], seed=0).astype(np.float32)
    test = binarize_static(mnist.test_images[:args.test_images], seed=1).astype(np.float32)
    test_batches = [test[s:s + 100] for s in range(0, len(test), 100)]
    n = len(train)
    model = VAE(x_dim=784, hidden=(100,), latent=3, rng=rng)
    learn = MonteCarloEM(model, *(Adagrad({name: model.params[name] for name in names},
                                          lr=args.lr, weight_decay=1.0 / n)
                                  for names in (model.generative, model.recognition)), n)
    print(f"{n} training images, a 784-100-3 model; per epoch, means over its transitions")
    for epoch in range(1, args.epochs + 1):
        sums = {}
        for rows in minibatch_indices(rng.permutation(n), 100):
            for name, values in learn.step(train[rows], rng, rows).items():
                sums[name] = sums.get(name, 0.0) + float(np.sum(values, dtype=np.float64))
        if epoch % args.every == 0 or epoch == args.epochs:
            bound = mean_elbo(model, test_batches, np.random.default_rng(epoch))
            print(f"epoch {epoch:4d}  acceptance {sums['acceptance'] / n:.3f}  step size "
                  f"{sums['step_size'] / n:.4f}  log p(x, z) {sums['log_joint'] / n:8.2f}  "
                  f"test ELBO {bound:8.2f} nats")
    log_px = log_likelihood(model, test_batches, np.random.default_rng(0), k=100)
    print(f"log p(x), K=100, q(z|x) as the proposal, {len(test)} test images: {log_px:.2f} nats")


if __name__ == "__main__":
    main()
