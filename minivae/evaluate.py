"""Evaluation in nats: the ELBO on held-out data and an importance-sampled log p(x).

Both take `batches`, an iterable of (B, D) arrays in the model's dtype, and
an explicit random generator, run without recording a graph, and return
the mean per datapoint.  Both are one loop, `mean_per_datapoint`, over a
function that scores a minibatch; `progress`, if given, is called with the
number of datapoints scored after each minibatch.
"""
import numpy as np

from minivae.autograd import no_grad
from minivae.objectives import ELBO, log_weights
from minivae.ops import logsumexp


def mean_per_datapoint(score, batches, progress=None):
    """The mean of score(x) (B,) over every row of every batch, summed in float64."""
    total, count = 0.0, 0
    with no_grad():
        for x in batches:
            total += float(np.sum(score(x), dtype=np.float64))
            count += len(x)
            if progress is not None:
                progress(len(x))
    return total / count


def mean_objective(model, objective, batches, rng, progress=None):
    """The mean of objective(model, x, rng) per datapoint: what a model is trained
    on, evaluated on other data (its random draws, eps or corruption, from rng)."""
    return mean_per_datapoint(lambda x: objective(model, x, rng).data, batches, progress)


def mean_elbo(model, batches, rng, estimator="B", samples=1, progress=None):
    """The mean SGVB lower bound per datapoint (eq. 6 or 7), in nats.

    z is sampled (z = mu + sigma * eps), not set to mu: this is the bound
    the model is trained on, evaluated on new data.
    """
    return mean_objective(model, ELBO(estimator, samples), batches, rng, progress)


def reconstruction_error(model, batches, progress=None):
    """The mean reconstruction error per image of x from its code, in the one
    unit of the model's likelihood (`error`): the Bernoulli cross-entropy in
    nats, or the sum of squares over pixels for intensities.  z = code(x)
    (mu for a VAE): what the representation keeps."""
    return mean_per_datapoint(
        lambda x: model.likelihood.error(x, model.decode(model.code(x))), batches, progress)


def importance_sampled_log_px(model, x, rng, k, chunk_rows=20000):
    """log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k ~ q(z|x), per row of x (B, D) -> (B,).

    The K samples are taken in chunks of about `chunk_rows` decoder rows and
    the log-sum-exp is carried across chunks (in float64), so memory stays
    bounded however large K is.
    """
    if k < 1:
        raise ValueError(f"log p(x): k must be at least 1, got {k}")
    per_chunk = max(1, chunk_rows // len(x))
    lse = np.full(len(x), -np.inf)
    for start in range(0, k, per_chunk):
        size = min(per_chunk, k - start)
        eps = rng.standard_normal((size, len(x), model.latent), dtype=model.dtype)
        lse = np.logaddexp(lse, logsumexp(log_weights(model, x, eps), axis=0).data)
    return lse - np.log(k)


def log_likelihood(model, batches, rng, k=1000, chunk_rows=20000, progress=None):
    """The importance-sampled estimate of log p(x), mean per datapoint, in nats.

        log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

    with q as the proposal: a lower bound in expectation that tightens to
    log p(x) as K grows, and is never below the ELBO in expectation.
    """
    return mean_per_datapoint(
        lambda x: importance_sampled_log_px(model, x, rng, k, chunk_rows), batches, progress)
