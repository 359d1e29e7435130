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

from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.optim import Adagrad
from minivae.vae import VAE


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

    # theta, phi <- initialize parameters (N(0, 0.01^2), Appendix C)
    model = VAE(x_dim=784, hidden=(500,), latent=20, rng=rng)
    # Adagrad as in the paper; weight decay is the N(0, I) prior on the
    # parameters, divided by N because the loss below is a per-datapoint mean.
    optimizer = Adagrad(model.params, lr=0.02, weight_decay=1.0 / n)

    # Algorithm 1 (AEVB), line by line: repeat ... until convergence
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), batch_size):
            # X^M <- random minibatch of M datapoints, binarized afresh each time
            x = binarize_dynamic(train_images[idx], rng, np.float32)
            # eps <- random samples from p(eps) = N(0, I), one per datapoint (L = 1)
            eps = rng.standard_normal((1, len(idx), model.latent), dtype=np.float32)
            # g <- gradient of the minibatch estimator (eq. 8) with estimator B (eq. 7);
            # the loss is -(eq. 8) / N, so descending it ascends the bound
            loss = -model.elbo(x, eps, estimator="B").mean()
            optimizer.zero_grad()
            loss.backward()
            # theta, phi <- update parameters using g
            optimizer.step()
        test_elbo = mean_elbo(model, test_batches, np.random.default_rng(epoch))
        print(f"epoch {epoch}  test ELBO {test_elbo:.2f} nats per image")


if __name__ == "__main__":
    main()
