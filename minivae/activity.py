"""Latent usage: which of the J latent dimensions a trained model uses.

Burda, Grosse & Salakhutdinov (2016, section 5.2) call dimension u *active* when

    A_u = Cov_x( E_{q(z|x)}[z_u] ) > 0.01,

the variance over the data of the encoder mean mu_u.  An inactive dimension
puts the same q(z_u|x) on every x: the decoder cannot read anything from it,
and the ELBO then pulls q(z_u|x) onto the prior N(0, 1) (posterior collapse).
Its share of the KL term (Appendix B, one term of the sum over j)

    KL_u = -1/2 (1 + logvar_u - mu_u^2 - exp(logvar_u))

(for a Gaussian q; another family's closed form for another, `posteriors`)
is then at its least: about 0 nats for a Gaussian q, which can equal the
prior, and 0.072 (Laplace) or 0.014 (logistic) nats for a family that can
only come near it; an active dimension spends more on carrying x.
`active_units` measures both on a stream of batches; `collapse_warning`
says so in one line when fewer than half of the dimensions are active.
"""
from dataclasses import dataclass

import numpy as np

from minivae.autograd import no_grad

THRESHOLD = 0.01   # Burda et al.'s cut-off on A_u


# eq=False: comparing arrays field by field makes no sense, so a result is
# equal only to itself.
@dataclass(frozen=True, eq=False)
class LatentActivity:
    """Latent usage over `images` datapoints.

    activity   A_u = Var_x[mu_u], (J,) float64: the population variance over
               the images of the encoder mean of each dimension
    kl         mean over the images of KL(q(z_u|x) || p(z_u)), (J,) float64, nats
    threshold  a dimension is active when its A_u exceeds this
    """
    activity: np.ndarray
    kl: np.ndarray
    threshold: float
    images: int

    @property
    def latent(self):
        """J, the number of latent dimensions."""
        return len(self.activity)

    @property
    def count(self):
        """The number of active dimensions: A_u > threshold."""
        return int(np.count_nonzero(self.activity > self.threshold))


def active_units(model, batches, threshold=THRESHOLD):
    """A_u and the mean KL_u of every latent dimension over the rows of `batches`.

    `batches` is an iterable of x (B, D) as `model.posterior` takes it, e.g.
    `data.Inputs(...).test_batches()`; it is read once, without recording a
    graph.  The variance is merged batch by batch (Chan et al.'s pairwise
    update of count, mean and sum of squared deviations, in float64), so
    the result does not depend on how the rows are split into batches.
    Returns a LatentActivity.
    """
    if not getattr(model, "has_prior", False) or not hasattr(model, "posterior"):
        raise ValueError(f"active units: a {type(model).__name__} has no posterior q(z|x) "
                         f"and prior p(z); they are measured on latent-variable models "
                         f"such as the VAE")
    if not threshold >= 0:
        raise ValueError(f"active units: the threshold must be a number >= 0, got {threshold}")
    n, mean, m2, kl_sum = 0, np.zeros(model.latent), np.zeros(model.latent), 0.0
    with no_grad():
        for x in batches:   # the model checks x's shape: a conditional one reads labels too
            if len(x) == 0:
                continue
            mu, scale = (t.data.astype(np.float64) for t in model.posterior(x))
            b, batch_mean = len(mu), mu.mean(axis=0)
            delta = batch_mean - mean
            # Chan et al. (1979): merge (n, mean, m2) with the batch's own
            mean = mean + delta * (b / (n + b))
            m2 = m2 + ((mu - batch_mean) ** 2).sum(axis=0) + delta ** 2 * (n * b / (n + b))
            n += b
            # KL_u summed over the batch: the family's KL of the transposed (J, B)
            # rows sums each dimension over the datapoints
            kl_sum = kl_sum + model.q.kl(mu.T, scale.T).data
    if n == 0:
        raise ValueError("active units: no datapoints were given")
    return LatentActivity(activity=m2 / n, kl=kl_sum / n, threshold=float(threshold), images=n)


def collapse_warning(activity, run=None):
    """One line saying that fewer than half of the latent dimensions are
    active (posterior collapse), naming the count; None when at least half are.
    With `run`, a run directory, the line ends with the command that draws them."""
    if 2 * activity.count >= activity.latent:
        return None
    see = f"; see minivae plot {run} --what activity" if run is not None else ""
    return (f"warning: only {activity.count} of {activity.latent} latent dimensions are "
            f"active (Cov_x E_q[z_u] > {activity.threshold:g}): the posterior has collapsed "
            f"onto the prior in the others{see}")
