"""The reference JAX VAE that benchmarks/bench_epoch.py times against minivae.

The same model as minivae.models.vae.VAE with a Bernoulli decoder and estimator B
(analytic KL, eq. 7, L = 1), written the way a JAX user would: parameters in
a dict, a pure loss function, jax.value_and_grad for the gradients, and the
whole training step (loss, gradients, optimizer update) under one jax.jit,
so XLA fuses every elementwise op of the forward pass, the backward pass and
the update.  The loss is

    -ELBO = BCE-with-logits(logits, x) summed over pixels + KL(q(z|x) || p(z)),

averaged over the minibatch: what minivae computes as -model.elbo(x, eps).mean().
Parameters carry minivae's names and layout ('encoder.mu.W' is (in, out),
as in minivae and in a flax Dense kernel; 'encoder.mu.b' its bias), so
weights and gradients compare with minivae's without renaming or transposing.

Adam and Adagrad are written by hand in jax.numpy, not taken from optax, so
that their update rules are minivae's, operation for operation
(minivae/optim.py, minivae/updates.py adam_update and adagrad_update), and
the float64 check before timing can compare the parameters after a few
steps, not only the loss and gradients: epsilon is added to sqrt(v) after
v's bias correction (Adam) and to sqrt(G) (Adagrad), the bias corrections
are computed in double precision on the host and rounded to the parameters'
dtype, and weight decay is added to the gradient (L2, as minivae and
torch.optim.Adam do; not AdamW's decoupled decay; the benchmark sets it to
0 for every framework).  optax's Adam is the same rule up to rounding, but
optax's Adagrad is not minivae's: it adds eps inside the square root,
rsqrt(G + eps), and starts G at 0.1, so its parameters would differ after
one step by far more than rounding.  The update is traced inside the jitted
step, where XLA fuses it with the backward pass, as an optax update would be.

The step donates the parameters and the optimizer state (the trainer keeps
only the step's outputs), so XLA may write the new values into the old
buffers; the minibatch and eps are not donated (they come from numpy).
How many threads XLA uses, and how the float64 check enables x64 without
touching the float32 timings, is up to bench_epoch.py (import_jax,
check_same_computation; its docstring says why).

Only the benchmark imports this file; minivae never imports jax.
"""
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


def body(params, prefix, h, act):
    """The hidden layers of `prefix` ('encoder' or 'decoder'): act(h W + b), in order."""
    i = 0
    while f"{prefix}.hidden.{i}.W" in params:
        h = act(h @ params[f"{prefix}.hidden.{i}.W"] + params[f"{prefix}.hidden.{i}.b"])
        i += 1
    return h


def head(params, name, h):
    """An affine head of the MLP: h W + b with `name`'s weights."""
    return h @ params[f"{name}.W"] + params[f"{name}.b"]


def loss(params, x, eps, activation="tanh"):
    """-ELBO (eq. 7, L = 1) averaged over the minibatch; eps (B, J) ~ N(0, I)."""
    act = ACTIVATIONS[activation]
    h = body(params, "encoder", x, act)
    mu, logvar = head(params, "encoder.mu", h), head(params, "encoder.logvar", h)
    z = mu + jnp.exp(0.5 * logvar) * eps                              # eq. 10
    logits = head(params, "decoder.logits", body(params, "decoder", z, act))
    bce = jnp.sum(jax.nn.softplus(logits) - x * logits)   # -log p(x|z), Bernoulli logits
    kl = -0.5 * jnp.sum(1 + logvar - mu ** 2 - jnp.exp(logvar))    # Appendix B
    return (bce + kl) / x.shape[0]


def init_params(x_dim=784, hidden=(500,), latent=20, dtype=np.float32, seed=0):
    """JAX's own initial weights, every entry N(0, 0.01^2) as in the paper, from jax.random."""
    widths = {"encoder": (x_dim,) + tuple(hidden), "decoder": (latent,) + tuple(hidden)[::-1]}
    shapes = {}
    for prefix, w in widths.items():
        for i, (a, b) in enumerate(zip(w, w[1:])):
            shapes[f"{prefix}.hidden.{i}"] = (a, b)
    shapes.update({"encoder.mu": (hidden[-1], latent), "encoder.logvar": (hidden[-1], latent),
                   "decoder.logits": (hidden[0], x_dim)})
    keys = iter(jax.random.split(jax.random.key(seed), 2 * len(shapes)))
    params = {}
    for name, (a, b) in shapes.items():
        params[f"{name}.W"] = 0.01 * jax.random.normal(next(keys), (a, b), dtype)
        params[f"{name}.b"] = 0.01 * jax.random.normal(next(keys), (b,), dtype)
    return params


# ---------------------------------------------------------------- optimizers, by hand
# Frozen dataclasses: hashable, so an optimizer is a static argument of the
# jitted step and equal optimizers share one compiled step.


@dataclass(frozen=True)
class Adam:
    """minivae's Adam: m, v <- running means of g' and g'^2, g' = g + weight_decay theta;
    theta <- theta - lr m^ / (sqrt(v^) + eps), m^ = m / (1 - beta1^t), v^ = v / (1 - beta2^t)."""
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def init(self, params):
        """Adam's state: first and second moments m, v, zero for every parameter."""
        return {"m": {k: jnp.zeros_like(p) for k, p in params.items()},
                "v": {k: jnp.zeros_like(p) for k, p in params.items()}}

    def scalars(self, step, dtype):
        """Step `step`'s bias corrections, computed on the host as minivae's kernel does."""
        return (dtype.type(self.lr / (1 - self.beta1 ** step)),          # folds in m's
                dtype.type(1 / np.sqrt(1 - self.beta2 ** step)))          # sqrt(v^) = sqrt(v) *

    def update(self, params, grads, state, scalars):
        """One Adam step (traced inside the jitted step): new parameters and state."""
        step_size, v_correction = scalars
        new_params, m, v = {}, {}, {}
        for k, theta in params.items():
            t = theta.dtype.type    # numpy scalars in the parameters' dtype, like the kernel's
            one, b1, b2, eps = t(1), t(self.beta1), t(self.beta2), t(self.eps)
            g = grads[k] + t(self.weight_decay) * theta if self.weight_decay else grads[k]
            m[k] = b1 * state["m"][k] + (one - b1) * g
            v[k] = b2 * state["v"][k] + (one - b2) * g * g
            new_params[k] = theta - step_size * m[k] / (jnp.sqrt(v[k]) * v_correction + eps)
        return new_params, {"m": m, "v": v}


@dataclass(frozen=True)
class Adagrad:
    """minivae's Adagrad (the paper's): G <- G + g'^2, g' = g + weight_decay theta;
    theta <- theta - lr g' / (sqrt(G) + eps), G starting at zero."""
    lr: float = 0.02
    eps: float = 1e-8
    weight_decay: float = 0.0

    def init(self, params):
        """Adagrad's state: the sum of squared gradients G, zero for every parameter."""
        return {"G": {k: jnp.zeros_like(p) for k, p in params.items()}}

    def scalars(self, step, dtype):
        """Adagrad needs no per-step scalars."""
        return ()

    def update(self, params, grads, state, scalars):
        """One Adagrad step (traced inside the jitted step): new parameters and state."""
        new_params, G = {}, {}
        for k, theta in params.items():
            t = theta.dtype.type
            lr, eps = t(self.lr), t(self.eps)
            g = grads[k] + t(self.weight_decay) * theta if self.weight_decay else grads[k]
            G[k] = state["G"][k] + g * g
            new_params[k] = theta - lr * g / (jnp.sqrt(G[k]) + eps)
        return new_params, {"G": G}


# ---------------------------------------------------------------- the jitted functions


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step(optimizer, activation, params, state, scalars, x, eps):
    """One step, all of it compiled: (loss, gradients) by value_and_grad, then the update."""
    value, grads = jax.value_and_grad(loss)(params, x, eps, activation)
    params, state = optimizer.update(params, grads, state, scalars)
    return params, state, value


loss_and_grads = jax.jit(jax.value_and_grad(loss), static_argnums=3)


class JaxVAE:
    """Parameters, an optimizer and its state: one jitted step per call of `step`."""

    def __init__(self, optimizer, x_dim=784, hidden=(500,), latent=20, activation="tanh",
                 dtype=np.float32, init=None):
        self.optimizer, self.activation, self.dtype = optimizer, activation, np.dtype(dtype)
        if init is None:
            init = init_params(x_dim, hidden, latent, self.dtype)
        # Copies (jnp.array copies): the step donates them, and `init` may be numpy
        # arrays the caller reuses.
        self.params = {name: jnp.array(array, dtype=self.dtype) for name, array in init.items()}
        self.state = optimizer.init(self.params)
        self.steps = 0

    def step(self, x, eps):
        """One training step on x (B, D) and eps (B, J); the loss as a float (waits for it)."""
        self.steps += 1
        self.params, self.state, value = train_step(
            self.optimizer, self.activation, self.params, self.state,
            self.optimizer.scalars(self.steps, self.dtype), x, eps)
        return float(value)

    def loss_and_grads(self, x, eps):
        """The loss and its gradients (named like minivae's) at the current parameters."""
        value, grads = loss_and_grads(self.params, x, eps, self.activation)
        return float(value), {name: np.array(g) for name, g in grads.items()}

    def minivae_params(self):
        """Parameters named and shaped like minivae's, as numpy copies (the next step
        donates the buffers)."""
        return {name: np.array(p) for name, p in self.params.items()}
