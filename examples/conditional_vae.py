"""A conditional VAE on binarized MNIST (Sohn, Lee & Yan 2015; Bishop, Deep Learning, 19.2).

Shows: the label y, one-hot, enters the encoder q(z|x, y) and the decoder
p(x|z, y); the prior p(z) = N(0, I) does not depend on y.  The condition
travels with x: every row the objective sees is [pixels, onehot(y)], so the
VAE's bound (estimator B, eq. 7) is trained unchanged.  After every epoch
the test ELBO is printed; at the end, the importance-sampled log p(x|y),
the test ELBO when each image is given a wrong label (y + 1 mod 10: lower
if the model uses y), and classes.png (in --out, default
runs/conditional_vae/): one row per digit, the same z in each column, so
the style stays and the class changes.

Run:    PYTHONPATH=. python examples/conditional_vae.py    # ~30 s on two idle cores
        PYTHONPATH=. python examples/conditional_vae.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices, one_hot
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.models.cvae import ConditionalVAE
from minivae.optim import Adam
from minivae.objectives import ELBO


def with_labels(pixels, labels):
    """x = [pixels, onehot(y)]: the rows a conditional model reads, (B, 784 + 10)."""
    return np.hstack([pixels, one_hot(labels, 10).astype(np.float32)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=20000, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/conditional_vae"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    images, labels = mnist.train_images[:args.train_images], mnist.train_labels[:args.train_images]
    pixels = binarize_static(mnist.test_images, seed=0).astype(np.float32)
    x_test = with_labels(pixels, mnist.test_labels)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    model = ConditionalVAE(x_dim=784, hidden=(500,), latent=20, classes=10, rng=rng)
    learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=1e-3))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            learn.step(with_labels(binarize_dynamic(images[idx], rng, np.float32), labels[idx]),
                       rng)
        elbo = mean_elbo(model, test_batches, np.random.default_rng(1))
        print(f"epoch {epoch}  test ELBO {elbo:.2f} nats")

    log_px = log_likelihood(model, [x_test[:500]], np.random.default_rng(2), k=100)
    print(f"log p(x|y), K=100, first 500 test images: {log_px:.2f} nats")
    wrong = with_labels(pixels, (mnist.test_labels + 1) % 10)
    wrong_elbo = mean_elbo(model, [wrong[s:s + 1000] for s in range(0, len(wrong), 1000)],
                           np.random.default_rng(1))
    print(f"test ELBO with the true label {elbo:.2f}, with a wrong label {wrong_elbo:.2f} nats")

    args.out.mkdir(parents=True, exist_ok=True)
    plots.class_grid(model, args.out / "classes.png", np.random.default_rng(3))
    print(f"wrote {args.out / 'classes.png'}")


if __name__ == "__main__":
    main()
