"""The VAE's distributions as fused, differentiable ops (Appendix B and C).

Each op runs one Numba kernel forward and one backward, over 2-D inputs
of shape (n, d): n datapoints (or samples) of dimension d.  The
log-densities and the KL sum over d and return one value per row, (n,),
as the per-datapoint terms of the ELBO.
"""
from minivae import kernels
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
        g_logvar, g_eps = kernels.reparameterize_grad(sigma, eps.data, g)
        return g, g_logvar, g_eps
    return node(z, (mu, logvar, eps), vjp, "reparameterize")
