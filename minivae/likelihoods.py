"""p(x|z): what the decoder's outputs mean, as one object per family.

A likelihood names the decoder heads it needs, turns their outputs into
log p(x|z), E[x|z], a sample of x and a reconstruction error, and says
which pixels it models:
'binary' (0 or 1, for the Bernoulli MLP of Appendix C.1) or 'continuous'
(intensities in [0, 1], for the Gaussian MLP of Appendix C.2).  The data
side reads `pixels` to choose binarization or intensities, so nothing else
in minivae asks which decoder a model has.
"""
import numpy as np

from minivae.distributions import bernoulli_log_prob, gaussian_log_prob
from minivae.ops import sigmoid


class Bernoulli:
    """p(x|z) = prod_d y_d^x_d (1 - y_d)^(1 - x_d), y = sigmoid(logits)  (Appendix C.1)."""
    name = "bernoulli"
    heads = ("logits",)
    pixels = "binary"
    error_unit = "nats (cross-entropy)"

    def log_prob(self, x, outputs):
        """log p(x|z) per row from the logits: x (B, D), outputs (logits,) -> (B,)."""
        (logits,) = outputs
        return bernoulli_log_prob(x, logits)

    def mean(self, outputs):
        """E[x|z] = sigmoid(logits), (B, D)."""
        (logits,) = outputs
        return sigmoid(logits)

    def sample(self, outputs, rng):
        """x ~ p(x|z): 0/1 pixels as an array (B, D) of the logits' dtype."""
        y = self.mean(outputs).data
        return (rng.random(y.shape, dtype=y.dtype) < y).astype(y.dtype)

    def error(self, x, outputs):
        """The cross-entropy -log p(x|z) in nats per row, (B,) array (no graph)."""
        return -self.log_prob(x, outputs).data


class Gaussian:
    """p(x|z) = N(x; mu, diag(exp(logvar))), both from the decoder  (Appendix C.2)."""
    name = "gaussian"
    heads = ("mu", "logvar")
    pixels = "continuous"
    error_unit = "(sum of squares)"

    def log_prob(self, x, outputs):
        """log p(x|z) per row: x (B, D), outputs (mu, logvar) -> (B,)."""
        mu, logvar = outputs
        return gaussian_log_prob(x, mu, logvar)

    def mean(self, outputs):
        """E[x|z] = mu, (B, D)."""
        return outputs[0]

    def sample(self, outputs, rng):
        """x = mu + exp(logvar / 2) eps with eps ~ N(0, I): an array (B, D)."""
        mu, logvar = (t.data for t in outputs)
        eps = rng.standard_normal(mu.shape, dtype=mu.dtype)
        return mu + np.exp(logvar / 2) * eps

    def error(self, x, outputs):
        """The sum of squares sum_d (x_d - mu_d)^2 per row, (B,) array (no graph)."""
        return _sum_of_squares(x, outputs[0].data)


class SumOfSquares:
    """p(x|z) = N(x; y, I), y from the decoder: the log-density is the
    sum-of-squares error of Bishop's eq. 19.1, -1/2 ||x - y||^2, less a
    constant (D/2) log 2 pi; the deterministic autoencoders' choice for
    intensities."""
    name = "squared"
    heads = ("mean",)
    pixels = "continuous"
    error_unit = "(sum of squares)"

    def log_prob(self, x, outputs):
        """-1/2 ||x - y||^2 - (D/2) log 2 pi per row: x (B, D), outputs (y,) -> (B,)."""
        (y,) = outputs
        zeros = np.zeros(y.shape, y.dtype)
        return gaussian_log_prob(x, y, zeros)

    def mean(self, outputs):
        """E[x|z] = y, (B, D)."""
        return outputs[0]

    def sample(self, outputs, rng):
        """x = y + eps with eps ~ N(0, I): an array (B, D)."""
        y = outputs[0].data
        return y + rng.standard_normal(y.shape, dtype=y.dtype)

    def error(self, x, outputs):
        """The sum of squares ||x - y||^2 per row, (B,) array (no graph)."""
        return _sum_of_squares(x, outputs[0].data)


def _sum_of_squares(x, y):
    return np.sum(np.square(np.asarray(x, dtype=y.dtype) - y), axis=1, dtype=np.float64)


LIKELIHOODS = {"bernoulli": Bernoulli(), "gaussian": Gaussian(), "squared": SumOfSquares()}


def likelihood(name, where):
    """LIKELIHOODS[name], or a ValueError naming `where` and the choices."""
    if name not in LIKELIHOODS:
        raise ValueError(f"{where}: unknown decoder {name!r}; expected one of "
                         f"{tuple(LIKELIHOODS)}")
    return LIKELIHOODS[name]
