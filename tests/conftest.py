"""Shared test setup.

Hypothesis profiles: `ci` is deterministic and bounded, `dev` explores more.

CI sets CI=true; elsewhere choose with HYPOTHESIS_PROFILE=ci|dev.
"""
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minivae import data

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def write_idx(path, array):
    """A raw (uncompressed) uint8 IDX file: 0, 0, type 0x08, ndim, big-endian dims."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny MNIST directory: the first 300 training and 100 test images, raw IDX."""
    mnist = data.load_mnist()
    directory = tmp_path_factory.mktemp("tiny_mnist")
    for split, images, labels, n in (("train", mnist.train_images, mnist.train_labels, 300),
                                     ("t10k", mnist.test_images, mnist.test_labels, 100)):
        write_idx(directory / f"{split}-images-idx3-ubyte", images[:n].reshape(n, 28, 28))
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels[:n])
    return directory
