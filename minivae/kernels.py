"""Numba kernels: the loops that do the arithmetic, in float32 or float64.

Each kernel works on plain numpy arrays and knows nothing of tensors or of
the VAE; `ops` and `distributions` wrap them with their derivatives.  Only
`matmul_loop` runs threads: the elementwise kernels touch at most a few
hundred thousand numbers per call, where starting threads costs more than
it saves and competes with BLAS for the two cores (benchmarks/RESULTS.md).  Every
kernel is compiled on first use for the dtype it is given and cached on disk
(``cache=True``), so a second process loads it instead of compiling again.

Constants are made with ``x.dtype.type(c)`` or ``type(v)(c)``: a bare
``1.0`` is a float64 literal and would promote float32 arithmetic to float64.  No kernel uses
``fastmath``, so NaN and Inf propagate to the checks that look for them.
"""
import numpy as np
from numba import njit, prange

# Activation codes shared by `activate`, `activate_grad` and `bias_activate`.
IDENTITY, TANH, SIGMOID, RELU, SOFTPLUS = 0, 1, 2, 3, 4
ACTIVATIONS = {"identity": IDENTITY, "tanh": TANH, "sigmoid": SIGMOID,
               "relu": RELU, "softplus": SOFTPLUS}


# ---------------------------------------------------------------- matmul

@njit(cache=True, parallel=True)
def matmul_loop(a, b):
    """(n, k) @ (k, m) -> (n, m), written out as loops to be read.

    Rows of the output are independent, so they run in parallel.  The
    inner loop walks a row of `b` and a row of `out` with unit stride,
    which the compiler turns into SIMD code.
    """
    n, k = a.shape
    m = b.shape[1]
    out = np.zeros((n, m), a.dtype)
    for i in prange(n):
        for p in range(k):
            a_ip = a[i, p]
            for j in range(m):
                out[i, j] += a_ip * b[p, j]
    return out


def matmul(a, b):
    """(n, k) @ (k, m) -> (n, m) through numpy's BLAS: the fast path.

    On the benchmark's shapes BLAS is several times faster than
    `matmul_loop` (benchmarks/RESULTS.md), so every op uses this one.
    """
    return a @ b


# ---------------------------------------------------------------- activations

@njit(cache=True)
def _activate(v, act):
    """act(v) for one scalar; sigmoid and softplus in their stable forms."""
    zero, one = type(v)(0), type(v)(1)
    if act == TANH:
        return np.tanh(v)
    if act == SIGMOID:
        if v >= zero:
            return one / (one + np.exp(-v))
        e = np.exp(v)
        return e / (one + e)
    if act == RELU:
        return zero if v <= zero else v    # NaN <= 0 is False: NaN passes through
    if act == SOFTPLUS:
        # log(1 + e^v) = max(v, 0) + log(1 + e^-|v|): no overflow for any v
        return max(v, zero) + np.log1p(np.exp(-abs(v)))
    return v


@njit(cache=True)
def _activate_slope(y, act):
    """act'(v) written in terms of the output y = act(v)."""
    zero, one = type(y)(0), type(y)(1)
    if act == TANH:
        return one - y * y                     # tanh' = 1 - tanh^2
    if act == SIGMOID:
        return y * (one - y)                   # s' = s (1 - s)
    if act == RELU:
        return one if y > zero else zero       # relu' = [v > 0]
    if act == SOFTPLUS:
        return -np.expm1(-y)                   # softplus' = sigmoid(v) = 1 - e^-y
    return one


@njit(cache=True)
def activate(x, act):
    """y = act(x) elementwise, any shape; `act` is a code from ACTIVATIONS."""
    xf = x.ravel()
    y = np.empty_like(xf)
    for i in range(xf.size):
        y[i] = _activate(xf[i], act)
    return y.reshape(x.shape)


@njit(cache=True)
def activate_grad(y, g, act):
    """g * act'(x) elementwise, from the output y = act(x) and upstream g."""
    yf = y.ravel()
    gf = g.ravel()
    out = np.empty_like(yf)
    for i in range(yf.size):
        out[i] = gf[i] * _activate_slope(yf[i], act)
    return out.reshape(y.shape)


@njit(cache=True)
def bias_activate(pre, b, act):
    """In place: pre[i, j] <- act(pre[i, j] + b[j]) for pre (n, m), b (m,).

    Run on the matmul's output, this fuses a linear layer's bias and
    activation into one pass over memory.
    """
    n, m = pre.shape
    for i in range(n):
        for j in range(m):
            pre[i, j] = _activate(pre[i, j] + b[j], act)


# ---------------------------------------------------------------- Bernoulli

@njit(cache=True)
def bernoulli_log_prob(x, logits):
    """sum_j x log y + (1 - x) log(1 - y), y = sigmoid(logits): (n, d) -> (n,).

    Written from the logits as x l - softplus(l), which stays exact for
    logits of any magnitude (Appendix C, Bernoulli MLP).
    """
    n, d = logits.shape
    zero = logits.dtype.type(0)
    out = np.empty(n, logits.dtype)
    for i in range(n):
        s = zero
        for j in range(d):
            l = logits[i, j]
            s += x[i, j] * l - (max(l, zero) + np.log1p(np.exp(-abs(l))))
        out[i] = s
    return out


@njit(cache=True)
def bernoulli_log_prob_grad(x, logits, g):
    """d/dlogits of g_i * bernoulli_log_prob: g_i (x - sigmoid(l)), (n, d)."""
    n, d = logits.shape
    out = np.empty_like(logits)
    for i in range(n):
        for j in range(d):
            out[i, j] = g[i] * (x[i, j] - _activate(logits[i, j], SIGMOID))
    return out


# ---------------------------------------------------------------- Gaussian

@njit(cache=True)
def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: (n, j) -> (n,).

    -KL = 1/2 sum_j (1 + log sigma^2 - mu^2 - sigma^2)   (Appendix B)
    """
    n, m = mu.shape
    zero, half, one = mu.dtype.type(0), mu.dtype.type(0.5), mu.dtype.type(1)
    out = np.empty(n, mu.dtype)
    for i in range(n):
        s = zero
        for j in range(m):
            lv = logvar[i, j]
            s += np.exp(lv) + mu[i, j] * mu[i, j] - lv - one
        out[i] = half * s
    return out


@njit(cache=True)
def gaussian_kl_grad(mu, logvar, g):
    """(dKL/dmu, dKL/dlogvar) scaled by g_i: (g mu, g (exp(logvar) - 1) / 2)."""
    n, m = mu.shape
    half, one = mu.dtype.type(0.5), mu.dtype.type(1)
    gmu = np.empty_like(mu)
    glogvar = np.empty_like(logvar)
    for i in range(n):
        for j in range(m):
            gmu[i, j] = g[i] * mu[i, j]
            glogvar[i, j] = g[i] * half * (np.exp(logvar[i, j]) - one)
    return gmu, glogvar


@njit(cache=True)
def gaussian_log_prob(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))) per row: (n, d) -> (n,).

    sum_j -1/2 (log 2 pi + logvar + (x - mu)^2 / exp(logvar))   (Appendix C)
    """
    n, d = x.shape
    zero, half = x.dtype.type(0), x.dtype.type(0.5)
    log_2pi = x.dtype.type(np.log(2 * np.pi))
    out = np.empty(n, x.dtype)
    for i in range(n):
        s = zero
        for j in range(d):
            r = x[i, j] - mu[i, j]
            s += log_2pi + logvar[i, j] + r * r * np.exp(-logvar[i, j])
        out[i] = -half * s
    return out


@njit(cache=True)
def gaussian_log_prob_grad(x, mu, logvar, g):
    """Gradients of g_i * gaussian_log_prob with respect to (x, mu, logvar).

    With r = (x - mu) / sigma^2:  d/dx = -r,  d/dmu = r,
    d/dlogvar = ((x - mu) r - 1) / 2.
    """
    n, d = x.shape
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    gx = np.empty_like(x)
    gmu = np.empty_like(x)
    glogvar = np.empty_like(x)
    for i in range(n):
        for j in range(d):
            diff = x[i, j] - mu[i, j]
            r = diff * np.exp(-logvar[i, j])
            gx[i, j] = -g[i] * r
            gmu[i, j] = g[i] * r
            glogvar[i, j] = g[i] * half * (diff * r - one)
    return gx, gmu, glogvar


# ---------------------------------------------------------------- reparameterization

@njit(cache=True)
def reparameterize(mu, logvar, eps):
    """z = mu + exp(logvar / 2) * eps, elementwise on (n, j)   (eq. 10)."""
    n, m = mu.shape
    half = mu.dtype.type(0.5)
    z = np.empty_like(mu)
    for i in range(n):
        for j in range(m):
            z[i, j] = mu[i, j] + np.exp(half * logvar[i, j]) * eps[i, j]
    return z


@njit(cache=True)
def reparameterize_grad(logvar, eps, g):
    """(dz/dlogvar * g, dz/deps * g) = (g eps sigma / 2, g sigma); dz/dmu = 1."""
    n, m = logvar.shape
    half = logvar.dtype.type(0.5)
    glogvar = np.empty_like(logvar)
    geps = np.empty_like(logvar)
    for i in range(n):
        for j in range(m):
            sigma = np.exp(half * logvar[i, j])
            geps[i, j] = g[i, j] * sigma
            glogvar[i, j] = half * geps[i, j] * eps[i, j]
    return glogvar, geps


# ---------------------------------------------------------------- optimizer updates
# One pass over a parameter and its state per step, in place.  g is scaled
# by `scale` (gradient clipping) and gets `weight_decay * theta` added (the
# prior's gradient) inside the loop, so no temporary arrays are made.

@njit(cache=True)
def sgd_update(theta, g, velocity, lr, momentum, weight_decay, scale):
    """v <- momentum v + g';  theta <- theta - lr v,  with g' = scale g + wd theta."""
    t, gf, v = theta.ravel(), g.ravel(), velocity.ravel()
    lr, momentum = t.dtype.type(lr), t.dtype.type(momentum)
    weight_decay, scale = t.dtype.type(weight_decay), t.dtype.type(scale)
    for i in range(t.size):
        v[i] = momentum * v[i] + scale * gf[i] + weight_decay * t[i]
        t[i] -= lr * v[i]


@njit(cache=True)
def adagrad_update(theta, g, G, lr, eps, weight_decay, scale):
    """G <- G + g'^2;  theta <- theta - lr g' / (sqrt(G) + eps)."""
    t, gf, Gf = theta.ravel(), g.ravel(), G.ravel()
    lr, eps = t.dtype.type(lr), t.dtype.type(eps)
    weight_decay, scale = t.dtype.type(weight_decay), t.dtype.type(scale)
    for i in range(t.size):
        gi = scale * gf[i] + weight_decay * t[i]
        Gf[i] += gi * gi
        t[i] -= lr * gi / (np.sqrt(Gf[i]) + eps)


@njit(cache=True)
def adam_update(theta, g, m, v, lr, beta1, beta2, eps, step, weight_decay, scale):
    """Adam: m, v <- running means of g' and g'^2; theta <- theta - lr m^ / (sqrt(v^) + eps),
    with the bias corrections m^ = m / (1 - beta1^step), v^ = v / (1 - beta2^step)."""
    t, gf, mf, vf = theta.ravel(), g.ravel(), m.ravel(), v.ravel()
    dtype = t.dtype.type
    one = dtype(1)
    b1, b2, eps = dtype(beta1), dtype(beta2), dtype(eps)
    weight_decay, scale = dtype(weight_decay), dtype(scale)
    step_size = dtype(lr / (1 - beta1 ** step))          # folds in m's bias correction
    v_correction = dtype(1 / np.sqrt(1 - beta2 ** step))  # sqrt(v^) = sqrt(v) * this
    for i in range(t.size):
        gi = scale * gf[i] + weight_decay * t[i]
        mf[i] = b1 * mf[i] + (one - b1) * gi
        vf[i] = b2 * vf[i] + (one - b2) * gi * gi
        t[i] -= step_size * mf[i] / (np.sqrt(vf[i]) * v_correction + eps)
