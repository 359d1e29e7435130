import gzip
import hashlib
import re
import struct

import numpy as np
import pytest

from minivae.data import (EMBEDDED_MNIST, DataError, binarize_dynamic, binarize_static,
                          intensities, load_mnist, minibatch_indices, read_idx,
                          validate_binary)

# Identifying facts of the real MNIST, from minivae/mnist/README.md.
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array, type_code=0x08):
    """The IDX encoding of a uint8 array: 00 00 type ndim, big-endian dims, data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_dir(directory, n_train=5, n_test=4, shape=(3, 2), overrides=None):
    """Write four small raw IDX files under the MNIST names; overrides maps a
    file name to the array to write instead (None: leave the file out)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays.update(overrides or {})
    for name, array in arrays.items():
        if array is not None:
            (directory / name).write_bytes(idx_bytes(array))
    return arrays


# --- the embedded data is the real MNIST ------------------------------------

@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_embedded_mnist_has_the_mnist_shapes_and_dtypes(mnist):
    assert mnist.train_images.shape == (60000, 784)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 784)
    assert mnist.test_labels.shape == (10000,)
    assert mnist.image_shape == (28, 28)
    assert mnist.dim == 784
    for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        assert array.dtype == np.uint8


def test_embedded_training_pixels_have_the_published_mean_and_std(mnist):
    # From a histogram built in chunks, so no 60000 x 784 float or int64 copy is made.
    counts = sum(np.bincount(chunk.ravel(), minlength=256)
                 for chunk in np.array_split(mnist.train_images, 60))
    p = np.arange(256) / 255
    mean = counts @ p / counts.sum()
    std = np.sqrt(counts @ (p - mean) ** 2 / counts.sum())
    assert mean == pytest.approx(0.13066, abs=1e-4)
    assert std == pytest.approx(0.30811, abs=1e-4)


def test_embedded_label_counts_match_the_published_counts(mnist):
    assert np.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(mnist.test_labels, minlength=10).tolist() == TEST_LABEL_COUNTS


def test_embedded_files_match_the_sha256_table_in_the_shipped_readme():
    readme = (EMBEDDED_MNIST / "README.md").read_text()
    table = dict(re.findall(r"^\|\s*(\S+-ubyte)\s*\|\s*([0-9a-f]{64})\s*\|", readme, re.M))
    assert len(table) == 4
    for name, sha256 in table.items():
        content = gzip.decompress((EMBEDDED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == sha256, name


# --- read_idx -----------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_round_trips_an_array(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    content = idx_bytes(array)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(gzip.compress(content) if compress else content)
    read = read_idx(path)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, array)


def test_read_idx_detects_gzip_by_content_not_by_name(tmp_path):
    array = np.arange(7, dtype=np.uint8)
    (tmp_path / "labels.bin").write_bytes(gzip.compress(idx_bytes(array)))
    (tmp_path / "labels.gz").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.bin"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), array)


GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))
BAD_FILES = {
    "bad magic": (b"\x01\x00" + GOOD[2:], "not an IDX file"),
    "float type code": (b"\x00\x00\x0d" + GOOD[3:], "only uint8 IDX"),
    "zero dimensions": (b"\x00\x00\x08\x00", "expected 1 to 4"),
    "five dimensions": (b"\x00\x00\x08\x05" + struct.pack(">5I", 1, 1, 1, 1, 1) + b"\x00",
                        "expected 1 to 4"),
    "truncated header": (GOOD[:9], "header truncated"),
    "truncated body": (GOOD[:-1], "expected 6 bytes of pixel data for shape (2, 3), got 5"),
    "trailing bytes": (GOOD + b"\x00", "expected 6 bytes of pixel data for shape (2, 3), got 7"),
    "truncated gzip": (gzip.compress(GOOD)[:-12], "gzip"),
    "empty file": (b"", "not an IDX file"),
}


@pytest.mark.parametrize("content, expected", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_read_idx_rejects_a_malformed_file_naming_it(tmp_path, content, expected):
    path = tmp_path / "broken-idx-file"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(expected)) as error:
        read_idx(path)
    assert "broken-idx-file" in str(error.value)
    assert "\n" not in str(error.value)


def test_read_idx_rejects_a_missing_file_naming_it(tmp_path):
    with pytest.raises(DataError, match="no-such-file.*cannot read"):
        read_idx(tmp_path / "no-such-file")


# --- load_mnist on other directories ---------------------------------------------

def test_load_mnist_reads_raw_files_from_a_directory(tmp_path):
    arrays = write_mnist_dir(tmp_path)
    data = load_mnist(tmp_path)
    assert data.image_shape == (3, 2)
    assert data.dim == 6
    np.testing.assert_array_equal(data.train_images,
                                  arrays["train-images-idx3-ubyte"].reshape(5, 6))
    np.testing.assert_array_equal(data.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.test_images,
                                  arrays["t10k-images-idx3-ubyte"].reshape(4, 6))
    np.testing.assert_array_equal(data.test_labels, arrays["t10k-labels-idx1-ubyte"])


def test_load_mnist_rejects_a_directory_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match="no-such-dir.*not a directory"):
        load_mnist(tmp_path / "no-such-dir")


BAD_DIRECTORIES = {
    "missing file": ({"t10k-labels-idx1-ubyte": None},
                     "no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"),
    "count mismatch": ({"train-labels-idx1-ubyte": np.zeros(4, np.uint8)},
                       "has 4 labels, but train-images-idx3-ubyte has 5 images"),
    "flat images": ({"train-images-idx3-ubyte": np.zeros((5, 6), np.uint8)},
                    "expected 3-D images"),
    "2-D labels": ({"t10k-labels-idx1-ubyte": np.zeros((4, 1), np.uint8)},
                   "expected 1-D labels"),
    "image sizes differ": ({"t10k-images-idx3-ubyte": np.zeros((4, 2, 3), np.uint8)},
                           "test images are (2, 3), but training images are (3, 2)"),
}


@pytest.mark.parametrize("overrides, expected", BAD_DIRECTORIES.values(),
                         ids=BAD_DIRECTORIES.keys())
def test_load_mnist_rejects_an_inconsistent_directory(tmp_path, overrides, expected):
    write_mnist_dir(tmp_path, overrides=overrides)
    with pytest.raises(DataError, match=re.escape(expected)) as error:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(error.value)


# --- minibatch conversions ----------------------------------------------------------

GREY_RAMP = np.arange(256, dtype=np.uint8)[None, :]  # every pixel value once


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binarize_dynamic_returns_zeros_and_ones_in_the_requested_dtype(dtype):
    x = binarize_dynamic(np.repeat(GREY_RAMP, 4, axis=0), np.random.default_rng(0), dtype)
    assert x.dtype == dtype
    assert x.shape == (4, 256)
    assert set(np.unique(x).tolist()) == {0.0, 1.0}


def test_binarize_dynamic_draws_anew_on_every_call():
    rng = np.random.default_rng(0)
    grey = np.full((10, 100), 128, dtype=np.uint8)
    assert not np.array_equal(binarize_dynamic(grey, rng, np.float32),
                              binarize_dynamic(grey, rng, np.float32))


def test_binarize_dynamic_is_reproducible_for_a_seed():
    grey = np.full((10, 100), 128, dtype=np.uint8)
    np.testing.assert_array_equal(binarize_dynamic(grey, np.random.default_rng(7), np.float64),
                                  binarize_dynamic(grey, np.random.default_rng(7), np.float64))


def test_binarize_dynamic_has_mean_pixel_over_255():
    n_draws = 20000
    x = binarize_dynamic(np.repeat(GREY_RAMP, n_draws, axis=0), np.random.default_rng(1),
                         np.float32)
    # The standard error of each column mean is at most 0.5 / sqrt(20000) = 0.0035;
    # 0.02 is more than 5 of them.
    np.testing.assert_allclose(x.mean(axis=0), np.arange(256) / 255, atol=0.02)
    assert (x[:, 0] == 0).all() and (x[:, 255] == 1).all()


def test_binarize_rejects_images_that_are_not_uint8():
    with pytest.raises(TypeError, match="uint8"):
        binarize_dynamic(np.full((2, 3), 0.5), np.random.default_rng(0), np.float32)


def test_binarize_static_is_fixed_by_its_seed():
    grey = np.full((10, 100), 128, dtype=np.uint8)
    first = binarize_static(grey, seed=3)
    assert first.dtype == np.uint8
    assert set(np.unique(first).tolist()) == {0, 1}
    np.testing.assert_array_equal(first, binarize_static(grey, seed=3))
    assert not np.array_equal(first, binarize_static(grey, seed=4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_intensities_map_0_and_255_to_exactly_0_and_1(dtype):
    x = intensities(GREY_RAMP, dtype)
    assert x.dtype == dtype
    assert x[0, 0] == 0 and x[0, 255] == 1
    assert (np.diff(x[0]) > 0).all()
    np.testing.assert_allclose(x[0], np.arange(256) / 255, rtol=1e-7)


def test_validate_binary_accepts_0_and_255_and_names_other_values():
    validate_binary(np.array([[0, 255, 255]], dtype=np.uint8), "binary.idx")
    with pytest.raises(DataError, match=r"my-data: .*0 or 255.*\[1, 128\]"):
        validate_binary(np.array([[0, 1, 128, 255]], dtype=np.uint8), "my-data")


# --- minibatch_indices --------------------------------------------------------------

def test_minibatch_indices_cover_every_index_once_per_epoch():
    order = np.random.default_rng(0).permutation(10)
    batches = minibatch_indices(order, 3)
    assert [len(b) for b in batches] == [3, 3, 3, 1]  # the remainder is kept
    everything = np.concatenate(batches)
    assert everything.tolist() == order.tolist()  # in the given order, each once


def test_minibatch_indices_batch_equal_to_n_is_one_batch():
    batches = minibatch_indices(np.random.default_rng(0).permutation(5), 5)
    assert len(batches) == 1 and sorted(batches[0].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("batch_size, expected", [
    (0, "batch size must be at least 1, got 0"),
    (70000, "batch size 70000 is larger than the data set (60000 images)"),
])
def test_minibatch_indices_rejects_a_bad_batch_size(batch_size, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        minibatch_indices(np.arange(60000), batch_size)
