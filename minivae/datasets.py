"""The data sets a run can name in its config's `data` field:

    None          the MNIST embedded in the package (`data.load_mnist`)
    DIRECTORY     a directory of MNIST-format IDX files, e.g. Fashion-MNIST
    frey:PATH     Frey Face from frey_rawface.mat at PATH (`frey`)
"""
from pathlib import Path

from minivae import frey
from minivae.data import load_mnist


def is_frey(spec):
    """Whether the `data` value `spec` names Frey Face (frey:PATH)."""
    return spec is not None and spec.startswith(frey.PREFIX)


def normalized(spec):
    """`spec` with its path made absolute, so the same data compares equal from
    any working directory: 'frey:faces.mat' -> 'frey:/abs/faces.mat'."""
    if spec is None:
        return None
    if is_frey(spec):
        return frey.PREFIX + str(Path(spec[len(frey.PREFIX):]).resolve())
    return str(Path(spec).resolve())


def load_dataset(spec):
    """The `data.Dataset` that `spec` (a `data` value, see the module docstring) names."""
    if is_frey(spec):
        return frey.load_frey(spec[len(frey.PREFIX):])
    return load_mnist(spec)
