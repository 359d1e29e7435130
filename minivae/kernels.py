"""Kernels: the loops that do the arithmetic, in float32 or float64.

Each kernel works on plain numpy arrays and knows nothing of tensors or of
the VAE; `ops` and `distributions` wrap them with their derivatives.  The
work is split by what each tool does best, as measured in
benchmarks/RESULTS.md:

- matmuls go to BLAS (`matmul`: numpy's `@`, or a large product as two
  halves of single-threaded OpenBLAS calls, as `threads` decides), but
  for a left operand that is mostly zeros, such as binarized pixels,
  whose zeros a Numba loop skips (`sparse`); `matmul_loop` is the product
  written out in Numba, to be read;
- exp, log1p and tanh of whole arrays go to numpy, whose float32 ufuncs
  are SIMD-vectorized, while Numba compiles them to one libm call per
  element, tens of times slower;
- the arithmetic around them is fused by Numba into one pass over memory,
  which numpy would spread over several passes and temporary arrays.

The kernels of the Laplace and logistic posteriors (section 2.4) are in
`family_kernels`, and the optimizer's passes over the parameters (the
gradient's norm and the updates) in `updates`, written the same way.

Numba kernels are compiled on first use for the dtype they are given and
cached on disk (``cache=True``; in a per-user directory when the package's
own is not writable, see `numba_cache`), so a second process loads them.
They use
``error_model="numpy"``: a division by zero gives Inf or NaN as in NumPy
instead of a Python exception, and without that check in every division
the loops vectorize (the Adam update ran 7x faster).  These kernels run
on one thread: at their sizes starting threads costs more than it saves
(benchmarks/RESULTS.md); `updates` spreads its passes over the cores
`threads` allows.  Constants are made with
``x.dtype.type(c)`` or ``type(v)(c)``, since a bare ``1.0`` is a float64
literal and would promote float32 arithmetic.  Of ``fastmath`` only
reassociation is used, for row sums (see REASSOCIATE): no kernel assumes
its inputs finite, so NaN and Inf propagate to the checks that look for them.
"""
import numpy as np

from minivae import numba_cache, sparse, threads

numba_cache.configure()   # before Numba is imported: where it may cache
from numba import njit, prange  # noqa: E402

# Row sums may be added in any order, so the compiler can vectorize them.  Only
# this one fastmath flag: without "nnan"/"ninf", NaN and Inf still propagate.
REASSOCIATE = {"reassoc"}

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
    """(n, k) @ (k, m) -> (n, m): the fast path, which every op uses.

    A large product whose row-major left operand is mostly zeros, such as
    the binarized pixels x in the first layer's x W, skips those zeros
    (`sparse`).  Any other product goes to BLAS, several times faster
    than `matmul_loop` on these shapes (benchmarks/RESULTS.md); `threads`
    decides how (numpy's `@`, or two halves of OpenBLAS calls) and on how
    many cores.  Neither choice depends on the cores, so neither changes
    the result.
    """
    if sparse.mostly_zeros(a, b):
        return sparse.zero_skipping_matmul(a, b)
    return threads.matmul(a, b)


# ---------------------------------------------------------------- activations

def _sigmoid(x):
    """1 / (1 + e^-x), stable for any x: e^-|x| never overflows."""
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


def activate(x, act):
    """y = act(x) elementwise, any shape; `act` is a code from ACTIVATIONS."""
    if act == TANH:
        return np.tanh(x)
    if act == SIGMOID:
        return _sigmoid(x)
    if act == RELU:
        return np.maximum(x, 0)                  # NaN stays NaN
    if act == SOFTPLUS:
        with np.errstate(invalid="ignore"):      # NaN in, NaN out, without a warning
            return np.logaddexp(x, 0)            # log(1 + e^x) without overflow
    return x.copy()


def bias_activate(pre, b, act):
    """In place: pre <- act(pre + b), for pre (n, m) and b (m,).

    Run on a matmul's fresh output, this is a linear layer's bias and
    activation with no new array for tanh, relu and identity.
    """
    pre += b
    if act == TANH:
        np.tanh(pre, out=pre)
    elif act == RELU:
        np.maximum(pre, 0, out=pre)
    elif act != IDENTITY:
        pre[...] = activate(pre, act)


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
def activate_grad(y, g, act):
    """g * act'(x) elementwise, from the output y = act(x) and upstream g."""
    yf, gf = y.ravel(), g.ravel()
    out = np.empty_like(yf)
    for i in range(yf.size):
        out[i] = gf[i] * _activate_slope(yf[i], act)
    return out.reshape(y.shape)


def bias_activate_grad(y, g, act):
    """The backward of `bias_activate` on (n, m): g_pre = g * act'(pre), from
    the output y, and the bias gradient g_b = g_pre summed over rows (m,).

    Two passes, the slope in Numba and the column sums in numpy, measured
    faster than one fused loop, whose accumulation into g_b did not vectorize.
    """
    g_pre = activate_grad(y, g, act)
    return g_pre, g_pre.sum(axis=0)


# ---------------------------------------------------------------- Bernoulli

def bernoulli_log_prob(x, logits):
    """sum_j x log y + (1 - x) log(1 - y), y = sigmoid(logits): (n, d) -> (n,),
    and its derivative x - sigmoid(logits) with respect to the logits, (n, d).

    Written from the logits as x l - softplus(l), with softplus(l) =
    max(l, 0) + log(1 + e^-|l|): exact for logits of any magnitude
    (Appendix C, Bernoulli MLP).  e^-|l| and its log1p are numpy passes.
    """
    e = np.abs(logits)
    np.exp(np.negative(e, out=e), out=e)         # e^-|l| in (0, 1]: cannot overflow
    return _bernoulli_rows(x, logits, e, np.log1p(e))


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _bernoulli_rows(x, logits, e, log1p_e):
    n, d = logits.shape
    zero, one = logits.dtype.type(0), logits.dtype.type(1)
    log_p = np.empty(n, logits.dtype)
    x_minus_y = np.empty_like(logits)
    for i in range(n):
        s = zero
        for j in range(d):
            l = logits[i, j]
            s += x[i, j] * l - (l if l > zero else zero) - log1p_e[i, j]
            r = one / (one + e[i, j])            # sigmoid(|l|)
            x_minus_y[i, j] = x[i, j] - (r if l >= zero else e[i, j] * r)
        log_p[i] = s
    return log_p, x_minus_y


# ---------------------------------------------------------------- Gaussian

def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, (n, j) -> (n,), and
    sigma^2 = exp(logvar), (n, j), which its derivative reuses.

    -KL = 1/2 sum_j (1 + log sigma^2 - mu^2 - sigma^2)   (Appendix B)
    """
    var = np.exp(logvar)
    return _kl_rows(mu, logvar, var), var


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _kl_rows(mu, logvar, var):
    n, m = mu.shape
    zero, half, one = mu.dtype.type(0), mu.dtype.type(0.5), mu.dtype.type(1)
    out = np.empty(n, mu.dtype)
    for i in range(n):
        s = zero
        for j in range(m):
            s += var[i, j] + mu[i, j] * mu[i, j] - logvar[i, j] - one
        out[i] = half * s
    return out


@njit(cache=True, error_model="numpy")
def gaussian_kl_grad(mu, var, g):
    """(dKL/dmu, dKL/dlogvar) scaled by g_i: (g mu, g (sigma^2 - 1) / 2)."""
    n, m = mu.shape
    half, one = mu.dtype.type(0.5), mu.dtype.type(1)
    g_mu = np.empty_like(mu)
    g_logvar = np.empty_like(mu)
    for i in range(n):
        for j in range(m):
            g_mu[i, j] = g[i] * mu[i, j]
            g_logvar[i, j] = g[i] * half * (var[i, j] - one)
    return g_mu, g_logvar


def gaussian_log_prob(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))) per row, (n, d) -> (n,), and
    1 / sigma^2 = exp(-logvar), (n, d), which its derivative reuses.

    sum_j -1/2 (log 2 pi + logvar + (x - mu)^2 / sigma^2)   (Appendix C)
    """
    inv_var = np.exp(-logvar)
    return _gaussian_rows(x, mu, logvar, inv_var), inv_var


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _gaussian_rows(x, mu, logvar, inv_var):
    n, d = x.shape
    zero, half = x.dtype.type(0), x.dtype.type(0.5)
    log_2pi = x.dtype.type(np.log(2 * np.pi))
    out = np.empty(n, x.dtype)
    for i in range(n):
        s = zero
        for j in range(d):
            r = x[i, j] - mu[i, j]
            s += log_2pi + logvar[i, j] + r * r * inv_var[i, j]
        out[i] = -half * s
    return out


@njit(cache=True, error_model="numpy")
def gaussian_log_prob_grad(x, mu, inv_var, g):
    """Gradients of g_i * gaussian_log_prob with respect to (x, mu, logvar).

    With r = (x - mu) / sigma^2:  d/dx = -r,  d/dmu = r,
    d/dlogvar = ((x - mu) r - 1) / 2.
    """
    n, d = x.shape
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    g_x = np.empty_like(x)
    g_mu = np.empty_like(x)
    g_logvar = np.empty_like(x)
    for i in range(n):
        for j in range(d):
            diff = x[i, j] - mu[i, j]
            r = diff * inv_var[i, j]
            g_x[i, j] = -g[i] * r
            g_mu[i, j] = g[i] * r
            g_logvar[i, j] = g[i] * half * (diff * r - one)
    return g_x, g_mu, g_logvar


# ---------------------------------------------------------------- reparameterization

def reparameterize(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(logvar / 2), elementwise on (n, j)
    (eq. 10); returns z and sigma, which the derivative reuses."""
    sigma = np.exp(logvar * logvar.dtype.type(0.5))
    return mu_plus_sigma_eps(mu, sigma, eps), sigma


@njit(cache=True, error_model="numpy")
def mu_plus_sigma_eps(mu, sigma, eps):
    """z = mu + sigma * eps elementwise, (n, j) x3 -> (n, j): the location-scale
    step of every reparameterized sampler (eq. 10; `family_kernels` too)."""
    n, m = mu.shape
    z = np.empty_like(mu)
    for i in range(n):
        for j in range(m):
            z[i, j] = mu[i, j] + sigma[i, j] * eps[i, j]
    return z


@njit(cache=True, error_model="numpy")
def reparameterize_grad(sigma, eps, g, slope):
    """(g dz/dlog, g dz/deps) = (g slope eps sigma, g sigma) for z = mu + sigma eps
    with sigma = exp(slope * log): slope 1/2 for a log-variance, 1 for a log-scale;
    dz/dmu = 1.  `slope` is a scalar of sigma's dtype."""
    n, m = sigma.shape
    g_log = np.empty_like(sigma)
    g_eps = np.empty_like(sigma)
    for i in range(n):
        for j in range(m):
            g_eps[i, j] = g[i, j] * sigma[i, j]
            g_log[i, j] = slope * g_eps[i, j] * eps[i, j]
    return g_log, g_eps
