"""The conditional VAE (Sohn, Lee & Yan 2015; Bishop's Deep Learning 19.2).

A VAE of x given a condition y, here the class label as a one-hot vector of
C entries.  y enters both networks:

    q(z|x, y) = N(z; mu, diag(exp(logvar))),  the encoder reads [x, y]
                                               (or another family, `posteriors`)
    p(x|z, y),                                 the decoder reads [z, y]
    p(z) = N(0, I),                            the prior does not depend on y

(the prior is Sohn et al.'s simplest choice; their recognition network
p(z|y) is left out).  The bound per datapoint is the VAE's with every density
conditioned on y,

    log p(x|y) >= E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || p(z)),

so the objectives and the importance-sampled log p(x|y) are the VAE's:
the condition travels with x, every row is [pixels (D), onehot(y) (C)],
and the methods below split it.  With y given, z only has to carry what the
label does not say: the style of the digit.
"""
import numpy as np

from minivae.autograd import Tensor
from minivae.models.vae import VAE
from minivae.ops import concatenate


class ConditionalVAE(VAE):
    """A VAE whose encoder reads [x, y] (D + C inputs) and whose decoder reads
    [z, y] (J + C inputs).  x rows are [pixels, onehot(y)], (B, D + C); the
    decoder's input [z, y] (B, J + C) is what `decode`, `decode_mean` and
    `sample_x` take.  `classes` is C; every other option is the VAE's.
    """
    options = VAE.options + ("classes",)

    def __init__(self, classes=10, **options):
        if not (isinstance(classes, (int, np.integer)) and classes >= 1):
            raise ValueError(f"ConditionalVAE: classes must be a positive integer, "
                             f"got {classes!r}")
        self.classes = int(classes)     # read by VAE.__init__ to size both networks
        super().__init__(**options)

    def split(self, x):
        """x (B, D + C) -> pixels (B, D) and the one-hot condition y (B, C)."""
        width, shape = self.x_dim + self.classes, np.shape(getattr(x, "data", x))
        if len(shape) != 2 or shape[1] != width:
            raise ValueError(f"ConditionalVAE: expected x rows of {width} = {self.x_dim} pixels "
                             f"+ {self.classes} one-hot labels, got shape {shape}")
        pixels, y = x[:, :self.x_dim], x[:, self.x_dim:]
        labels = np.asarray(getattr(y, "data", y))
        if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1)):
            raise ValueError(f"ConditionalVAE: the last {self.classes} entries of each x row "
                             f"must be a one-hot label (one 1, the rest 0)")
        return pixels, y

    def posterior(self, x):
        """q(z|x, y): x (B, D + C) holding y -> mu (B, J), logvar (B, J)."""
        self.split(x)   # the shape check
        return self.encoder(self.params, x)

    def log_px_given_z(self, x, z):
        """log p(x|z, y) per row: x (B, D + C) holding y, z (B, J) -> (B,)."""
        pixels, y = self.split(x)
        return self.likelihood.log_prob(pixels, self.decode(self.with_condition(z, y)))

    def reconstruction(self, x):
        """The decoder's outputs for x's own code, decode([mu, y]): heads (B, D)."""
        _, y = self.split(x)
        return self.decode(self.with_condition(self.code(x), y))

    def with_condition(self, z, y):
        """The decoder's input [z, y]: z (B, J) Tensor or array, y (B, C) -> (B, J + C)."""
        y = np.asarray(y.data if isinstance(y, Tensor) else y, dtype=self.dtype)
        return concatenate([z, y], axis=1)
