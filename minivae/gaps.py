"""Amortized against per-datapoint inference: the gaps of Cremer, Li & Duvenaud (2018).

Mean-field variational inference (Bishop 19.2.1) gives every datapoint x_i
its own variational parameters lambda_i = (mu_i, logvar_i) and maximizes each
ELBO L(lambda_i; x_i) on its own; the VAE's encoder amortizes them,
lambda_i = f_phi(x_i), one network for every x.  With the decoder p(x|z)
held fixed, the distance from the encoder's ELBO to log p(x) splits in two:

    log p(x) - L[q_phi]  =  (log p(x) - L[q*])  +  (L[q*] - L[q_phi])
                             approximation gap      amortization gap

q* is the best member of q's family for x_i alone, found by gradient ascent
on lambda_i started at the encoder's output: the first gap is what the
family cannot express, the second what one network for all x costs.

    LocalPosterior     the model with q(z|x_i) from free (mu_i, logvar_i), so that
                       `objectives` and `evaluate` compute its bounds unchanged
    optimize_locally   Adam on (mu_i, logvar_i) with the model frozen; the ELBO trace
    mc_elbo            the ELBO per datapoint and its Monte Carlo error
    mc_log_px          the importance-sampled log p(x) and its Monte Carlo error
    Gaps, measure_gaps all of it, per datapoint and averaged
"""
import math
from dataclasses import dataclass

import numpy as np

from minivae.autograd import Tensor, frozen, no_grad
from minivae.evaluate import importance_sampled_log_px
from minivae.objectives import elbo, noise
from minivae.optim import Adam, NonFiniteGradient

REPLICATES, CHUNK_ROWS = 20, 20000   # the fewest independent estimates; decoder rows in each
# Ascent from the encoder's q with a step falling to 0 ends above where it
# started; ending this many nats below it on any datapoint means the steps
# were too large.
FELL_NATS = 1.0


class LocalPosterior:
    """`model` with q(z|x_i) = q(z; mu_i, logvar_i) from free parameters mu and
    logvar (N, J), one row per datapoint, in place of its encoder.  It has what
    `objectives.elbo`, `objectives.log_weights` and
    `evaluate.importance_sampled_log_px` read (posterior, q, latent, dtype,
    log_px_given_z, log_prior), so every bound of it is the model's own code."""

    def __init__(self, model, mu, logvar):
        self.model, self.mu, self.logvar = model, mu, logvar
        self.q, self.latent, self.dtype = model.q, model.latent, model.dtype
        self.log_px_given_z, self.log_prior = model.log_px_given_z, model.log_prior

    def posterior(self, x):
        """(mu, logvar) (N, J) for x (N, D), the N datapoints they belong to."""
        if len(x) != len(self.mu):
            raise ValueError(f"local posterior: {len(self.mu)} rows of (mu, logvar), but x has "
                             f"{len(x)} rows; expected the datapoints they were fitted to")
        return self.mu, self.logvar


def _check_model(model):
    if not getattr(model, "has_prior", False) or not hasattr(model, "q"):
        raise ValueError(f"gaps: a {type(model).__name__} has no posterior q(z|x); expected a "
                         f"latent-variable model (a VAE or a conditional VAE)")


def _check_count(value, what):
    if value < 1:
        raise ValueError(f"gaps: {what} must be at least 1, got {value}")


def optimize_locally(model, x, rng, steps=500, samples=10, lr=1e-2, estimator="B"):
    """lambda_i* = argmax_lambda L(lambda; x_i) for each row x_i of x (N, D), by
    Adam on (mu_i, logvar_i) started at the encoder's output; the model is unchanged.

    Each step ascends the SGVB estimate (eq. 7, or eq. 6 for estimator A)
    with L = `samples` fresh eps from rng; the loss is minus the sum over i,
    so that each lambda_i follows the gradient of its own ELBO.  The step
    size falls linearly from lr to 0, so that the last steps average the
    gradient noise out (a Robbins-Monro schedule in spirit).  Returns mu,
    logvar (N, J) arrays and the trace (steps, N): row t is the estimate at
    lambda after t updates, row 0 the encoder's.
    """
    _check_model(model)
    for value, what in ((len(x), "the number of datapoints N"), (steps, "steps"),
                        (samples, "samples L")):
        _check_count(value, what)
    with no_grad():
        start = model.posterior(x)
    mu, logvar = (Tensor(t.data.copy(), requires_grad=True) for t in start)
    local = LocalPosterior(model, mu, logvar)
    optimizer = Adam({"mu": mu, "logvar": logvar}, lr=lr)
    trace = np.empty((steps, len(x)))
    # no parameter takes a gradient; non-finite values are caught below
    with frozen(model.params.values()), np.errstate(all="ignore"):
        for t in range(steps):
            optimizer.lr = lr * (1 - t / steps)   # falling to 0: the noise averages out
            value = elbo(local, x, noise(model, samples, x, rng), estimator)   # (N,)
            trace[t] = value.data
            if not np.isfinite(trace[t]).all():
                raise _diverged(t, lr)
            optimizer.zero_grad()
            (-value.sum()).backward()
            try:
                optimizer.step()
            except NonFiniteGradient:
                raise _diverged(t, lr) from None
    if not (np.isfinite(mu.data).all() and np.isfinite(logvar.data).all()):
        raise _diverged(steps - 1, lr)
    return mu.data, logvar.data, trace


def _diverged(t, lr):
    return ValueError(f"local optimization: the ELBO or its gradient became non-finite at "
                      f"step {t + 1}; expected a smaller lr than {lr}")


def _replicates(k, n, replicates=REPLICATES, chunk_rows=CHUNK_ROWS):
    """(R, size): R >= `replicates` independent estimates of `size` samples each,
    R * size <= k, each at most `chunk_rows` decoder rows for n datapoints."""
    if k < replicates:
        raise ValueError(f"gaps: k must be at least {replicates} (one sample per "
                         f"replicate), got {k}")
    size = max(1, min(k // replicates, chunk_rows // n))
    return k // size, size


def mc_elbo(model, x, rng, samples=1000, estimator="B", replicates=REPLICATES,
            chunk_rows=CHUNK_ROWS):
    """The ELBO of each row of x (N, D) under q(z|x) of `model` (the encoder's, or a
    `LocalPosterior`'s), from about `samples` eps, and its Monte Carlo error.

    The eps are drawn in R >= `replicates` independent SGVB estimates
    L_r (eq. 7 or 6) of `size` samples each (`_replicates`); the estimate is
    their mean, (N,), and its standard error sd_r(L_r) / sqrt(R), (N,).
    """
    count, size = _replicates(samples, len(x), replicates, chunk_rows)
    with no_grad():
        runs = np.stack([elbo(model, x, noise(model, size, x, rng), estimator).data
                         for _ in range(count)]).astype(np.float64)   # (R, N)
    return runs.mean(axis=0), runs.std(axis=0, ddof=1) / math.sqrt(count)


def mc_log_px(model, x, rng, k=5000, replicates=REPLICATES, chunk_rows=CHUNK_ROWS):
    """log p(x) of each row of x (N, D), importance-sampled with q(z|x) of `model`
    as the proposal, from about k samples, and its Monte Carlo error.

    R >= `replicates` independent bounds ell_r = L_size (Burda et al. 2016),
    each `evaluate.importance_sampled_log_px`, give log mean_r exp(ell_r),
    which is exactly the bound L_K of all K = R * size samples, (N,), and
    by the delta method its standard error
    sd_r(exp(ell_r)) / (sqrt(R) mean_r exp(ell_r)), (N,).  L_K is a lower
    bound in expectation, low by about Var(w) / (2 K E[w]^2); the error
    measures its spread, not that bias.
    """
    count, size = _replicates(k, len(x), replicates, chunk_rows)
    with no_grad():
        ell = np.stack([importance_sampled_log_px(model, x, rng, size, chunk_rows)
                        for _ in range(count)])                        # (R, N), float64
    top = ell.max(axis=0)
    w = np.exp(ell - top)                                              # stable: max is 1
    mean = w.mean(axis=0)
    return top + np.log(mean), w.std(axis=0, ddof=1) / (math.sqrt(count) * mean)


@dataclass(frozen=True)
class Gaps:
    """The bounds of N datapoints, each (N,) in nats with its Monte Carlo
    standard error (`*_se`, (N,)): log_px, importance-sampled (see
    `measure_gaps`); local_elbo, L[q*]; encoder_elbo, L[q_phi].
    `by_local` (N,) is True where q* was the better proposal for log p(x),
    `trace` (steps, N) the ELBO during the local optimization, and `k` the
    samples behind each number."""
    log_px: np.ndarray
    log_px_se: np.ndarray
    local_elbo: np.ndarray
    local_elbo_se: np.ndarray
    encoder_elbo: np.ndarray
    encoder_elbo_se: np.ndarray
    by_local: np.ndarray
    trace: np.ndarray
    k: int

    @property
    def approximation(self):
        """log p(x) - L[q*] per datapoint, (N,): what the family cannot express."""
        return self.log_px - self.local_elbo

    @property
    def amortization(self):
        """L[q*] - L[q_phi] per datapoint, (N,): what the shared encoder costs."""
        return self.local_elbo - self.encoder_elbo

    def per_datapoint(self):
        """name -> (value (N,), Monte Carlo SE (N,)) of the three bounds and the two
        gaps; a gap's terms come from independent draws, so its SEs add in squares."""
        return {"log p(x)": (self.log_px, self.log_px_se),
                "local ELBO": (self.local_elbo, self.local_elbo_se),
                "encoder ELBO": (self.encoder_elbo, self.encoder_elbo_se),
                "approximation gap": (self.approximation,
                                      np.hypot(self.log_px_se, self.local_elbo_se)),
                "amortization gap": (self.amortization,
                                     np.hypot(self.local_elbo_se, self.encoder_elbo_se))}

    def summary(self):
        """name -> (mean over the N datapoints, SE across datapoints, MC SE).

        SE across datapoints is sd_i(v_i) / sqrt(N): how far the mean would
        move for another N test images (Monte Carlo noise included).  MC SE
        is sqrt(sum_i se_i^2) / N: the Monte Carlo error of the mean for
        these very images.
        """
        n = len(self.log_px)
        return {name: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else
                       math.nan, float(np.sqrt(np.sum(se ** 2)) / n))
                for name, (v, se) in self.per_datapoint().items()}


def measure_gaps(model, x, rng, steps=500, samples=10, lr=1e-2, k=5000, estimator="B"):
    """The approximation and amortization gaps of the N datapoints x (N, D).

    `optimize_locally` finds q* (steps, samples L, lr); then, each from about
    k fresh samples, independent of the others: L[q*] and L[q_phi]
    (`mc_elbo`), and log p(x) importance-sampled (`mc_log_px`) with each of
    q* and q_phi as the proposal, the larger kept per datapoint.  Both are
    lower bounds in expectation, so the larger is the tighter; keeping it
    adds at most about one standard error.  q* is usually the better one,
    the nearest to p(z|x) of the family (Cremer et al. 2018 use it), but it
    minimizes KL(q || p), so where p(z|x) is correlated it is narrower than
    p(z|x), its weights are heavy-tailed, and its L_K falls short; the
    encoder's q is then often the better proposal.
    """
    _check_model(model)
    _check_count(len(x), "the number of datapoints N")
    _check_count(samples, "samples L")
    # the datapoints' optimizations are independent: at most CHUNK_ROWS decoder rows at once
    rows = max(1, CHUNK_ROWS // samples)
    parts = [optimize_locally(model, x[start:start + rows], rng, steps, samples, lr, estimator)
             for start in range(0, len(x), rows)]
    mu, logvar, trace = (np.concatenate(arrays, axis=axis)
                         for arrays, axis in zip(zip(*parts), (0, 0, 1)))
    local = LocalPosterior(model, Tensor(mu), Tensor(logvar))
    with np.errstate(all="ignore"):    # a diverged q* is refused just below
        local_elbo, local_se = mc_elbo(local, x, rng, k, estimator)
    encoder_elbo, encoder_se = mc_elbo(model, x, rng, k, estimator)
    fell = encoder_elbo - local_elbo
    if not np.isfinite(local_elbo).all() or fell.max() > FELL_NATS:
        worst = int(np.argmax(np.where(np.isfinite(local_elbo), fell, np.inf)))
        raise ValueError(f"local optimization: datapoint {worst} ended with a local ELBO of "
                         f"{local_elbo[worst]:.4g} nats, below the encoder's "
                         f"{encoder_elbo[worst]:.4g} where it started; expected a smaller "
                         f"lr than {lr}")
    (by_q_star, q_star_se), (by_encoder, encoder_log_px_se) = (
        mc_log_px(proposal, x, rng, k) for proposal in (local, model))
    by_local = by_q_star >= by_encoder
    count, size = _replicates(k, len(x))
    return Gaps(np.where(by_local, by_q_star, by_encoder),
                np.where(by_local, q_star_se, encoder_log_px_se), local_elbo, local_se,
                encoder_elbo, encoder_se, by_local, trace, k=count * size)
