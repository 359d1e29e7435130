"""MNIST-style data: IDX files in, uint8 images out, and the per-minibatch
conversions the paper's two decoders need: binary pixels for the Bernoulli
MLP (Appendix C.1), intensities in [0, 1] for the Gaussian MLP (Appendix C.2),
either pixel / 255 or uniformly dequantized, (pixel + u) / 256, whose
density is bounded.  A conditional model's x also carries the one-hot label.

Images stay uint8 in memory, shape (n, D) with D = h * w; they become floats
one minibatch at a time.
"""
import gzip
import math
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

EMBEDDED_MNIST = Path(__file__).parent / "mnist"
BINARIZATIONS = ("dynamic", "static", "none")
INTENSITIES = ("scaled", "dequantized")
TEST_BINARIZATION_SEED = 0  # one fixed binarization of the test set, for comparable numbers
TEST_DEQUANTIZATION_SEED = 0   # likewise one fixed draw of u for dequantized test images
# one fixed binarization of the training images that are scored (not trained on) when
# training binarizes dynamically, so every evaluation of a run scores the same x
TRAIN_SCORING_SEED = 1
LEVELS = 256   # the values a uint8 pixel takes
EVAL_BATCH = 1000
IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data file or directory is missing, unreadable or malformed."""


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a uint8 array of its
    header's shape, e.g. (60000, 28, 28) for MNIST training images.

    The IDX header is big-endian: two zero bytes, a type code, the number of
    dimensions, then one uint32 per dimension. Only type code 0x08 (uint8)
    is supported. The returned array is a read-only view of the file's bytes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror})") from None
    # Detected by content, not by name: a renamed file must still load.
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from None

    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (magic should start with 0000, "
                        f"got {raw[:4].hex() or 'an empty file'})")
    type_code, ndim = raw[2], raw[3]
    if type_code != IDX_UINT8:
        raise DataError(f"{path}: IDX type code 0x{type_code:02x} is not supported, "
                        f"only uint8 IDX (0x08) is")
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: IDX header says {ndim} dimensions, expected 1 to 4")
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise DataError(f"{path}: IDX header truncated, expected {header_bytes} bytes, "
                        f"got {len(raw)}")

    dims = struct.unpack(f">{ndim}I", raw[4:header_bytes])
    expected, got = math.prod(dims), len(raw) - header_bytes
    if got != expected:
        raise DataError(f"{path}: expected {expected} bytes of pixel data for shape "
                        f"{dims}, got {got} bytes")
    return np.frombuffer(raw, dtype=np.uint8, count=expected,
                         offset=header_bytes).reshape(dims)


# eq=False: comparing or hashing datasets field by field makes no sense for
# arrays, so a Dataset is equal only to itself.
@dataclass(frozen=True, eq=False)
class Dataset:
    """Flattened uint8 images with their labels.

    train_images (n_train, D), train_labels (n_train,), test_images (n_test, D),
    test_labels (n_test,); image_shape (h, w) with h * w = D.
    MNIST: n_train = 60000, n_test = 10000, D = 784, image_shape = (28, 28).
    A data set without labels (Frey Face, `frey`) has None for both.
    """
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple

    @property
    def dim(self):
        """D, the number of pixels per image."""
        return self.train_images.shape[1]

    def first_training_images(self, n):
        """This data set with only its first n training images (and labels), the
        test set whole: a training set of size N, as in the paper's Figure 3."""
        if n > len(self.train_images):
            raise DataError(f"train size {n} is larger than the training set "
                            f"({len(self.train_images)} images)")
        labels = self.train_labels
        return replace(self, train_images=self.train_images[:n],
                       train_labels=None if labels is None else labels[:n])


def _find_idx(data_dir, name):
    """The path of `name` or `name.gz` in data_dir, the raw file first."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data_dir}: no {name} or {name}.gz")


def _load_split(data_dir, split):
    """Images (n, h, w) and labels (n,) of one split ('train' or 't10k')."""
    images_path = _find_idx(data_dir, f"{split}-images-idx3-ubyte")
    labels_path = _find_idx(data_dir, f"{split}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3-D images (n, h, w), "
                        f"got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 1-D labels (n,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: has {len(labels)} labels, but "
                        f"{images_path.name} has {len(images)} images")
    return images_path, images, labels


def load_mnist(data_dir=None):
    """Load the four MNIST IDX files into a Dataset.

    data_dir=None loads the copy of MNIST embedded in the package. Otherwise
    data_dir holds files with the MNIST names (e.g. Fashion-MNIST):
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte, each raw or with a .gz suffix.
    """
    data_dir = EMBEDDED_MNIST if data_dir is None else Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist or is not a directory")
    _, train_images, train_labels = _load_split(data_dir, "train")
    test_path, test_images, test_labels = _load_split(data_dir, "t10k")
    image_shape = train_images.shape[1:]
    if test_images.shape[1:] != image_shape:
        raise DataError(f"{test_path}: test images are {test_images.shape[1:]}, "
                        f"but training images are {image_shape}")
    return Dataset(train_images=train_images.reshape(len(train_images), -1),
                   train_labels=train_labels,
                   test_images=test_images.reshape(len(test_images), -1),
                   test_labels=test_labels,
                   image_shape=image_shape)


def _require_uint8(images):
    # Every conversion below reads a pixel as pixel / 255; float input would
    # be silently misread, so refuse it.
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images (pixel values 0..255), got {images.dtype}")


def _bernoulli(images, rng):
    """x ~ Bernoulli(pixel / 255), elementwise, as a bool array of images' shape.

    u is uniform on {0, ..., 254}, so P(u < pixel) = pixel / 255 exactly:
    0 always gives 0 and 255 always gives 1, with no float rounding.
    """
    _require_uint8(images)
    u = rng.integers(0, 255, size=images.shape, dtype=np.uint8)
    return u < images


def binarize_dynamic(images, rng, dtype):
    """A fresh binarization of a minibatch: x ~ Bernoulli(pixel / 255).

    images (B, D) uint8 -> (B, D) array of 0.0 and 1.0 in dtype (float32 or
    float64). Each call draws anew from rng, so the Bernoulli decoder sees a
    new binarization every time it sees an image.
    """
    return _bernoulli(images, rng).astype(dtype)


def binarize_static(images, seed):
    """One fixed binarization x ~ Bernoulli(pixel / 255), drawn with `seed`.

    images (n, D) uint8 -> (n, D) uint8 of 0 and 1. The same seed gives the
    same binarization, e.g. to score the test set identically across runs.
    """
    return _bernoulli(images, np.random.default_rng(seed)).astype(np.uint8)


def intensities(images, dtype):
    """Pixel intensities pixel / 255 in [0, 1] for the Gaussian decoder.

    images (B, D) uint8 -> (B, D) in dtype, computed in dtype (no float64
    intermediate for float32); division keeps 255 / 255 exactly 1.
    """
    _require_uint8(images)
    return np.divide(images, 255, dtype=dtype)


def dequantize(images, rng, dtype):
    """Uniformly dequantized intensities x = (pixel + u) / 256, u ~ U(0, 1) per pixel.

    images (B, D) uint8 -> (B, D) in dtype, inside [0, 1).  A density on such
    x is bounded where one on pixel / 255 is not: with exact zeros a Gaussian
    decoder can shrink its variance to nothing and its log-density grows
    without bound.  Any density p on [0, 1)^D bounds the discrete model's
    log-probability, log P(pixels) >= E_u[log p(x)] - D log 256
    (`bits_per_dim`).
    """
    _require_uint8(images)
    u = rng.random(images.shape, dtype=dtype)
    x = (images.astype(dtype) + u) / dtype(LEVELS)
    # pixel + u can round up to pixel + 1 in float32: keep x below its cell's top,
    # (pixel + 1) / 256, which is exact in any float type
    top = (images.astype(dtype) + dtype(1)) / dtype(LEVELS)
    return np.minimum(x, np.nextafter(top, dtype(0)))


def bits_per_dim(log_px, dim):
    """-(log p(x) - D log 256) / (D log 2): a density's log p(x) in nats on
    dequantized x in [0, 1)^D, as bits per pixel of the 256-level data.

    x = (pixel + u) / 256 maps each of the 256^D discrete images onto a cell
    of volume 256^-D, so the discrete log-probability is log p(x) - D log 256
    (at least, in expectation over u); dividing by D log 2 gives bits per
    dimension, the unit of published continuous-density results on MNIST.
    """
    return -(log_px - dim * np.log(LEVELS)) / (dim * np.log(2))


def one_hot(labels, classes):
    """labels (n,) integers in 0..classes-1 -> (n, classes) uint8 of 0 and 1."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"labels must lie in 0..{classes - 1} for {classes} classes, found "
                        f"{int(labels.min())}..{int(labels.max())}")
    return (labels[:, None] == np.arange(classes)).astype(np.uint8)


def validate_binary(images, where):
    """Check that images (n, D) uint8 are already binary, for a Bernoulli
    decoder trained without binarization.

    Binary means every pixel is 0 or 255, so that pixel / 255 (the rule every
    conversion here uses) is exactly 0 or 1. Data stored as 0/1 does not pass:
    read as pixel / 255 it would be nearly black. Raises DataError naming
    `where` and the other values found.
    """
    _require_uint8(images)
    other = (images != 0) & (images != 255)
    if other.any():
        values = np.unique(images[other])
        raise DataError(f"{where}: pixels must be 0 or 255 for binary data, found "
                        f"{len(values)} other values, e.g. {values[:5].tolist()}")


def minibatch_indices(order, batch_size):
    """An epoch's minibatches: `order` (a permutation of range(n)) cut into
    index arrays of batch_size, the last one holding the remainder.

    The remainder is kept, so every example is seen once per epoch. Raises
    ValueError for batch_size < 1 or > n.
    """
    n = len(order)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} is larger than the data set ({n} images)")
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


class Inputs:
    """A data set's uint8 images as the model's x, one minibatch at a time.

    `pixels` is what the likelihood models (`likelihoods`): 'binary' pixels
    get a fresh binarization per minibatch (binarize='dynamic'), one fixed
    binarization drawn with `seed` ('static'), or must already be binary
    ('none'); 'continuous' pixels are `intensities`, pixel / 255 ('scaled')
    or (pixel + u) / 256 with a fresh u per minibatch ('dequantized').  Test
    images are binarized or dequantized once with a fixed seed, so every run
    is scored on the same x.  With `classes` C > 0 (a conditional model)
    every x is the pixels followed by the one-hot label: (B, D + C).
    """

    def __init__(self, dataset, pixels, binarize, seed, dtype, intensities="scaled",
                 classes=0):
        if pixels not in ("binary", "continuous"):
            raise ValueError(f"pixels must be 'binary' or 'continuous', got {pixels!r}")
        if binarize not in BINARIZATIONS:
            raise ValueError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
        if intensities not in INTENSITIES:
            raise ValueError(f"intensities must be one of {INTENSITIES}, got {intensities!r}")
        self.pixels, self.binarize, self.dtype = pixels, binarize, np.dtype(dtype)
        self.dynamic = pixels == "binary" and binarize == "dynamic"
        self.dequantized = pixels == "continuous" and intensities == "dequantized"
        self.train = dataset.train_images if self.dynamic else \
            self._fixed(dataset.train_images, seed, "training")
        self.test = self._fixed(dataset.test_images, TEST_BINARIZATION_SEED, "test")
        self.classes = classes
        if classes and dataset.test_labels is None:
            raise DataError("a conditional model reads each image's label; this data set "
                            "has no labels")
        if classes:
            self.train_y = one_hot(dataset.train_labels, classes).astype(self.dtype)
            self.test_y = one_hot(dataset.test_labels, classes).astype(self.dtype)

    def _fixed(self, images, seed, split):
        if self.pixels == "continuous":
            return images
        if self.binarize == "none":
            validate_binary(images, f"{split} images")
            return images
        # 0/1 uint8 times 255 keeps the one conversion rule: x = pixel / 255
        return binarize_static(images, seed) * np.uint8(255)

    def _x(self, images, rng):
        """Pixels as x: binarized, dequantized (u from rng) or scaled."""
        if self.dynamic:
            return binarize_dynamic(images, rng, self.dtype)
        if self.dequantized:
            return dequantize(images, rng, self.dtype.type)
        return intensities(images, self.dtype)

    def train_batch(self, idx, rng):
        """x for the training images idx: (B, D), or (B, D + C) with the labels."""
        x = self._x(self.train[idx], rng)
        return np.hstack([x, self.train_y[idx]]) if self.classes else x

    def test_batches(self, batch_size=EVAL_BATCH, limit=None):
        """The test set as x, in batches (a generator, so memory stays small)."""
        yield from self._scored(self.test, self.classes and self.test_y, batch_size, limit)

    def train_batches(self, batch_size=EVAL_BATCH, limit=None):
        """The first `limit` training images as x to be scored, in batches: the
        same x at every call (one fixed binarization when training binarizes
        dynamically), so scores at different epochs compare."""
        images = self.train[:limit]
        if self.dynamic:
            images = binarize_static(images, TRAIN_SCORING_SEED) * np.uint8(255)
        yield from self._scored(images, self.classes and self.train_y, batch_size, limit)

    def _scored(self, images, onehot, batch_size, limit):
        rng = np.random.default_rng(TEST_DEQUANTIZATION_SEED)   # used when dequantized
        n = len(images[:limit])
        for s in range(0, n, batch_size):
            x = intensities(images[s:min(s + batch_size, n)], self.dtype) if self.dynamic \
                else self._x(images[s:min(s + batch_size, n)], rng)
            yield np.hstack([x, onehot[s:s + len(x)]]) if self.classes else x
