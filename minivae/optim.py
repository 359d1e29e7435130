"""Stochastic gradient ascent on the ELBO: SGD, Adagrad (the paper's) and Adam.

Each optimizer updates a model's parameters in place from their `.grad`
(gradients of the loss, the negative ELBO).  Weight decay adds
`weight_decay * theta` to each gradient: the gradient of a Gaussian prior
-log p(theta) = weight_decay / 2 ||theta||^2.  With `clip_norm`, gradients
are scaled down together when their global norm exceeds it.
"""
from abc import ABC, abstractmethod

import numpy as np


class NonFiniteGradient(FloatingPointError):
    """A gradient holds NaN or Inf; no parameter was updated."""


class Optimizer(ABC):
    """Updates `params` (dict name -> Tensor) from their gradients."""

    def __init__(self, params, lr, weight_decay=0.0, clip_norm=None):
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: weight decay must be >= 0, got {weight_decay}")
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError(f"{type(self).__name__}: clip norm must be positive, got {clip_norm}")
        self.params, self.lr = dict(params), lr
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.steps = 0
        self.state = {}   # per-parameter arrays, keyed "<slot>.<parameter name>"

    def zero_grad(self):
        """Forget the gradients of the last backward pass."""
        for p in self.params.values():
            p.grad = None

    def step(self):
        """One update of every parameter from its gradient.

        Raises NonFiniteGradient, naming the first offending parameter,
        before anything is changed.  Returns the global gradient norm.
        """
        grads = {}
        for name, p in self.params.items():
            g = np.zeros_like(p.data) if p.grad is None else p.grad
            grads[name] = g + self.weight_decay * p.data if self.weight_decay else g
        squares = {name: float(np.vdot(g, g)) for name, g in grads.items()}
        for name, sq in squares.items():
            if not np.isfinite(sq):
                raise NonFiniteGradient(f"gradient of {name} is not finite at step "
                                        f"{self.steps + 1}")
        norm = float(np.sqrt(sum(squares.values())))
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
        self.steps += 1
        for name, p in self.params.items():
            self.update(name, p.data, grads[name] * scale if scale != 1.0 else grads[name])
        return norm

    def slot(self, name, like):
        """The state array `name` (e.g. 'adam.m.encoder.mu.W'), zeros at first."""
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    @abstractmethod
    def update(self, name, theta, g):
        """Change theta in place, given its gradient g."""

    def state_dict(self):
        """Arrays and the step count, enough to resume exactly."""
        return {"steps": self.steps, **{k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned."""
        state = dict(state)
        self.steps = int(state.pop("steps"))
        self.state = {k: np.array(v) for k, v in state.items()}


class SGD(Optimizer):
    """theta <- theta - lr * v, v <- momentum * v + g (plain SGD at momentum 0)."""

    def __init__(self, params, lr=0.01, momentum=0.0, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.momentum = momentum

    def update(self, name, theta, g):
        if self.momentum:
            v = self.slot(f"sgd.v.{name}", theta)
            v *= self.momentum
            v += g
            g = v
        theta -= self.lr * g


class Adagrad(Optimizer):
    """theta <- theta - lr * g / (sqrt(sum of past g^2) + eps), as in the paper."""

    def __init__(self, params, lr=0.02, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.eps = eps

    def update(self, name, theta, g):
        G = self.slot(f"adagrad.G.{name}", theta)
        G += g * g
        theta -= self.lr * g / (np.sqrt(G) + self.eps)


class Adam(Optimizer):
    """Adam: bias-corrected running means of g and g^2 set each step's size."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name, theta, g):
        m = self.slot(f"adam.m.{name}", theta)
        v = self.slot(f"adam.v.{name}", theta)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.steps)
        v_hat = v / (1 - self.beta2 ** self.steps)
        theta -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
