"""p(x|z): what the decoder's outputs mean, as one object per family.

A likelihood names the decoder heads it needs, turns their outputs into
log p(x|z), E[x|z] and a sample of x, and says which pixels it models:
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


class Gaussian:
    """p(x|z) = N(x; mu, diag(exp(logvar))), both from the decoder  (Appendix C.2)."""
    name = "gaussian"
    heads = ("mu", "logvar")
    pixels = "continuous"

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


LIKELIHOODS = {"bernoulli": Bernoulli(), "gaussian": Gaussian()}
