"""Stochastic gradient ascent on the ELBO: SGD, Adagrad (the paper's) and Adam.

Each optimizer updates a model's parameters in place from their `.grad`
(gradients of the loss, the negative ELBO), one fused kernel pass per
parameter (`kernels.*_update`).  With `clip_norm`, the loss gradients are
scaled down together when their global norm exceeds it.  Weight decay then
adds `weight_decay * theta`: the gradient of a Gaussian prior,
-log p(theta) = weight_decay / 2 ||theta||^2 + const.
"""
from abc import ABC, abstractmethod

import numpy as np

from minivae import kernels


class NonFiniteGradient(FloatingPointError):
    """A gradient holds NaN or Inf; no parameter was updated."""


class Optimizer(ABC):
    """Updates `params` (dict name -> Tensor) from their gradients."""

    def __init__(self, params, lr, weight_decay=0.0, clip_norm=None):
        name = type(self).__name__
        if not lr > 0:
            raise ValueError(f"{name}: learning rate must be positive, got {lr}")
        if not weight_decay >= 0:
            raise ValueError(f"{name}: weight decay must be >= 0, got {weight_decay}")
        if clip_norm is not None and not clip_norm > 0:
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
        """The global L2 norm of all gradients; NonFiniteGradient names the
        first parameter whose gradient holds NaN or Inf."""
        total = 0.0
        for name, p in self.params.items():
            if p.grad is None:
                continue
            square = float(np.vdot(p.grad, p.grad))
            if not np.isfinite(square):
                if not np.isfinite(p.grad).all():
                    raise NonFiniteGradient(f"gradient of {name} is not finite at step "
                                            f"{self.steps + 1}")
                square = float(np.vdot(p.grad.astype(np.float64), p.grad))  # float32 overflowed
            total += square
        return float(np.sqrt(total))

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
        """Restore what `state_dict` returned."""
        state = dict(state)
        self.steps = int(state.pop("steps"))
        self.state = {k: np.array(v) for k, v in state.items()}


class SGD(Optimizer):
    """v <- momentum v + g;  theta <- theta - lr v  (plain SGD at momentum 0)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, **kwargs):
        super().__init__(params, lr, **kwargs)
        if not momentum >= 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        self.momentum = momentum

    def update(self, name, theta, g, scale):
        kernels.sgd_update(theta, g, self.slot(f"sgd.v.{name}", theta), self.lr,
                           self.momentum, self.weight_decay, scale)


class Adagrad(Optimizer):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps), as in the paper."""

    def __init__(self, params, lr=0.02, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.eps = eps

    def update(self, name, theta, g, scale):
        kernels.adagrad_update(theta, g, self.slot(f"adagrad.G.{name}", theta), self.lr,
                               self.eps, self.weight_decay, scale)


class Adam(Optimizer):
    """Adam: bias-corrected running means of g and g^2 set each step's size."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name, theta, g, scale):
        kernels.adam_update(theta, g, self.slot(f"adam.m.{name}", theta),
                            self.slot(f"adam.v.{name}", theta), self.lr, self.beta1,
                            self.beta2, self.eps, self.steps, self.weight_decay, scale)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
