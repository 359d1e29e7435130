"""Stochastic gradient ascent on the ELBO: SGD, Adagrad (the paper's) and Adam.

Each optimizer updates a model's parameters in place from their `.grad`
(gradients of the loss, the negative ELBO), one fused kernel pass per
parameter (`updates.*_update`).  With `clip_norm`, the loss gradients are
scaled down together when their global norm exceeds it.  Weight decay then
adds `weight_decay * theta`: the gradient of a Gaussian prior,
-log p(theta) = weight_decay / 2 ||theta||^2 + const.
"""
import math
from abc import ABC, abstractmethod

import numpy as np

from minivae import updates


class NonFiniteGradient(FloatingPointError):
    """A gradient holds NaN or Inf; no parameter was updated.  `name` is the
    first parameter whose gradient does."""

    def __init__(self, message, name):
        super().__init__(message)
        self.name = name


class StateError(ValueError):
    """Saved optimizer state does not fit the optimizer and its parameters."""


class Optimizer(ABC):
    """Updates `params` (dict name -> Tensor) from their gradients.

    Each subclass names its `default_lr`, the `slots` of state it keeps per
    parameter (e.g. Adam's running means 'adam.m' and 'adam.v'), and the
    `hyperparameters` of its own that a run's config sets.
    """
    default_lr = None
    slots = ()
    hyperparameters = ()

    def __init__(self, params, lr=None, weight_decay=0.0, clip_norm=None):
        name = type(self).__name__
        lr = self.default_lr if lr is None else lr
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"{name}: learning rate must be positive, got {lr}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"{name}: weight decay must be >= 0, got {weight_decay}")
        if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"{name}: clip norm must be positive, got {clip_norm}")
        self.params, self.lr = dict(params), lr
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.steps = 0
        self.state = {}   # per-parameter arrays, keyed "<slot>.<parameter name>"

    def zero_grad(self):
        """Forget the gradients of the last backward pass."""
        for p in self.params.values():
            p.grad = None

    def grad_norm(self):
        """The global L2 norm of all gradients, their squares summed in float64
        (`updates.squared_norm`); NonFiniteGradient names the first parameter
        whose gradient holds NaN or Inf."""
        total = 0.0
        for name, p in self.params.items():
            if p.grad is None:
                continue
            square = updates.squared_norm(p.grad)
            if not math.isfinite(square) and not np.isfinite(p.grad).all():
                raise NonFiniteGradient(f"gradient of {name} is not finite at step "
                                        f"{self.steps + 1}", name)
            total += square   # +Inf only for float64 squares beyond float64's range
        return math.sqrt(total)

    def step(self):
        """One update of every parameter that has a gradient; returns the
        gradient norm before clipping.  Nothing changes if a gradient is
        not finite (NonFiniteGradient)."""
        norm = self.grad_norm()
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
        self.steps += 1
        for name, p in self.params.items():
            if p.grad is not None:
                self.update(name, p.data, p.grad, scale)
        return norm

    def slot(self, name, like):
        """The state array `name` (e.g. 'adam.m.encoder.mu.W'), zeros at first."""
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    @abstractmethod
    def update(self, name, theta, g, scale):
        """Change theta in place, given its gradient g scaled by `scale`."""

    def state_dict(self):
        """Arrays and the step count, enough to resume exactly."""
        return {"steps": self.steps, **{k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned, after checking all of it.

        The step count must be a whole number >= 0 and every slot array must
        be present (all of them once a step was taken, none before), finite,
        and of its parameter's shape and dtype: the update kernels index
        them as if they were.  StateError names the first entry that is not;
        nothing changes then.
        """
        state = dict(state)
        steps = state.pop("steps", None)
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
                or steps < 0:
            raise StateError(f"optimizer state: 'steps' must be a whole number >= 0, "
                             f"got {steps!r}")
        expected = {f"{slot}.{name}": p for slot in self.slots for name, p in self.params.items()}
        unknown = sorted(state.keys() - expected.keys())
        if unknown:
            raise StateError(f"optimizer state: unexpected entries {unknown} for "
                             f"{type(self).__name__}")
        missing = sorted(expected.keys() - state.keys())
        if missing and (steps > 0 or state):
            raise StateError(f"optimizer state: missing {missing[0]}"
                             + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                             + f" after {steps} steps")
        for key, value in state.items():
            p = expected[key]
            if not isinstance(value, np.ndarray) or value.shape != p.shape \
                    or value.dtype != p.dtype:
                got = (f"{value.dtype}{value.shape}" if isinstance(value, np.ndarray)
                       else type(value).__name__)
                raise StateError(f"optimizer state: {key} is {got}, expected "
                                 f"{p.dtype}{p.shape} like its parameter")
            if not np.isfinite(value).all():
                raise StateError(f"optimizer state: {key} is not finite")
        self.steps = int(steps)
        self.state = {k: np.array(v, order="C") for k, v in state.items()}


class SGD(Optimizer):
    """v <- momentum v + g;  theta <- theta - lr v  (plain SGD at momentum 0)."""
    default_lr = 1e-3
    slots = ("sgd.v",)
    hyperparameters = ("momentum",)

    def __init__(self, params, lr=None, momentum=0.0, **kwargs):
        super().__init__(params, lr, **kwargs)
        if not (math.isfinite(momentum) and momentum >= 0):
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        self.momentum = momentum

    def update(self, name, theta, g, scale):
        updates.sgd_update(theta, g, self.slot(f"sgd.v.{name}", theta), self.lr,
                           self.momentum, self.weight_decay, scale)


class Adagrad(Optimizer):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps), as in the paper."""
    default_lr = 0.02
    slots = ("adagrad.G",)

    def __init__(self, params, lr=None, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.eps = eps

    def update(self, name, theta, g, scale):
        updates.adagrad_update(theta, g, self.slot(f"adagrad.G.{name}", theta), self.lr,
                               self.eps, self.weight_decay, scale)


class Adam(Optimizer):
    """Adam: bias-corrected running means of g and g^2 set each step's size."""
    default_lr = 1e-3
    slots = ("adam.m", "adam.v")

    def __init__(self, params, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name, theta, g, scale):
        updates.adam_update(theta, g, self.slot(f"adam.m.{name}", theta),
                            self.slot(f"adam.v.{name}", theta), self.lr, self.beta1,
                            self.beta2, self.eps, self.steps, self.weight_decay, scale)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
