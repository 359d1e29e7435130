"""One step of learning, as an object that owns its optimizer state.

Algorithm 1's inner lines are

    g <- grad_{theta, phi} L~^M(theta, phi; X^M, eps)   (eq. 8)
    theta, phi <- update(theta, phi, g)                 (SGD, Adagrad or Adam)

`GradientAscent` is exactly that for any objective: training loops, the
examples and the benchmark all call `step(x, rng)`.  A different learning
rule is another object with the same `step`, `end_epoch`, `state_dict`
and `load_state_dict`, not another loop: `FitPCA` fits PCA in one pass,
and `WakeSleep` is the wake-sleep algorithm, the paper's baseline
(section 5, Figure 2).
"""
import math

import numpy as np

from minivae.autograd import graph, no_grad
from minivae.objectives import ELBO, noise
from minivae.optim import NonFiniteGradient, StateError


class NonFiniteObjective(FloatingPointError):
    """The objective or a gradient stopped being finite; nothing was updated.

    `what` says what went non-finite, `step` is the step it happened in, and
    `cause` is what was found about why.
    """

    def __init__(self, what, step, cause):
        super().__init__(f"{what} at step {step}; {cause}")
        self.what, self.step, self.cause = what, step, cause


def ascend(model, value, optimizer, optimizers, what):
    """One update by `optimizer` (over some or all of the model's parameters) that
    ascends the minibatch mean of `value`, a (B,) Tensor: the loss is -mean(value).

    NonFiniteObjective is raised, before this update changes anything, when
    the mean or a gradient is NaN or Inf; `what` names the value in its
    message, and `optimizers`, all the learning rule's, tell which one last
    updated a parameter found non-finite.
    """
    loss = -value.mean()
    step = optimizer.steps + 1
    if not math.isfinite(loss.item()):
        raise NonFiniteObjective(f"{what} became {loss.item()}", step,
                                 _cause(model, loss, optimizers))
    optimizer.zero_grad()
    loss.backward()
    try:
        optimizer.step()
    except NonFiniteGradient as err:
        raise NonFiniteObjective(f"the gradient of {err.name} became non-finite", step,
                                 _cause(model, loss, optimizers)) from None


def _cause(model, loss, optimizers):
    """What went non-finite first: a parameter (then an update of the optimizer that
    owns it made it so, at its last step or before: a weight row that the first
    layer's zero-skipping product does not select can hide for a few steps,
    `sparse`), or else the first value in the graph of `loss`, named by its op
    and the parameters it reads."""
    names = {id(t): name for name, t in model.named_parameters()}
    bad = next((name for name, t in model.named_parameters()
                if not np.isfinite(t.data).all()), None)
    if bad:
        steps = [o.steps for o in optimizers if bad in o.params]
        made = f"an update by step {steps[0]} made it so" if steps else "no optimizer updates it"
        return f"parameter {bad} is not finite ({made})"
    for t in graph(loss):
        if t.op is not None and not np.isfinite(t.data).all():
            reads = [names[id(p)] for p in t._parents if id(p) in names]
            return (f"all parameters are finite; the first non-finite value is the output "
                    f"of {t.op}" + (f" reading {', '.join(reads)}" if reads else ""))
    return "all parameters are finite"


class GradientAscent:
    """Ascend `objective(model, x, rng)` (B,) by `optimizer` on the model's parameters.

    The loss is minus the objective's mean over the minibatch: the eq. 8
    estimate divided by N, so one step size serves every minibatch size.
    With a `schedule` (e.g. `objectives.KLWarmUp`), the objective of step t
    is schedule(t), t counted by the optimizer, so a resumed run continues
    the schedule where it stopped.
    """

    def __init__(self, model, objective, optimizer, schedule=None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self._objective = objective

    @property
    def steps(self):
        """Updates made so far (resumed runs included)."""
        return self.optimizer.steps

    @property
    def objective(self):
        """The objective the next step ascends."""
        return self._objective if self.schedule is None else self.schedule(self.steps)

    def step(self, x, rng, rows=None):
        """One update on the minibatch x (B, D); returns what the objective reports
        per datapoint, {name: (B,) array}, its own value under its `key`.

        eps is drawn from `rng` by the objective; `rows`, the training-set
        indices of x's rows, (B,) ints, is unused here.  NonFiniteObjective
        is raised, before anything changes, when the objective or a gradient
        is NaN or Inf; its message names the step and what went non-finite.
        """
        # Overflow and NaN are looked for in `ascend`, by name; numpy's own warnings
        # about them would only precede that message with lines of noise.
        with np.errstate(all="ignore"):
            value, reports = self.objective.measure(self.model, x, rng)  # e.g. eq. 7, (B,)
            ascend(self.model, value, self.optimizer, (self.optimizer,), "the objective")
        return reports

    def end_epoch(self):
        """Nothing to do between epochs: every step updated the parameters."""

    def state_dict(self):
        """The optimizer's state, enough to resume exactly."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state):
        """Restore what `state_dict` returned (checked by the optimizer)."""
        self.optimizer.load_state_dict(state)


class FitPCA:
    """PCA's parameters from one pass over the data: every step adds a
    minibatch to sum x and sum x x^T (float64); `end_epoch` turns them into the
    mean and covariance and sets the model's principal subspace (`PCA.fit`)."""

    def __init__(self, model, objective):
        self.model, self.objective = model, objective
        self.steps = 0
        D = model.x_dim
        self.count, self.sum, self.scatter = 0, np.zeros(D), np.zeros((D, D))

    def step(self, x, rng, rows=None):
        """Add x (B, D) to the sums; returns what the objective reports per
        datapoint, {name: (B,) array}, under the subspace fitted so far (none
        before the first epoch ends).  `rows`, the training-set indices of
        x's rows, (B,) ints, is unused here."""
        x64 = np.asarray(x, np.float64)
        self.count += len(x)
        self.sum += x64.sum(axis=0)
        self.scatter += x64.T @ x64
        self.steps += 1
        return self.objective.measure(self.model, x, rng)[1]

    def end_epoch(self):
        """Fit the subspace to the epoch's data and start the sums anew."""
        mean = self.sum / self.count
        self.model.fit(mean, self.scatter / self.count - np.outer(mean, mean))
        self.count, self.sum, self.scatter = 0, np.zeros_like(self.sum), np.zeros_like(
            self.scatter)

    def state_dict(self):
        """The steps and the sums so far, enough to resume mid-epoch exactly."""
        return {"steps": self.steps, "count": self.count, "pca.sum": self.sum.copy(),
                "pca.scatter": self.scatter.copy()}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned, after checking its shapes and values."""
        D = self.model.x_dim
        expected = {"pca.sum": (D,), "pca.scatter": (D, D)}
        for key, shape in expected.items():
            value = state.get(key)
            if not isinstance(value, np.ndarray) or value.shape != shape \
                    or value.dtype != np.float64 or not np.isfinite(value).all():
                raise ValueError(f"PCA state: {key} must be finite float64{shape}")
        for key in ("steps", "count"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise ValueError(f"PCA state: '{key}' must be a whole number >= 0")
        unknown = sorted(set(state) - set(expected) - {"steps", "count"})
        if unknown:
            raise ValueError(f"PCA state: unexpected entries {unknown}")
        self.steps, self.count = state["steps"], state["count"]
        self.sum, self.scatter = state["pca.sum"].copy(), state["pca.scatter"].copy()


class WakeSleep:
    """The wake-sleep algorithm (Hinton, Dayan, Frey & Neal 1995) for a VAE, the
    baseline of the paper's section 5 (Figure 2).  Each step is two updates:

        wake   z ~ q(z|x) for the data x, held fixed as if observed;
               theta <- update(theta, grad_theta mean log p(x, z))
        sleep  z ~ p(z) = N(0, I), x ~ p(x|z): a dream as large as the minibatch;
               phi <- update(phi, grad_phi mean log q(z|x))

    `optimizer(params)` builds each phase's optimizer: one over theta
    (`model.generative`), one over phi (`model.recognition`).  The sleep
    phase fits q(z|x) to the model's own pairs, KL(p || q) in expectation
    over p(x), not the KL(q || p) of the bound (eq. 3): phi ascends no
    bound.  The model is still measured by the bound: `objective` is
    estimator B with L = 1 (eq. 7), like AEVB's test ELBO.
    """
    objective = ELBO("B", 1)

    def __init__(self, model, optimizer):
        if not (getattr(model, "has_prior", False) and getattr(model, "classes", 1) == 0):
            raise ValueError(f"wake-sleep trains a VAE (a prior p(z) to dream from, no "
                             f"condition y), not a {type(model).__name__}")
        self.model = model
        self.wake_optimizer = optimizer({n: model.params[n] for n in model.generative})
        self.sleep_optimizer = optimizer({n: model.params[n] for n in model.recognition})
        self.optimizers = (self.wake_optimizer, self.sleep_optimizer)

    @property
    def steps(self):
        """Steps made so far (resumed runs included), each a wake and a sleep update."""
        return self.wake_optimizer.steps

    def step(self, x, rng, rows=None):
        """The wake phase on x (B, D), then the sleep phase on a dream of B pairs;
        returns {elbo, log_q_dream: (B,) arrays} (see `wake` and `sleep`).

        `rows`, the training-set indices of x's rows, (B,) ints, is unused
        here.  NonFiniteObjective is raised before a phase's update when its
        objective or a gradient is NaN or Inf (the sleep phase's comes after
        the same step's wake update).
        """
        return {**self.wake(x, rng), **self.sleep(len(x), rng)}

    def wake(self, x, rng):
        """One update of theta: z = g_phi(eps, x) (eq. 10) with eps drawn from rng,
        used as data (no gradient reaches phi), ascending mean log p(x, z) =
        log p(x|z) + log p(z).  Returns {'elbo': (B,) array}: estimator B (eq.
        7, L = 1) at this z, log p(x|z) - KL(q(z|x) || p(z))."""
        model = self.model
        with np.errstate(all="ignore"):   # non-finite values are named by `ascend`
            with no_grad():
                mu, logvar = model.posterior(x)
                z = model.q.sample(mu, logvar, noise(model, 1, x, rng)[0])
                kl = model.q.kl(mu, logvar).data                    # Appendix B
            log_px_given_z = model.log_px_given_z(x, z)
            ascend(model, log_px_given_z + model.log_prior(z), self.wake_optimizer,
                   self.optimizers, "the wake objective log p(x, z)")
            return {"elbo": log_px_given_z.data - kl}

    def dream(self, n, rng):
        """n pairs from the generative model, drawn from rng: z ~ p(z) = N(0, I),
        (n, J), and x ~ p(x|z), (n, D), both arrays."""
        z = rng.standard_normal((n, self.model.latent), dtype=self.model.dtype)
        with no_grad():
            return z, self.model.sample_x(z, rng)

    def sleep(self, n, rng):
        """One update of phi ascending mean log q(z|x) on a dream of n pairs
        (`dream`), theta fixed.  Returns {'log_q_dream': (n,) array}, log q(z|x)
        of each dreamed pair before the update."""
        model = self.model
        with np.errstate(all="ignore"):   # non-finite values are named by `ascend`
            z, x = self.dream(n, rng)
            log_q = model.q.log_prob(z, *model.posterior(x))
            ascend(model, log_q, self.sleep_optimizer, self.optimizers,
                   "the sleep objective log q(z|x)")
            return {"log_q_dream": log_q.data}

    def end_epoch(self):
        """Nothing to do between epochs: every step updated the parameters."""

    def state_dict(self):
        """Both optimizers' states, keys prefixed 'wake.' and 'sleep.'."""
        return {f"{phase}.{key}": value
                for phase, o in zip(("wake", "sleep"), self.optimizers)
                for key, value in o.state_dict().items()}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned; StateError names the first entry
        that does not fit, and nothing changes then."""
        unknown = sorted(k for k in state if not k.startswith(("wake.", "sleep.")))
        if unknown:
            raise StateError(f"wake-sleep state: unexpected entries {unknown}")
        if state.get("wake.steps") != state.get("sleep.steps"):
            raise StateError(f"wake-sleep state: {state.get('wake.steps')!r} wake and "
                             f"{state.get('sleep.steps')!r} sleep updates, not one of each "
                             f"per step")
        before = self.wake_optimizer.state_dict()
        for phase, o in zip(("wake", "sleep"), self.optimizers):
            try:
                o.load_state_dict({k[len(phase) + 1:]: v for k, v in state.items()
                                   if k.startswith(f"{phase}.")})
            except StateError as err:
                self.wake_optimizer.load_state_dict(before)
                raise StateError(f"the {phase} phase's {err}") from None
