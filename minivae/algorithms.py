"""One step of learning, as an object that owns its optimizer state.

Algorithm 1's inner lines are

    g <- grad_{theta, phi} L~^M(theta, phi; X^M, eps)   (eq. 8)
    theta, phi <- update(theta, phi, g)                 (SGD, Adagrad or Adam)

`GradientAscent` is exactly that for any objective: training loops, the
examples and the benchmark all call `step(x, rng)`.  A different learning
rule (wake-sleep's two phases, say) is another object with the same
`step`, `state_dict` and `load_state_dict`, not another loop.
"""
import math

import numpy as np

from minivae.autograd import graph
from minivae.optim import NonFiniteGradient


class NonFiniteObjective(FloatingPointError):
    """The objective or a gradient stopped being finite; nothing was updated.

    `what` says what went non-finite, `step` is the step it happened in, and
    `cause` is what was found about why.
    """

    def __init__(self, what, step, cause):
        super().__init__(f"{what} at step {step}; {cause}")
        self.what, self.step, self.cause = what, step, cause


class GradientAscent:
    """Ascend `objective(model, x, rng)` (B,) by `optimizer` on the model's parameters.

    The loss is minus the objective's mean over the minibatch: the eq. 8
    estimate divided by N, so one step size serves every minibatch size.
    """

    def __init__(self, model, objective, optimizer):
        self.model, self.objective, self.optimizer = model, objective, optimizer

    @property
    def steps(self):
        """Updates made so far (resumed runs included)."""
        return self.optimizer.steps

    def step(self, x, rng):
        """One update on the minibatch x (B, D); returns the objective per datapoint (B,).

        eps is drawn from `rng` by the objective.  NonFiniteObjective is
        raised, before anything changes, when the objective or a gradient is
        NaN or Inf; its message names the step and what went non-finite.
        """
        # Overflow and NaN are looked for below, by name; numpy's own warnings
        # about them would only precede that message with lines of noise.
        with np.errstate(all="ignore"):
            value = self.objective(self.model, x, rng)    # (B,), e.g. eq. 7 per datapoint
            loss = -value.mean()
            if not math.isfinite(loss.item()):
                raise NonFiniteObjective(f"the objective became {loss.item()}",
                                         self.steps + 1, self._cause(loss))
            self.optimizer.zero_grad()
            loss.backward()
            try:
                self.optimizer.step()
            except NonFiniteGradient as err:
                raise NonFiniteObjective(f"the gradient of {err.name} became non-finite",
                                         self.steps + 1, self._cause(loss)) from None
        return value.data

    def _cause(self, loss):
        """What went non-finite first: a parameter (then the last update made it so),
        or else the first value in the graph of `loss`, named by its op and the
        parameters it reads."""
        names = {id(t): name for name, t in self.model.named_parameters()}
        bad = next((name for name, t in self.model.named_parameters()
                    if not np.isfinite(t.data).all()), None)
        if bad:
            return f"parameter {bad} is not finite (the update of step {self.steps} made it so)"
        for t in graph(loss):
            if t.op is not None and not np.isfinite(t.data).all():
                reads = [names[id(p)] for p in t._parents if id(p) in names]
                return (f"all parameters are finite; the first non-finite value is the output "
                        f"of {t.op}" + (f" reading {', '.join(reads)}" if reads else ""))
        return "all parameters are finite"

    def state_dict(self):
        """The optimizer's state, enough to resume exactly."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state):
        """Restore what `state_dict` returned (checked by the optimizer)."""
        self.optimizer.load_state_dict(state)
