"""The AEVB training loop on a tiny MNIST: metrics, exact resumption, failures.

The data directory holds the first 300 training and 100 test images of the
embedded MNIST as raw IDX files; models are 784-32-4, so a run of a few
epochs takes well under a second.
"""
import json
import math
import os
import re
import shutil
import signal

import numpy as np
import pytest
from tqdm import tqdm as real_tqdm

import minivae.train
from minivae import data
from minivae.checkpoint import load_checkpoint
from minivae.config import Config, ModelConfig
from minivae.data import Inputs
from minivae.likelihoods import LIKELIHOODS
from minivae.train import TrainingError, train

N_TRAIN, N_TEST = 300, 100


def tiny(data_dir, **changes):
    settings = dict(hidden=(32,), latent=4, epochs=3, batch_size=100, data=str(data_dir))
    return Config.from_flags(**{**settings, **changes})


def inputs_of(config, dataset):
    """The Inputs a run of `config` feeds its model."""
    return Inputs(dataset, LIKELIHOODS[config.model.decoder].pixels, config.data.binarize,
                  config.run.seed, config.run.dtype)


def quiet_train(config, out, **kwargs):
    return train(config, out, progress=False, log=lambda *a: None, **{"k": 5, **kwargs})


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    """Bit-identical parameters, optimizer state and per-epoch ELBOs."""
    params_a, state_a, meta_a, _ = load_checkpoint(a / "checkpoint.npz")
    params_b, state_b, meta_b, _ = load_checkpoint(b / "checkpoint.npz")
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        assert np.array_equal(params_a[name], params_b[name]), name
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert np.array_equal(state_a[key], state_b[key]), key
    assert meta_a["rng"] == meta_b["rng"]
    rows_a, rows_b = metrics(a), metrics(b)
    assert [(r["epoch"], r["samples_seen"], r["train_elbo"], r["test_elbo"]) for r in rows_a] == \
           [(r["epoch"], r["samples_seen"], r["train_elbo"], r["test_elbo"]) for r in rows_b]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """An uninterrupted run of 3 epochs: its directory and summary."""
    out = tmp_path_factory.mktemp("reference")
    return out, quiet_train(tiny(data_dir), out)


# ---------------------------------------------------------------- outputs

def test_metrics_has_one_finite_row_per_epoch(reference):
    out, _ = reference
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"epoch", "samples_seen", "train_elbo", "test_elbo", "epoch_seconds"} <= r.keys()
        assert r["samples_seen"] == N_TRAIN * r["epoch"]
        assert all(math.isfinite(r[k]) for k in ("train_elbo", "test_elbo", "epoch_seconds"))
        assert r["train_elbo"] < 0 and r["test_elbo"] < 0   # Bernoulli: log-probabilities
        assert r["epoch_seconds"] > 0


def test_train_elbo_improves_over_the_epochs(reference):
    out, _ = reference
    elbos = [r["train_elbo"] for r in metrics(out)]
    # from about -543 nats (784 pixels at p = 1/2) towards a model of the digits
    assert elbos[0] < elbos[1] < elbos[2]
    assert elbos[2] - elbos[0] > 10


def test_summary_reports_finite_test_elbo_and_log_px_and_the_files(reference):
    out, result = reference
    assert math.isfinite(result["test_elbo"]) and math.isfinite(result["log_px"])
    assert result["k"] == 5
    assert result["checkpoint"] == str(out / "checkpoint.npz")
    assert result["metrics"] == str(out / "metrics.jsonl")
    assert json.loads((out / "config.json").read_text())["model"]["latent"] == 4


def test_checkpoint_records_the_finished_position_and_the_config(reference, data_dir):
    out, _ = reference
    params, state, meta, order = load_checkpoint(out / "checkpoint.npz")
    assert meta["position"]["epoch"] == 3 and meta["position"]["step"] == 0
    assert Config.from_dict(meta["config"]) == tiny(data_dir)
    assert order is None
    assert state["steps"] == 3 * N_TRAIN // 100
    assert all(a.dtype == np.float32 for a in params.values())


# The same run's (train ELBO, test ELBO) per epoch, recorded from the code before
# the package took its current layout (minivae train --data <these 300/100
# images> --hidden 32 --latent 4 --epochs 3, both before and after: identical to
# the last bit on the recording machine).  Other CPUs and BLAS builds round
# float32 sums differently, hence the tolerance: 0.02 % is ~0.1 nats here.
RECORDED = [(-531.4830898030599, -473.1620977783203),
            (-397.1649087015788, -272.5289976501465),
            (-258.2551901245117, -237.9223240661621)]


def test_a_short_run_reproduces_its_recorded_numbers_within_float32_rounding(reference):
    got = [(r["train_elbo"], r["test_elbo"]) for r in metrics(reference[0])]
    np.testing.assert_allclose(got, RECORDED, rtol=2e-4)


# ---------------------------------------------------------------- resuming

def test_one_epoch_resumed_to_three_equals_three_epochs_bit_for_bit(reference, data_dir, tmp_path):
    quiet_train(tiny(data_dir, epochs=1), tmp_path)
    result = quiet_train(tiny(data_dir, epochs=3), tmp_path, resume=tmp_path)
    assert_same_run(reference[0], tmp_path)
    assert result["test_elbo"] == reference[1]["test_elbo"]
    assert result["log_px"] == reference[1]["log_px"]


def interrupting_tqdm(at_update):
    """A tqdm whose at_update-th update (counted over all bars) sends Ctrl-C."""
    count = [0]

    class InterruptingTqdm(real_tqdm):
        def update(self, n=1):
            result = super().update(n)
            count[0] += 1
            if count[0] == at_update:
                os.kill(os.getpid(), signal.SIGINT)
            return result
    return InterruptingTqdm


def test_ctrl_c_mid_epoch_saves_and_the_resumed_run_equals_the_uninterrupted_one(
        reference, data_dir, tmp_path, monkeypatch):
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(minivae.train, "tqdm", interrupting_tqdm(at_update=5))
    messages = []
    with pytest.raises(KeyboardInterrupt):
        train(tiny(data_dir), tmp_path, progress=False, log=messages.append)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is handler                     # handler restored
    _, _, meta, order = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (meta["position"]["epoch"], meta["position"]["step"]) == (1, 2)   # 3 steps per epoch
    assert order is not None and sorted(order) == list(range(N_TRAIN))
    assert any("--resume" in m for m in messages)
    assert [r["epoch"] for r in metrics(tmp_path)] == [1]
    quiet_train(tiny(data_dir), tmp_path, resume=tmp_path / "checkpoint.npz")
    assert_same_run(reference[0], tmp_path)


def test_ctrl_c_during_the_last_epochs_evaluation_still_stops_the_run(
        data_dir, tmp_path, monkeypatch):
    real_mean_measures, calls = minivae.train.mean_measures, [0]

    def interrupted_mean_measures(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:          # Ctrl-C while epoch 1 (the last) is being evaluated
            os.kill(os.getpid(), signal.SIGINT)
        return real_mean_measures(*args, **kwargs)
    monkeypatch.setattr(minivae.train, "mean_measures", interrupted_mean_measures)
    with pytest.raises(KeyboardInterrupt):
        quiet_train(tiny(data_dir, epochs=1), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.npz")[2]["position"]["epoch"] == 1


@pytest.fixture(scope="module")
def one_epoch(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_epoch")
    quiet_train(tiny(data_dir, epochs=1), out)
    return out


@pytest.mark.parametrize("change", [{"latent": 5}, {"lr": 0.01}, {"seed": 1},
                                    {"estimator": "A"}, {"binarize": "static"}])
def test_resuming_with_a_different_config_is_a_value_error(data_dir, one_epoch, change):
    before = {p.name: p.read_bytes() for p in one_epoch.iterdir()}
    with pytest.raises(ValueError, match="trained with other settings") as err:
        quiet_train(tiny(data_dir, epochs=2, **change), one_epoch, resume=one_epoch)
    (name, value), = change.items()
    saved = tiny(data_dir).flat()[name]
    assert f"--{name} saved {saved}, given {value}" in str(err.value)   # names what differs
    assert {p.name: p.read_bytes() for p in one_epoch.iterdir()} == before


def test_resuming_a_finished_run_trains_no_further(reference, data_dir, tmp_path):
    shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
    result = quiet_train(tiny(data_dir, epochs=3), tmp_path, resume=tmp_path)
    assert [r["epoch"] for r in metrics(tmp_path)] == [1, 2, 3]
    assert result["test_elbo"] == reference[1]["test_elbo"]


def test_a_fresh_run_into_a_used_directory_does_not_mix_two_runs_in_the_metrics(
        data_dir, tmp_path):
    quiet_train(tiny(data_dir, epochs=1), tmp_path)
    try:
        quiet_train(tiny(data_dir, epochs=1, seed=1), tmp_path)
    except ValueError:
        return        # refusing to overwrite a run without --resume is fine too
    assert [r["epoch"] for r in metrics(tmp_path)] == [1]


# ---------------------------------------------------------------- failures

def test_a_non_finite_loss_raises_training_error_naming_the_step_and_keeps_the_checkpoint(
        data_dir, tmp_path, monkeypatch):
    """After epoch 1 (3 steps), a parameter turns NaN just before step 5."""
    models, calls, snapshot = [], [0], {}
    real_build_model, real_train_batch = ModelConfig.build, Inputs.train_batch

    def build_model(*args, **kwargs):
        models.append(real_build_model(*args, **kwargs))
        return models[-1]

    def train_batch(self, idx, rng):
        calls[0] += 1
        if calls[0] == 5:
            snapshot["bytes"] = (tmp_path / "checkpoint.npz").read_bytes()
            models[0].params["decoder.hidden.0.W"].data[0, 0] = np.nan
        return real_train_batch(self, idx, rng)
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(ModelConfig, "build", build_model)
    monkeypatch.setattr(Inputs, "train_batch", train_batch)
    with pytest.raises(TrainingError) as err:
        quiet_train(tiny(data_dir), tmp_path)
    monkeypatch.undo()
    message = str(err.value)
    assert "step 5" in message and "decoder.hidden.0.W" in message
    assert str(tmp_path / "checkpoint.npz") in message and "\n" not in message
    assert (tmp_path / "checkpoint.npz").read_bytes() == snapshot["bytes"]
    params, _, meta, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (meta["position"]["epoch"], meta["position"]["step"]) == (1, 0)
    assert all(np.isfinite(a).all() for a in params.values())
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.fixture(scope="module")
def diverged(data_dir, tmp_path_factory):
    """SGD with lr = 1e30: the ELBO stops being finite within the first epoch."""
    out = tmp_path_factory.mktemp("diverged")
    config = tiny(data_dir, epochs=2, optimizer="sgd", lr=1e30, momentum=0.0, weight_decay=0.0)
    with np.errstate(all="ignore"), pytest.raises(TrainingError) as err:
        quiet_train(config, out)
    return out, str(err.value)


def test_sgd_with_a_huge_learning_rate_stops_with_training_error_naming_the_step(diverged):
    _, message = diverged
    assert re.search(r"at step \d+ \(epoch 1\)", message) and "\n" not in message


def test_a_failure_before_the_first_checkpoint_does_not_point_to_one(diverged):
    out, message = diverged
    checkpoint = out / "checkpoint.npz"
    assert checkpoint.exists() or str(checkpoint) not in message, message


def test_a_batch_size_larger_than_the_data_set_fails_before_training(data_dir, tmp_path):
    with pytest.raises(ValueError, match="larger than the data set"):
        quiet_train(tiny(data_dir, batch_size=N_TRAIN + 1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- variants

@pytest.mark.parametrize("changes", [
    dict(estimator="A", decoder="bernoulli", optimizer="adagrad", binarize="dynamic"),
    dict(estimator="B", decoder="bernoulli", optimizer="sgd", binarize="static"),
    dict(estimator="A", decoder="gaussian", optimizer="adam"),
    dict(estimator="B", decoder="gaussian", optimizer="sgd", samples=2),
    dict(estimator="B", decoder="bernoulli", optimizer="adam", binarize="static", dtype="float64"),
    dict(estimator="A", decoder="bernoulli", optimizer="adagrad", samples=3, clip_norm=1.0,
         init="xavier", activation="relu"),
], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_each_variant_trains_one_epoch_to_finite_numbers(data_dir, tmp_path, changes):
    config = tiny(data_dir, hidden=(8,), latent=2, epochs=1, batch_size=100, **changes)
    result = quiet_train(config, tmp_path, k=2)
    assert math.isfinite(result["test_elbo"]) and math.isfinite(result["log_px"])
    assert len(metrics(tmp_path)) == 1
    params, _, _, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert all(a.dtype == np.dtype(config.run.dtype) for a in params.values())


# ---------------------------------------------------------------- inputs

@pytest.fixture(scope="module")
def dataset(data_dir):
    return data.load_mnist(data_dir)


def test_dynamic_binarization_differs_between_epochs_and_the_test_set_is_fixed(data_dir, dataset):
    inputs = inputs_of(tiny(data_dir, binarize="dynamic"), dataset)
    rng = np.random.default_rng(0)
    idx = np.arange(50)
    first, second = inputs.train_batch(idx, rng), inputs.train_batch(idx, rng)
    assert set(np.unique(first)) <= {0.0, 1.0} and first.dtype == np.float32
    assert not np.array_equal(first, second)
    # the pixels that are 0 or 255 binarize the same way every time
    extreme = (dataset.train_images[idx] == 0) | (dataset.train_images[idx] == 255)
    assert np.array_equal(first[extreme], second[extreme])
    test_a = np.concatenate(list(inputs.test_batches(batch_size=30)))
    test_b = np.concatenate(list(inputs.test_batches(batch_size=30)))
    assert test_a.shape == (N_TEST, 784) and set(np.unique(test_a)) <= {0.0, 1.0}
    assert np.array_equal(test_a, test_b)


def test_the_test_binarization_is_the_same_for_every_run_seed_and_mode(data_dir, dataset):
    tests = [np.concatenate(list(inputs_of(tiny(data_dir, seed=seed, binarize=mode),
                                           dataset).test_batches()))
             for seed, mode in ((0, "dynamic"), (1, "dynamic"), (2, "static"))]
    assert np.array_equal(tests[0], tests[1]) and np.array_equal(tests[0], tests[2])


def test_static_binarization_is_fixed_per_seed(data_dir, dataset):
    idx = np.arange(50)
    rng = np.random.default_rng(0)
    seed0 = inputs_of(tiny(data_dir, binarize="static", seed=0), dataset)
    seed1 = inputs_of(tiny(data_dir, binarize="static", seed=1), dataset)
    assert np.array_equal(seed0.train_batch(idx, rng), seed0.train_batch(idx, rng))
    assert set(np.unique(seed0.train_batch(idx, rng))) <= {0.0, 1.0}
    assert not np.array_equal(seed0.train_batch(idx, rng), seed1.train_batch(idx, rng))


def test_a_gaussian_decoder_sees_intensities_not_binary_pixels(data_dir, dataset):
    inputs = inputs_of(tiny(data_dir, decoder="gaussian", dtype="float64"), dataset)
    x = inputs.train_batch(np.arange(10), np.random.default_rng(0))
    np.testing.assert_array_equal(x, dataset.train_images[:10] / 255.0)


def test_binarize_none_rejects_images_that_are_not_binary(data_dir, dataset):
    with pytest.raises(data.DataError, match="0 or 255"):
        inputs_of(tiny(data_dir, binarize="none"), dataset)


def test_a_time_budget_stops_after_the_last_epoch_that_fits(data_dir, tmp_path):
    # A budget far below one epoch's time still finishes that first epoch, then stops.
    logs = []
    train(tiny(data_dir, epochs=50), tmp_path / "run", progress=False, log=logs.append,
          max_seconds=1e-6)
    assert [row["epoch"] for row in metrics(tmp_path / "run")] == [1]
    assert any("time budget" in line for line in logs)


def test_a_run_resumes_with_another_k_for_its_final_log_px(reference, tmp_path):
    # K only sets how the final log p(x) is estimated; it is not part of the run.
    shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
    config = Config.from_dict(load_checkpoint(tmp_path / "checkpoint.npz")[2]["config"])
    result = quiet_train(config, tmp_path, resume=tmp_path, k=7)
    assert result["k"] == 7 and math.isfinite(result["log_px"])
