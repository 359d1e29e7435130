"""Kernels of section 2.4's other reparameterizable families: Laplace(mu, b)
and logistic(mu, s) over the real line, each parameterized by its location
and the log of its scale, as the Gaussian is by mu and logvar, and the KL of
any location-scale family to N(0, I).

Written as `kernels` is (see its docstring): numpy for exp and log of whole
arrays, Numba for the fused arithmetic, ``error_model="numpy"``, constants
of the input's dtype, and only reassociation of fastmath, for row sums.
`distributions` wraps them with their derivatives.
"""
import numpy as np

from minivae.kernels import REASSOCIATE, mu_plus_sigma_eps
from numba import njit  # noqa: E402  (after kernels, which sets Numba's cache first)


def location_scale(mu, logscale, eps):
    """z = mu + b * eps with b = exp(logscale), elementwise on (n, j): the
    location-scale route of section 2.4; returns z and b."""
    scale = np.exp(logscale)
    return mu_plus_sigma_eps(mu, scale, eps), scale


def location_scale_kl(mu, logscale, entropy, variance):
    """KL(q || N(0, I)) per row, (n, j) -> (n,), for q = mu + b eps, b = exp(logscale),
    whose standard member eps has differential entropy `entropy` and variance
    `variance`; returns it and b^2, which the derivative reuses.

    E_q[log q] = -(entropy + log b) and E_q[log N(z; 0, 1)] = -1/2 (log 2 pi + E[z^2])
    with E[z^2] = mu^2 + variance b^2, so per dimension
    KL = 1/2 log 2 pi - entropy - log b + 1/2 (mu^2 + variance b^2).
    """
    scale2 = np.exp(logscale + logscale)
    t = mu.dtype.type
    return _location_scale_kl_rows(mu, logscale, scale2,
                                   t(0.5 * np.log(2 * np.pi) - entropy), t(variance)), scale2


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _location_scale_kl_rows(mu, logscale, scale2, constant, variance):
    n, m = mu.shape
    zero, half = mu.dtype.type(0), mu.dtype.type(0.5)
    out = np.empty(n, mu.dtype)
    for i in range(n):
        s = zero
        for j in range(m):
            s += constant - logscale[i, j] + half * (mu[i, j] * mu[i, j] + variance * scale2[i, j])
        out[i] = s
    return out


@njit(cache=True, error_model="numpy")
def location_scale_kl_grad(mu, scale2, variance, g):
    """(dKL/dmu, dKL/dlogscale) scaled by g_i: (g mu, g (variance b^2 - 1))."""
    n, m = mu.shape
    one = mu.dtype.type(1)
    g_mu = np.empty_like(mu)
    g_logscale = np.empty_like(mu)
    for i in range(n):
        for j in range(m):
            g_mu[i, j] = g[i] * mu[i, j]
            g_logscale[i, j] = g[i] * (variance * scale2[i, j] - one)
    return g_mu, g_logscale


def laplace_log_prob(z, mu, logscale):
    """log Laplace(z; mu, b) = sum_j -(log 2 + log b + |z - mu| / b) per row,
    (n, d) -> (n,), with b = exp(logscale); returns it and 1 / b, (n, d)."""
    inv_scale = np.exp(-logscale)
    return _laplace_rows(z, mu, logscale, inv_scale), inv_scale


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _laplace_rows(z, mu, logscale, inv_scale):
    n, d = z.shape
    zero = z.dtype.type(0)
    log_2 = z.dtype.type(np.log(2.0))
    out = np.empty(n, z.dtype)
    for i in range(n):
        s = zero
        for j in range(d):
            s += log_2 + logscale[i, j] + abs(z[i, j] - mu[i, j]) * inv_scale[i, j]
        out[i] = -s
    return out


@njit(cache=True, error_model="numpy")
def laplace_log_prob_grad(z, mu, inv_scale, g):
    """Gradients of g_i * laplace_log_prob with respect to (z, mu, logscale).

    With r = sign(z - mu) / b:  d/dz = -r,  d/dmu = r,  d/dlogscale = |z - mu| / b - 1;
    at z = mu the subgradient 0 is taken for z and mu.
    """
    n, d = z.shape
    zero, one = z.dtype.type(0), z.dtype.type(1)
    g_z = np.empty_like(z)
    g_mu = np.empty_like(z)
    g_logscale = np.empty_like(z)
    for i in range(n):
        for j in range(d):
            diff = z[i, j] - mu[i, j]
            r = inv_scale[i, j] if diff > zero else (-inv_scale[i, j] if diff < zero else diff)
            g_z[i, j] = -g[i] * r
            g_mu[i, j] = g[i] * r
            g_logscale[i, j] = g[i] * (diff * r - one)
    return g_z, g_mu, g_logscale


def logistic_inverse_cdf(mu, logscale, u):
    """z = F^-1(u) = mu + s log(u / (1 - u)) with s = exp(logscale), elementwise on
    (n, j): the inverse-CDF route of section 2.4, u in (0, 1).  Returns z, and
    s and log(u / (1 - u)), which the derivative reuses."""
    scale = np.exp(logscale)
    logit = np.log(u) - np.log1p(-u)
    return mu_plus_sigma_eps(mu, scale, logit), scale, logit


def logistic_log_prob(z, mu, logscale):
    """log Logistic(z; mu, s) per row, (n, d) -> (n,), with s = exp(logscale) and
    t = (z - mu) / s:  sum_j -(log s + |t| + 2 log(1 + e^-|t|)), the density
    e^-t / (s (1 + e^-t)^2) written so that no exp can overflow.  Returns it,
    and t and e^-|t| and 1 / s, (n, d) each, which the derivative reuses."""
    inv_scale = np.exp(-logscale)
    t = (z - mu) * inv_scale
    e = np.exp(-np.abs(t))
    return _logistic_rows(logscale, t, np.log1p(e)), t, e, inv_scale


@njit(cache=True, error_model="numpy", fastmath=REASSOCIATE)
def _logistic_rows(logscale, t, log1p_e):
    n, d = t.shape
    zero, two = t.dtype.type(0), t.dtype.type(2)
    out = np.empty(n, t.dtype)
    for i in range(n):
        s = zero
        for j in range(d):
            s += logscale[i, j] + abs(t[i, j]) + two * log1p_e[i, j]
        out[i] = -s
    return out


@njit(cache=True, error_model="numpy")
def logistic_log_prob_grad(t, e, inv_scale, g):
    """Gradients of g_i * logistic_log_prob with respect to (z, mu, logscale).

    d log p / dt = -tanh(t / 2), and tanh(t / 2) = sign(t) (1 - e^-|t|) / (1 + e^-|t|),
    so with h = tanh(t / 2):  d/dz = -h / s,  d/dmu = h / s,  d/dlogscale = t h - 1.
    """
    n, d = t.shape
    zero, one = t.dtype.type(0), t.dtype.type(1)
    g_z = np.empty_like(t)
    g_mu = np.empty_like(t)
    g_logscale = np.empty_like(t)
    for i in range(n):
        for j in range(d):
            h = (one - e[i, j]) / (one + e[i, j])
            if t[i, j] < zero:
                h = -h
            g_mu[i, j] = g[i] * h * inv_scale[i, j]
            g_z[i, j] = -g_mu[i, j]
            g_logscale[i, j] = g[i] * (t[i, j] * h - one)
    return g_z, g_mu, g_logscale
