"""The objectives beyond the plain ELBO: the IWAE bound L_k, the beta-weighted
ELBO and its warm-up, and the dequantized data their continuous cousins use.

Each claim is checked where its answer is known independently: L_1 is
estimator A, L_k rises with k and stays below a larger-K estimate of
log p(x), beta = 1 is the ELBO, a warm-up is a straight line, and a
resumed run continues the schedule where it stopped.
"""
import json

import numpy as np
import pytest

from minivae.checkpoint import load_checkpoint
from minivae.cli import main
from minivae.applies import check_applies
from minivae.config import Config
from minivae.data import Inputs, bits_per_dim, dequantize, load_mnist, one_hot
from minivae.distributions import gaussian_kl
from minivae.evaluate import importance_sampled_log_px
from minivae.gradcheck import gradcheck
from minivae.objectives import (ELBO, IWAE, KLWarmUp, WeightedELBO, elbo, iwae_bound,
                                log_weights, weighted_elbo)
from minivae.train import train
from tests.test_vae import data_for, tiny_vae


def eps_for(model, L, B, seed):
    return np.random.default_rng(seed).standard_normal((L, B, model.latent))


# ---------------------------------------------------------------- the IWAE bound

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iwae_bound_with_one_sample_is_estimator_a_exactly(dtype):
    model = tiny_vae(dtype=dtype)
    x = data_for("bernoulli", 7, 6, seed=1, dtype=dtype)
    eps = eps_for(model, 1, 7, seed=2).astype(dtype)
    bound = iwae_bound(log_weights(model, x, eps)).data
    assert bound.dtype == dtype
    assert np.array_equal(bound, elbo(model, x, eps, "A").data)


def test_iwae_bound_is_the_log_mean_of_the_weights():
    model = tiny_vae()
    x = data_for("bernoulli", 5, 6, seed=3)
    eps = eps_for(model, 4, 5, seed=4)
    log_w = log_weights(model, x, eps).data
    expected = np.log(np.mean(np.exp(log_w), axis=0))   # small values: no overflow here
    assert np.allclose(iwae_bound(log_weights(model, x, eps)).data, expected, rtol=1e-12)


def test_iwae_bound_is_stable_where_the_weights_underflow():
    from minivae.autograd import Tensor
    log_w = Tensor(np.array([[-1000.0, -2000.0], [-1001.0, -2000.0]]))
    bound = iwae_bound(log_w).data
    assert np.allclose(bound, [-1000 + np.log((1 + np.exp(-1)) / 2), -2000.0], rtol=1e-14)


def test_mean_of_the_iwae_bound_rises_with_k_and_stays_below_log_px():
    # A model far from its posterior, so the weights vary and the gap is wide;
    # the rise from k to 2k is compared with its standard error.
    model = tiny_vae(encoder_std=0.5, decoder_std=1.5, seed=5)
    x = data_for("bernoulli", 400, 6, seed=6)
    means, errors = [], []
    for i, k in enumerate((1, 4, 16)):
        bound = iwae_bound(log_weights(model, x, eps_for(model, k, 400, seed=10 + i))).data
        means.append(bound.mean())
        errors.append(bound.std(ddof=1) / np.sqrt(len(bound)))
    for a in range(2):
        rise, error = means[a + 1] - means[a], np.hypot(errors[a], errors[a + 1])
        assert rise > 4 * error, (means, errors)
    log_px = importance_sampled_log_px(model, x, np.random.default_rng(7), k=2000).mean()
    assert means[-1] < log_px + 3 * errors[-1] and log_px - means[-1] < means[-1] - means[0]


def test_log_px_in_chunks_is_the_iwae_bound_on_all_samples_at_once():
    model = tiny_vae()
    x = data_for("bernoulli", 3, 6, seed=8)
    whole = importance_sampled_log_px(model, x, np.random.default_rng(9), k=50, chunk_rows=10**6)
    chunked = importance_sampled_log_px(model, x, np.random.default_rng(9), k=50, chunk_rows=21)
    eps = np.random.default_rng(9).standard_normal((50, 3, model.latent))
    direct = iwae_bound(log_weights(model, x, eps)).data
    assert np.allclose(whole, direct, rtol=1e-12) and np.allclose(chunked, direct, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_iwae_objective_gradient_matches_finite_differences(k):
    model = tiny_vae()
    x = data_for("bernoulli", 4, 6, seed=10)
    names = [name for name, _ in model.named_parameters()]

    def loss(*tensors):
        model.params = dict(zip(names, tensors))
        return -IWAE(k)(model, x, np.random.default_rng(11)).mean()

    gradcheck(loss, [t.data for _, t in model.named_parameters()])


def test_iwae_objective_reports_the_elbo_of_the_same_samples():
    model = tiny_vae()
    x = data_for("bernoulli", 6, 6, seed=12)
    value, reports = IWAE(5).measure(model, x, np.random.default_rng(13))
    log_w = log_weights(model, x, np.random.default_rng(13).standard_normal((5, 6, 2))).data
    assert np.allclose(reports["elbo"], log_w.mean(axis=0), rtol=1e-12)
    assert np.array_equal(reports["iwae"], value.data)
    assert np.all(reports["iwae"] >= reports["elbo"] - 1e-12)   # Jensen, per datapoint


def test_iwae_needs_at_least_one_sample():
    with pytest.raises(ValueError, match="at least 1"):
        IWAE(0)


# ---------------------------------------------------------------- beta and its warm-up

@pytest.mark.parametrize("estimator", ["A", "B"])
def test_weighted_elbo_at_beta_one_is_the_elbo(estimator):
    model = tiny_vae()
    x = data_for("bernoulli", 5, 6, seed=14)
    eps = eps_for(model, 3, 5, seed=15)
    value, bound = weighted_elbo(model, x, eps, estimator, beta=1.0)
    assert np.array_equal(value.data, elbo(model, x, eps, estimator).data)
    assert np.array_equal(bound.data, value.data)


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.5])
def test_weighted_elbo_b_is_reconstruction_minus_beta_times_the_analytic_kl(beta):
    model = tiny_vae()
    x = data_for("bernoulli", 5, 6, seed=16)
    eps = eps_for(model, 1, 5, seed=17)
    mu, logvar = (t.data for t in model.posterior(x))
    kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=1)   # Appendix B by hand
    assert np.allclose(kl, gaussian_kl(*model.posterior(x)).data)
    z = mu + np.exp(logvar / 2) * eps[0]
    logits = model.decode(z)[0].data
    log_px = np.sum(x * logits - np.logaddexp(0, logits), axis=1)
    value, bound = weighted_elbo(model, x, eps, "B", beta)
    assert np.allclose(value.data, log_px - beta * kl, rtol=1e-10)
    assert np.allclose(bound.data, log_px - kl, rtol=1e-10)


def test_weighted_elbo_a_weighs_the_sampled_kl():
    model = tiny_vae()
    x = data_for("bernoulli", 5, 6, seed=18)
    eps = eps_for(model, 4, 5, seed=19)
    (at_half, bound), (at_zero, _) = (weighted_elbo(model, x, eps, "A", b) for b in (0.5, 0.0))
    # linear in beta: value(beta) = log p(x|z) - beta * KL-estimate
    assert np.allclose(at_half.data, (at_zero.data + bound.data) / 2, rtol=1e-10)


@pytest.mark.parametrize("estimator", ["A", "B"])
def test_weighted_elbo_gradient_matches_finite_differences(estimator):
    model = tiny_vae()
    x = data_for("bernoulli", 4, 6, seed=20)
    names = [name for name, _ in model.named_parameters()]

    def loss(*tensors):
        model.params = dict(zip(names, tensors))
        objective = WeightedELBO(estimator, samples=2, beta=0.4)
        return -objective(model, x, np.random.default_rng(21)).mean()

    gradcheck(loss, [t.data for _, t in model.named_parameters()])


def test_warm_up_is_a_straight_line_from_start_to_beta_then_flat():
    schedule = KLWarmUp(WeightedELBO(beta=0.8), start=0.2, steps=6)
    assert [schedule.beta(t) for t in (0, 3, 6, 60)] == pytest.approx([0.2, 0.5, 0.8, 0.8])
    assert schedule(3).beta == pytest.approx(0.5) and schedule(3).samples == 1
    with pytest.raises(ValueError, match="at least 1 step"):
        KLWarmUp(WeightedELBO(), steps=0)
    with pytest.raises(ValueError, match="beta"):
        WeightedELBO(beta=-1.0)


# ---------------------------------------------------------------- in training

def tiny(data_dir, **flags):
    return Config.from_flags(**{"latent": 2, "hidden": (8,), "epochs": 2, "batch_size": 100,
                                "data": str(data_dir), **flags})


def quiet(config, out, **kwargs):
    return train(config, out, progress=False, log=lambda *a: None, k=2, **kwargs)


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_warm_up_rows_report_beta_rising_and_the_true_elbo_beside(data_dir, tmp_path):
    # 300 training images, M = 100: 3 steps per epoch; over 2 epochs, 6 steps
    quiet(tiny(data_dir, warmup=2.0, epochs=3), tmp_path / "run")
    got = rows(tmp_path / "run")
    assert [r["beta"] for r in got] == pytest.approx([0.5, 1.0, 1.0])
    for r in got:
        assert {"train_objective", "test_objective", "train_elbo", "test_elbo"} <= set(r)
    # beta < 1 weighs the KL less, so the objective lies above the ELBO
    assert got[0]["train_objective"] > got[0]["train_elbo"]
    assert got[0]["test_objective"] > got[0]["test_elbo"]


@pytest.mark.parametrize("flags", [
    {"warmup": 2.0, "warmup_start": 0.1},
    {"objective": "iwae", "k_train": 3},
    {"model": "cvae"},
    {"decoder": "gaussian", "variance": "pixel", "logvar_floor": -6.0,
     "intensities": "dequantized", "optimizer": "adam"},
], ids=["warm-up", "iwae", "cvae", "learned-variance-dequantized"])
def test_resumed_run_continues_exactly_like_a_straight_one(data_dir, tmp_path, flags):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    quiet(tiny(data_dir, **flags), straight)
    quiet(tiny(data_dir, epochs=1, **flags), resumed)
    quiet(tiny(data_dir, **flags), resumed, resume=resumed)
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(resumed / "checkpoint.npz")
    assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    timing = ("epoch_seconds", "train_seconds", "eval_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows(straight)] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows(resumed)]


def test_iwae_run_reports_its_bound_above_its_elbo(data_dir, tmp_path, capsys):
    assert main(["train", "--data", str(data_dir), "--latent", "2", "--hidden", "8",
                 "--epochs", "1", "--objective", "iwae", "--k-train", "4", "--no-progress",
                 "--no-figures", "--out", str(tmp_path / "run"), "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "test IWAE bound" in out and "test ELBO" in out
    row = rows(tmp_path / "run")[0]
    assert row["test_iwae"] > row["test_elbo"] and "beta" not in row


@pytest.mark.parametrize("given, message", [
    ({"k_train": 3}, "--k-train does not apply to --objective elbo"),
    ({"objective": "iwae", "beta": 0.5}, "--beta does not apply to --objective iwae"),
    ({"objective": "iwae", "warmup": 1.0}, "--warmup does not apply to --objective iwae"),
    ({"model": "ae", "beta": 0.5}, "--beta does not apply to --model ae"),
    ({"intensities": "dequantized"}, "--intensities applies to continuous pixels"),
    ({"warmup_start": 0.3}, "--warmup-start applies to a warm-up"),
    ({"variance": "pixel"}, "--variance applies to --decoder gaussian, not to --decoder bernoulli"),
    ({"decoder": "squared", "logvar_floor": -5.0}, "--logvar-floor applies to --decoder gaussian"),
])
def test_flags_that_do_not_apply_are_refused_in_one_line(given, message):
    with pytest.raises(ValueError, match=message):
        check_applies(given)


def test_objectives_built_from_the_config():
    def built(**flags):
        c = Config.from_flags(**flags)
        return c.objective.build(c.model.model, (28, 28))
    assert built() == ELBO("B", 1)
    assert built(objective="iwae", k_train=7) == IWAE(7)
    assert built(beta=0.5) == WeightedELBO("B", 1, 0.5)
    assert built(warmup=1.0) == WeightedELBO("B", 1, 1.0)


# ---------------------------------------------------------------- dequantized data

def test_dequantized_pixels_stay_in_their_cell_and_are_fresh_each_time():
    images = np.arange(256, dtype=np.uint8).reshape(2, 128)
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        x1, x2 = dequantize(images, rng, dtype), dequantize(images, rng, dtype)
        assert x1.dtype == dtype and x1.min() >= 0 and x1.max() < 1
        assert np.array_equal(np.floor(x1.astype(np.float64) * 256), images)
        assert not np.array_equal(x1, x2)


def test_dequantized_test_set_is_one_fixed_draw_whatever_the_batching(data_dir):
    dataset = load_mnist(data_dir)
    inputs = Inputs(dataset, "continuous", "dynamic", 0, np.float32, "dequantized")
    a = np.vstack(list(inputs.test_batches(batch_size=7)))
    b = np.vstack(list(inputs.test_batches(batch_size=1000)))
    c = np.vstack(list(inputs.test_batches(batch_size=10, limit=30)))
    assert np.array_equal(a, b) and np.array_equal(a[:30], c)
    assert np.array_equal(np.floor(a.astype(np.float64) * 256), dataset.test_images)


def test_bits_per_dim_by_hand():
    # the uniform density on [0, 1)^D (log p = 0) is 8 bits: every level alike
    assert bits_per_dim(0.0, 784) == pytest.approx(8.0)
    # all mass on one cell of each pixel, log p = D log 256, costs 0 bits
    assert bits_per_dim(784 * np.log(256), 784) == pytest.approx(0.0, abs=1e-12)
    # -1000 nats over 784 pixels: 1000 / (784 ln 2) + 8
    assert bits_per_dim(-1000.0, 784) == pytest.approx(1000 / (784 * 0.6931471805599453) + 8)


def test_conditional_inputs_carry_the_one_hot_label(data_dir):
    dataset = load_mnist(data_dir)
    inputs = Inputs(dataset, "binary", "dynamic", 0, np.float32, classes=10)
    x = inputs.train_batch(np.arange(5), np.random.default_rng(0))
    assert x.shape == (5, dataset.dim + 10) and x.dtype == np.float32
    assert np.array_equal(x[:, dataset.dim:].argmax(axis=1), dataset.train_labels[:5])
    assert np.array_equal(x[:, dataset.dim:].sum(axis=1), np.ones(5))
    test = next(inputs.test_batches(batch_size=4))
    assert np.array_equal(test[:, dataset.dim:].argmax(axis=1), dataset.test_labels[:4])
    with pytest.raises(ValueError, match=r"labels must lie in 0..2 for 3 classes, found 0..9"):
        one_hot(dataset.train_labels, 3)


def test_a_checkpoint_with_the_old_single_elbo_sum_still_loads_as_the_objectives_sum(
        data_dir, tmp_path):
    from minivae.checkpoint import save_checkpoint
    from minivae.runs import RunDir
    quiet(tiny(data_dir, epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.npz"
    params, optimizer_state, meta, order = load_checkpoint(path)
    position = {k: v for k, v in meta["position"].items() if k != "sums"}
    meta["position"] = {**position, "step": 1, "elbo_sum": -123.5}    # as written before "sums"
    save_checkpoint(path, params, optimizer_state, meta, np.arange(300))
    assert RunDir.of(tmp_path / "run").load().position["sums"] == {"elbo": -123.5}
    meta["position"] = {**position, "sums": {"elbo": float("nan")}}
    save_checkpoint(path, params, optimizer_state, meta, order)
    with pytest.raises(ValueError, match="'sums' must map names to finite numbers"):
        RunDir.of(tmp_path / "run").load()


def test_float32_dequantization_of_all_of_mnist_keeps_every_pixel_in_its_cell():
    # in float32, pixel + u can round up to pixel + 1 for u near 1; over the
    # 7.8 million test pixels that happens a few times per draw
    images = load_mnist().test_images
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = dequantize(images, rng, np.float32)
        assert np.array_equal(np.floor(x.astype(np.float64) * 256), images)


def test_evaluate_reports_a_dequantized_autoencoder_without_log_px(data_dir, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(data_dir), "--model", "ae", "--decoder", "squared",
                 "--intensities", "dequantized", "--latent", "2", "--hidden", "8", "--epochs",
                 "1", "--no-progress", "--no-figures", "--out", run]) == 0
    assert main(["evaluate", run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test recon. error" in out and "log p(x)" not in out and "bits per" not in out
