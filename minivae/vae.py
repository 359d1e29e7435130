"""The variational autoencoder of Kingma & Welling (2013), Appendix C.

An MLP encoder q(z|x) = N(z; mu, diag(exp(logvar))) and an MLP decoder
p(x|z), Bernoulli (binary x) or Gaussian (continuous x), with the prior
p(z) = N(0, I).  `elbo` is the SGVB estimator of the per-datapoint lower
bound: estimator A (eq. 6) or B (eq. 7), with L samples of eps.
"""
import numpy as np

from minivae.autograd import Tensor, checked_dtype
from minivae.distributions import (bernoulli_log_prob, gaussian_kl, gaussian_log_prob,
                                   reparameterize)
from minivae.ops import concatenate, linear, sigmoid

DECODERS = ("bernoulli", "gaussian")
ESTIMATORS = ("A", "B")
INITS = ("normal", "xavier")


class VAE:
    """Encoder x -> (mu, logvar) and decoder z -> p(x|z), as MLPs.

    `hidden` lists the widths of the hidden layers of the encoder (the
    decoder mirrors them); each hidden layer is act(W h + b).  Parameters
    start as N(0, 0.01^2) like the paper (`init="normal"`) or Glorot
    uniform with zero biases (`init="xavier"`).
    """

    def __init__(self, x_dim=784, hidden=(500,), latent=20, decoder="bernoulli",
                 activation="tanh", init="normal", dtype=np.float32, rng=None):
        if decoder not in DECODERS:
            raise ValueError(f"VAE: unknown decoder {decoder!r}; expected one of {DECODERS}")
        if init not in INITS:
            raise ValueError(f"VAE: unknown init {init!r}; expected one of {INITS}")
        if x_dim < 1 or latent < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"VAE: sizes must be positive, got x_dim={x_dim}, "
                             f"hidden={tuple(hidden)}, latent={latent}")
        self.x_dim, self.hidden, self.latent = x_dim, tuple(hidden), latent
        self.decoder, self.activation, self.init = decoder, activation, init
        self.dtype = checked_dtype(dtype, "VAE")
        rng = np.random.default_rng() if rng is None else rng
        self.params = {}
        heads = ("logits",) if decoder == "bernoulli" else ("mu", "logvar")
        self._add_mlp("encoder", x_dim, self.hidden, latent, ("mu", "logvar"), rng)
        self._add_mlp("decoder", latent, self.hidden[::-1], x_dim, heads, rng)

    def _add_mlp(self, name, n_in, hidden, n_out, heads, rng):
        """Parameters `name.hidden.i.{W,b}` and one `name.head.{W,b}` per head."""
        layers = [(f"{name}.hidden.{i}", a, b)
                  for i, (a, b) in enumerate(zip((n_in,) + hidden, hidden))]
        layers += [(f"{name}.{head}", hidden[-1], n_out) for head in heads]
        for prefix, fan_in, fan_out in layers:
            if self.init == "normal":
                W = rng.normal(0.0, 0.01, (fan_in, fan_out))
                b = rng.normal(0.0, 0.01, fan_out)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                W, b = rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)
            self.params[f"{prefix}.W"] = Tensor(W.astype(self.dtype), requires_grad=True)
            self.params[f"{prefix}.b"] = Tensor(b.astype(self.dtype), requires_grad=True)

    def named_parameters(self):
        """(name, Tensor) pairs in a stable order, e.g. ('encoder.mu.W', (500, 20))."""
        return list(self.params.items())

    def _mlp(self, name, h, n_hidden):
        p = self.params
        for i in range(n_hidden):
            h = linear(h, p[f"{name}.hidden.{i}.W"], p[f"{name}.hidden.{i}.b"], self.activation)
        return h

    def _head(self, h, name):
        return linear(h, self.params[f"{name}.W"], self.params[f"{name}.b"])

    def encode(self, x):
        """q(z|x): x (B, D) -> mu (B, J), logvar (B, J)   (Appendix C.2)."""
        h = self._mlp("encoder", x, len(self.hidden))
        return self._head(h, "encoder.mu"), self._head(h, "encoder.logvar")

    def decode(self, z):
        """p(x|z): z (B, J) -> logits (B, D) for Bernoulli, (mu, logvar) for Gaussian."""
        h = self._mlp("decoder", z, len(self.hidden))
        if self.decoder == "bernoulli":
            return self._head(h, "decoder.logits")
        return self._head(h, "decoder.mu"), self._head(h, "decoder.logvar")

    def mean_x(self, z):
        """E[x|z], the decoder's mean: sigmoid(logits) or mu, (B, J) -> (B, D)."""
        if self.decoder == "bernoulli":
            return sigmoid(self.decode(z))
        return self.decode(z)[0]

    def log_px_given_z(self, x, z):
        """log p(x|z) per row: x (B, D), z (B, J) -> (B,)   (Appendix C.1, C.2)."""
        if self.decoder == "bernoulli":
            return bernoulli_log_prob(x, self.decode(z))
        mu, logvar = self.decode(z)
        return gaussian_log_prob(x, mu, logvar)

    def _samples(self, x, eps):
        """z_l = mu + sigma * eps_l for eps (L, B, J), with mu, logvar and x
        repeated L times so that all L*B rows go through the decoder at once."""
        L, B, J = eps.shape
        if x.shape[0] != B or J != self.latent:
            raise ValueError(f"VAE: eps has shape {eps.shape}, expected (L, {x.shape[0]}, "
                             f"{self.latent}) for x of shape {x.shape}")
        mu, logvar = self.encode(x)
        mu_L, logvar_L = (t if L == 1 else concatenate([t] * L) for t in (mu, logvar))
        z = reparameterize(mu_L, logvar_L, eps.reshape(L * B, J))   # eq. 10
        x_L = x if L == 1 else np.tile(x, (L, 1))
        return mu, logvar, mu_L, logvar_L, z, x_L

    def log_weights(self, x, eps):
        """log p(x, z_l) - log q(z_l|x) = log p(x|z_l) + log p(z_l) - log q(z_l|x).

        x (B, D), eps (L, B, J) -> (L, B).  Their mean over L is estimator A
        (eq. 6); their log-mean-exp is the importance-sampled log p(x).
        """
        L, B, J = eps.shape
        _, _, mu_L, logvar_L, z, x_L = self._samples(x, eps)
        zeros = np.zeros(z.shape, self.dtype)
        log_pz = gaussian_log_prob(z, zeros, zeros)
        log_qz = gaussian_log_prob(z, mu_L, logvar_L)
        return (self.log_px_given_z(x_L, z) + log_pz - log_qz).reshape(L, B)

    def elbo(self, x, eps, estimator="B"):
        """The SGVB estimate of the lower bound L(theta, phi; x_i), per datapoint.

        x (B, D) data in the model's dtype, eps (L, B, J) ~ N(0, I) -> (B,),
        in nats.  Estimator A (eq. 6) averages log p(x, z_l) - log q(z_l|x)
        over the L samples; estimator B (eq. 7) takes the KL term
        analytically (Appendix B): -KL(q(z|x) || p(z)) + 1/L sum_l log p(x|z_l).
        The minibatch estimate of eq. 8 is N times the mean of this vector.
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"elbo: unknown estimator {estimator!r}; expected 'A' or 'B'")
        if estimator == "A":
            return self.log_weights(x, eps).mean(axis=0)
        L, B, _ = eps.shape
        mu, logvar, _, _, z, x_L = self._samples(x, eps)
        log_px = self.log_px_given_z(x_L, z).reshape(L, B).mean(axis=0)
        return log_px - gaussian_kl(mu, logvar)

