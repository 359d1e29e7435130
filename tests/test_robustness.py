"""Nothing a user can hand minivae crashes it or is silently wrong, and the run
directory never tells two stories.  Each test names the property it proves;
each class of fault is tried with several members, in a fresh process where
a crash (not only an exception) could happen."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.cli import main
from minivae.config import Config
from minivae.runs import RunDir
from minivae.train import TrainingError, train

ROOT = Path(__file__).resolve().parent.parent


def tiny(data_dir, **changes):
    return Config.from_flags(**{"hidden": (16,), "latent": 3, "epochs": 2, "data": str(data_dir),
                                **changes})


def quiet_train(config, out, **kwargs):
    return train(config, out, progress=False, log=lambda *a: None, **{"k": 3, **kwargs})


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """A finished 2-epoch Adam run (Adam has two state slots per parameter)."""
    out = tmp_path_factory.mktemp("finished")
    quiet_train(tiny(data_dir, optimizer="adam"), out)
    return out


KEEP = object()


def rewrite(src, dst, params=None, state=None, meta=None, order=KEEP):
    """Copy the run `src` to `dst`, with the checkpoint's parts changed by the
    given functions (each takes the loaded part and returns the new one)."""
    shutil.copytree(src, dst)
    p, s, m, o = load_checkpoint(dst / "checkpoint.npz")
    p, s, m = (f(x) if f else x for f, x in ((params, p), (state, s), (meta, m)))
    m.pop("format")
    save_checkpoint(dst / "checkpoint.npz", p, s, m, o if order is KEEP else order)
    return dst


def run_cli(args, cwd):
    """minivae in a fresh process: (exit code, stdout, stderr); a crash shows as a signal."""
    result = subprocess.run([sys.executable, "-m", "minivae", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(code, err, *words):
    assert code == 1, f"exit {code} (a negative code is a crash by signal): {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    for word in words:
        assert word in err, err


# ------------------------------------------------ arrays from a file that reach a kernel

def wrong_shape(state):
    key = next(k for k in state if k.startswith("adam.m."))
    return {**state, key: state[key][:-1]}


def wrong_dtype(state):
    key = next(k for k in state if k.startswith("adam.v."))
    return {**state, key: state[key].astype(np.float64)}


def transposed(state):
    key = next(k for k in state if k.startswith("adam.m.") and k.endswith(".W"))
    return {**state, key: np.ascontiguousarray(state[key].T)}


def nan_state(state):
    key = next(k for k in state if k.startswith("adam.v."))
    return {**state, key: np.full_like(state[key], np.nan)}


def missing_slot(state):
    key = next(k for k in state if k.startswith("adam.v."))
    return {k: v for k, v in state.items() if k != key}


def foreign_slot(state):
    return {**state, "adagrad.G.encoder.mu.W": np.zeros(3, np.float32)}


@pytest.mark.parametrize("change, words", [
    (wrong_shape, "like its parameter"), (wrong_dtype, "float64"), (transposed, "like its parameter"),
    (nan_state, "not finite"), (missing_slot, "missing adam.v."), (foreign_slot, "unexpected")],
    ids=lambda v: getattr(v, "__name__", ""))
def test_resuming_from_optimizer_state_that_does_not_fit_is_refused_in_one_line(
        finished, tmp_path, change, words):
    run = rewrite(finished, tmp_path / "run", state=change)
    before = (run / "checkpoint.npz").read_bytes()
    code, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--no-progress",
                            "--no-figures"], tmp_path)
    assert_one_line_error(code, err, words, str(run / "checkpoint.npz"))
    assert (run / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("order, words", [
    (np.arange(10), "not a permutation"), (np.full(300, 7), "not a permutation"),
    (np.arange(300.0), "not a permutation"), (np.arange(300) + 10 ** 6, "not a permutation")],
    ids=["short", "repeats", "floats", "out-of-range"])
def test_a_saved_data_order_that_is_not_a_permutation_is_refused(finished, tmp_path, order, words):
    run = rewrite(finished, tmp_path / "run", order=order,
                  meta=lambda m: {**m, "position": {**m["position"], "step": 1}})
    code, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--no-progress",
                            "--no-figures"], tmp_path)
    assert_one_line_error(code, err, words)


# ------------------------------------------------ the checkpoint's metadata, in one place

@pytest.mark.parametrize("key", ["config", "position", "rng", "x_dim", "image_shape"])
@pytest.mark.parametrize("command", ["evaluate", "resume", "sample", "plot"])
def test_a_checkpoint_missing_a_metadata_entry_is_a_one_line_error_naming_it(
        finished, tmp_path, key, command):
    run = rewrite(finished, tmp_path / "run", meta=lambda m: {k: v for k, v in m.items()
                                                              if k != key})
    args = {"evaluate": ["evaluate", run, "--k", "1"], "sample": ["sample", run],
            "plot": ["plot", run, "--what", "samples"],
            "resume": ["train", "--resume", run, "--no-progress", "--no-figures"]}[command]
    code, _, err = run_cli(args, tmp_path)
    assert_one_line_error(code, err, f"'{key}'")


@pytest.mark.parametrize("meta_change, words", [
    (lambda m: {**m, "position": {**m["position"], "epoch": -1}}, "position 'epoch'"),
    (lambda m: {**m, "position": {**m["position"], "step": "two"}}, "position 'step'"),
    (lambda m: {**m, "rng": {"bit_generator": "nonsense"}}, "'rng'"),
    (lambda m: {**m, "x_dim": 10}, "x_dim"),
    (lambda m: {**m, "config": {**m["config"], "model": {**m["config"]["model"], "latent": 0}}},
     "latent must be"),
    (lambda m: {**m, "metrics": "lots"}, "'metrics'"),
], ids=["epoch", "step", "rng", "x_dim", "config", "metrics"])
def test_a_checkpoint_with_a_malformed_metadata_entry_is_refused_naming_it(
        finished, tmp_path, meta_change, words):
    run = rewrite(finished, tmp_path / "run", meta=meta_change)
    code, _, err = run_cli(["evaluate", run, "--k", "1"], tmp_path)
    assert_one_line_error(code, err, words)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("command", ["evaluate", "plot", "sample", "resume"])
def test_a_non_finite_parameter_is_refused_by_every_command_naming_it(
        finished, tmp_path, value, command):
    def poison(params):
        params["decoder.hidden.0.b"][3] = value
        return params
    run = rewrite(finished, tmp_path / "run", params=poison)
    args = {"evaluate": ["evaluate", run, "--k", "1"], "sample": ["sample", run],
            "plot": ["plot", run], "resume": ["train", "--resume", run, "--epochs", "3",
                                              "--no-progress", "--no-figures"]}[command]
    code, out, err = run_cli(args, tmp_path)
    assert_one_line_error(code, err, "decoder.hidden.0.b", "not finite")
    assert "nan" not in out.lower()


def test_a_checkpoint_written_before_sections_and_saved_rows_still_loads_and_resumes(
        finished, tmp_path, data_dir):
    """The first checkpoints had a flat config and no rows in the metadata."""
    def older(meta):
        flat = Config.from_dict(meta["config"]).flat()
        flat.pop("model")
        return {k: v for k, v in {**meta, "config": flat}.items() if k != "metrics"}
    run = rewrite(finished, tmp_path / "run", meta=older)
    trained = RunDir.of(run).load()
    assert trained.config == tiny(data_dir, optimizer="adam")
    assert [r["epoch"] for r in trained.rows] == [1, 2]        # from metrics.jsonl
    quiet_train({"epochs": 3}, run, resume=run)
    assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1, 2, 3]


# ------------------------------------------------ one story in the run directory

def test_metrics_rows_never_run_ahead_of_the_checkpoint_whatever_crashes(
        data_dir, tmp_path, monkeypatch):
    """Crash right after each checkpoint write (before its metrics), then start
    again: fresh, then resumed.  The metrics always equal the checkpoint's rows."""
    out = tmp_path / "run"
    real = RunDir.write_metrics
    calls = [0]

    def crash_on_second_epoch(self, rows):
        calls[0] += 1
        if rows and rows[-1]["epoch"] == 2:
            raise OSError("the machine went down")
        real(self, rows)
    monkeypatch.setattr(RunDir, "write_metrics", crash_on_second_epoch)
    with pytest.raises(OSError):
        quiet_train(tiny(data_dir, epochs=3), out)
    monkeypatch.undo()
    saved = load_checkpoint(out / "checkpoint.npz")[2]
    assert saved["position"]["epoch"] == 2
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1]   # lags, never leads
    quiet_train(tiny(data_dir, epochs=3), out, resume=out)
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2, 3]
    assert [r["epoch"] for r in load_checkpoint(out / "checkpoint.npz")[2]["metrics"]] == [1, 2, 3]


def test_a_fresh_start_over_metrics_without_a_checkpoint_keeps_no_old_rows(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_elbo": 0.0}) + "\n")
    quiet_train(tiny(data_dir, epochs=2), out)
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert RunDir(out).read_metrics()[0]["train_elbo"] < 0


def test_a_start_removes_this_runs_leftover_temporary_files_and_nothing_else(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [".checkpoint.npz.k2j4h_9a.tmp", ".metrics.jsonl.abcdefgh.tmp",
                 ".latent_snapshots.npz.12345678.tmp", ".config.json.zzzzzzzz.tmp"]
    others = ["notes.txt", ".checkpoint.npz.tmp", ".other.npz.abcdefgh.tmp",
              "checkpoint.npz.abcdefgh.tmp", ".checkpoint.npz.abcdefgh.tmp.keep"]
    for name in leftovers + others:
        (out / name).write_bytes(b"x" * 1000)
    quiet_train(tiny(data_dir, epochs=1), out)
    names = {p.name for p in out.iterdir()}
    assert not names & set(leftovers) and set(others) <= names


def test_a_run_killed_inside_a_checkpoint_write_leaves_its_temporary_file_and_the_next_start_clears_it(
        data_dir, tmp_path):
    out = tmp_path / "run"
    script = f"""
import os, signal, numpy as np, minivae.checkpoint as c
from minivae.config import Config
from minivae.train import train
real = np.savez
def dying(f, **arrays):
    f.write(b"PK partial")
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = dying
train(Config.from_flags(hidden=[16], latent=3, epochs=1, data={str(data_dir)!r}), {str(out)!r},
      progress=False, log=lambda *a: None, k=2)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -signal.SIGKILL
    assert [p.name for p in out.glob(".checkpoint.npz.*.tmp")]
    quiet_train(tiny(data_dir, epochs=1), out)
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------ divergence: one line, the cause, a fitting hint

@pytest.mark.parametrize("flags, words", [
    (["--lr", "1e300"], ["parameter", "--lr"]),
    (["--optimizer", "sgd", "--lr", "1e6"], ["--lr"]),
    (["--optimizer", "sgd", "--momentum", "1e30"], ["--momentum", "momentum must stay below 1"]),
    (["--optimizer", "adam", "--lr", "1e30"], ["--lr"]),
], ids=["adagrad-lr", "sgd-lr", "sgd-momentum", "adam-lr"])
def test_divergence_is_one_line_naming_the_step_the_cause_and_a_fitting_hint(
        data_dir, tmp_path, flags, words):
    code, _, err = run_cli(["train", "--data", data_dir, "--hidden", "16", "--latent", "3",
                            "--epochs", "2", "--no-progress", "--no-figures", "--out",
                            tmp_path / "run", *flags], tmp_path)
    assert_one_line_error(code, err, "at step", "(epoch 1)", *words)
    assert "all parameters are finite;" not in err or "first non-finite value" in err
    if "--momentum" not in words:
        assert "--momentum" not in err


def test_a_diverging_epoch_end_never_saves_non_finite_parameters(data_dir, tmp_path, monkeypatch):
    from minivae.algorithms import GradientAscent
    real = GradientAscent.step

    def poisoning_last_step(self, x, rng, rows=None):
        values = real(self, x, rng, rows)
        if self.steps == 3:      # the last step of epoch 1 (300 images, batch 100)
            self.model.params["encoder.mu.b"].data[0] = np.inf
        return values
    monkeypatch.setattr(GradientAscent, "step", poisoning_last_step)
    with pytest.raises(TrainingError, match="encoder.mu.b became non-finite in epoch 1"):
        quiet_train(tiny(data_dir), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# ------------------------------------------------ what a new user meets

def test_resuming_needs_no_flags_and_takes_the_runs_own_settings(data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--hidden", "16", "--latent", "3",
                 "--optimizer", "adam", "--epochs", "1", "--out", str(out), "--k", "2",
                 "--no-progress", "--no-figures"]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--k", "2", "--no-progress",
                 "--no-figures"]) == 0
    config = Config.from_dict(json.loads((out / "config.json").read_text()))
    assert (config.model.latent, config.optimizer.optimizer, config.run.epochs) == (3, "adam", 2)


def test_resuming_with_other_flags_names_each_with_saved_and_given_values(
        finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    assert main(["train", "--resume", str(run), "--latent", "7", "--batch-size", "50",
                 "--epochs", "3"]) == 1
    captured = capsys.readouterr()
    assert "--latent saved 3, given 7" in captured.err and \
        "--batch-size saved 100, given 50" in captured.err
    assert captured.out == ""          # no line describing a model that is not the run's


def test_ctrl_c_during_the_final_evaluation_says_what_was_saved_and_skipped(
        data_dir, tmp_path, monkeypatch):
    import minivae.train
    real = minivae.train.log_likelihood

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(minivae.train, "log_likelihood", interrupted)
    messages = []
    with pytest.raises(KeyboardInterrupt):
        train(tiny(data_dir, epochs=1), tmp_path / "run", progress=False, log=messages.append,
              k=3)
    assert "skipped" in messages[-1] and "minivae evaluate" in messages[-1]
    assert str(tmp_path / "run" / "checkpoint.npz") in messages[-1]
    assert real is not interrupted


def test_evaluation_reports_progress_over_every_test_image(finished):
    from minivae.evaluate import log_likelihood, mean_elbo
    trained = RunDir.of(finished).load()
    x = np.zeros((250, trained.x_dim), np.float32)
    batches = [x[:100], x[100:200], x[200:]]
    for evaluate in (lambda p: mean_elbo(trained.model, batches, np.random.default_rng(0),
                                         progress=p),
                     lambda p: log_likelihood(trained.model, batches, np.random.default_rng(0),
                                              k=3, progress=p)):
        done = []
        evaluate(done.append)
        assert done == [100, 100, 50]


@pytest.mark.parametrize("command", [["sample"], ["plot", "--what", "samples"],
                                     ["plot", "--what", "recon"]])
def test_sample_and_plot_never_replace_trainings_figures_silently(
        finished, tmp_path, capsys, command):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "samples.png").write_bytes(b"training's")
    (run / "recon.png").write_bytes(b"training's")
    assert main([command[0], str(run), *command[1:]]) == 0
    out = capsys.readouterr().out
    replaced = (run / "samples.png").read_bytes() != b"training's" or \
        (run / "recon.png").read_bytes() != b"training's"
    assert not replaced or out.startswith("replaced ")


def test_a_read_only_package_caches_kernels_elsewhere_and_says_so_once(tmp_path):
    """The package on a read-only mount, and a home directory that is read-only too."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount the package read-only")
    copy = tmp_path / "ro"
    shutil.copytree(ROOT / "minivae", copy / "minivae",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "tmp"
    cache.mkdir()
    env = f"HOME={copy} TMPDIR={cache} PYTHONPATH={copy}"
    compile_one = ("import numpy as np, minivae.kernels as k; "
                   "k.gaussian_kl(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))")
    run = (f"mount --bind {copy} {copy} && mount -o remount,ro,bind {copy} && "
           f"{env} {sys.executable} -m minivae train --help >/dev/null && "
           f"{env} {sys.executable} -c '{compile_one}'")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {copy} {copy}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow a private read-only mount: "
                    f"{probe.stderr.decode().strip()}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", run], capture_output=True, text=True,
                            cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                               if k not in ("XDG_CACHE_HOME", "NUMBA_CACHE_DIR")})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("is not writable; compiled kernels are cached in") == 1
    assert list(cache.rglob("*.nbi")), "no kernel was cached in the fallback directory"
