"""Monte Carlo EM with an HMC sampler: the baseline of the paper's section 5.

"For each datapoint: 10 HMC leapfrog steps with an automatically tuned
stepsize such that the acceptance rate was 90%, followed by 5 weight
updates using the acquired sample", by Adagrad with the weight prior.
Unlike AEVB it is not an online method: it keeps a Markov chain z_i per
training point, so the learning rule must know which rows of the training
set a minibatch holds.

    E-step   z_i <- one HMC transition targeting p_theta(z|x_i) ∝ p_theta(x_i|z) p(z)
    M-step   theta <- 5 ascent steps on mean_i log p_theta(x_i, z_i)

`MonteCarloEM` has the learning rules' interface (`algorithms`): `step`,
`steps`, `objective`, `end_epoch`, `state_dict`, `load_state_dict`.
"""
import math

import numpy as np

from minivae.algorithms import GradientAscent, NonFiniteObjective
from minivae.autograd import Tensor, frozen
from minivae.hmc import (ADAPTATION_RATE, LEAPFROG_STEPS, TARGET_ACCEPTANCE, adapt_step_size,
                         hmc_step, log_joint, log_joint_grad)
from minivae.objectives import ELBO, Objective

UPDATES = 5         # the paper's weight updates per datapoint's sample
STEP_SIZE = 0.1     # the shared step size's first value, before adaptation


class LogJointAt(Objective):
    """log p(x, z) (B,) at fixed latent codes z (B, J): the M-step's objective."""
    key, label = "log_joint", "log p(x, z)"

    def __init__(self, z):
        self.z = z

    def __call__(self, model, x, rng):
        """log p(x_i, z_i) per row, (B,), for x (B, D); z is a constant, rng unused."""
        return log_joint(model, x, Tensor(self.z))


class MonteCarloEM:
    """Monte Carlo EM (section 5) for a VAE's generative model theta, with n
    persistent HMC chains, one per training point, and one HMC step size
    shared by all of them.

    Each `step(x, rng, rows)` does, in this order:
      1. one `optimizer_phi` step of the recognition model phi on the ELBO
         (estimator B, L = 1) with theta held fixed;
      2. one HMC transition (`leapfrog_steps` steps of the shared size) of
         each row's chain z_i, targeting p(z|x_i) ∝ p(x_i|z) p(z) under the
         current theta; the step size then moves towards the `target`
         acceptance by `hmc.adapt_step_size` on the minibatch's mean
         Metropolis acceptance probability;
      3. `updates` steps of `optimizer_theta` on theta (`model.generative`),
         ascending the mean over the minibatch of log p(x_i, z_i) at the new
         chain states; the optimizer's weight decay is the weight prior.

    The encoder q(z|x) is no part of Monte Carlo EM.  It is fitted alongside
    for evaluation only, because the run's test lower bound and its
    importance-sampled log p(x) need a q(z|x): the chains never read it, and
    neither do theta's updates.  The reported `elbo` is therefore the bound
    of this separately trained q, not what MCEM maximizes.

    One step size, as in the paper ("an automatically tuned stepsize such
    that the acceptance rate was 90%"), because it adapts at every step
    whatever n is.  A step size per chain adapts only when its chain is
    visited, once an epoch: with n = 50,000 it grew from 0.1 to 0.18 in 60
    epochs at acceptance 1.0, and the chains barely moved.  The posteriors of
    different datapoints differ in scale, so a shared step size suits none of
    them exactly; it trades that for adaptation speed.

    A chain starts when its row is first visited, from the prior N(0, I),
    drawn from the step's rng; the step size starts at `step_size`: runs with
    the same generator are identical.  A chain targets p(z|x_i) for the x_i
    it is given; with a fresh binarization per epoch that x_i changes between
    visits.
    """

    def __init__(self, model, optimizer_theta, optimizer_phi, n, leapfrog_steps=LEAPFROG_STEPS,
                 updates=UPDATES, target=TARGET_ACCEPTANCE, step_size=STEP_SIZE,
                 rate=ADAPTATION_RATE):
        for optimizer, names, what in ((optimizer_theta, model.generative, "theta"),
                                       (optimizer_phi, model.recognition, "phi")):
            if set(optimizer.params) != set(names):
                raise ValueError(f"MonteCarloEM: optimizer_{what} must hold exactly the "
                                 f"parameters {', '.join(names)}")
        if n < 1 or leapfrog_steps < 1 or updates < 1 or not 0 < target < 1 or not step_size > 0 \
                or not 0 < rate < math.inf:
            raise ValueError("MonteCarloEM: expected n, leapfrog_steps and updates >= 1, "
                             "0 < target < 1, step_size > 0 and a finite rate > 0")
        self.model, self.optimizer_theta, self.optimizer_phi = model, optimizer_theta, optimizer_phi
        self.leapfrog_steps, self.updates, self.target, self.rate = (leapfrog_steps, updates,
                                                                     target, rate)
        self.objective = ELBO("B", 1)   # the test lower bound, of the recognition model
        self._recognition = GradientAscent(model, self.objective, optimizer_phi)
        self.steps = 0
        self.z = np.zeros((n, model.latent), model.dtype)     # chain i's state z_i
        self.step_size = float(step_size)                     # every chain's leapfrog step
        self.started = np.zeros(n, bool)                      # visited at least once

    def step(self, x, rng, rows=None):
        """Steps 1-3 above on the minibatch x (B, D) of training rows `rows` (B,);
        returns per datapoint {elbo, log_joint, acceptance, step_size: (B,) arrays}.

        `elbo` is estimator B's bound (eq. 7, L = 1) before this step, like
        AEVB's; `log_joint` is log p(x_i, z_i) at the new chain state, under
        theta before its updates; `acceptance` is the Metropolis probability of
        the transition, `step_size` the shared step it used, before this step's
        adaptation, repeated per datapoint.  NonFiniteObjective, raised when the
        ELBO, log p(x, z) or a gradient is not finite, leaves the parameters,
        optimizers, chains and step size as they were before the step.
        """
        rows = self._checked_rows(rows, len(x))
        saved = self._snapshot(rows)
        try:
            return self._step(x, rng, rows)
        except NonFiniteObjective:
            self._restore(saved, rows)
            raise

    def _step(self, x, rng, rows):
        model = self.model
        theta = [model.params[name] for name in model.generative]
        with frozen(theta):   # phi's step; theta takes no gradient
            elbo = self._stage("the recognition model's ELBO step", self._recognition, x, rng)
        new = rows[~self.started[rows]]
        self.z[new] = rng.standard_normal((len(new), model.latent), dtype=model.dtype)  # p(z)
        self.started[new] = True
        step_size = np.full(len(rows), self.step_size)
        transition = hmc_step(lambda z: log_joint_grad(model, x, z), self.z[rows], step_size,
                              rng, self.leapfrog_steps)   # E-step: z_i ~ p(z|x_i), approximately
        self.z[rows] = transition.z
        self.step_size = float(adapt_step_size(self.step_size, transition.accept_prob.mean(),
                                               self.target, self.rate))
        m_step = GradientAscent(model, LogJointAt(transition.z), self.optimizer_theta)
        for _ in range(self.updates):   # M-step at the acquired sample
            self._stage("the M-step", m_step, x, rng)
        self.steps += 1
        return {"elbo": elbo["elbo"], "log_joint": transition.log_density,
                "acceptance": transition.accept_prob, "step_size": step_size}

    def _stage(self, stage, learn, x, rng):
        """learn.step(x, rng), its NonFiniteObjective naming the stage and this step."""
        try:
            return learn.step(x, rng)
        except NonFiniteObjective as err:
            raise NonFiniteObjective(f"{err.what} in {stage}", self.steps + 1, err.cause) \
                from None

    def _checked_rows(self, rows, batch):
        n = len(self.z)
        if rows is None:
            raise ValueError("MonteCarloEM.step needs rows, the training-set index of each row "
                             "of x: every training point has its own chain")
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu" or rows.shape != (batch,) or len(np.unique(rows)) != batch \
                or (batch and not (0 <= rows.min() and rows.max() < n)):
            raise ValueError(f"MonteCarloEM.step: rows must be {batch} distinct integers in "
                             f"[0, {n}), one per row of x")
        return rows

    def _snapshot(self, rows):
        params = {name: p.data.copy() for name, p in self.model.params.items()}
        return (params, self.optimizer_theta.state_dict(), self.optimizer_phi.state_dict(),
                self.z[rows], self.step_size, self.started[rows])

    def _restore(self, saved, rows):
        params, theta, phi, self.z[rows], self.step_size, self.started[rows] = saved
        for name, p in self.model.params.items():
            p.data[...] = params[name]
        self.optimizer_theta.load_state_dict(theta)
        self.optimizer_phi.load_state_dict(phi)

    def end_epoch(self):
        """Nothing to do between epochs: every step updated the parameters."""

    def state_dict(self):
        """Both optimizers' state (keys 'theta.*', 'phi.*'), the chains 'mcem.z'
        (n, J), their shared step size 'mcem.step_size' (a float64 array of
        shape ()), which have started 'mcem.started' (n,) and the step count:
        enough to resume exactly."""
        return {"steps": self.steps,
                **{f"theta.{k}": v for k, v in self.optimizer_theta.state_dict().items()},
                **{f"phi.{k}": v for k, v in self.optimizer_phi.state_dict().items()},
                "mcem.z": self.z.copy(), "mcem.step_size": np.array(self.step_size),
                "mcem.started": self.started.copy()}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned, after checking all of it; a
        ValueError in one line names the first entry that does not fit, and
        nothing changes then."""
        n, J = self.z.shape
        expected = {"mcem.z": (self.model.dtype, (n, J)),
                    "mcem.step_size": (np.dtype(np.float64), ()),
                    "mcem.started": (np.dtype(bool), (n,))}
        for key, (dtype, shape) in expected.items():
            value = state.get(key)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype \
                    or not np.isfinite(value).all():
                raise ValueError(f"MCEM state: {key} must be a finite {dtype} array of "
                                 f"shape {shape}")
        if not state["mcem.step_size"] > 0:
            raise ValueError("MCEM state: mcem.step_size must be positive")
        steps = state.get("steps")
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
                or steps < 0:
            raise ValueError("MCEM state: 'steps' must be a whole number >= 0")
        parts = {"theta": {}, "phi": {}}
        for key, value in state.items():
            prefix, _, rest = key.partition(".")
            if prefix in parts:
                parts[prefix][rest] = value
            elif key not in expected and key != "steps":
                raise ValueError(f"MCEM state: unexpected entry {key!r}")
        before = self.optimizer_theta.state_dict()
        for prefix, optimizer in (("theta", self.optimizer_theta), ("phi", self.optimizer_phi)):
            try:
                optimizer.load_state_dict(parts[prefix])
            except ValueError as err:
                self.optimizer_theta.load_state_dict(before)   # all of the state, or none of it
                raise ValueError(f"MCEM state: {prefix}'s {err}") from None
        self.steps = int(steps)
        self.z, self.started = state["mcem.z"].copy(), state["mcem.started"].copy()
        self.step_size = float(state["mcem.step_size"])
