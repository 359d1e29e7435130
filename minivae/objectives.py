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

and for the autoencoders of Bishop's ch. 19.1, which have no prior:

    Reconstruction         log p(x|y(f(x~))): minus eq. 19.1's sum-of-squares
                           error or minus the cross-entropy, with x~ a corrupted
                           x (19.1.4) and an L1 penalty on the code (19.1.3, eq. 19.4)
    MaskedReconstruction   minus the squared error on the masked patches only (19.1.5)

Every objective is a value per datapoint to maximize, (B,); `key` names it
in the metrics rows (train_<key>, test_<key>) and `label` in the log.
"""
from dataclasses import dataclass

import numpy as np

from minivae.corruptions import patch_mask
from minivae.distributions import gaussian_kl, gaussian_log_prob, reparameterize
from minivae.ops import abs, concatenate

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
    key, label = "elbo", "ELBO"

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.samples < 1:
            raise ValueError(f"samples (L) must be at least 1, got {self.samples}")

    def __call__(self, model, x, rng):
        """The bound per datapoint, (B,), with eps (L, B, J) ~ N(0, I) drawn from rng."""
        eps = rng.standard_normal((self.samples, len(x), model.latent), dtype=model.dtype)
        return elbo(model, x, eps, self.estimator)


@dataclass(frozen=True)
class Reconstruction:
    """log p(x | z = f(x~)) - sparsity * sum_k |z_k| per datapoint, (B,).

    With the sum-of-squares likelihood this is -1/2 ||y - x||^2 (eq. 19.1)
    less a constant; with the Bernoulli one, minus the cross-entropy.  x~ is
    `corruption(x, rng)` for a denoising autoencoder (eq. 19.5), else x.  The
    L1 penalty is eq. 19.4's; its subgradient at z_k = 0 is 0 (`ops.abs`).
    """
    corruption: object = None
    sparsity: float = 0.0
    key, label = "objective", "objective"

    def __call__(self, model, x, rng):
        corrupted = x if self.corruption is None else self.corruption(x, rng)
        z = model.code(corrupted)
        value = model.likelihood.log_prob(x, model.decode(z))
        if self.sparsity:
            value = value - self.sparsity * abs(z).sum(axis=1)      # eq. 19.4
        return value


@dataclass(frozen=True)
class MaskedReconstruction:
    """-1/2 sum over masked pixels of (y_d - x_d)^2 per datapoint, (B,): the masked
    autoencoder's loss on the hidden patches only (19.1.5).  A fresh mask is
    drawn from the run's generator for every image at every step."""
    image_shape: tuple
    patch: int = 4
    ratio: float = 0.75
    key, label = "objective", "objective"

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise ValueError(f"mask ratio must lie in (0, 1), got {self.ratio}")
        h, w = self.image_shape
        if self.patch < 1 or h % self.patch or w % self.patch:
            raise ValueError(f"patch size {self.patch} does not divide the {h}x{w} images; "
                             f"expected a divisor of both")

    def __call__(self, model, x, rng):
        mask = patch_mask(len(x), self.image_shape, self.patch, self.ratio, rng, x.dtype)
        y = model.decode_mean(model.code(x, mask))
        return -0.5 * (((y - x) * mask) ** 2).sum(axis=1)
