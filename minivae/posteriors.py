"""The families q(z|x) a VAE's encoder can output: section 2.4's reparameterizable ones.

The paper names three routes to a differentiable sampler z = g_phi(eps, x)
with eps drawn outside the graph from a fixed p(eps):

    location-scale   eps from the family's standard member, z = mu + b eps:
                     the Gaussian (eq. 10) and the Laplace here
    inverse CDF      eps ~ U(0, 1), z = F^-1(eps; mu, b): the logistic here
    composition      a differentiable function of such a z (e.g. exp for the
                     log-normal); not used, since z here lives on the real line

Every family is parameterized by the encoder's two heads, mu and logvar,
the mean and the log of the variance of each q(z_j|x), as the paper's
Gaussian is.  A family with a standard member of variance v has its scale
b = sqrt(exp(logvar) / v), so its log-scale is 1/2 (logvar - log v); at the
same logvar all three have the same variance, start alike and move alike.
Each has the `entropy` and `variance` of its standard member, and

    noise(rng, shape, dtype)   the eps g_phi needs, an array of `shape`
    sample(mu, logvar, eps)    z = g_phi(eps, x), a Tensor (n, J)
    log_prob(z, mu, logvar)    log q(z|x) per row, (n, J) -> (n,)
    kl(mu, logvar)             KL(q(z|x) || N(0, I)) per row, (n, J) -> (n,)

The KL against the N(0, I) prior has a closed form for every location-scale
family whose standard member has a known entropy and variance (see
`distributions.location_scale_kl`), so estimators A (eq. 6) and B (eq. 7)
both apply to each family here; the Gaussian's is Appendix B's.
"""
import math

import numpy as np

from minivae.distributions import (gaussian_kl, gaussian_log_prob, laplace_log_prob,
                                   location_scale, location_scale_kl, logistic_inverse_cdf,
                                   logistic_log_prob, reparameterize)


class Gaussian:
    """q(z|x) = N(z; mu, diag(exp(logvar))), the paper's (Appendix C.2):
    z = mu + sigma eps, eps ~ N(0, I) (eq. 10)."""
    name, route = "gaussian", "location-scale"
    entropy, variance = 0.5 * math.log(2 * math.pi * math.e), 1.0   # of N(0, 1)

    def noise(self, rng, shape, dtype):
        """eps ~ N(0, I), an array of `shape` and `dtype` drawn from rng."""
        return rng.standard_normal(shape, dtype=dtype)

    def sample(self, mu, logvar, eps):
        """z = mu + exp(logvar / 2) eps, (n, J) (eq. 10)."""
        return reparameterize(mu, logvar, eps)

    def log_prob(self, z, mu, logvar):
        """log N(z; mu, diag(exp(logvar))) per row, (n, J) -> (n,)."""
        return gaussian_log_prob(z, mu, logvar)

    def kl(self, mu, logvar):
        """KL(q || N(0, I)) per row, (n, J) -> (n,) (Appendix B)."""
        return gaussian_kl(mu, logvar)


class _LocationScale:
    """What Laplace and logistic share: logvar -> log b, and the closed-form KL."""

    def logscale(self, logvar):
        """log b = 1/2 (logvar - log v), of the same type and shape as logvar."""
        return logvar * 0.5 - 0.5 * math.log(self.variance)

    def kl(self, mu, logvar):
        """KL(q || N(0, I)) per row, (n, J) -> (n,), in closed form from the standard
        member's entropy and variance (`distributions.location_scale_kl`)."""
        return location_scale_kl(mu, self.logscale(logvar), self.entropy, self.variance)


class Laplace(_LocationScale):
    """q(z|x) = prod_j Laplace(z_j; mu_j, b_j), density exp(-|z - mu| / b) / 2b:
    z = mu + b eps, eps ~ Laplace(0, 1).  Its standard member has entropy
    1 + log 2 and variance 2, so Var[z] = 2 b^2 = exp(logvar)."""
    name, route = "laplace", "location-scale"
    entropy, variance = 1.0 + math.log(2.0), 2.0

    def noise(self, rng, shape, dtype):
        """eps ~ Laplace(0, 1), an array of `shape` and `dtype` drawn from rng."""
        return rng.laplace(size=shape).astype(dtype)

    def sample(self, mu, logvar, eps):
        """z = mu + b eps, (n, J): the location-scale route."""
        return location_scale(mu, self.logscale(logvar), eps)

    def log_prob(self, z, mu, logvar):
        """log q(z|x) = sum_j -(log 2 b_j + |z_j - mu_j| / b_j) per row, (n, J) -> (n,)."""
        return laplace_log_prob(z, mu, self.logscale(logvar))


class Logistic(_LocationScale):
    """q(z|x) = prod_j Logistic(z_j; mu_j, s_j), CDF F(z) = sigmoid((z - mu) / s):
    z = F^-1(u) = mu + s log(u / (1 - u)), u ~ U(0, 1).  Its standard member
    has entropy 2 and variance pi^2 / 3, so Var[z] = pi^2 s^2 / 3 = exp(logvar)."""
    name, route = "logistic", "inverse CDF"
    entropy, variance = 2.0, math.pi ** 2 / 3.0

    def noise(self, rng, shape, dtype):
        """u ~ U(0, 1), an array of `shape` and `dtype` drawn from rng, never 0."""
        # U(0, 1) draws lie in [0, 1); 0, where F^-1 is -inf, becomes the
        # smallest draw's mirror image, so that both tails end at +-log(1/epsneg)
        return np.maximum(rng.random(shape, dtype=dtype), np.finfo(dtype).epsneg)

    def sample(self, mu, logvar, u):
        """z = F^-1(u) = mu + s log(u / (1 - u)), (n, J): the inverse-CDF route."""
        return logistic_inverse_cdf(mu, self.logscale(logvar), u)

    def log_prob(self, z, mu, logvar):
        """log q(z|x) = sum_j log Logistic(z_j; mu_j, s_j) per row, (n, J) -> (n,)."""
        return logistic_log_prob(z, mu, self.logscale(logvar))


POSTERIORS = {family.name: family() for family in (Gaussian, Laplace, Logistic)}
