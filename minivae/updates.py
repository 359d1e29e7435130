"""The optimizer's passes over the parameters: the gradient's squared norm,
and the SGD, Adagrad and Adam updates in place.

`optim` calls each once per parameter and step.  They are the loops big
enough to pay for threads (a weight of the paper's MNIST model has 392,000
elements): each is a Numba `prange` over both cores, or its one-core twin
(`numba_cache.one_core`), as `threads.spread()` says, and always the twin for
parameters under SPREAD_ELEMENTS.  Both give the same bits, so a run does
not depend on how many cores did its work:

- an update's elements are independent of one another;
- the squared norm is cut into the same PIECES fixed pieces as a product
  (`blas`), each piece summed in order by one thread and the pieces then
  added in order, whether the pieces ran at once or one after the other.

They are written like `kernels`: ``error_model="numpy"``, float32 scalars
for float32 parameters, and of ``fastmath`` only the reassociation of the
norm's sums.
"""
import math

import numpy as np

from minivae import numba_cache, threads
from minivae.blas import PIECES
from minivae.kernels import REASSOCIATE
from minivae.numba_cache import one_core

numba_cache.configure()   # before Numba is imported: where it may cache
from numba import njit, prange  # noqa: E402

SPREAD_ELEMENTS = 1 << 15   # smaller parameters run on one core: threads would cost more


def _on_cores(loop, loop_one_core, theta):   # the prange loop, or its one-core twin
    return loop if theta.size >= SPREAD_ELEMENTS and threads.spread() else loop_one_core


# ---------------------------------------------------------------- the gradient's norm

@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _piece_sum_of_squares(x):   # over a slice: a loop over range(lo, hi) did not vectorize
    s = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        s += v * v
    return s


@njit(cache=True, error_model="numpy", parallel=True)
def _sum_of_squares(x, pieces):
    sums = np.empty(pieces)
    for p in prange(pieces):
        sums[p] = _piece_sum_of_squares(x[x.size * p // pieces:x.size * (p + 1) // pieces])
    total = 0.0
    for p in range(pieces):
        total += sums[p]
    return total


_sum_of_squares_one_core = one_core(_sum_of_squares)


def squared_norm(g):
    """||g||^2 = sum_i g_i^2 over every element of g (any shape, float32 or
    float64), summed in float64: a float32 gradient's squares cannot overflow
    it.  NaN or Inf anywhere in g gives a result that is not finite."""
    return float(_on_cores(_sum_of_squares, _sum_of_squares_one_core, g)(g.ravel(), PIECES))


# ---------------------------------------------------------------- the updates
# One pass over a parameter and its state per step, in place.  g is scaled
# by `scale` (gradient clipping) and gets `weight_decay * theta` added (the
# prior's gradient) inside the loop, so no temporary arrays are made.
# The loops take flat arrays, float32 scalars for float32 parameters; the
# functions the optimizers call make them from what they pass (Python floats).


def _flat(x):
    """x viewed as flat; for an array that is not contiguous a ValueError,
    since ravel() would quietly update a copy."""
    if not x.flags.c_contiguous:
        raise ValueError(f"optimizer update: expected a contiguous array, got shape {x.shape} "
                         f"with strides {x.strides}")
    return x.reshape(-1)


@njit(cache=True, error_model="numpy", parallel=True)
def _sgd_flat(t, g, v, lr, momentum, weight_decay, scale):
    for i in prange(t.size):
        v[i] = momentum * v[i] + scale * g[i] + weight_decay * t[i]
        t[i] -= lr * v[i]


_sgd_flat_one_core = one_core(_sgd_flat)


def sgd_update(theta, g, velocity, lr, momentum, weight_decay, scale):
    """v <- momentum v + g';  theta <- theta - lr v,  with g' = scale g + wd theta."""
    d = theta.dtype.type
    _on_cores(_sgd_flat, _sgd_flat_one_core, theta)(
        _flat(theta), g.ravel(), _flat(velocity), d(lr), d(momentum), d(weight_decay), d(scale))


@njit(cache=True, error_model="numpy", parallel=True)
def _adagrad_flat(t, g, G, lr, eps, weight_decay, scale):
    for i in prange(t.size):
        gi = scale * g[i] + weight_decay * t[i]
        G[i] += gi * gi
        t[i] -= lr * gi / (np.sqrt(G[i]) + eps)


_adagrad_flat_one_core = one_core(_adagrad_flat)


def adagrad_update(theta, g, G, lr, eps, weight_decay, scale):
    """G <- G + g'^2;  theta <- theta - lr g' / (sqrt(G) + eps)."""
    d = theta.dtype.type
    _on_cores(_adagrad_flat, _adagrad_flat_one_core, theta)(
        _flat(theta), g.ravel(), _flat(G), d(lr), d(eps), d(weight_decay), d(scale))


@njit(cache=True, error_model="numpy", parallel=True)
def _adam_flat(t, g, m, v, b1, b2, eps, step_size, v_correction, weight_decay, scale):
    one = t.dtype.type(1)
    for i in prange(t.size):
        gi = scale * g[i] + weight_decay * t[i]
        m[i] = b1 * m[i] + (one - b1) * gi
        v[i] = b2 * v[i] + (one - b2) * gi * gi
        t[i] -= step_size * m[i] / (np.sqrt(v[i]) * v_correction + eps)


_adam_flat_one_core = one_core(_adam_flat)


def adam_update(theta, g, m, v, lr, beta1, beta2, eps, step, weight_decay, scale):
    """Adam: m, v <- running means of g' and g'^2; theta <- theta - lr m^ / (sqrt(v^) + eps),
    with the bias corrections m^ = m / (1 - beta1^step), v^ = v / (1 - beta2^step),
    computed in float64 once per call (1 - 0.999 loses five digits in float32)."""
    d = theta.dtype.type
    step_size = d(lr / (1 - beta1 ** step))              # folds in m's bias correction
    v_correction = d(1 / math.sqrt(1 - beta2 ** step))   # sqrt(v^) = sqrt(v) * this
    _on_cores(_adam_flat, _adam_flat_one_core, theta)(
        _flat(theta), g.ravel(), _flat(m), _flat(v), d(beta1), d(beta2), d(eps), step_size,
        v_correction, d(weight_decay), d(scale))
