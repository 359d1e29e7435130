"""Hamiltonian Monte Carlo (Neal 2011), many independent chains at once.

The sampler of the paper's Monte Carlo EM baseline (section 5): "10 HMC
leapfrog steps with an automatically tuned stepsize such that the
acceptance rate was 90%".  Each of B chains has its own state z_b (a row of
z, (B, J)), its own target log pi_b(z) and its own step size eps_b.  With a
unit mass matrix the Hamiltonian is

    H(z, p) = -log pi(z) + |p|^2 / 2,        p ~ N(0, I)

and one transition is: draw p, run L leapfrog steps of size eps, and accept
the end point with the Metropolis probability min(1, exp(H_start - H_end)).

    value_and_grad     log pi(z) (B,) and its gradient in z (B, J), by the engine
    hmc_step           one transition of every chain
    adapt_step_size    a Robbins-Monro step of log eps towards a target acceptance
    log_joint          log p(x, z) = log p(x|z) + log p(z), the posterior's target
    log_joint_grad     it and its gradient in z, with the model's parameters fixed
"""
from dataclasses import dataclass

import numpy as np

from minivae.autograd import Tensor, frozen

LEAPFROG_STEPS = 10        # the paper's, per transition
TARGET_ACCEPTANCE = 0.9    # the paper's acceptance rate
ADAPTATION_RATE = 0.1      # the gain of `adapt_step_size`


def value_and_grad(log_density, z):
    """log_density(z) and d log_density / dz, as arrays (B,) and (B, J).

    `log_density` maps a Tensor z (B, J) to a Tensor (B,) whose row b reads
    only z_b, so that the gradient of the sum over rows holds every row's own
    gradient.  Parameters it reads should be `autograd.frozen`: backward
    would otherwise compute and accumulate their .grad too.
    """
    z = Tensor(z, requires_grad=True)
    value = log_density(z)
    value.sum().backward()
    return value.data, (np.zeros_like(z.data) if z.grad is None else z.grad)


@dataclass
class Transition:
    """One HMC transition of B chains: the new states z (B, J), the target's log
    density there (B,), the Metropolis acceptance probabilities (B,) and
    which proposals were accepted (B,) bool."""
    z: np.ndarray
    log_density: np.ndarray
    accept_prob: np.ndarray
    accepted: np.ndarray


def hmc_step(target, z, step_size, rng, leapfrog_steps=LEAPFROG_STEPS):
    """One HMC transition of each row of z (B, J), step sizes (B,), unit mass.

    `target(z)` returns (log pi(z) (B,), its gradient (B, J)) for an array z,
    e.g. `value_and_grad` of a Tensor function.  Leapfrog (Neal 2011, sec. 2.3):

        p <- p + eps/2 grad(z);  then L times: z <- z + eps p,  p <- p + eps grad(z)
        (the last momentum step a half one)

    Negating p at the end makes the proposal its own inverse, which detailed
    balance needs; with K(p) = |p|^2/2 and p drawn afresh at every transition
    it changes neither H nor anything after, so it is not computed.  The
    energy change H_start - H_end is taken as a difference of differences in
    float64, never as two large Hamiltonians subtracted.  A proposal whose z,
    log density or energy is not finite is rejected (probability 0), one with
    a finite log density from a state of density 0 is accepted, and no numpy
    warning is raised about either.  Draws p, then one uniform per chain.
    """
    z0 = np.asarray(z)
    eps = np.asarray(step_size, z0.dtype)[:, None]
    p0 = rng.standard_normal(z0.shape, dtype=z0.dtype)
    with np.errstate(all="ignore"):   # non-finite proposals are found and rejected below
        log_p0, grad = target(z0)
        z1, p1 = z0, p0 + 0.5 * eps * grad
        for step in range(leapfrog_steps):
            z1 = z1 + eps * p1
            log_p1, grad = target(z1)
            p1 = p1 + (eps if step < leapfrog_steps - 1 else 0.5 * eps) * grad
        # H_start - H_end = (log pi(z1) - log pi(z0)) - (|p1|^2 - |p0|^2) / 2
        p0, p1 = p0.astype(np.float64), p1.astype(np.float64)
        kinetic = 0.5 * np.sum((p1 - p0) * (p1 + p0), axis=1)
        log_ratio = log_p1.astype(np.float64) - log_p0 - kinetic
        # a finite proposal from a state of density 0 (log_ratio = +inf) is accepted
        finite = np.isfinite(log_p1) & np.isfinite(z1).all(axis=1) & ~np.isnan(log_ratio)
        accept_prob = np.where(finite, np.exp(np.minimum(log_ratio, 0.0)), 0.0)
    accepted = rng.random(len(z0)) < accept_prob
    return Transition(np.where(accepted[:, None], z1, z0), np.where(accepted, log_p1, log_p0),
                      accept_prob, accepted)


def adapt_step_size(step_size, accept_prob, target=TARGET_ACCEPTANCE, rate=ADAPTATION_RATE):
    """log eps <- log eps + rate * (alpha - target), elementwise, as float64: eps and
    alpha (B,) for a step size per chain, or scalars for one shared step size
    driven by the mean alpha of B chains, as `mcem.MonteCarloEM` does.

    A Robbins-Monro step (Andrieu & Thoms 2008) on log eps, driven by
    the Metropolis probability alpha rather than the 0/1 accept, which has
    the same mean and a smaller variance.  Too many acceptances lengthen the
    step, too few shorten it; while log eps stays bounded its drift averages
    to 0, so the mean alpha equals the target.  The gain is constant, not
    decaying: in Monte Carlo EM the posterior moves as theta learns, and the
    step size must keep following it.
    """
    return np.asarray(step_size, np.float64) * np.exp(rate * (accept_prob - target))


def log_joint(model, x, z):
    """log p(x, z) = log p(x|z) + log p(z) per row: x (B, D), z (B, J) -> (B,) Tensor.

    The unnormalized log posterior log p(z|x) + log p(x): what HMC samples in
    Monte Carlo EM, and what its M-step ascends in theta (section 5).
    """
    return model.log_px_given_z(x, z) + model.log_prior(z)


def log_joint_grad(model, x, z):
    """log p(x, z) (B,) and its gradient in z (B, J), arrays, for x (B, D), z (B, J),
    with every parameter of the model held fixed (none takes a gradient)."""
    with frozen(model.params.values()):
        return value_and_grad(lambda z: log_joint(model, x, z), z)
