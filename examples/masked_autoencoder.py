"""A masked autoencoder on MNIST intensities (Bishop, Deep Learning, 19.1.5).

Shows: each 28x28 image is cut into 49 patches of 4x4 pixels and 75 % of
them (37) are masked, a fresh choice per image at every step.  The encoder
reads the visible pixels beside the mask itself; the decoder fills in the
whole image, and the error is the sum of squares over the masked pixels
only.  After every epoch it prints that error on the test set (one fixed
mask per test image), beside what filling every masked pixel with the mean
training image would give.  masked.png (in --out, default
runs/masked_autoencoder/) shows original, masked input (masked patches drawn
in gray) and reconstruction y = decode_mean(code(x, mask)).

Run:    PYTHONPATH=. python examples/masked_autoencoder.py    # ~35 s on two idle cores
        PYTHONPATH=. python examples/masked_autoencoder.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.autograd import no_grad
from minivae.corruptions import patch_mask
from minivae.data import intensities, load_mnist, minibatch_indices
from minivae.models.autoencoder import MaskedAutoencoder
from minivae.objectives import MaskedReconstruction
from minivae.optim import Adam

PATCH, RATIO = 4, 0.75


def masked_error(y, x, mask):
    """sum over masked pixels of (y_d - x_d)^2, mean over images: what training minimizes."""
    return float(np.mean(np.sum(((y - x) * mask) ** 2, axis=1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/masked_autoencoder"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n, shape = len(train_images), mnist.image_shape
    x_test = intensities(mnist.test_images, np.float32)
    mask_test = patch_mask(len(x_test), shape, PATCH, RATIO, np.random.default_rng(1), np.float32)
    mean_image = (train_images.mean(axis=0) / 255).astype(np.float32)

    model = MaskedAutoencoder(x_dim=784, hidden=(500,), latent=64, init="xavier", rng=rng)
    learn = GradientAscent(model, MaskedReconstruction(shape, PATCH, RATIO),
                           Adam(model.params, lr=1e-3))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(intensities(train_images[idx], np.float32), rng)  # masks drawn inside
        with no_grad():
            y = model.decode_mean(model.code(x_test, mask_test)).data
        print(f"epoch {epoch}  test squared error on the masked pixels "
              f"{masked_error(y, x_test, mask_test):.2f} per image "
              f"(mean training image: {masked_error(mean_image, x_test, mask_test):.2f})")

    masked_input = np.where(mask_test == 1, 0.5, x_test)    # masked patches in gray
    args.out.mkdir(parents=True, exist_ok=True)
    plots.image_rows([x_test, masked_input, y], ["original", "masked input", "reconstruction"],
                     args.out / "masked.png", f"Masked autoencoder: {RATIO:.0%} of the "
                     f"{PATCH}x{PATCH} patches masked (gray); the loss is on those only",
                     image_shape=shape)
    print(f"wrote {args.out / 'masked.png'}")


if __name__ == "__main__":
    main()
