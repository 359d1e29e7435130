"""A denoising autoencoder on binarized MNIST (Bishop, Deep Learning, 19.1.4, eq. 19.5).

Shows: each training image x is corrupted by masking noise, every pixel set
to 0 with probability nu (a fresh draw at every step), and the autoencoder
is trained to reconstruct the clean x from the corrupted x~: the error of
eq. 19.5, E(w) = 1/2 sum_n ||y(x~_n, w) - x_n||^2, here as the Bernoulli
cross-entropy because the pixels are 0/1.  After every epoch it prints the
test error of y(x~) against the clean x (one fixed corruption of the test
set) beside the plain reconstruction error from clean inputs; at the end, the
share of pixels that differ from the clean image, in x~ and in y(x~) > 1/2.
denoising.png (in --out, default runs/denoising_autoencoder/) shows clean,
corrupted and reconstructed test digits.

Run:    PYTHONPATH=. python examples/denoising_autoencoder.py    # ~25 s on two idle cores
        PYTHONPATH=. python examples/denoising_autoencoder.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.autograd import no_grad
from minivae.corruptions import MaskingNoise
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_objective, reconstruction_error
from minivae.models.autoencoder import Autoencoder
from minivae.objectives import Reconstruction
from minivae.optim import Adam


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop-prob", type=float, default=0.5, help="nu of the masking noise")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/denoising_autoencoder"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n = len(train_images)
    x_test = binarize_static(mnist.test_images, seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    model = Autoencoder(x_dim=784, hidden=(500,), latent=64, init="xavier", rng=rng)
    noise = MaskingNoise(args.drop_prob)
    objective = Reconstruction(corruption=noise)        # log p(x | y(f(x~))), eq. 19.5
    learn = GradientAscent(model, objective, Adam(model.params, lr=1e-3))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(binarize_dynamic(train_images[idx], rng, np.float32), rng)
        # the same corruption of the test set every epoch: the generator starts anew
        denoising = -mean_objective(model, objective, test_batches, np.random.default_rng(1))
        print(f"epoch {epoch}  test error of y(x~) against x {denoising:.2f} nats per image "
              f"(from clean x: {reconstruction_error(model, test_batches):.2f})")

    x_corrupted = noise(x_test, np.random.default_rng(1))
    with no_grad():
        y = model.decode_mean(model.code(x_corrupted)).data
    print(f"pixels that differ from the clean image: x~ {np.mean(x_corrupted != x_test):.2%}, "
          f"y(x~) > 1/2 {np.mean((y > 0.5) != x_test):.2%} "
          f"(masking noise nu = {args.drop_prob:g})")

    args.out.mkdir(parents=True, exist_ok=True)
    plots.image_rows([x_test, x_corrupted, y],
                     ["clean $x$", "corrupted $\\tilde{x}$", "$y(\\tilde{x})$"],
                     args.out / "denoising.png", f"Denoising: masking noise, each pixel "
                                                 f"dropped with probability {args.drop_prob:g}")
    print(f"wrote {args.out / 'denoising.png'}")


if __name__ == "__main__":
    main()
