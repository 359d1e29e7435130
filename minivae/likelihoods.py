"""p(x|z): what the decoder's outputs mean, as one object per family.

A likelihood names the decoder heads it needs, turns their outputs into
log p(x|z), E[x|z], a sample of x and a reconstruction error, and says
which pixels it models:
'binary' (0 or 1, for the Bernoulli MLP of Appendix C.1) or 'continuous'
(intensities in [0, 1], for the Gaussian MLP of Appendix C.2).  The data
side reads `pixels` to choose binarization or intensities, so nothing else
in minivae asks which decoder a model has.

A likelihood may also have parameters of its own beside the decoder
network's (`parameters`): the Gaussian's log-variance shared by every
image.  The model keeps them with its other weights and passes them to
the likelihood after the decoder's heads, so the likelihood holds no
state and `outputs` is always "heads, then shared parameters".
"""
import math

import numpy as np

from minivae.distributions import bernoulli_log_prob, gaussian_log_prob
from minivae.ops import add, sigmoid, softplus

VARIANCES = ("output", "pixel", "scalar")
MEANS = ("identity", "sigmoid")


class Likelihood:
    """What every p(x|z) shares: by default no parameters beside the decoder's.

    `output` names the function that turns the first head into E[x|z]
    ('identity' or 'sigmoid'), for code that recomputes the decoder outside
    the graph (the explorer page, `explore`)."""
    output = "identity"

    def parameters(self, x_dim, dtype):
        """p(x|z)'s own parameters, name -> initial array: none."""
        return {}


class Bernoulli(Likelihood):
    """p(x|z) = prod_d y_d^x_d (1 - y_d)^(1 - x_d), y = sigmoid(logits)  (Appendix C.1)."""
    name = "bernoulli"
    heads = ("logits",)
    output = "sigmoid"
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


class Gaussian(Likelihood):
    """p(x|z) = N(x; mu, diag(exp(logvar))), mu from the decoder  (Appendix C.2).

    Where the log-variance comes from, `variance`:
      'output'  a decoder head, one logvar per pixel and per image (the paper's);
      'pixel'   one learned logvar per pixel, shared by every image, shape (D,);
      'scalar'  one learned logvar for every pixel of every image, shape (1,).
    The shared ones are parameters named 'logvar' (`parameters`), starting at 0
    (variance 1) and passed to `log_prob` after mu: outputs = (mu, logvar).

    What the mean is, `mean`:
      'identity'  mu is the decoder's output itself (Appendix C.2);
      'sigmoid'   mu = sigmoid(a), a the decoder's output, so that mu lies in
                  (0, 1): the paper's Frey Face decoder, whose "means were
                  constrained to the interval (0, 1) using a sigmoidal
                  activation function at the decoder output" (section 5).
    The head keeps the name 'mu' either way; with 'sigmoid' it holds a.

    `logvar_floor` (None: no floor) bounds the log-variance from below as
        logvar = floor + softplus(raw - floor),
    smoothly: raw >> floor is left nearly unchanged, raw -> -inf tends to the
    floor and never crosses it, and the gradient sigmoid(raw - floor) never
    vanishes, so a logvar pushed under the floor can still come back (a hard
    max(raw, floor) would leave it there with zero gradient).
    """
    name = "gaussian"
    pixels = "continuous"
    error_unit = "(sum of squares)"

    def __init__(self, variance="output", logvar_floor=None, where="gaussian decoder",
                 mean="identity"):
        if variance not in VARIANCES:
            raise ValueError(f"{where}: unknown variance {variance!r}; expected one of "
                             f"{VARIANCES}")
        if mean not in MEANS:
            raise ValueError(f"{where}: unknown mean {mean!r}; expected one of {MEANS}")
        if logvar_floor is not None and (isinstance(logvar_floor, bool) or not (
                isinstance(logvar_floor, (int, float)) and math.isfinite(logvar_floor))):
            raise ValueError(f"{where}: logvar_floor must be a finite number or None, "
                             f"got {logvar_floor!r}")
        self.variance, self.logvar_floor, self.output = variance, logvar_floor, mean
        self.heads = ("mu", "logvar") if variance == "output" else ("mu",)

    def parameters(self, x_dim, dtype):
        """The shared log-variance, {'logvar': zeros (D,) or (1,)}, or {} for 'output'."""
        if self.variance == "output":
            return {}
        return {"logvar": np.zeros((x_dim,) if self.variance == "pixel" else (1,), dtype)}

    def logvar(self, outputs):
        """The log-variance p(x|z) uses: (B, D) from a head, or the shared (D,) or
        (1,), with the floor applied (see the class docstring)."""
        logvar = outputs[1]
        if self.logvar_floor is None:
            return logvar
        return self.logvar_floor + softplus(logvar - self.logvar_floor)

    def log_prob(self, x, outputs):
        """log p(x|z) per row: x (B, D), outputs (mu head, logvar) -> (B,)."""
        mu, logvar = self.mean(outputs), self.logvar(outputs)
        if logvar.shape != mu.shape:
            # a shared logvar, the same for every row: broadcast it to (B, D); add's
            # derivative sums the rows' gradients back into the one parameter
            logvar = add(np.zeros(mu.shape, mu.dtype), logvar)
        return gaussian_log_prob(x, mu, logvar)

    def mean(self, outputs):
        """E[x|z] = mu, (B, D): the mu head, or sigmoid of it for mean='sigmoid'."""
        return sigmoid(outputs[0]) if self.output == "sigmoid" else outputs[0]

    def sample(self, outputs, rng):
        """x = mu + exp(logvar / 2) eps with eps ~ N(0, I): an array (B, D)."""
        mu, logvar = self.mean(outputs).data, self.logvar(outputs).data
        eps = rng.standard_normal(mu.shape, dtype=mu.dtype)
        return mu + np.exp(logvar / 2) * eps

    def error(self, x, outputs):
        """The sum of squares sum_d (x_d - mu_d)^2 per row, (B,) array (no graph)."""
        return _sum_of_squares(x, self.mean(outputs).data)


class SumOfSquares(Likelihood):
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


# each family in its default configuration (the Gaussian's logvar from a decoder head)
LIKELIHOODS = {"bernoulli": Bernoulli(), "gaussian": Gaussian(), "squared": SumOfSquares()}


def likelihood(name, where, variance="output", logvar_floor=None, mean="identity"):
    """The likelihood `name`, with the Gaussian's `variance`, `logvar_floor` and
    `mean` (see `Gaussian`); a ValueError naming `where` for an unknown name, or
    for those options given to a decoder other than the Gaussian."""
    if name not in LIKELIHOODS:
        raise ValueError(f"{where}: unknown decoder {name!r}; expected one of "
                         f"{tuple(LIKELIHOODS)}")
    if name == "gaussian":
        return Gaussian(variance, logvar_floor, where, mean)
    if variance != "output" or logvar_floor is not None or mean != "identity":
        raise ValueError(f"{where}: variance={variance!r}, logvar_floor={logvar_floor!r} and "
                         f"mean={mean!r} apply only to the gaussian decoder, not {name!r}; use "
                         f"variance='output', no floor and mean='identity'")
    return LIKELIHOODS[name]
