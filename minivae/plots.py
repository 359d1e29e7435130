"""Pictures of what a model learned, written as PNG files (matplotlib, Agg)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402


def image_grid(images, cols=None):
    """Tile images (n, h, w) with values in [0, 1] into one (rows*h, cols*w) array."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.ones((rows * h, cols * w), images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return grid


def save_image_grid(images, path, cols=None):
    """Write images (n, h, w) in [0, 1] as one grayscale PNG grid at `path`."""
    matplotlib.image.imsave(path, image_grid(np.clip(images, 0, 1), cols), cmap="gray",
                            vmin=0.0, vmax=1.0)
