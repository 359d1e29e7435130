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
from minivae.cli import main

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


def write_mnist(directory, n_train, n_test):
    """An MNIST directory of the embedded MNIST's first n_train training and n_test
    test images with their labels, as raw IDX files; returns the directory."""
    mnist = data.load_mnist()
    for split, images, labels, n in (("train", mnist.train_images, mnist.train_labels, n_train),
                                     ("t10k", mnist.test_images, mnist.test_labels, n_test)):
        write_idx(directory / f"{split}-images-idx3-ubyte", images[:n].reshape(n, 28, 28))
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels[:n])
    return directory


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of `minivae argv`, called in-process, whether it
    returns or exits (argparse's usage errors)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny MNIST directory: the first 300 training and 100 test images, raw IDX."""
    return write_mnist(tmp_path_factory.mktemp("tiny_mnist"), 300, 100)
