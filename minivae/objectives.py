"""What training maximizes: the SGVB estimators of the lower bound (section 2.3).

The model computes densities; this module combines them into bounds, per
datapoint.  With eps (L, B, J) ~ N(0, I) drawn outside the graph and
z_l = mu + sigma * eps_l (eq. 10), or the noise and sampler of another family
of q(z|x) (`posteriors`, section 2.4):

    noise          eps (L, B, J), drawn for the model's family of q(z|x)
    log_weights    log p(x, z_l) - log q(z_l|x), (L, B): the terms every
                   bound here is made of
    elbo           estimator A (eq. 6), their mean over l, or estimator B
                   (eq. 7), the analytic -KL (Appendix B) plus the mean of
                   log p(x|z_l)
    iwae_bound     their log-mean-exp over l: the importance-weighted bound
                   L_k of Burda et al. (2016), and with large k the
                   importance-sampled log p(x) of `evaluate`
    ELBO           the training objective: an estimator and its L, and the
                   eps it needs drawn from a generator
    WeightedELBO   E[log p(x|z)] - beta KL(q(z|x) || p(z)) (Bishop 19.2): not a
                   bound on log p(x) unless beta >= 1; it reports the ELBO beside
    KLWarmUp       beta rising linearly to its final value over the first steps
    IWAE           L_k as the training objective, k samples per datapoint

and for the autoencoders of Bishop's ch. 19.1, which have no prior:

    Reconstruction         log p(x|y(f(x~))): minus eq. 19.1's sum-of-squares
                           error or minus the cross-entropy, with x~ a corrupted
                           x (19.1.4) and an L1 penalty on the code (19.1.3, eq. 19.4)
    MaskedReconstruction   minus the squared error on the masked patches only (19.1.5)

Every objective is a value per datapoint to maximize, objective(model, x,
rng) -> (B,); `key` names it in the metrics rows (train_<key>, test_<key>)
and `label` in the log.  `measure` returns that value with every number the
metrics report per datapoint, e.g. the true ELBO beside a beta-weighted one.
"""
from dataclasses import dataclass, replace

import numpy as np

from minivae.corruptions import patch_mask
from minivae.ops import abs, concatenate, logsumexp

ESTIMATORS = ("A", "B")


class Objective:
    """What every objective shares: `measure` from `__call__`."""

    def measure(self, model, x, rng):
        """The value to ascend, a (B,) Tensor, and what the metrics report
        per datapoint, {name: (B,) array}: here the value alone, under `key`."""
        value = self(model, x, rng)
        return value, {self.key: value.data}


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
    z = model.q.sample(mu_L, logvar_L, eps.reshape(L * B, J))   # eq. 10
    x_L = x if L == 1 else np.tile(x, (L, 1))
    return mu, logvar, mu_L, logvar_L, z, x_L


def _log_terms(model, x, eps):
    """log p(x|z_l) and log p(z_l) - log q(z_l|x), each (L * B,): what
    estimator A and the importance-weighted bounds add up."""
    _, _, mu_L, logvar_L, z, x_L = _samples(model, x, eps)
    log_prior_over_q = model.log_prior(z) - model.q.log_prob(z, mu_L, logvar_L)
    return model.log_px_given_z(x_L, z), log_prior_over_q


def log_weights(model, x, eps):
    """log p(x, z_l) - log q(z_l|x) = log p(x|z_l) + log p(z_l) - log q(z_l|x).

    x (B, D), eps (L, B, J) -> (L, B).  Their mean over l is estimator A
    (eq. 6); their log-mean-exp is the IWAE bound and, with large L, the
    importance-sampled log p(x) (`iwae_bound`).
    """
    L, B, _ = eps.shape
    log_px, log_prior_over_q = _log_terms(model, x, eps)
    return (log_px + log_prior_over_q).reshape(L, B)


def elbo(model, x, eps, estimator="B"):
    """The SGVB estimate of the lower bound L(theta, phi; x_i), per datapoint.

    x (B, D) data in the model's dtype, eps (L, B, J) the noise of the
    model's q(z|x) (`noise`) -> (B,), in nats.  Estimator A (eq. 6) averages
    log p(x, z_l) - log q(z_l|x) over the L samples; estimator B (eq. 7)
    takes the KL term analytically (Appendix B): -KL(q(z|x) || p(z)) +
    1/L sum_l log p(x|z_l).  The minibatch estimate of eq. 8 is N times
    the mean of this vector.
    """
    return weighted_elbo(model, x, eps, estimator)[1]


def weighted_elbo(model, x, eps, estimator="B", beta=1.0):
    """E[log p(x|z)] - beta KL(q(z|x) || p(z)) per datapoint, (B,), and the
    same with beta = 1, the ELBO: a pair of Tensors from one pass.

    Estimator B takes the KL analytically (Appendix B); estimator A
    estimates it by the L samples, as the mean of log q(z_l|x) - log p(z_l).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"elbo: unknown estimator {estimator!r}; expected 'A' or 'B'")
    L, B, _ = eps.shape
    if estimator == "A":   # eq. 6: the KL estimated by the same L samples
        log_px, log_prior_over_q = _log_terms(model, x, eps)
        bound = (log_px + log_prior_over_q).reshape(L, B).mean(axis=0)
        if beta == 1:
            return bound, bound
        return (log_px + beta * log_prior_over_q).reshape(L, B).mean(axis=0), bound
    mu, logvar, _, _, z, x_L = _samples(model, x, eps)
    log_px = model.log_px_given_z(x_L, z).reshape(L, B).mean(axis=0)
    kl = model.q.kl(mu, logvar)                  # eq. 7, Appendix B
    bound = log_px - kl
    return (bound if beta == 1 else log_px - beta * kl), bound


def iwae_bound(log_w):
    """log (1/L) sum_l w_l from log_w (L, B) = log p(x, z_l) - log q(z_l|x):
    (B,), the bound L_k of Burda, Grosse & Salakhutdinov (2016) for k = L.

    By Jensen it is at least the mean of log_w (estimator A, equal at L = 1)
    and rises towards log p(x) as L grows.  The log-sum-exp is the stable one.
    """
    return logsumexp(log_w, axis=0) - float(np.log(log_w.shape[0]))


def noise(model, samples, x, rng):
    """eps (L, B, J) in the model's dtype, drawn from rng: N(0, I) for the
    Gaussian q(z|x), its family's noise (`posteriors`) for another."""
    return model.q.noise(rng, (samples, len(x), model.latent), model.dtype)


def _check_samples(samples, what):
    if samples < 1:
        raise ValueError(f"{what} must be at least 1, got {samples}")


@dataclass(frozen=True)
class ELBO(Objective):
    """The lower bound as a training objective: estimator A or B with L samples."""
    estimator: str = "B"
    samples: int = 1
    key, label = "elbo", "ELBO"

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        _check_samples(self.samples, "samples (L)")

    def __call__(self, model, x, rng):
        """The bound per datapoint, (B,), with eps (L, B, J) drawn from rng (`noise`)."""
        return elbo(model, x, noise(model, self.samples, x, rng), self.estimator)


@dataclass(frozen=True)
class WeightedELBO(ELBO):
    """E[log p(x|z)] - beta KL(q(z|x) || p(z)) per datapoint (Bishop 19.2).

    beta < 1 weighs the reconstruction more, beta > 1 the prior more.  Only
    at beta = 1 is this the ELBO; below 1 it is not a lower bound on
    log p(x) and may exceed it, so `measure` reports the ELBO beside it.
    """
    beta: float = 1.0
    key, label = "objective", "objective"

    def __post_init__(self):
        super().__post_init__()
        if not (np.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")

    def __call__(self, model, x, rng):
        return self.measure(model, x, rng)[0]

    def measure(self, model, x, rng):
        """The weighted objective (B,) and {objective, elbo: (B,) arrays} from one pass."""
        eps = noise(model, self.samples, x, rng)
        value, bound = weighted_elbo(model, x, eps, self.estimator, self.beta)
        return value, {self.key: value.data, "elbo": bound.data}


@dataclass(frozen=True)
class KLWarmUp:
    """beta(t) = start + (beta - start) * min(1, t / steps) after t updates: a
    linear warm-up of the KL weight, then `objective`'s beta.  Called with
    the step count, it returns the objective to ascend at that step."""
    objective: WeightedELBO
    start: float = 0.0
    steps: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"a warm-up needs at least 1 step, got {self.steps}")

    def beta(self, step):
        """The KL weight after `step` updates."""
        final = self.objective.beta
        return self.start + (final - self.start) * min(1.0, step / self.steps)

    def __call__(self, step):
        return replace(self.objective, beta=self.beta(step))


@dataclass(frozen=True)
class IWAE(Objective):
    """The importance-weighted bound L_k (Burda et al. 2016, eq. 8) per datapoint:

        L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_i ~ q(z|x)

    with k reparameterized samples.  L_1 is the ELBO (estimator A), and
    L_k <= L_{k+1} <= log p(x).  `measure` reports the ELBO of the same k
    samples (their mean log weight) beside it.
    """
    samples: int = 5
    key, label = "iwae", "IWAE bound"

    def __post_init__(self):
        _check_samples(self.samples, "k (samples of the IWAE bound)")

    def __call__(self, model, x, rng):
        return self.measure(model, x, rng)[0]

    def measure(self, model, x, rng):
        """L_k (B,) and {iwae, elbo: (B,) arrays} from one set of k samples."""
        log_w = log_weights(model, x, noise(model, self.samples, x, rng))
        value = iwae_bound(log_w)
        return value, {self.key: value.data, "elbo": log_w.mean(axis=0).data}


@dataclass(frozen=True)
class Reconstruction(Objective):
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
class MaskedReconstruction(Objective):
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
