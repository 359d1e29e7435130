"""Frey Face, the paper's second data set (section 5, Figure 4b): 1,965
greyscale photographs of Brendan Frey's face, 28 rows by 20 columns.

The file `frey_rawface.mat` is published on Sam Roweis's data page,
https://cs.nyu.edu/~roweis/data.html; minivae does not ship it.  It holds
one variable `ff`, a 560 x 1965 uint8 matrix whose column i is image i,
its 28 x 20 pixels row by row, so that `ff.T` is already the (n, D)
layout of a `data.Dataset`.  The pixels are grey levels, not binary:
only a continuous decoder (gaussian or squared) models them, as
intensities pixel / 255.  The faces have no labels.

The paper does not say how it split the faces; minivae holds out
`TEST_IMAGES` = 200 chosen by a generator seeded with `SPLIT_SEED` = 0,
the same 200 on every run, and trains on the other 1,765.
"""
from pathlib import Path

import numpy as np

from minivae.data import DataError, Dataset
from minivae.matfile import read_uint8_matrix

PREFIX = "frey:"            # the `data` field's form for Frey Face: frey:PATH
IMAGE_SHAPE = (28, 20)
VARIABLE = "ff"
TEST_IMAGES = 200           # held out; a file of fewer than 400 images gives half
SPLIT_SEED = 0
WHERE_PUBLISHED = "https://cs.nyu.edu/~roweis/data.html"


def split(n, seed=SPLIT_SEED):
    """The seeded train/test split of n images: (train indices, test indices),
    each sorted, disjoint, together range(n); min(TEST_IMAGES, n // 2) in test."""
    if n < 2:
        raise ValueError(f"split: needs at least 2 images, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(TEST_IMAGES, n // 2)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def load_frey(path):
    """Frey Face from frey_rawface.mat at `path` as a label-free Dataset:
    images (n, 560) uint8, image_shape (28, 20), split by `split`; for the
    published file n_train = 1765 and n_test = 200.  A missing file or one
    of another layout is a one-line DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; Frey Face (frey_rawface.mat) is published on "
                        f"Sam Roweis's data page, {WHERE_PUBLISHED}")
    ff = read_uint8_matrix(path, VARIABLE)
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    if ff.shape[0] != pixels or ff.shape[1] < 2:
        raise DataError(f"{path}: expected {VARIABLE!r} of {pixels} rows (one 28 x 20 image per "
                        f"column) and at least 2 columns, got {ff.shape[0]} x {ff.shape[1]}")
    images = np.ascontiguousarray(ff.T)   # (n, 560): row i is image i, row-major 28 x 20
    train, test = split(len(images))
    return Dataset(train_images=images[train], train_labels=None,
                   test_images=images[test], test_labels=None, image_shape=IMAGE_SHAPE)
