"""HMC (minivae/hmc.py): it leaves its target invariant, its step size adapts to
the acceptance asked for, its gradient is right, and non-finite proposals are
rejected quietly."""
import warnings
from functools import partial

import numpy as np
import pytest

from minivae import hmc
from minivae.autograd import no_grad
from minivae.models.vae import VAE
from minivae.ops import exp, log

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.8], [0.8, 1.0]])   # standard deviations 1.34 and 0.45 on its axes


def gaussian_log_density(z):
    """log N(z; MEAN, COV) up to a constant, per row of a Tensor z (B, 2), by the engine's ops."""
    d = z - MEAN
    return -0.5 * ((d @ np.linalg.inv(COV)) * d).sum(axis=1)


GAUSSIAN = partial(hmc.value_and_grad, gaussian_log_density)


def z_scores(z):
    """(estimate - truth) / standard error for the mean (2) and the covariance's
    three distinct entries, from independent draws z (C, 2): the SE of a mean is
    sd / sqrt(C), that of a covariance entry the sd of the products d_i d_j / sqrt(C)."""
    C = len(z)
    d = z - z.mean(axis=0)
    products = (d[:, :, None] * d[:, None, :]).reshape(C, 4)[:, [0, 1, 3]]
    mean_se = z.std(axis=0, ddof=1) / np.sqrt(C)
    cov_se = products.std(axis=0, ddof=1) / np.sqrt(C)
    cov = products.sum(axis=0) / (C - 1)
    return np.concatenate([(z.mean(axis=0) - MEAN) / mean_se,
                           (cov - COV.ravel()[[0, 1, 3]]) / cov_se])


def test_hmc_leaves_a_correlated_gaussian_invariant():
    # 20000 independent chains from N(0, 4I), 40 transitions of burn-in, then
    # each chain's last state: 20000 independent draws, so the standard errors
    # are those of iid samples.  The step sizes are large (acceptance ~0.8), so
    # that a wrong integrator shows: with either half-step made a full one, the
    # gradient taken before the position step, the kinetic energy without its
    # 1/2, or every proposal accepted, some statistic is 5 to 140 SE off; here
    # each is within 4.  eps is drawn afresh per transition: with one fixed eps,
    # L eps near a half-period of the narrow axis (1.4) sends a chain back and
    # forth between two points, and it never forgets where it started.
    rng = np.random.default_rng(0)
    chains = 20000
    z = 2 * rng.standard_normal((chains, 2))
    for _ in range(40):
        transition = hmc.hmc_step(GAUSSIAN, z, rng.uniform(0.5, 0.85, chains), rng)
        z = transition.z
    assert 0.7 < transition.accept_prob.mean() < 0.9
    assert np.abs(z_scores(z)).max() < 4, z_scores(z)


@pytest.mark.parametrize("target", [0.9, 0.6])
@pytest.mark.parametrize("start", [0.1, 2.0])
def test_adapted_step_sizes_reach_the_target_acceptance(target, start):
    rng = np.random.default_rng(1)
    chains = 200
    z = MEAN + rng.standard_normal((chains, 2))
    step_size = np.full(chains, start)
    accept = []
    for _ in range(400):
        transition = hmc.hmc_step(GAUSSIAN, z, step_size, rng)
        z = transition.z
        step_size = hmc.adapt_step_size(step_size, transition.accept_prob, target)
        accept.append(transition.accept_prob.mean())
    assert abs(np.mean(accept[-100:]) - target) < 0.02
    assert np.isfinite(step_size).all() and (step_size > 0).all()


def test_the_step_size_grows_on_acceptance_and_shrinks_on_rejection():
    step_size = np.array([0.1, 0.1])
    new = hmc.adapt_step_size(step_size, np.array([1.0, 0.0]), target=0.9, rate=0.1)
    np.testing.assert_allclose(new, [0.1 * np.exp(0.01), 0.1 * np.exp(-0.09)])


def small_vae(dtype=np.float64, seed=0):
    return VAE(x_dim=6, hidden=(5,), latent=2, dtype=dtype, rng=np.random.default_rng(seed),
               init="xavier")


def test_the_gradient_of_log_joint_in_z_matches_central_differences():
    model = small_vae()
    rng = np.random.default_rng(2)
    x = (rng.random((3, 6)) < 0.5).astype(np.float64)
    z = rng.standard_normal((3, 2))
    value, grad = hmc.log_joint_grad(model, x, z)
    with no_grad():
        np.testing.assert_allclose(value, (model.log_px_given_z(x, z) + model.log_prior(z)).data)
        h = 1e-6
        numeric = np.empty_like(z)
        for j in range(2):
            step = np.zeros_like(z)
            step[:, j] = h   # each row's density reads only its own z
            up, down = (hmc.log_joint(model, x, z + s).data for s in (step, -step))
            numeric[:, j] = (up - down) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert all(p.grad is None and p.requires_grad for p in model.params.values()), \
        "the parameters took a gradient, or stayed frozen"


NON_FINITE = {   # targets whose log density is NaN, -inf or +inf at points HMC will propose
    "log of z_1 <= 0": lambda z: log(z[:, 0]) - 0.5 * (z * z).sum(axis=1),
    "exp(50 z_1) overflows": lambda z: exp(50 * z[:, 0]) - 0.5 * (z * z).sum(axis=1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(NON_FINITE))
def test_non_finite_proposals_are_rejected_without_warnings(name, dtype):
    target = partial(hmc.value_and_grad, NON_FINITE[name])
    rng = np.random.default_rng(3)
    z = np.tile(np.array([0.3, 0.0], dtype), (500, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a numpy RuntimeWarning would fail the test
        for _ in range(5):
            transition = hmc.hmc_step(target, z, np.full(500, 1.5), rng)
            rejected = ~transition.accepted
            assert np.array_equal(transition.z[rejected], z[rejected])
            z = transition.z
            assert np.isfinite(z).all() and np.isfinite(transition.log_density).all()
    assert z.dtype == dtype
    assert (transition.accept_prob == 0).any(), "no proposal was non-finite: nothing was tested"


def test_a_chain_at_density_zero_accepts_a_finite_proposal():
    """From a state outside the target's support (log pi = -inf) the Metropolis
    ratio is +inf: a proposal inside is accepted, so the chain is not trapped."""
    def target(z):
        log_p = np.where(z[:, 0] > 0, -0.5 * np.sum(z * z, axis=1), -np.inf)
        return log_p, -z
    z = np.tile([[-1e-3, 0.0]], (200, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = hmc.hmc_step(target, z, np.full(200, 0.2), np.random.default_rng(0),
                           leapfrog_steps=1)
    moved = out.z[:, 0] != z[:, 0]
    assert moved.sum() > 50                       # about half the momenta point inside
    assert np.all(out.z[moved, 0] > 0) and np.all(out.accept_prob[moved] == 1.0)
    assert np.all(out.accept_prob[~moved] == 0.0) and np.all(np.isneginf(out.log_density[~moved]))
