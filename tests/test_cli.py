"""The `minivae` command, called in-process: train, evaluate, sample, errors, help.

Runs use a tiny data directory (the first 300 training and 100 test images
of the embedded MNIST, as raw IDX files) and a 784-8-2 model.
"""
import json
import math
import os
import re
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import matplotlib.image
import pytest
from tqdm import tqdm as real_tqdm

import minivae.train
from minivae.config import Config
from minivae import plots
from minivae.cli import main
from tests.conftest import run_cli as run

REPO = Path(__file__).resolve().parent.parent
NUMBER = r"(-?\d+(?:\.\d+)?)"
TINY_FLAGS = ["--latent", "2", "--hidden", "8", "--epochs", "1", "--batch-size", "100",
              "--k", "3", "--no-progress"]



def number_after(label, text):
    match = re.search(re.escape(label) + r"[^\n]*?" + NUMBER + " nats", text)
    assert match, f"no '{label} ... nats' line in:\n{text}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """`minivae train` on the tiny data: the run directory and what it printed."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out, err = StringIO(), StringIO()      # capsys is per test; this output is shared
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", "--data", str(data_dir), "--out", str(run_dir), *TINY_FLAGS])
    return run_dir, code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- train, evaluate, sample

def test_train_prints_test_elbo_log_px_and_checkpoint_and_returns_zero(trained):
    run_dir, code, out, err = trained
    assert code == 0
    assert "Traceback" not in err
    elbo, log_px = number_after("test ELBO", out), number_after("log p(x)", out)
    assert math.isfinite(elbo) and math.isfinite(log_px) and elbo < 0
    assert f"checkpoint           {run_dir / 'checkpoint.npz'}" in out
    assert (run_dir / "checkpoint.npz").is_file() and (run_dir / "metrics.jsonl").is_file()


def test_train_passes_every_flag_into_the_saved_config(trained, data_dir):
    run_dir, _, _, _ = trained
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert (config.model.latent, config.model.hidden, config.run.epochs,
            config.data.batch_size) == (2, (8,), 1, 100)
    assert config.data.data == str(data_dir)


@pytest.mark.parametrize("target", ["run", "checkpoint file"])
def test_evaluate_prints_the_test_elbo_and_log_px_of_a_run(trained, capsys, target):
    run_dir = trained[0]
    path = run_dir if target == "run" else run_dir / "checkpoint.npz"
    code, out, err = run(["evaluate", path, "--k", "5", "--limit", "50"], capsys)
    assert code == 0, err
    assert re.search(r"test images\s+50\b", out)
    elbo, log_px = number_after("test ELBO", out), number_after("log p(x)", out)
    assert math.isfinite(elbo) and math.isfinite(log_px)
    assert "K=5" in out


def test_sample_writes_a_png_grid_of_non_constant_images(trained, capsys, tmp_path):
    run_dir = trained[0]
    code, out, err = run(["sample", run_dir, "--n", "16"], capsys)
    assert code == 0, err
    png = run_dir / "samples_seed0.png"    # not training's samples.png
    assert str(png) in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    width, height = plots.SIZES["samples"]
    assert image.shape[:2] == (height, width)            # the samples figure's fixed size
    assert image[..., :3].std() > 0


def test_sample_writes_to_the_given_out_path(trained, capsys, tmp_path):
    out_png = tmp_path / "grid.png"
    code, _, err = run(["sample", trained[0] / "checkpoint.npz", "--n", "4", "--out", out_png],
                       capsys)
    assert code == 0, err
    width, height = plots.SIZES["samples"]
    assert matplotlib.image.imread(out_png).shape[:2] == (height, width)


def test_train_resume_continues_the_run_in_its_own_directory(data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run(["train", "--data", data_dir, "--out", run_dir, *TINY_FLAGS], capsys)[0] == 0
    flags = [f if f != "1" or TINY_FLAGS[i - 1] != "--epochs" else "2"
             for i, f in enumerate(TINY_FLAGS)]
    code, out, err = run(["train", "--data", data_dir, "--resume", run_dir, *flags], capsys)
    assert code == 0, err
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_ctrl_c_during_training_exits_130_and_says_how_to_resume(
        data_dir, tmp_path, capsys, monkeypatch):
    class InterruptingTqdm(real_tqdm):
        def update(self, n=1):
            result = super().update(n)
            os.kill(os.getpid(), signal.SIGINT)
            return result
    monkeypatch.setattr(minivae.train, "tqdm", InterruptingTqdm)
    code, out, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", *TINY_FLAGS],
                         capsys)
    assert code == 130
    assert "--resume" in out and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint.npz").is_file()


# ---------------------------------------------------------------- errors

def assert_one_line_error(code, err, *words):
    assert code not in (0, None)
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    for word in words:
        assert word in error_lines[0], err


@pytest.mark.parametrize("flags, words", [
    (["--latent", "0"], ["--latent", "0"]),
    (["--hidden", "-5"], ["--hidden", "-5"]),
    (["--hidden", "8", "0"], ["--hidden", "0"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--lr", "nan"], ["--lr"]),
    (["--lr", "-1"], ["--lr"]),
    (["--weight-decay", "-0.5"], ["--weight-decay"]),
    (["--decoder", "poisson"], ["--decoder"]),
    (["--estimator", "C"], ["--estimator"]),
])
def test_bad_train_flags_give_a_one_line_usage_error(data_dir, tmp_path, capsys, flags, words):
    code, _, err = run(["train", "--data", data_dir, "--out", tmp_path / "run",
                        *TINY_FLAGS, *flags], capsys)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "run").exists()


def test_a_batch_size_larger_than_the_data_set_is_a_one_line_error(data_dir, tmp_path, capsys):
    code, _, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", *TINY_FLAGS,
                        "--batch-size", "301"], capsys)
    assert_one_line_error(code, err, "301", "300")
    assert len(err.strip().splitlines()) == 1


def test_a_missing_data_directory_is_a_one_line_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_dir"
    code, _, err = run(["train", "--data", missing, "--out", tmp_path / "run", *TINY_FLAGS],
                       capsys)
    assert_one_line_error(code, err, str(missing))
    assert len(err.strip().splitlines()) == 1


def test_grey_images_with_binarize_none_are_a_one_line_error(data_dir, tmp_path, capsys):
    code, _, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", *TINY_FLAGS,
                        "--binarize", "none"], capsys)
    assert_one_line_error(code, err, "0 or 255")
    assert len(err.strip().splitlines()) == 1


def test_a_negative_seed_is_a_one_line_error_naming_the_seed(data_dir, tmp_path, capsys):
    code, _, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", *TINY_FLAGS,
                        "--seed", "-1"], capsys)
    assert_one_line_error(code, err, "seed")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_missing_checkpoint_is_a_one_line_error_naming_it(tmp_path, capsys, command):
    missing = tmp_path / "no_run" / "checkpoint.npz"
    code, _, err = run([command, missing], capsys)
    assert_one_line_error(code, err, str(missing))
    assert len(err.strip().splitlines()) == 1


def test_a_corrupt_checkpoint_is_a_one_line_error_naming_it(tmp_path, capsys):
    broken = tmp_path / "checkpoint.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(["evaluate", broken], capsys)
    assert_one_line_error(code, err, str(broken))
    assert len(err.strip().splitlines()) == 1


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run([], capsys)
    assert_one_line_error(code, err)


# ---------------------------------------------------------------- help

REQUIRED_FLAGS = ["--latent", "--hidden", "--decoder", "--estimator", "--samples", "--optimizer",
                  "--lr", "--batch-size", "--epochs", "--weight-decay", "--seed", "--dtype",
                  "--data", "--out"]


def help_entries(text):
    """Each option's help entry: its first line and the indented lines after it."""
    entries, current = {}, None
    for line in text.splitlines():
        match = re.match(r"  (--[a-z-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_train_help_lists_every_required_flag_with_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    entries = help_entries(out)
    missing = [flag for flag in REQUIRED_FLAGS if flag not in entries]
    assert not missing, f"train --help does not list {missing}"
    without_default = [flag for flag in REQUIRED_FLAGS if "default" not in entries[flag]]
    assert not without_default, f"train --help states no default for {without_default}"


def test_train_help_shows_each_default_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    _, out, _ = run(["train", "--help"], capsys)
    repeated = [flag for flag, entry in help_entries(out).items() if entry.count("default") > 1]
    assert not repeated, f"two defaults in the help of {repeated}"


def test_evaluate_and_sample_help_show_their_options(capsys):
    for command, flags in (("evaluate", ["--k", "--limit", "--seed"]),
                           ("sample", ["--n", "--out", "--seed"])):
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0 and all(flag in out for flag in flags), out


def test_python_dash_m_minivae_runs_the_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "minivae", "--help"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in ("train", "evaluate", "sample"))


# ---------------------------------------------------------------- active units

def test_evaluate_prints_the_active_units_counted_from_the_encoder_means(trained, capsys):
    import numpy as np
    from minivae import data
    from minivae.autograd import no_grad
    from minivae.runs import RunDir
    run_dir = trained[0]
    code, out, err = run(["evaluate", run_dir, "--k", "2", "--no-progress"], capsys)
    assert code == 0, err
    line = re.search(r"^active units +(\d+) of 2 \(Cov_x E_q\[z_u\] > 0.01\)$", out, re.M)
    assert line, out
    loaded = RunDir.of(run_dir).load()
    c = loaded.config
    inputs = data.Inputs(data.load_mnist(c.data.data), "binary", c.data.binarize, c.run.seed,
                         c.run.dtype)
    with no_grad():
        mu = loaded.model.posterior(data.intensities(inputs.test, np.float32))[0].data
    assert int(line.group(1)) == np.count_nonzero(np.var(mu.astype(np.float64), axis=0) > 0.01)


def test_plot_what_activity_writes_the_latent_activity_figure(trained, capsys):
    run_dir = trained[0]
    code, out, err = run(["plot", run_dir, "--what", "activity"], capsys)
    assert code == 0, err
    path = run_dir / "activity.png"
    assert str(path) in out
    width, height = plots.SIZES["latent_activity"]
    assert matplotlib.image.imread(path).shape[:2] == (height, width)


# ---------------------------------------------------------------- inference gaps

GAP_LINE = r"^{} +{} nats  \+- {} across images, \+- {} Monte Carlo$"


def test_evaluate_gaps_prints_three_bounds_and_two_gaps_and_draws_gaps_png(trained, capsys):
    run_dir = trained[0]
    code, out, err = run(["evaluate", run_dir, "--k", "40", "--limit", "5", "--gaps", "5",
                          "--gap-steps", "5", "--no-progress"], capsys)
    assert code == 0, err
    assert "inference gaps on 5 test images" in out
    values = {}
    for name in ("log p(x)", "local ELBO", "encoder ELBO", "approximation gap",
                 "amortization gap"):
        line = re.search(GAP_LINE.format(re.escape(name), NUMBER, NUMBER, NUMBER), out, re.M)
        assert line, out
        values[name] = float(line.group(1))
    # each gap is the difference of the printed bounds (each rounded to 0.01)
    assert abs(values["approximation gap"] - (values["log p(x)"] - values["local ELBO"])) < 0.011
    assert abs(values["amortization gap"] - (values["local ELBO"] - values["encoder ELBO"])) \
        < 0.011
    path = run_dir / "gaps.png"
    assert str(path) in out
    width, height = plots.SIZES["inference_gaps"]
    assert matplotlib.image.imread(path).shape[:2] == (height, width)


def test_evaluate_help_states_the_gaps_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(["evaluate", "--help"], capsys)
    entries = help_entries(out)
    assert code == 0 and "N = 100" in entries["--gaps"]
    for flag, default in (("--gap-steps", "500"), ("--gap-samples", "10"), ("--gap-lr", "0.01")):
        assert f"(default: {default})" in entries[flag], entries[flag]


@pytest.mark.parametrize("flags, words", [
    (["--gaps", "0"], ["--gaps", "0"]),
    (["--gaps", "5", "--gap-steps", "0"], ["--gap-steps", "0"]),
    (["--gaps", "5", "--gap-lr", "-1"], ["--gap-lr"]),
    (["--gaps", "5", "--k", "3"], ["--k", "at least 20", "got 3"]),
    (["--gap-steps", "5"], ["--gap-steps", "--gaps"]),
    (["--gap-samples", "5"], ["--gap-samples", "--gaps"]),
    (["--gap-lr", "0.1"], ["--gap-lr", "--gaps"]),
])
def test_bad_gaps_flags_are_a_one_line_error_before_any_evaluation(trained, capsys, flags,
                                                                   words):
    code, out, err = run(["evaluate", trained[0], "--limit", "5", "--no-progress", *flags],
                         capsys)
    assert_one_line_error(code, err, *words)
    assert out == ""


def test_gaps_of_one_image_print_no_spread_and_no_nan(trained, capsys):
    code, out, err = run(["evaluate", trained[0], "--k", "20", "--limit", "1", "--gaps", "1",
                          "--gap-steps", "3", "--no-progress"], capsys)
    assert code == 0, err
    gap_lines = out[out.index("inference gaps"):].splitlines()[1:6]
    assert all("one image: no spread" in line for line in gap_lines), gap_lines
    assert "nan" not in out.lower()


def test_gaps_on_a_model_without_a_posterior_is_a_one_line_error(data_dir, tmp_path, capsys):
    code, _, err = run(["train", "--model", "ae", "--data", data_dir, "--out", tmp_path / "ae",
                        *TINY_FLAGS, "--no-figures"], capsys)
    assert code == 0, err
    code, out, err = run(["evaluate", tmp_path / "ae", "--gaps", "5", "--no-progress"], capsys)
    assert_one_line_error(code, err, "--gaps", "posterior", "ae")
    assert out == ""      # refused before any evaluation
