"""A VAE with a 2-D latent space, and the two pictures it allows (the paper's Figure 4).

Shows: train a 784-500-2 VAE on MNIST with Adam for a few epochs, then
  - manifold.png: E[x|z] decoded on a 20 x 20 grid of z, placed at the
    N(0, 1) quantiles so that each tile covers an equal share of the prior;
  - latent_scatter.png: the encoder means mu of test images, one dot per
    image, coloured by digit class.
Because the latent space is 2-D, nothing is projected: the scatter shows z1
and z2 themselves, on the same axes as the manifold.

Run:    PYTHONPATH=. python examples/manifold_2d.py           # ~2 min; writes runs/manifold_2d/
        PYTHONPATH=. python examples/manifold_2d.py --epochs 1 --train-images 500 --out /tmp/m2d
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.optim import Adam
from minivae.models.vae import VAE
from minivae.objectives import ELBO


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--test-images", type=int, default=5000, help="dots in the scatter")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("runs/manifold_2d"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n = len(train_images)
    x_test = binarize_static(mnist.test_images, seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    model = VAE(x_dim=784, hidden=(args.hidden,), latent=2, rng=rng)
    learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=1e-3, weight_decay=1.0 / n))
    for epoch in range(1, args.epochs + 1):        # AEVB, Algorithm 1, with estimator B
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(binarize_dynamic(train_images[idx], rng, np.float32), rng)
        test_elbo = mean_elbo(model, test_batches, np.random.default_rng(epoch))
        print(f"epoch {epoch}  test ELBO {test_elbo:.2f} nats per image")

    args.out.mkdir(parents=True, exist_ok=True)
    plots.manifold(model, args.out / "manifold.png", n=20, grid="normal")
    m = args.test_images
    plots.latent_scatter(model, x_test[:m], mnist.test_labels[:m], args.out / "latent_scatter.png",
                         title=f"Encoder means $\\mu$ of {len(x_test[:m])} test images, "
                               f"2-D latent, {args.epochs} epoch{'s' * (args.epochs != 1)}")
    for name in ("manifold.png", "latent_scatter.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
