"""Corruptions of the input for the denoising autoencoder (Bishop 19.1.4).

Each is drawn from the run's random generator at every step, like eps, so
that a resumed run corrupts exactly as the uninterrupted one would.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskingNoise:
    """x~_d = 0 with probability nu, else x_d: x (B, D) -> (B, D)."""
    nu: float

    def __post_init__(self):
        if not 0 < self.nu < 1:
            raise ValueError(f"masking noise: the drop probability must lie in (0, 1), "
                             f"got {self.nu}")

    def __call__(self, x, rng):
        keep = rng.random(x.shape, dtype=x.dtype) >= self.nu
        return x * keep


@dataclass(frozen=True)
class GaussianNoise:
    """x~ = x + sigma eps with eps ~ N(0, I): x (B, D) -> (B, D)."""
    sigma: float

    def __post_init__(self):
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"Gaussian noise: sigma must be a finite number > 0, "
                             f"got {self.sigma}")

    def __call__(self, x, rng):
        return x + x.dtype.type(self.sigma) * rng.standard_normal(x.shape, dtype=x.dtype)


def patch_mask(batch, image_shape, patch, ratio, rng, dtype):
    """A pixel mask (B, D) of 0/1 in `dtype`: each image's (h/p)(w/p) patches of
    p x p pixels, round(ratio * patches) of them chosen at random and set to 1
    (masked), independently per image (Bishop 19.1.5; 75 % of 4x4 patches)."""
    h, w = image_shape
    if h % patch or w % patch:
        raise ValueError(f"patch size {patch} does not divide the {h}x{w} images; "
                         f"expected a divisor of both")
    rows, cols = h // patch, w // patch
    n_masked = int(round(ratio * rows * cols))
    order = rng.random((batch, rows * cols)).argsort(axis=1)
    masked = np.zeros((batch, rows * cols), dtype)
    np.put_along_axis(masked, order[:, :n_masked], 1, axis=1)
    grid = masked.reshape(batch, rows, 1, cols, 1)
    return np.broadcast_to(grid, (batch, rows, patch, cols, patch)).reshape(batch, h * w).copy()
