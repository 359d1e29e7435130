"""Monte Carlo EM (minivae/mcem.py): one step is an ELBO step of phi, an HMC
transition of the minibatch's chains and 5 steps of theta at their new
states, each equal to the same computation done independently; the shared
step size reaches the target acceptance however rarely each chain is
visited; the state resumes bit for bit and refuses what does not fit;
examples/mcem.py runs."""
import copy
import warnings
from functools import partial

import numpy as np
import pytest

from minivae.algorithms import NonFiniteObjective
from minivae.autograd import Tensor
from minivae.checkpoint import load_checkpoint, restore_params, save_checkpoint
from minivae.hmc import adapt_step_size, hmc_step, log_joint_grad
from minivae.mcem import STEP_SIZE, MonteCarloEM
from minivae.models.vae import VAE
from minivae.objectives import elbo, noise
from minivae.optim import Adagrad
from tests.conftest import run_cli as cli

N = 10
LR, WEIGHT_DECAY = 0.1, 0.1


def adagrad(model, names):
    return Adagrad({name: model.params[name] for name in names}, lr=LR, weight_decay=WEIGHT_DECAY)


def make(dtype=np.float64, seed=0):
    """MCEM on a 6-5-2 VAE for N = 10 training points."""
    model = VAE(x_dim=6, hidden=(5,), latent=2, dtype=dtype, init="xavier",
                rng=np.random.default_rng(seed))
    return MonteCarloEM(model, adagrad(model, model.generative), adagrad(model, model.recognition),
                        N)


def data(dtype=np.float64):
    return (np.random.default_rng(7).random((N, 6)) < 0.4).astype(dtype)


def params_of(model):
    return {name: p.data.copy() for name, p in model.params.items()}


def warmed_up(dtype=np.float64):
    """MCEM after two steps, with a generator: chains started, optimizers not empty."""
    learn, x, rng = make(dtype), data(dtype), np.random.default_rng(5)
    for rows in ([0, 3, 5, 8], [1, 3, 9]):
        learn.step(x[rows], rng, np.array(rows))
    return learn, x, rng


def test_a_step_is_one_elbo_step_of_phi_a_transition_then_five_steps_of_theta():
    learn, x, rng = warmed_up()
    rows = np.array([2, 3, 8])   # 2 starts its chain, 3 and 8 continue theirs
    reference = make(seed=1).model
    restore_params(reference, params_of(learn.model), "reference")
    theta, phi = adagrad(reference, reference.generative), adagrad(reference, reference.recognition)
    theta.load_state_dict(learn.optimizer_theta.state_dict())
    phi.load_state_dict(learn.optimizer_phi.state_dict())
    z, step_size = learn.z[rows], learn.step_size
    draws = copy.deepcopy(rng)

    reports = learn.step(x[rows], rng, rows)

    bound = elbo(reference, x[rows], noise(reference, 1, x[rows], draws))   # 1. phi, eq. 7
    (-bound.mean()).backward()
    phi.step()
    np.testing.assert_array_equal(reports["elbo"], bound.data)
    z[0] = draws.standard_normal(2)                          # chain 2 starts from p(z)
    transition = hmc_step(partial(log_joint_grad, reference, x[rows]), z, np.full(3, step_size),
                          draws)
    np.testing.assert_array_equal(learn.z[rows], transition.z)   # 2. under theta before 3.
    np.testing.assert_array_equal(reports["log_joint"], transition.log_density)
    np.testing.assert_array_equal(reports["acceptance"], transition.accept_prob)
    np.testing.assert_array_equal(reports["step_size"], np.full(3, step_size))
    assert learn.step_size == adapt_step_size(step_size, transition.accept_prob.mean())
    z_new = Tensor(transition.z)
    for _ in range(5):                                        # 3. theta, at the new z
        theta.zero_grad()
        (-(reference.log_px_given_z(x[rows], z_new) + reference.log_prior(z_new)).mean()).backward()
        theta.step()
    for name, p in reference.params.items():
        np.testing.assert_allclose(learn.model.params[name].data, p.data, rtol=1e-12, atol=0,
                                   err_msg=name)
    assert learn.steps == 3 and learn.optimizer_theta.steps == 15 and learn.optimizer_phi.steps == 3


def test_chains_of_rows_outside_the_minibatch_do_not_move():
    learn, x, rng = warmed_up()
    z, started = learn.z.copy(), learn.started.copy()
    assert sorted(np.flatnonzero(started)) == [0, 1, 3, 5, 8, 9]
    rows = np.array([3, 4])
    learn.step(x[rows], rng, rows)
    others = np.setdiff1d(np.arange(N), rows)
    np.testing.assert_array_equal(learn.z[others], z[others])
    assert learn.started[4] and not learn.started[[2, 6, 7]].any()


def rarely_visited(target, n=2000, batch=20, steps=500):
    """Mean acceptance over the last 100 of `steps` minibatches of `batch` of n
    training points, each chain visited steps * batch / n = 5 times, on an
    8-4-2 VAE in float64, the step size adapting towards `target`."""
    model = VAE(x_dim=8, hidden=(4,), latent=2, dtype=np.float64, init="xavier",
                rng=np.random.default_rng(0))
    learn = MonteCarloEM(model, adagrad(model, model.generative),
                         adagrad(model, model.recognition), n, target=target)
    rng = np.random.default_rng(1)
    x = (rng.random((n, 8)) < 0.3).astype(np.float64)
    acceptance = []
    for step in range(steps):
        rows = np.arange(step * batch, (step + 1) * batch) % n
        acceptance.append(learn.step(x[rows], rng, rows)["acceptance"].mean())
    return np.mean(acceptance[-100:])


@pytest.mark.parametrize("target", [0.9, 0.6])
def test_the_step_size_adapts_however_rarely_each_chain_is_visited(target):
    """A step size per chain, adapted only at its chain's visits, stays near
    STEP_SIZE here, at acceptance ~1; the shared one adapts at every step."""
    assert abs(rarely_visited(target) - target) < 0.02


def test_state_dict_through_a_checkpoint_resumes_bit_for_bit(tmp_path):
    learn, x, rng = warmed_up()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, params_of(learn.model), learn.state_dict(), {})
    params, state, _, _ = load_checkpoint(path)
    resumed = make(seed=2)
    restore_params(resumed.model, params, "resumed")
    resumed.load_state_dict(state)
    other = copy.deepcopy(rng)
    for rows in ([0, 2, 9], [4, 5, 6, 7]):
        rows = np.array(rows)
        reports = learn.step(x[rows], rng, rows)
        again = resumed.step(x[rows], other, rows)
        for name in reports:
            np.testing.assert_array_equal(reports[name], again[name])
    for name, p in learn.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name].data, p.data)
    for key, value in learn.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)


def corrupt(state, key, value):
    return {**state, key: value}


BAD_STATES = {
    "chains of the wrong shape": lambda s: corrupt(s, "mcem.z", np.zeros((N, 3))),
    "a NaN chain": lambda s: corrupt(s, "mcem.z", np.full((N, 2), np.nan)),
    "float32 chains in a float64 model": lambda s: corrupt(s, "mcem.z", s["mcem.z"].astype(
        np.float32)),
    "a step size of 0": lambda s: corrupt(s, "mcem.step_size", np.zeros(())),
    "a step size per chain": lambda s: corrupt(s, "mcem.step_size", np.full(N, STEP_SIZE)),
    "started as integers": lambda s: corrupt(s, "mcem.started", s["mcem.started"].astype(int)),
    "no chains": lambda s: {k: v for k, v in s.items() if k != "mcem.z"},
    "negative steps": lambda s: corrupt(s, "steps", -1),
    "an unknown entry": lambda s: corrupt(s, "mcem.velocity", np.zeros(N)),
    "a theta slot of the wrong shape": lambda s: corrupt(
        s, "theta.adagrad.G.decoder.logits.W", np.zeros((2, 2))),
    "phi steps that are text": lambda s: corrupt(s, "phi.steps", "3"),
}


@pytest.mark.parametrize("name", sorted(BAD_STATES))
def test_bad_state_is_refused_in_one_line_and_changes_nothing(name):
    learn, _, _ = warmed_up()
    before = learn.state_dict()
    bad = BAD_STATES[name](before)
    with pytest.raises(ValueError) as err:
        learn.load_state_dict(bad)
    assert "\n" not in str(err.value) and str(err.value).startswith("MCEM state")
    for key, value in learn.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_a_non_finite_objective_leaves_everything_as_it_was():
    learn, x, rng = warmed_up()
    state = learn.state_dict()
    state["mcem.z"][3] = 1e200   # log p(z) = -inf: proposals are rejected, then the M-step fails
    learn.load_state_dict(state)
    params, before = params_of(learn.model), learn.state_dict()
    with warnings.catch_warnings(), pytest.raises(NonFiniteObjective, match="in the M-step") as err:
        warnings.simplefilter("error")
        learn.step(x[[3, 4]], rng, np.array([3, 4]))
    assert err.value.step == 3
    for name, p in learn.model.params.items():   # phi's step was taken, and undone
        np.testing.assert_array_equal(p.data, params[name], err_msg=name)
    for key, value in learn.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("rows, message", [
    (None, "needs rows"), (np.array([1, 1]), "distinct"), (np.array([1, N]), r"\[0, 10\)"),
    (np.array([0.0, 1.0]), "integers"), (np.array([1]), "one per row")])
def test_rows_must_name_distinct_training_points(rows, message):
    learn, x = make(), data()
    with pytest.raises(ValueError, match=message):
        learn.step(x[:2], np.random.default_rng(0), rows)
    assert learn.steps == 0 and not learn.started.any()


def test_float32_works():
    learn, x, rng = warmed_up(np.float32)
    reports = learn.step(x[:4], rng, np.arange(4))
    assert learn.z.dtype == np.float32
    assert all(p.dtype == np.float32 for p in learn.model.params.values())
    assert all(np.isfinite(v).all() for v in reports.values())
    assert ((0 <= reports["acceptance"]) & (reports["acceptance"] <= 1)).all()


# ---------------------------------------------------------------- the command line

TINY = ["--algorithm", "mcem", "--latent", "2", "--hidden", "8", "--batch-size", "50",
        "--k", "3", "--no-progress", "--no-figures", "--binarize", "static"]



def test_train_resumes_bit_for_bit_and_evaluate_scores_the_run(data_dir, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli(["train", "--data", data_dir, "--out", straight, "--epochs", "2", *TINY],
               capsys)[0] == 0
    assert cli(["train", "--data", data_dir, "--out", resumed, "--epochs", "1", *TINY],
               capsys)[0] == 0
    code, out, err = cli(["train", "--resume", resumed, "--epochs", "2", "--no-progress",
                          "--no-figures", "--k", "3"], capsys)
    assert code == 0, err
    assert "mcem by adagrad" in out
    a, b = (load_checkpoint(d / "checkpoint.npz") for d in (straight, resumed))
    assert a[0].keys() == b[0].keys() and a[1].keys() == b[1].keys()
    assert a[1]["mcem.z"].shape == (300, 2) and a[1]["mcem.started"].all()
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=key)
    row = a[2]["metrics"][-1]
    assert 0 < row["train_acceptance"] <= 1 and row["train_log_joint"] < 0
    code, out, err = cli(["evaluate", straight, "--k", "20"], capsys)
    assert code == 0 and "test log p(x), K=20" in out, err


@pytest.mark.parametrize("flags, says", [
    (["--model", "ae"], "--algorithm mcem does not apply to --model ae"),
    (["--estimator", "A"], "--estimator does not apply to --algorithm mcem"),
    (["--objective", "iwae"], "--objective does not apply to --algorithm mcem")])
def test_settings_mcem_does_not_use_are_one_line_usage_errors(data_dir, tmp_path, capsys,
                                                             flags, says):
    code, out, err = cli(["train", "--data", data_dir, "--out", tmp_path / "run", *TINY,
                          *flags], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    assert not (tmp_path / "run").exists()
