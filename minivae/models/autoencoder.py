"""Deterministic autoencoders, Bishop's Deep Learning ch. 19.1.

An encoder z = f(x) and a decoder y(z), both MLPs, trained to reconstruct
x (eq. 19.1): by the sum-of-squares error on intensities (`decoder=
"squared"`) or the Bernoulli cross-entropy from logits on binary pixels.
There is no prior over z: a code is a point, not a distribution.

    Autoencoder          deep when `hidden` has widths (19.1.2, nonlinear PCA);
                         the sparse (19.1.3) and denoising (19.1.4) autoencoders
                         are this model with another objective (`objectives`)
    LinearAutoencoder    no hidden layer and no nonlinearity (19.1.1): with M < D
                         it learns the principal subspace of the data
    MaskedAutoencoder    its encoder sees the visible pixels and the mask (19.1.5)
"""
import numpy as np

from minivae.autograd import Tensor, checked_dtype
from minivae.likelihoods import likelihood
from minivae.nn import MLP


class Autoencoder:
    """Encoder x -> z (one affine head after the hidden layers) and decoder
    z -> the likelihood's heads; the decoder mirrors the hidden widths."""
    has_prior = False
    classes = 0               # unconditional: x is the pixels alone
    options = ("latent", "hidden", "decoder", "activation", "init")
    default_decoder = "bernoulli"
    inputs_per_pixel = 1      # what the encoder reads per pixel (the masked one reads 2)

    def __init__(self, x_dim=784, hidden=(500,), latent=20, decoder=None, activation="tanh",
                 init="normal", dtype=np.float32, rng=None):
        self.likelihood = likelihood(decoder or self.default_decoder, type(self).__name__)
        self.x_dim, self.hidden, self.latent = x_dim, tuple(hidden), latent
        self.dtype = checked_dtype(dtype, type(self).__name__)
        rng = np.random.default_rng() if rng is None else rng
        self.encoder = MLP("encoder", self.inputs_per_pixel * x_dim, self.hidden,
                           {"z": latent}, activation)
        self.decoder = MLP("decoder", latent, self.hidden[::-1],
                           {head: x_dim for head in self.likelihood.heads}, activation)
        self.params = {**self.encoder.init(init, rng, self.dtype),
                       **self.decoder.init(init, rng, self.dtype)}

    def named_parameters(self):
        """(name, Tensor) pairs in a stable order, e.g. ('encoder.z.W', (500, 20))."""
        return list(self.params.items())

    def code(self, x):
        """z = f(x): x (B, D) -> (B, M)."""
        (z,) = self.encoder(self.params, x)
        return z

    def decode(self, z):
        """The decoder's outputs for z (B, M): the likelihood's heads, each (B, D)."""
        return self.decoder(self.params, z)

    def reconstruction(self, x):
        """The decoder's outputs for x's own code, decode(f(x)): x (B, D) -> heads (B, D)."""
        return self.decode(self.code(x))

    def decode_mean(self, z):
        """The reconstruction y(z), (B, M) -> (B, D): sigmoid(logits) or the mean."""
        return self.likelihood.mean(self.decode(z))


class LinearAutoencoder(Autoencoder):
    """z = x W_e + b_e, y = z W_d + b_d (19.1.1): PCA's subspace, learned by gradients."""
    options = ("latent", "decoder", "init")
    default_decoder = "squared"

    def __init__(self, x_dim=784, latent=20, decoder=None, init="normal", dtype=np.float32,
                 rng=None):
        super().__init__(x_dim, (), latent, decoder, "identity", init, dtype, rng)


class MaskedAutoencoder(Autoencoder):
    """The encoder reads the image with its masked pixels set to 0 beside the
    mask itself (1 where masked), so that a masked pixel and a black one
    differ; on MNIST, mostly black, that is most of the information."""
    default_decoder = "squared"
    options = ("latent", "hidden", "activation", "init")
    inputs_per_pixel = 2

    def __init__(self, x_dim=784, hidden=(500,), latent=20, activation="tanh", init="normal",
                 dtype=np.float32, rng=None):
        super().__init__(x_dim, hidden, latent, None, activation, init, dtype, rng)

    def code(self, x, mask=None):
        """z = f(x with masked pixels 0, mask): x (B, D), mask (B, D) of 0/1 or None."""
        x = np.asarray(x.data if isinstance(x, Tensor) else x, dtype=self.dtype)
        mask = np.zeros_like(x) if mask is None else np.asarray(mask, dtype=self.dtype)
        (z,) = self.encoder(self.params, np.concatenate([x * (1 - mask), mask], axis=1))
        return z
