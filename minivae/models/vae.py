"""The variational autoencoder of Kingma & Welling (2013), Appendix C.

An MLP encoder q(z|x) = N(z; mu, diag(exp(logvar))), or another family
of section 2.4 (`posteriors`), an MLP decoder p(x|z), Bernoulli (binary x)
or Gaussian (continuous x), and the prior p(z) = N(0, I).  The model only
computes densities; the bounds it is trained on (estimators A and B, eq. 6
and 7) live in `objectives`.
"""
import numpy as np

from minivae.autograd import Tensor, checked_dtype
from minivae.distributions import gaussian_log_prob
from minivae.likelihoods import likelihood
from minivae.nn import MLP
from minivae.posteriors import POSTERIORS


class VAE:
    """Encoder x -> (mu, logvar) and decoder z -> p(x|z), as MLPs.

    `posterior` names q(z|x)'s family in `posteriors.POSTERIORS`: 'gaussian'
    (the paper's, the default), 'laplace' or 'logistic'; the family object is
    `q`, and the encoder's heads are mu and logvar for each.

    `hidden` lists the widths of the encoder's hidden layers (the decoder
    mirrors them); `decoder` names the likelihood, 'bernoulli' (the
    default), 'gaussian' or 'squared'.  Parameters start as N(0, 0.01^2) like the paper
    (`init="normal"`) or Glorot uniform with zero biases (`init="xavier"`).
    A Gaussian decoder's `variance`, `logvar_floor` and `decoder_mean` ('identity', or
    'sigmoid' for means in (0, 1), the paper's Frey Face decoder) are
    `likelihoods.Gaussian`'s variance, logvar_floor and mean; a shared log-variance is
    the parameter 'decoder.logvar', (D,) or (1,), starting at 0.
    """
    has_prior = True
    classes = 0    # C, the size of a one-hot condition y appended to x and z (`cvae`)
    options = ("latent", "hidden", "decoder", "activation", "init", "variance", "logvar_floor",
               "decoder_mean", "posterior")
    default_decoder = "bernoulli"

    def __init__(self, x_dim=784, hidden=(500,), latent=20, decoder=None,
                 activation="tanh", init="normal", variance="output", logvar_floor=None,
                 decoder_mean="identity", posterior="gaussian", dtype=np.float32, rng=None):
        if posterior not in POSTERIORS:
            raise ValueError(f"VAE: unknown posterior {posterior!r}; expected one of "
                             f"{', '.join(POSTERIORS)}")
        self.q = POSTERIORS[posterior]
        self.likelihood = likelihood(decoder or self.default_decoder, "VAE", variance,
                                     logvar_floor, decoder_mean)
        self.x_dim, self.hidden, self.latent = x_dim, tuple(hidden), latent
        self.dtype = checked_dtype(dtype, "VAE")
        rng = np.random.default_rng() if rng is None else rng
        self.encoder = MLP("encoder", x_dim + self.classes, self.hidden,
                           {"mu": latent, "logvar": latent}, activation)
        self.decoder = MLP("decoder", latent + self.classes, self.hidden[::-1],
                           {head: x_dim for head in self.likelihood.heads}, activation)
        phi = self.encoder.init(init, rng, self.dtype)
        theta = self.decoder.init(init, rng, self.dtype)
        shared = self.likelihood.parameters(x_dim, self.dtype)   # p(x|z)'s own, beside the MLP's
        self.shared = tuple(f"decoder.{name}" for name in shared)
        theta.update({f"decoder.{name}": Tensor(value, requires_grad=True)
                      for name, value in shared.items()})
        self.params = {**phi, **theta}   # every forward pass reads its weights from here
        self.recognition, self.generative = tuple(phi), tuple(theta)   # the prior has none

    def named_parameters(self):
        """(name, Tensor) pairs in a stable order, e.g. ('encoder.mu.W', (500, 20))."""
        return list(self.params.items())

    def posterior(self, x):
        """q(z|x): x (B, D) -> mu (B, J), logvar (B, J): the mean and log-variance of
        each q(z_j|x) (Appendix C.2; for another family, see `posteriors`)."""
        return self.encoder(self.params, x)

    def code(self, x):
        """The encoder mean mu (B, J): where x lands in the latent space."""
        return self.posterior(x)[0]

    def decode(self, z):
        """The decoder's outputs for z (B, J): the likelihood's heads, each (B, D),
        then its shared parameters (a shared logvar)."""
        return self.decoder(self.params, z) + tuple(self.params[name] for name in self.shared)

    def reconstruction(self, x):
        """The decoder's outputs for x's own code, decode(mu): x (B, D) -> heads (B, D)."""
        return self.decode(self.code(x))

    def decode_mean(self, z):
        """E[x|z], the decoder's mean: sigmoid(logits), mu or sigmoid(mu head),
        (B, J) -> (B, D)."""
        return self.likelihood.mean(self.decode(z))

    def log_px_given_z(self, x, z):
        """log p(x|z) per row: x (B, D), z (B, J) -> (B,)   (Appendix C.1, C.2)."""
        return self.likelihood.log_prob(x, self.decode(z))

    def log_prior(self, z):
        """log p(z) = log N(z; 0, I) per row: z (B, J) -> (B,)."""
        zeros = np.zeros(z.shape, self.dtype)
        return gaussian_log_prob(z, zeros, zeros)

    def sample_x(self, z, rng):
        """x ~ p(x|z) for z (B, J): an array (B, D) drawn from `rng`."""
        return self.likelihood.sample(self.decode(z), rng)
