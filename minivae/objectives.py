"""What training maximizes: the SGVB estimators of the lower bound (section 2.3).

The model computes densities; this module combines them into bounds, per
datapoint.  With eps (L, B, J) ~ N(0, I) drawn outside the graph and
z_l = mu + sigma * eps_l (eq. 10):

    log_weights    log p(x, z_l) - log q(z_l|x), (L, B): the terms every
                   bound here is made of
    elbo           estimator A (eq. 6), their mean over l, or estimator B
                   (eq. 7), the analytic -KL (Appendix B) plus the mean of
                   log p(x|z_l)
    ELBO           the training objective: an estimator and its L, and the
                   eps it needs drawn from a generator
"""
from dataclasses import dataclass

import numpy as np

from minivae.distributions import gaussian_kl, gaussian_log_prob, reparameterize
from minivae.ops import concatenate

ESTIMATORS = ("A", "B")


def _samples(model, x, eps):
    """mu, logvar (B, J) of q(z|x), and z_l = mu + sigma * eps_l (eq. 10) for
    eps (L, B, J), with x repeated L times, so that all L * B rows go through
    the decoder at once: (mu, logvar, mu_L, logvar_L, z, x_L)."""
    L, B, J = eps.shape
    if x.shape[0] != B or J != model.latent:
        raise ValueError(f"eps has shape {eps.shape}, expected (L, {x.shape[0]}, "
                         f"{model.latent}) for x of shape {x.shape}")
    mu, logvar = model.posterior(x)
    mu_L, logvar_L = (t if L == 1 else concatenate([t] * L) for t in (mu, logvar))
    z = reparameterize(mu_L, logvar_L, eps.reshape(L * B, J))   # eq. 10
    x_L = x if L == 1 else np.tile(x, (L, 1))
    return mu, logvar, mu_L, logvar_L, z, x_L


def log_weights(model, x, eps):
    """log p(x, z_l) - log q(z_l|x) = log p(x|z_l) + log p(z_l) - log q(z_l|x).

    x (B, D), eps (L, B, J) -> (L, B).  Their mean over l is estimator A
    (eq. 6); their log-mean-exp is the importance-sampled log p(x).
    """
    L, B, _ = eps.shape
    _, _, mu_L, logvar_L, z, x_L = _samples(model, x, eps)
    log_qz = gaussian_log_prob(z, mu_L, logvar_L)
    return (model.log_px_given_z(x_L, z) + model.log_prior(z) - log_qz).reshape(L, B)


def elbo(model, x, eps, estimator="B"):
    """The SGVB estimate of the lower bound L(theta, phi; x_i), per datapoint.

    x (B, D) data in the model's dtype, eps (L, B, J) ~ N(0, I) -> (B,), in
    nats.  Estimator A (eq. 6) averages log p(x, z_l) - log q(z_l|x) over the
    L samples; estimator B (eq. 7) takes the KL term analytically
    (Appendix B): -KL(q(z|x) || p(z)) + 1/L sum_l log p(x|z_l).  The
    minibatch estimate of eq. 8 is N times the mean of this vector.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"elbo: unknown estimator {estimator!r}; expected 'A' or 'B'")
    if estimator == "A":
        return log_weights(model, x, eps).mean(axis=0)
    L, B, _ = eps.shape
    mu, logvar, _, _, z, x_L = _samples(model, x, eps)
    log_px = model.log_px_given_z(x_L, z).reshape(L, B).mean(axis=0)
    return log_px - gaussian_kl(mu, logvar)


@dataclass(frozen=True)
class ELBO:
    """The lower bound as a training objective: estimator A or B with L samples."""
    estimator: str = "B"
    samples: int = 1

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.samples < 1:
            raise ValueError(f"samples (L) must be at least 1, got {self.samples}")

    def __call__(self, model, x, rng):
        """The bound per datapoint, (B,), with eps (L, B, J) ~ N(0, I) drawn from rng."""
        eps = rng.standard_normal((self.samples, len(x), model.latent), dtype=model.dtype)
        return elbo(model, x, eps, self.estimator)
