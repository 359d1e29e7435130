"""A sparse autoencoder on binarized MNIST (Bishop, Deep Learning, 19.1.3, eq. 19.4).

Shows: the same autoencoder (784-256-64 and back, same initialization and
minibatches) trained twice, with lambda = 0 and with the L1 penalty
lambda sum_k |z_k| on the code added to the reconstruction error (eq. 19.4),
then, over the test images, the share of code values z_k that are near zero:
  - |z_k| < 0.05, the plain reading of "near zero";
  - |z_k| ||w_k|| < 0.1, with w_k the decoder's weights out of unit k: how
    far z_k moves the decoder's first tanh units, whose scale is 1.
The second count is needed because eq. 19.4 alone can be lowered without any
sparsity, by shrinking every z_k and growing the decoder's weights to match;
the mean |z_k| and ||w_k|| are printed so that this can be seen.
codes.png (in --out, default runs/sparse_autoencoder/) shows histograms of
both quantities for the two values of lambda.

Run:    PYTHONPATH=. python examples/sparse_autoencoder.py    # ~20 s on two idle cores
        PYTHONPATH=. python examples/sparse_autoencoder.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import reconstruction_error
from minivae.models.autoencoder import Autoencoder
from minivae.objectives import Reconstruction
from minivae.optim import Adam
from minivae.plots import codes

NEAR_ZERO, NEAR_ZERO_EFFECT = 0.05, 0.1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=1.0, help="lambda of eq. 19.4")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/sparse_autoencoder"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n = len(train_images)
    x_test = binarize_static(mnist.test_images, seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for lam in (0.0, args.sparsity):
        rng = np.random.default_rng(args.seed)      # the same start for both lambdas
        model = Autoencoder(x_dim=784, hidden=(256,), latent=64, init="xavier", rng=rng)
        # eq. 19.4: E(w) + lambda sum_k |z_k|, as an objective per image to maximize
        learn = GradientAscent(model, Reconstruction(sparsity=lam), Adam(model.params, lr=1e-3))
        for _ in range(args.epochs):
            for idx in minibatch_indices(rng.permutation(n), 100):
                learn.step(binarize_dynamic(train_images[idx], rng, np.float32), rng)
        z = np.abs(codes(model, x_test))                                    # (10000, 64)
        w = np.linalg.norm(model.params["decoder.hidden.0.W"].data, axis=1)  # (64,): ||w_k||
        error = reconstruction_error(model, test_batches)
        print(f"lambda {lam:g}:  test reconstruction error {error:.2f} "
              f"{model.likelihood.error_unit} per image;  mean |z_k| {z.mean():.3f}, "
              f"mean ||w_k|| {w.mean():.2f}")
        print(f"  near zero:  |z_k| < {NEAR_ZERO:g}: {np.mean(z < NEAR_ZERO):.1%}   "
              f"|z_k| ||w_k|| < {NEAR_ZERO_EFFECT:g}: {np.mean(z * w < NEAR_ZERO_EFFECT):.1%}")
        bins = np.logspace(-4, 2, 61)
        for ax, values in zip(axes, (z, z * w)):
            ax.hist(values.ravel(), bins=bins, histtype="step", label=f"$\\lambda$ = {lam:g}")
    for ax, name, threshold in zip(axes, ("$|z_k|$", "$|z_k|\\,\\|w_k\\|$"),
                                   (NEAR_ZERO, NEAR_ZERO_EFFECT)):
        ax.axvline(threshold, color="gray", ls="--", label=f"{threshold:g}")
        ax.set(xscale="log", xlabel=name, ylabel="code values (test images x units)")
        ax.legend()
    fig.suptitle("Codes of the test images with and without the L1 penalty of eq. 19.4")
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "codes.png")
    print(f"wrote {args.out / 'codes.png'}")


if __name__ == "__main__":
    main()
