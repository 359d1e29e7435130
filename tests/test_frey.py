"""Frey Face and the Gaussian decoder with sigmoid means (the paper's section 5).

Never the real data: each test writes a small level-5 MAT file of random
faces itself, compressed (miCOMPRESSED, as MATLAB's -v7 writes) or not (-v6).
"""
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

from minivae import frey
from minivae.autograd import no_grad
from minivae.cli import main
from minivae.applies import check_applies
from minivae.config import Config
from minivae.data import DataError
from minivae.datasets import load_dataset
from minivae.gradcheck import gradcheck
from minivae.likelihoods import Gaussian
from minivae.matfile import read_uint8_matrix
from minivae.models.vae import VAE
from minivae.runs import RunDir
from minivae import plots
from tests.test_cli import assert_one_line_error, run

REPO = Path(__file__).resolve().parent.parent
FACES = 100                     # a small file: half of it held out (`frey.split`)
MI_UINT8, MI_INT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX = 2, 1, 5, 6, 9, 14
FLAGS = ["--decoder", "gaussian", "--decoder-mean", "sigmoid", "--hidden", "20", "--latent",
         "2", "--epochs", "1", "--batch-size", "25", "--k", "3", "--no-progress"]


def element(kind, payload):
    """A data element: small (4 data bytes) for up to 4 bytes, else tag + data padded to 8."""
    if len(payload) <= 4:
        return struct.pack("<HH", kind, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def mat_file(path, matrix, name="ff", compressed=False, mx_class=9, data_type=MI_UINT8,
             endian=b"IM"):
    """Write `matrix` (2-D) as the only variable of a level-5 MAT file."""
    body = element(MI_UINT32, struct.pack("<II", mx_class, 0)) \
        + element(MI_INT32, struct.pack("<ii", *matrix.shape)) \
        + element(MI_INT8, name.encode()) + element(data_type, matrix.tobytes(order="F"))
    variable = struct.pack("<II", MI_MATRIX, len(body)) + body
    if compressed:
        packed = zlib.compress(variable)
        variable = struct.pack("<II", 15, len(packed)) + packed
    header = b"MATLAB 5.0 MAT-file, written by tests/test_frey.py".ljust(116) + b"\0" * 8
    path.write_bytes(header + struct.pack("<H", 0x0100) + endian + variable)
    return path


def random_faces(n=FACES, seed=0):
    """ff as the published file lays it out: (560, n) uint8, one image per column."""
    return np.random.default_rng(seed).integers(0, 256, (560, n), dtype=np.uint8)


@pytest.fixture(scope="module")
def frey_file(tmp_path_factory):
    return mat_file(tmp_path_factory.mktemp("frey") / "frey_rawface.mat", random_faces(),
                    compressed=True)


@pytest.mark.parametrize("compressed", [False, True])
def test_the_reader_returns_exactly_the_written_matrix(tmp_path, compressed):
    ff = random_faces(n=7)
    path = mat_file(tmp_path / "ff.mat", ff, compressed=compressed)
    got = read_uint8_matrix(path, "ff")
    assert got.dtype == np.uint8 and got.shape == (560, 7)
    assert np.array_equal(got, ff)


def test_a_long_variable_name_is_read_too(tmp_path):
    ff = random_faces(n=3)
    assert np.array_equal(read_uint8_matrix(mat_file(tmp_path / "a.mat", ff, name="faces"),
                                            "faces"), ff)


def test_each_column_of_ff_is_one_face_of_28_rows_by_20_columns_read_row_by_row(tmp_path):
    ff = random_faces(n=4)
    faces = load_dataset(f"frey:{mat_file(tmp_path / 'ff.mat', ff)}")
    assert faces.image_shape == (28, 20) and faces.dim == 560
    assert faces.train_labels is None and faces.test_labels is None
    column = ff[:, frey.split(4)[1][0]]          # the first held-out face, as MATLAB stores it
    assert np.array_equal(faces.test_images[0].reshape(28, 20), column.reshape(28, 20))


def test_the_split_is_seeded_disjoint_and_covers_every_face():
    train, test = frey.split(1965)
    assert (len(train), len(test)) == (1765, 200)
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(1965))
    again = frey.split(1965)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(frey.split(1965, seed=1)[1], test)   # the seed decides it
    assert [len(part) for part in frey.split(FACES)] == [FACES // 2, FACES // 2]


def test_loading_twice_gives_the_same_split(frey_file):
    a, b = (load_dataset(f"frey:{frey_file}") for _ in range(2))
    assert np.array_equal(a.test_images, b.test_images)
    assert len(a.train_images) + len(a.test_images) == FACES


@pytest.mark.parametrize("damage, words", [
    ("missing", ["no such file", "roweis"]),
    ("truncated", ["truncated"]),
    ("corrupt stream", ["corrupt"]),
    ("not a MAT file", ["not a level-5 MAT file"]),
    ("big-endian", ["big-endian"]),
    ("double matrix", ["uint8"]),
    ("int8 data", ["miUINT8"]),
    ("other name", ["no variable 'ff'"]),
    ("wrong size", ["560 rows"]),
])
def test_a_bad_file_is_a_one_line_data_error_naming_it(tmp_path, damage, words):
    path, ff = tmp_path / "ff.mat", random_faces(n=3)
    if damage == "truncated":
        raw = mat_file(path, ff).read_bytes()
        path.write_bytes(raw[:len(raw) - 100])
    elif damage == "corrupt stream":
        raw = bytearray(mat_file(path, ff, compressed=True).read_bytes())
        raw[140:150] = b"\xff" * 10
        path.write_bytes(bytes(raw))
    elif damage == "not a MAT file":
        path.write_bytes(b"\x89PNG" + b"\0" * 200)
    elif damage == "big-endian":
        mat_file(path, ff, endian=b"MI")
    elif damage == "double matrix":
        mat_file(path, ff, mx_class=6)
    elif damage == "int8 data":
        mat_file(path, ff, data_type=MI_INT8)
    elif damage == "other name":
        mat_file(path, ff, name="faces")
    elif damage == "wrong size":
        mat_file(path, ff[:500])
    with pytest.raises(DataError) as err:
        load_dataset(f"frey:{path}")
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word.lower() in message.lower(), message


def test_the_data_field_stores_frey_paths_absolute(frey_file, monkeypatch):
    monkeypatch.chdir(frey_file.parent.parent)
    relative = Config.from_flags(data=f"frey:{frey_file.parent.name}/{frey_file.name}")
    assert relative.data.data == f"frey:{frey_file}"
    assert relative.flat() == Config.from_flags(data=f"frey:{frey_file}").flat()


@pytest.mark.parametrize("given, words", [
    ({"data": "frey:x.mat"}, ["--decoder bernoulli", "gaussian"]),
    ({"data": "frey:x.mat", "model": "cvae", "decoder": "gaussian"}, ["no labels"]),
    ({"decoder_mean": "sigmoid"}, ["--decoder-mean", "gaussian"]),
    ({"decoder_mean": "sigmoid", "decoder": "squared"}, ["--decoder-mean"]),
])
def test_settings_that_do_not_apply_are_refused_in_one_line(given, words):
    with pytest.raises(ValueError) as err:
        check_applies(given)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_the_sigmoid_mean_is_sigmoid_of_the_head_and_inside_0_1():
    model = VAE(x_dim=6, hidden=(5,), latent=2, decoder="gaussian", decoder_mean="sigmoid",
                init="xavier", dtype=np.float64, rng=np.random.default_rng(0))
    z = np.random.default_rng(1).normal(0, 3, (4, 2))
    with no_grad():
        head = model.decode(z)[0].data
        mean = model.decode_mean(z).data
    assert np.allclose(mean, 1 / (1 + np.exp(-head)), rtol=0, atol=1e-15)
    assert np.all((mean > 0) & (mean < 1))


def test_the_squashed_gaussian_log_likelihood_matches_its_formula():
    rng = np.random.default_rng(2)
    x, a, logvar = rng.random((3, 5)), rng.normal(0, 2, (3, 5)), rng.normal(0, 1, (3, 5))
    mu = 1 / (1 + np.exp(-a))
    expected = -0.5 * np.sum(np.log(2 * np.pi) + logvar + (x - mu) ** 2 / np.exp(logvar), axis=1)
    got = Gaussian(mean="sigmoid").log_prob(x, (a, logvar)).data
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variance", ["output", "scalar"])
def test_the_squashed_gaussian_log_likelihoods_gradient_matches_finite_differences(variance):
    rng = np.random.default_rng(3)
    x, a = rng.random((4, 6)), rng.normal(0, 2, (4, 6))
    logvar = rng.normal(0, 1, (4, 6) if variance == "output" else (1,))
    gaussian = Gaussian(variance, mean="sigmoid")
    gradcheck(lambda a, logvar: gaussian.log_prob(x, (a, logvar)), [a, logvar])


# ---------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def trained(frey_file, tmp_path_factory):
    """`minivae train` on the synthetic faces, one epoch: the run directory."""
    out = tmp_path_factory.mktemp("frey_run") / "run"
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()) as err:
        code = main(["train", "--data", f"frey:{frey_file}", "--out", str(out),
                     *map(str, FLAGS)])
    assert code == 0, err.getvalue()
    return out


def test_train_writes_28_by_20_figures_and_a_frey_checkpoint(trained):
    loaded = RunDir.of(trained).load()
    assert tuple(loaded.image_shape) == (28, 20) and loaded.model.x_dim == 560
    assert loaded.config.model.decoder_mean == "sigmoid"
    for name in ("recon", "samples"):
        assert RunDir.of(trained).figure(name).is_file()
    fig = plots.manifold(loaded.model, trained / "manifold_check.png", n=5,
                         image_shape=loaded.image_shape)
    assert fig.axes[0].images[0].get_array().shape == (5 * 28, 5 * 20)


def test_plot_draws_the_manifold_and_an_unlabelled_scatter(trained, capsys):
    code, out, err = run(["plot", trained], capsys)
    assert code == 0, err
    for name in ("manifold", "scatter", "recon"):
        assert RunDir.of(trained).figure(name).is_file(), out


def test_train_resumes_and_evaluate_and_explore_work(trained, capsys):
    code, _, err = run(["train", "--resume", trained, "--epochs", "2", "--no-progress",
                        "--no-figures", "--k", "3"], capsys)
    assert code == 0, err
    assert len((trained / "metrics.jsonl").read_text().splitlines()) == 2
    code, out, err = run(["evaluate", trained, "--k", "3", "--no-progress"], capsys)
    assert code == 0 and "test ELBO" in out and f"test images          {FACES // 2}" in out, err
    code, out, err = run(["explore", trained, "--images", "5"], capsys)
    assert code == 0 and '"labels":null' in (trained / "explorer.html").read_text(), err


def test_a_bernoulli_decoder_on_frey_face_is_refused_in_one_line(frey_file, tmp_path, capsys):
    code, _, err = run(["train", "--data", f"frey:{frey_file}", "--out", tmp_path / "run",
                        "--epochs", "1"], capsys)
    assert_one_line_error(code, err, "bernoulli", "gaussian")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("what", ["missing", "truncated"])
def test_a_missing_or_broken_file_exits_2_with_one_line_naming_it(frey_file, tmp_path, capsys,
                                                                  what):
    path = tmp_path / "frey_rawface.mat"
    if what == "truncated":
        path.write_bytes(frey_file.read_bytes()[:5000])
    code, _, err = run(["train", "--data", f"frey:{path}", "--out", tmp_path / "run", *FLAGS],
                       capsys)
    assert code == 2
    assert_one_line_error(code, err, str(path))
    assert len(err.strip().splitlines()) == 1


def test_probe_refuses_a_data_set_without_labels(trained, capsys):
    code, _, err = run(["probe", trained], capsys)
    assert_one_line_error(code, err, "labels")


# ---------------------------------------------------------------- the example

def example(*args):
    """python examples/frey_face.py args, from the repository, with minivae importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "examples/frey_face.py", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_example_without_the_file_says_where_to_get_it_and_exits_2(tmp_path):
    missing = tmp_path / "frey_rawface.mat"
    result = example(missing)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(missing) in result.stderr and "roweis" in result.stderr
