"""Training on the first N images (--train-size) and tracking log p(x) during
training (--track-log-px): what the paper's Figure 3 plots against the samples
evaluated.  Runs use the tiny MNIST (300 training, 100 test images)."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import data
from minivae.cli import main
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.runs import RunDir
from minivae.train import passes_track_point
from tests.conftest import run_cli as run

TINY = ["--latent", "2", "--hidden", "8", "--batch-size", "50", "--k", "3", "--no-progress"]
POINTS = sorted(m * 10 ** e for m in (1, 2, 5) for e in range(13))



def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@given(st.integers(0, 10 ** 12), st.integers(1, 10 ** 6))
def test_a_track_point_is_passed_exactly_when_one_of_1_2_5_times_a_power_of_ten_is_crossed(
        before, seen):
    after = before + seen
    expected = any(before < point <= after for point in POINTS)
    assert passes_track_point(before, after) == expected


def test_track_points_fall_three_a_decade():
    passed = [n for n in range(1, 2001) if passes_track_point(n - 1, n)]
    assert passed == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


def test_train_size_trains_on_exactly_the_first_n_images(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["train", "--data", data_dir, "--out", out, "--epochs", "2",
                             "--train-size", "150", *TINY], capsys)
    assert code == 0, err
    assert [r["samples_seen"] for r in rows(out)] == [150, 300]
    assert "150 samples" not in err
    dataset = data.load_mnist(data_dir)
    first = dataset.first_training_images(150)
    assert np.array_equal(first.train_images, dataset.train_images[:150])
    assert np.array_equal(first.test_images, dataset.test_images)


def test_a_train_size_beyond_the_data_is_one_line(data_dir, tmp_path, capsys):
    code, out, err = run(["train", "--data", data_dir, "--out", tmp_path / "run",
                          "--train-size", "301", *TINY], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "train size 301" in lines[0] and "300 images" in lines[0], err


@pytest.mark.parametrize("flags, says", [
    (["--track-images", "10"], "--track-log-px"),
    (["--model", "ae", "--track-log-px", "5"], "has none"),
    (["--track-log-px", "-1"], "--track-log-px"),
    (["--train-size", "0"], "--train-size"),
    (["--train-size", "40"], "--train-size 40 is smaller than a minibatch (--batch-size 50)"),
])
def test_bad_tracking_flags_are_one_line_usage_errors(data_dir, tmp_path, capsys, flags, says):
    code, out, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", *flags,
                          *TINY], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and says in err, err


@pytest.fixture(scope="module")
def tracked(data_dir, tmp_path_factory):
    """200 training images, 3 epochs: samples evaluated 200, 400, 600."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    code = main([str(a) for a in ["train", "--data", data_dir, "--out", out, "--epochs", "3",
                                  "--train-size", "200", "--track-log-px", "20",
                                  "--track-images", "50", *TINY]])
    assert code == 0
    return out


def test_tracking_more_images_than_the_data_holds_says_how_many_are_scored(
        data_dir, tmp_path, capsys):
    code, out, err = run(["train", "--data", data_dir, "--out", tmp_path / "run", "--epochs",
                          "1", "--train-size", "200", "--track-log-px", "5", *TINY], capsys)
    assert code == 0, err
    assert ("note: --track-images 1000 is more than the data holds: log p(x) is tracked on "
            "200 training and 100 test images") in out


def test_log_px_is_tracked_where_a_point_is_passed_and_at_the_last_epoch(tracked):
    found = [("train_log_px" in r, "test_log_px" in r) for r in rows(tracked)]
    # (0, 200] holds 200; (200, 400] no point; (400, 600] holds 500, and 600 is the last
    assert found == [(True, True), (False, False), (True, True)]


def test_tracked_log_px_is_the_importance_sampled_estimate_on_the_first_images(tracked):
    trained = RunDir.of(tracked).load()
    c = trained.config
    dataset = data.load_mnist(c.data.data).first_training_images(200)
    inputs = data.Inputs(dataset, "binary", c.data.binarize, c.run.seed, c.run.dtype)
    train_x = np.vstack(list(inputs.train_batches(limit=50)))
    test_x = np.vstack(list(inputs.test_batches(limit=50)))
    assert train_x.shape == test_x.shape == (50, 784)
    assert set(np.unique(train_x)) <= {0.0, 1.0}
    # the scored training x is a binarization of the first 50 training images
    p = dataset.train_images[:50] / 255
    assert np.all(train_x[p == 0] == 0) and np.all(train_x[p == 1] == 1)
    rng = np.random.default_rng([c.run.seed, 3, 20])
    last = rows(tracked)[-1]
    expected = {"train_log_px": log_likelihood(trained.model, [train_x], rng, k=20),
                "test_log_px": log_likelihood(trained.model, [test_x], rng, k=20)}
    for key, value in expected.items():
        assert last[key] == pytest.approx(value, rel=1e-6, abs=1e-4)
        # log p(x) with K = 20 lies above the ELBO of the same images, beyond noise
    elbo = mean_elbo(trained.model, [test_x], np.random.default_rng(0), samples=100)
    assert last["test_log_px"] > elbo


def test_the_scored_training_images_are_the_same_at_every_call(data_dir):
    dataset = data.load_mnist(data_dir)
    inputs = data.Inputs(dataset, "binary", "dynamic", 0, np.float64)
    first = np.vstack(list(inputs.train_batches(batch_size=30, limit=70)))
    again = np.vstack(list(inputs.train_batches(batch_size=70, limit=70)))
    assert first.shape == (70, 784) and np.array_equal(first, again)


def test_a_tracked_run_resumes_bit_for_bit(data_dir, tracked, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data", data_dir, "--train-size", "200", "--track-log-px", "20",
             "--track-images", "50", *TINY]
    assert run(["train", "--out", out, "--epochs", "2", *flags], capsys)[0] == 0
    code, stdout, err = run(["train", "--resume", out, "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    # epoch 2 ended the first invocation, so it was scored there; the rest is the same
    assert "test_log_px" in rows(out)[1] and "test_log_px" not in rows(tracked)[1]
    skip = ("epoch_seconds", "train_seconds", "eval_seconds", "train_log_px", "test_log_px")
    assert [{k: v for k, v in r.items() if k not in skip} for r in rows(out)] == \
        [{k: v for k, v in r.items() if k not in skip} for r in rows(tracked)]
    assert rows(out)[2]["test_log_px"] == rows(tracked)[2]["test_log_px"]
    resumed, straight = (np.load(d / "checkpoint.npz") for d in (out, tracked))
    assert sorted(resumed.files) == sorted(straight.files)
    for name in set(straight.files) - {"meta"}:   # meta: the rows above, with timings
        assert np.array_equal(resumed[name], straight[name]), name
