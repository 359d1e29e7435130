"""Evaluation in nats: the ELBO on held-out data and an importance-sampled log p(x).

Both take `batches`, an iterable of (B, D) arrays in the model's dtype, and
an explicit random generator, run without recording a graph, and return
the mean per datapoint.  Both are one loop, `mean_per_datapoint`, over a
function that scores a minibatch; `progress`, if given, is called with the
number of datapoints scored after each minibatch.
"""
import numpy as np

from minivae.autograd import no_grad
from minivae.objectives import ELBO, iwae_bound, log_weights, noise


def mean_per_datapoint(score, batches, progress=None):
    """The mean of score(x) (B,) over every row of every batch, summed in
    float64; score(x) may also be a dict of such arrays, then a dict of means."""
    totals, count = {}, 0
    with no_grad():
        for x in batches:
            scores = score(x)
            for name, value in (scores.items() if isinstance(scores, dict) else [(None, scores)]):
                totals[name] = totals.get(name, 0.0) + float(np.sum(value, dtype=np.float64))
            count += len(x)
            if progress is not None:
                progress(len(x))
    means = {name: total / count for name, total in totals.items()}
    return means[None] if None in means else means


def mean_objective(model, objective, batches, rng, progress=None):
    """The mean of objective(model, x, rng) per datapoint: what a model is trained
    on, evaluated on other data (its random draws, eps or corruption, from rng)."""
    return mean_per_datapoint(lambda x: objective(model, x, rng).data, batches, progress)


def mean_measures(model, objective, batches, rng, progress=None):
    """The mean per datapoint of everything objective.measure reports,
    {name: float}: e.g. the beta-weighted objective and the ELBO beside it."""
    return mean_per_datapoint(lambda x: objective.measure(model, x, rng)[1], batches, progress)


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
    (mu for a VAE): what the representation keeps.  The pixels x[:, :D] are
    compared, without a conditional model's label (`model.reconstruction`)."""
    return mean_per_datapoint(
        lambda x: model.likelihood.error(x[:, :model.x_dim], model.reconstruction(x)),
        batches, progress)


def importance_sampled_log_px(model, x, rng, k, chunk_rows=20000):
    """log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k ~ q(z|x), per row of x (B, D) -> (B,).

    This is the IWAE bound L_K (`objectives.iwae_bound`, the training
    objective `IWAE`), evaluated with large K.  The K samples are taken in
    chunks of about `chunk_rows` decoder rows, each chunk's bound weighted
    by its size, log sum_c n_c exp(L_{n_c}) - log K, carried in float64, so
    memory stays bounded however large K is.
    """
    if k < 1:
        raise ValueError(f"log p(x): k must be at least 1, got {k}")
    per_chunk = max(1, chunk_rows // len(x))
    log_sum = np.full(len(x), -np.inf)
    for start in range(0, k, per_chunk):
        size = min(per_chunk, k - start)
        eps = noise(model, size, x, rng)
        chunk = iwae_bound(log_weights(model, x, eps)).data.astype(np.float64)
        log_sum = np.logaddexp(log_sum, chunk + np.log(size))
    return log_sum - np.log(k)


def log_likelihood(model, batches, rng, k=1000, chunk_rows=20000, progress=None):
    """The importance-sampled estimate of log p(x), mean per datapoint, in nats.

        log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

    with q as the proposal: a lower bound in expectation that tightens to
    log p(x) as K grows, and is never below the ELBO in expectation.
    """
    return mean_per_datapoint(
        lambda x: importance_sampled_log_px(model, x, rng, k, chunk_rows), batches, progress)
