"""The shortest complete use of the minivae API: the paper's MNIST VAE, trained
by AEVB (Kingma & Welling 2013, Algorithm 1) in a loop you can read on one screen.

Shows: load MNIST, build the VAE, and repeat: minibatch, eps ~ N(0, I),
gradient of the minibatch ELBO (eq. 8), Adagrad step; then print the test
ELBO after every epoch.  (`minivae train` does the same with checkpoints.)

Run:    PYTHONPATH=. python examples/train_mnist.py              # 3 epochs, ~2 min
        PYTHONPATH=. python examples/train_mnist.py --epochs 1 --train-images 500
"""
import argparse

import numpy as np

from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adagrad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()                                         # uint8, (60000, 784)
    train_images = mnist.train_images[:args.train_images]
    n, batch_size = len(train_images), 100
    x_test = binarize_static(mnist.test_images, seed=0).astype(np.float32)   # one fixed 0/1 draw
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    # theta, phi <- initialize parameters: N(0, 0.01^2), the paper's section 5
    model = VAE(x_dim=784, hidden=(500,), latent=20, rng=rng)
    # Section 5's other choices: Adagrad; weight decay is the N(0, I) prior on
    # the parameters, divided by N because the loss is a per-datapoint mean;
    # M = 100 (batch_size) and L = 1 sample of eps per datapoint.
    learn = GradientAscent(model, ELBO(estimator="B", samples=1),
                           Adagrad(model.params, lr=0.02, weight_decay=1.0 / n))

    # Algorithm 1 (AEVB), line by line: repeat ... until convergence
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), batch_size):
            # X^M <- random minibatch of M datapoints, binarized afresh each time
            x = binarize_dynamic(train_images[idx], rng, np.float32)
            # eps <- random samples from p(eps) = N(0, I), drawn from rng (L = 1);
            # g <- gradient of the minibatch estimator (eq. 8) with estimator B
            # (eq. 7); theta, phi <- update parameters using g (Adagrad).
            # These three lines are GradientAscent.step (minivae/algorithms.py).
            learn.step(x, rng)
        test_elbo = mean_elbo(model, test_batches, np.random.default_rng(epoch))
        print(f"epoch {epoch}  test ELBO {test_elbo:.2f} nats per image")


if __name__ == "__main__":
    main()
