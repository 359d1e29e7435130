"""The wake-sleep algorithm (Hinton, Dayan, Frey & Neal 1995) beside Algorithm 1.

On a 6-5-2 VAE in float64: what each phase's optimizer is given is the
gradient of its own objective over its own parameters, by central finite
differences; the reported ELBO is estimator B at the wake sample.  On the
tiny MNIST (conftest's `data_dir`, 300 training and 100 test images): the
command trains, resumes bit for bit, evaluates, and refuses what does not fit.
"""
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from minivae import data
from minivae.algorithms import GradientAscent, NonFiniteObjective, WakeSleep
from minivae.autograd import no_grad
from minivae.checkpoint import load_checkpoint
from minivae.cli import main
from minivae.applies import check_applies
from minivae.config import Config
from minivae.models import MODELS
from minivae.models.vae import VAE
from minivae.objectives import ELBO, elbo, noise
from minivae.optim import Adagrad, Optimizer, StateError
from minivae.runs import RunDir
from minivae.train import Run

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"-?\d+\.\d+"
TINY = ["--hidden", "32", "--latent", "4", "--batch-size", "100", "--k", "5",
        "--no-progress", "--no-figures"]


class Recorder(Optimizer):
    """An optimizer that keeps the loss gradient it is given and changes nothing."""

    def __init__(self, params):
        super().__init__(params, lr=1.0)
        self.seen = {}

    def update(self, name, theta, g, scale):
        self.seen[name] = g.copy()


def small_vae(seed=0, decoder="bernoulli"):
    """A 6-5-2 VAE in float64; decoder 'gaussian' learns one variance per pixel
    ('decoder.logvar', a generative parameter the wake phase must reach)."""
    extra = {"variance": "pixel"} if decoder == "gaussian" else {}
    return VAE(x_dim=6, hidden=(5,), latent=2, dtype=np.float64, decoder=decoder,
               rng=np.random.default_rng(seed), **extra)


def binary_x(seed=1, rows=4):
    return (np.random.default_rng(seed).random((rows, 6)) < 0.5).astype(np.float64)


def data_for(decoder, seed=1, rows=4):
    """Binary pixels for the Bernoulli decoder, intensities in (0, 1) for the Gaussian."""
    if decoder == "bernoulli":
        return binary_x(seed, rows)
    return np.random.default_rng(seed).uniform(0.05, 0.95, (rows, 6))


def central_differences(model, names, f, h=1e-6):
    """d f / d params[name] for each name, by (f(p + h) - f(p - h)) / 2h per element."""
    grads = {}
    with no_grad():
        for name in names:
            p = model.params[name].data
            grads[name] = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                kept = p[i]
                p[i] = kept + h
                up = f()
                p[i] = kept - h
                grads[name][i] = (up - f()) / (2 * h)
                p[i] = kept
    return grads


def wake_sample(model, x, rng):
    """The z the wake phase draws from rng: z = g_phi(eps, x), eq. 10."""
    with no_grad():
        mu, logvar = model.posterior(x)
        return model.q.sample(mu, logvar, noise(model, 1, x, rng)[0]).data


def assert_same_gradients(seen, expected):
    assert seen.keys() == expected.keys()
    for name in expected:   # the optimizer is given the loss's gradient, minus the objective's
        np.testing.assert_allclose(-seen[name], expected[name], rtol=1e-6, atol=1e-8,
                                   err_msg=name)


# ---------------------------------------------------------------- the two phases

@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_wake_ascends_mean_log_p_x_z_in_theta_with_z_held_fixed(decoder):
    model, x = small_vae(decoder=decoder), data_for(decoder)
    learner = WakeSleep(model, Recorder)
    learner.step(x, np.random.default_rng(7))
    z = wake_sample(model, x, np.random.default_rng(7))

    def mean_log_joint():
        return float(np.mean((model.log_px_given_z(x, z) + model.log_prior(z)).data))
    assert_same_gradients(learner.wake_optimizer.seen,
                          central_differences(model, model.generative, mean_log_joint))


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_sleep_ascends_mean_log_q_z_given_x_in_phi_on_the_dream(decoder):
    model, x = small_vae(decoder=decoder), data_for(decoder)
    learner = WakeSleep(model, Recorder)
    learner.step(x, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    wake_sample(model, x, rng)                       # the wake phase's draws come first
    z, dreamed = learner.dream(len(x), rng)
    assert z.shape == (4, 2) and dreamed.shape == (4, 6)
    if decoder == "bernoulli":
        assert set(np.unique(dreamed)) <= {0, 1}
    else:   # continuous dreams: x ~ N(mu, sigma^2), no two pixels alike
        assert len(np.unique(dreamed)) == dreamed.size

    def mean_log_q():
        return float(np.mean(model.q.log_prob(z, *model.posterior(dreamed)).data))
    assert_same_gradients(learner.sleep_optimizer.seen,
                          central_differences(model, model.recognition, mean_log_q))


def test_wake_changes_theta_only_and_sleep_changes_phi_only():
    model, x = small_vae(), binary_x()
    learner = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    rng = np.random.default_rng(3)

    def changed():
        now = {n: t.data.copy() for n, t in model.named_parameters()}
        moved = {n for n in now if not np.array_equal(now[n], before[n])}
        before.update(now)
        return moved
    before = {n: t.data.copy() for n, t in model.named_parameters()}
    learner.wake(x, rng)
    assert changed() == set(model.generative)
    learner.sleep(len(x), rng)
    assert changed() == set(model.recognition)
    assert learner.steps == 1 and learner.sleep_optimizer.steps == 1


def test_the_reported_elbo_is_estimator_b_at_the_wake_sample():
    model, x = small_vae(), binary_x()
    expected = elbo(model, x, noise(model, 1, x, np.random.default_rng(5)), "B").data
    learner = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    reports = learner.step(x, np.random.default_rng(5))
    np.testing.assert_allclose(reports["elbo"], expected, rtol=1e-12)
    assert reports["log_q_dream"].shape == (4,) and np.all(reports["log_q_dream"] < 10)
    assert learner.objective == ELBO("B", 1)    # what the test set is measured by


def test_a_non_finite_objective_names_the_phase_and_the_parameter_without_warnings():
    model, x = small_vae(), binary_x()
    learner = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    model.params["encoder.logvar.b"].data[0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteObjective) as wake:
            learner.step(x, np.random.default_rng(0))
        with pytest.raises(NonFiniteObjective) as sleep:
            learner.sleep(len(x), np.random.default_rng(0))
    assert wake.value.step == 1 and "the wake objective log p(x, z) became" in str(wake.value)
    assert "sleep objective log q(z|x) became" in str(sleep.value)
    assert "parameter encoder.logvar.b is not finite" in sleep.value.cause
    assert learner.steps == 0


@pytest.mark.parametrize("model", ["ae", "cvae"])
def test_wake_sleep_refuses_a_model_it_cannot_dream_from_in_one_line(model):
    with pytest.raises(ValueError, match=r"^wake-sleep trains a VAE .*, not a \w+$"):
        WakeSleep(MODELS[model](x_dim=6, hidden=(5,), latent=2), Recorder)


# ---------------------------------------------------------------- state

def test_state_holds_both_optimizers_under_their_phase_and_round_trips():
    model, x = small_vae(), binary_x()
    learner = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    learner.step(x, np.random.default_rng(0))
    state = learner.state_dict()
    assert state["wake.steps"] == state["sleep.steps"] == 1
    assert {k.split(".", 3)[-1] for k in state if k.startswith("wake.adagrad")} \
        == set(model.generative)
    assert {k.split(".", 3)[-1] for k in state if k.startswith("sleep.adagrad")} \
        == set(model.recognition)
    fresh = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    fresh.load_state_dict(state)
    assert all(np.array_equal(fresh.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("damage, words", [
    (lambda s: s.update(steps=1), "unexpected entries ['steps']"),
    (lambda s: s.update({"sleep.steps": 2}), "1 wake and 2 sleep updates"),
    (lambda s: s.pop("sleep.adagrad.G.encoder.mu.W"), "the sleep phase's optimizer state: "
                                                      "missing adagrad.G.encoder.mu.W"),
])
def test_state_that_does_not_fit_is_refused_and_changes_nothing(damage, words):
    model, x = small_vae(), binary_x()
    learner = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    learner.step(x, np.random.default_rng(0))
    state = learner.state_dict()
    damage(state)
    fresh = WakeSleep(model, lambda params: Adagrad(params, lr=0.1))
    with pytest.raises(StateError) as err:
        fresh.load_state_dict(state)
    assert words in str(err.value)
    assert fresh.steps == 0 and fresh.state_dict() == {"wake.steps": 0, "sleep.steps": 0}


# ---------------------------------------------------------------- config

def test_the_algorithm_flag_chooses_the_learning_rule():
    assert type(Config().learning_rule(small_vae(), 300, (2, 3))) is GradientAscent
    rule = Config.from_flags(algorithm="wake-sleep", lr=0.1).learning_rule(
        small_vae(), 300, (2, 3))
    for optimizer, names in ((rule.wake_optimizer, small_vae().generative),
                             (rule.sleep_optimizer, small_vae().recognition)):
        assert type(optimizer) is Adagrad and tuple(optimizer.params) == names
        assert optimizer.lr == 0.1 and optimizer.weight_decay == 1 / 300   # the weight prior


@pytest.mark.parametrize("given, message", [
    ({"model": "ae"}, "--algorithm wake-sleep does not apply to --model ae; it applies to vae"),
    ({"model": "cvae"}, "--algorithm wake-sleep does not apply to --model cvae"),
    ({"estimator": "A"}, "--estimator does not apply to --algorithm wake-sleep"),
    ({"samples": 2}, "--samples does not apply to --algorithm wake-sleep"),
    ({"objective": "elbo"}, "--objective does not apply to --algorithm wake-sleep"),
    ({"k_train": 3}, "--k-train does not apply to --algorithm wake-sleep"),
    ({"beta": 0.5}, "--beta does not apply to --algorithm wake-sleep"),
    ({"warmup": 1.0}, "--warmup does not apply to --algorithm wake-sleep"),
    ({"warmup_start": 0.1}, "--warmup-start does not apply to --algorithm wake-sleep"),
])
def test_what_wake_sleep_does_not_use_is_refused_in_one_line(given, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_applies({"algorithm": "wake-sleep", **given})


def test_the_run_tells_the_learning_rule_which_training_rows_it_steps_on(data_dir, tmp_path):
    config = Config.from_flags(algorithm="wake-sleep", hidden=(8,), latent=2,
                               data=str(data_dir))
    run = Run(config, data.load_mnist(config.data.data), RunDir(tmp_path))
    given = []
    run.algorithm.step = lambda x, rng, rows=None: given.append((len(x), rows)) or {}
    run.step(np.array([5, 0, 299]))
    assert len(given) == 1 and given[0][0] == 3 and list(given[0][1]) == [5, 0, 299]


# ---------------------------------------------------------------- the command

def train(data_dir, out, *flags):
    return main(["train", "--algorithm", "wake-sleep", "--data", str(data_dir),
                 "--out", str(out), *TINY, *flags])


def rows_of(out):
    return RunDir(out).read_metrics()


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """Two epochs of wake-sleep in one go."""
    out = tmp_path_factory.mktemp("wake_sleep") / "run"
    assert train(data_dir, out, "--epochs", "2") == 0
    return out


def test_wake_sleep_raises_the_test_elbo_and_writes_a_checkpoint(straight):
    rows = rows_of(straight)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows
               for k in ("train_elbo", "test_elbo", "train_log_q_dream"))
    assert rows[1]["test_elbo"] > rows[0]["test_elbo"]
    _, state, meta, _ = load_checkpoint(straight / "checkpoint.npz")
    assert meta["config"]["optimizer"]["algorithm"] == "wake-sleep"
    assert state["wake.steps"] == state["sleep.steps"] == 6     # 2 epochs of 3 minibatches


def test_one_epoch_resumed_to_two_equals_two_epochs_bit_for_bit(straight, data_dir, tmp_path):
    out = tmp_path / "run"
    assert train(data_dir, out, "--epochs", "1") == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress",
                 "--no-figures", "--k", "5"]) == 0
    (params_a, state_a, meta_a, _), (params_b, state_b, meta_b, _) = (
        load_checkpoint(run / "checkpoint.npz") for run in (straight, out))
    assert params_a.keys() == params_b.keys() and state_a.keys() == state_b.keys()
    assert any(k.startswith("wake.") for k in state_a) and any(k.startswith("sleep.")
                                                               for k in state_a)
    assert all(np.array_equal(params_a[k], params_b[k]) for k in params_a)
    assert all(np.array_equal(state_a[k], state_b[k]) for k in state_a)
    assert meta_a["rng"] == meta_b["rng"]
    drop = ("epoch_seconds", "train_seconds", "eval_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_of(straight)] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows_of(out)]


def test_evaluate_measures_a_wake_sleep_run_by_its_bounds(straight, capsys):
    assert main(["evaluate", str(straight), "--k", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    bound = float(re.search(rf"test ELBO +({NUMBER}) nats", out).group(1))
    log_px = float(re.search(rf"test log p\(x\), K=50 +({NUMBER}) nats", out).group(1))
    assert -800 < bound < log_px < 0


@pytest.mark.parametrize("flags, words", [
    (["--model", "ae"], "--algorithm wake-sleep does not apply to --model ae"),
    (["--estimator", "A"], "--estimator does not apply to --algorithm wake-sleep"),
])
def test_flags_that_do_not_fit_wake_sleep_exit_2_in_one_line(data_dir, tmp_path, capsys,
                                                             flags, words):
    assert train(data_dir, tmp_path / "run", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and err.startswith("minivae train: error:")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_wake_sleep_trains_in_either_float_type(data_dir, tmp_path, dtype):
    assert train(data_dir, tmp_path / "run", "--epochs", "1", "--dtype", dtype) == 0
    params, state, _, _ = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert all(p.dtype == dtype for p in params.values())
    assert all(v.dtype == dtype for v in state.values() if isinstance(v, np.ndarray))
    assert math.isfinite(rows_of(tmp_path / "run")[0]["test_elbo"])


@pytest.mark.parametrize("algorithm", ["wake-sleep", "mcem"])
def test_the_papers_preset_trains_the_papers_baselines(data_dir, tmp_path, capsys, algorithm):
    # paper-mnist states estimator B and L = 1, the defaults: they are no choice the
    # baselines refuse; --estimator given on the command line still is
    code = main(["train", "--config", "paper-mnist", "--algorithm", algorithm, "--data",
                 str(data_dir), "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden",
                 "16", "--k", "2", "--no-progress", "--no-figures"])
    assert code == 0, capsys.readouterr().err
    config = RunDir.of(tmp_path / "run").load().config
    assert config.optimizer.algorithm == algorithm and config.model.latent == 20
    assert main(["train", "--config", "paper-mnist", "--algorithm", algorithm, "--estimator",
                 "B", "--data", str(data_dir), "--out", str(tmp_path / "other")]) == 2
