"""Evaluation in nats: the ELBO on held-out data and an importance-sampled log p(x).

Both take `batches`, an iterable of (B, D) arrays in the model's dtype, and
an explicit random generator, run without recording a graph, and return
the mean per datapoint.
"""
import numpy as np

from minivae.autograd import no_grad
from minivae.ops import logsumexp


def mean_elbo(model, batches, rng, estimator="B", samples=1):
    """The mean SGVB lower bound per datapoint (eq. 6 or 7), in nats.

    z is sampled (z = mu + sigma * eps), not set to mu: this is the bound
    the model is trained on, evaluated on new data.
    """
    total, count = 0.0, 0
    with no_grad():
        for x in batches:
            eps = rng.standard_normal((samples, len(x), model.latent), dtype=model.dtype)
            total += float(np.sum(model.elbo(x, eps, estimator).data, dtype=np.float64))
            count += len(x)
    return total / count


def log_likelihood(model, batches, rng, k=1000, chunk_rows=20000):
    """The importance-sampled estimate of log p(x), mean per datapoint, in nats.

        log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

    with q as the proposal: a lower bound in expectation that tightens to
    log p(x) as K grows, and is never below the ELBO in expectation.  The
    K samples are taken in chunks of about `chunk_rows` decoder rows, and
    the log-sum-exp is carried across chunks, so memory stays bounded.
    """
    if k < 1:
        raise ValueError(f"log_likelihood: k must be at least 1, got {k}")
    total, count = 0.0, 0
    with no_grad():
        for x in batches:
            per_chunk = max(1, chunk_rows // len(x))
            lse = np.full(len(x), -np.inf)
            for start in range(0, k, per_chunk):
                size = min(per_chunk, k - start)
                eps = rng.standard_normal((size, len(x), model.latent), dtype=model.dtype)
                log_w = model.log_weights(x, eps)                   # (size, B)
                lse = np.logaddexp(lse, logsumexp(log_w, axis=0).data)
            total += float(np.sum(lse - np.log(k)))
            count += len(x)
    return total / count
