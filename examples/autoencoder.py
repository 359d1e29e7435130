"""A deterministic deep autoencoder on binarized MNIST (Bishop, Deep Learning, 19.1 and 19.1.2).

Shows: an encoder z = f(x) and a decoder y(z), two MLPs with two hidden
layers each (784-500-250-30 and back), trained to reconstruct their input:
minimize the error of eq. 19.1, here the Bernoulli cross-entropy from
logits because the pixels are 0/1.  There is no prior and no sampling: the
code of an image is one point.  After every epoch the test reconstruction
error is printed (nats per image, z = f(x)); at the end, reconstructions.png
(in --out, default runs/autoencoder/) shows twenty test digits above their
reconstructions.

Run:    PYTHONPATH=. python examples/autoencoder.py    # ~30 s on two idle cores
        PYTHONPATH=. python examples/autoencoder.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import reconstruction_error
from minivae.models.autoencoder import Autoencoder
from minivae.objectives import Reconstruction
from minivae.optim import Adam


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/autoencoder"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n = len(train_images)
    x_test = binarize_static(mnist.test_images, seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    # 19.1.2: a deep autoencoder, nonlinear in both directions.  Glorot's init
    # keeps the signal alive through the five layers between x and y.
    model = Autoencoder(x_dim=784, hidden=(500, 250), latent=30, decoder="bernoulli",
                        activation="tanh", init="xavier", rng=rng)
    # eq. 19.1's error, as a log-likelihood to maximize: log p(x | y(f(x)))
    learn = GradientAscent(model, Reconstruction(), Adam(model.params, lr=1e-3))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(binarize_dynamic(train_images[idx], rng, np.float32), rng)
        error = reconstruction_error(model, test_batches)
        print(f"epoch {epoch}  test reconstruction error {error:.2f} "
              f"{model.likelihood.error_unit} per image")

    args.out.mkdir(parents=True, exist_ok=True)
    plots.reconstructions(model, x_test[:20], args.out / "reconstructions.png", n=20)
    print(f"wrote {args.out / 'reconstructions.png'}")


if __name__ == "__main__":
    main()
