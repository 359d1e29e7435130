"""The VAE's distributions as fused, differentiable ops (Appendix B and C,
and the reparameterizable families of section 2.4).

Each op runs one Numba kernel forward and one backward, over 2-D inputs
of shape (n, d): n datapoints (or samples) of dimension d.  The
log-densities and the KL sum over d and return one value per row, (n,),
as the per-datapoint terms of the ELBO.

The Gaussian is parameterized by its mean and log-variance, as in the
paper; Laplace(mu, b) and logistic(mu, s) by their location and log-scale.
`posteriors` assembles them into the families q(z|x) a VAE can use.
"""
import numpy as np

from minivae import family_kernels, kernels
from minivae.autograd import as_tensors, node, op


def _rows(name, **arrays):
    """The named inputs as Tensors of one dtype and one 2-D shape (n, d)."""
    tensors = as_tensors(list(arrays.values()), name)
    shape = tensors[0].shape
    if len(shape) != 2 or any(t.shape != shape for t in tensors):
        shapes = ", ".join(f"{k} {t.shape}" for k, t in zip(arrays, tensors))
        raise ValueError(f"{name}: expected inputs of one 2-D shape (n, d), got {shapes}")
    return tensors


@op
def bernoulli_log_prob(x, logits):
    """log p(x|z) = sum_j x_j log y_j + (1 - x_j) log(1 - y_j), y = sigmoid(logits).

    (n, d), (n, d) -> (n,).  Computed from the logits, so it is exact for
    logits of any size (the Bernoulli MLP decoder of Appendix C).
    """
    x, logits = _rows("bernoulli_log_prob", x=x, logits=logits)
    log_p, x_minus_y = kernels.bernoulli_log_prob(x.data, logits.data)

    def vjp(g):  # d/dx = logits, d/dlogits = x - sigmoid(logits)
        return (g[:, None] * logits.data if x.requires_grad else None,
                g[:, None] * x_minus_y)
    return node(log_p, (x, logits), vjp, "bernoulli_log_prob")


@op
def gaussian_log_prob(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))), summed over each row: (n, d) x3 -> (n,).

    The Gaussian MLP decoder of Appendix C, and log q(z|x) and log p(z)
    in SGVB estimator A (eq. 6).
    """
    x, mu, logvar = _rows("gaussian_log_prob", x=x, mu=mu, logvar=logvar)
    log_p, inv_var = kernels.gaussian_log_prob(x.data, mu.data, logvar.data)

    def vjp(g):  # see kernels.gaussian_log_prob_grad for the three derivatives
        return kernels.gaussian_log_prob_grad(x.data, mu.data, inv_var, g)
    return node(log_p, (x, mu, logvar), vjp, "gaussian_log_prob")


@op
def gaussian_kl(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row: (n, j) x2 -> (n,).

    -KL = 1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)), Appendix B;
    estimator B (eq. 7) uses it in place of sampling.
    """
    mu, logvar = _rows("gaussian_kl", mu=mu, logvar=logvar)
    kl, var = kernels.gaussian_kl(mu.data, logvar.data)

    def vjp(g):  # dKL/dmu = mu, dKL/dlogvar = (exp(logvar) - 1) / 2
        return kernels.gaussian_kl_grad(mu.data, var, g)
    return node(kl, (mu, logvar), vjp, "gaussian_kl")


@op
def reparameterize(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(logvar / 2): (n, j) x3 -> (n, j).

    The reparameterization trick (eq. 4 and 10): with eps ~ N(0, I) drawn
    outside the graph, z ~ N(mu, sigma^2) and gradients flow to mu, logvar.
    """
    mu, logvar, eps = _rows("reparameterize", mu=mu, logvar=logvar, eps=eps)
    z, sigma = kernels.reparameterize(mu.data, logvar.data, eps.data)

    def vjp(g):  # dz/dmu = 1, dz/dlogvar = eps sigma / 2, dz/deps = sigma
        g_logvar, g_eps = kernels.reparameterize_grad(sigma, eps.data, g, sigma.dtype.type(0.5))
        return g, g_logvar, g_eps
    return node(z, (mu, logvar, eps), vjp, "reparameterize")


@op
def location_scale(mu, logscale, eps):
    """z = mu + b * eps with b = exp(logscale): (n, j) x3 -> (n, j).

    Section 2.4's location-scale route: eps is drawn from the family's
    standard member (loc 0, scale 1; e.g. Laplace(0, 1)) outside the graph,
    and z then follows the family with location mu and scale b.
    """
    mu, logscale, eps = _rows("location_scale", mu=mu, logscale=logscale, eps=eps)
    z, scale = family_kernels.location_scale(mu.data, logscale.data, eps.data)

    def vjp(g):  # dz/dmu = 1, dz/dlogscale = eps b, dz/deps = b
        g_logscale, g_eps = kernels.reparameterize_grad(scale, eps.data, g, scale.dtype.type(1))
        return g, g_logscale, g_eps
    return node(z, (mu, logscale, eps), vjp, "location_scale")


@op
def location_scale_kl(mu, logscale, entropy, variance):
    """KL(q || N(0, I)) per row, (n, j) x2 -> (n,), for the location-scale family
    q = mu + exp(logscale) eps whose standard member eps has differential
    `entropy` and `variance` (floats):

        KL = sum_j 1/2 log 2 pi - entropy - log b_j + 1/2 (mu_j^2 + variance b_j^2).

    Against the N(0, I) prior only E_q[z^2] = mu^2 + variance b^2 and the
    entropy of q enter, so estimator B (eq. 7) works for every such family:
    Laplace (entropy 1 + log 2, variance 2), logistic (2, pi^2 / 3), and the
    Gaussian of Appendix B (1/2 log(2 pi e), 1) with logscale = logvar / 2.
    """
    if not (np.isfinite(entropy) and np.isfinite(variance) and variance > 0):
        raise ValueError(f"location_scale_kl: expected a finite entropy and a variance > 0, "
                         f"got {entropy} and {variance}")
    mu, logscale = _rows("location_scale_kl", mu=mu, logscale=logscale)
    kl, scale2 = family_kernels.location_scale_kl(mu.data, logscale.data, entropy, variance)
    v = mu.dtype.type(variance)

    def vjp(g):  # dKL/dmu = mu, dKL/dlogscale = variance b^2 - 1
        return family_kernels.location_scale_kl_grad(mu.data, scale2, v, g)
    return node(kl, (mu, logscale), vjp, "location_scale_kl")


@op
def laplace_log_prob(z, mu, logscale):
    """log Laplace(z; mu, b) = sum_j -(log 2b_j + |z_j - mu_j| / b_j) per row with
    b = exp(logscale): (n, d) x3 -> (n,).  Its derivative in z and mu is
    taken as 0 where z = mu (the subgradient of |.| at its kink)."""
    z, mu, logscale = _rows("laplace_log_prob", z=z, mu=mu, logscale=logscale)
    log_p, inv_scale = family_kernels.laplace_log_prob(z.data, mu.data, logscale.data)

    def vjp(g):  # see family_kernels.laplace_log_prob_grad for the three derivatives
        return family_kernels.laplace_log_prob_grad(z.data, mu.data, inv_scale, g)
    return node(log_p, (z, mu, logscale), vjp, "laplace_log_prob")


@op
def logistic_inverse_cdf(mu, logscale, u):
    """z = F^-1(u; mu, s) = mu + s log(u / (1 - u)) with s = exp(logscale):
    (n, j) x3 -> (n, j), u in (0, 1).

    Section 2.4's inverse-CDF route: with u ~ U(0, 1) drawn outside the
    graph, z follows Logistic(mu, s), and gradients flow to mu and logscale.
    """
    mu, logscale, u = _rows("logistic_inverse_cdf", mu=mu, logscale=logscale, u=u)
    if not np.all((u.data > 0) & (u.data < 1)):
        raise ValueError("logistic_inverse_cdf: u must lie strictly between 0 and 1")
    z, scale, logit = family_kernels.logistic_inverse_cdf(mu.data, logscale.data, u.data)

    def vjp(g):  # dz/dmu = 1, dz/dlogscale = s logit(u), dz/du = s / (u (1 - u))
        g_u = g * scale / (u.data * (1 - u.data)) if u.requires_grad else None
        return g, g * scale * logit, g_u
    return node(z, (mu, logscale, u), vjp, "logistic_inverse_cdf")


@op
def logistic_log_prob(z, mu, logscale):
    """log Logistic(z; mu, s) = sum_j -(log s_j + t_j + 2 log(1 + e^-t_j)) per row,
    t = (z - mu) / s, s = exp(logscale): (n, d) x3 -> (n,); computed from |t|,
    so it is exact however far z lies from mu."""
    z, mu, logscale = _rows("logistic_log_prob", z=z, mu=mu, logscale=logscale)
    log_p, t, e, inv_scale = family_kernels.logistic_log_prob(z.data, mu.data, logscale.data)

    def vjp(g):  # see family_kernels.logistic_log_prob_grad for the three derivatives
        return family_kernels.logistic_log_prob_grad(t, e, inv_scale, g)
    return node(log_p, (z, mu, logscale), vjp, "logistic_log_prob")
