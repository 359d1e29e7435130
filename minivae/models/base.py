"""The model contract: what train, evaluate, plots and checkpoints rely on.

A documented protocol and nothing more: a model need not inherit from it,
only provide these attributes.  Tensors are minivae Tensors; x is (B, D)
data in the model's dtype, z is (B, J) latent codes.

A conditional model (classes C > 0) models x given a label y: each of its x
rows is the pixels followed by the one-hot label, [pixels (D), onehot(y) (C)],
(B, D + C), wherever x is passed below (`data.Inputs` builds such rows), and
its decoder's input is [z, y], (B, J + C): what its decode, decode_mean and
sample_x take in place of z.  The pixels of any x are x[:, :x_dim].

Every model:
    dtype                  float32 or float64, of every parameter and result
    x_dim, latent          D and J
    classes                C, the number of classes of the condition y; 0 when
                           the model is not conditional
    params                 dict name -> Tensor in a stable order, e.g. 'encoder.mu.W';
                           a checkpoint stores each array under its name
    named_parameters()     list(params.items())
    has_prior              True when z has a prior p(z) that samples can be drawn from
    code(x)                (B, J): what a latent scatter shows, mu of q(z|x) for a VAE
    decode_mean(z)         (B, D): E[x|z], for samples, the manifold and reconstructions
    reconstruction(x)      the decoder's outputs (the likelihood's heads, each (B, D))
                           for x's own code: decode(code(x)), or decode([mu, y])
    likelihood             the p(x|z) object (`likelihoods`); its `pixels` says whether
                           the data must be binary or continuous

Latent-variable models (has_prior is True) add:
    q                      q(z|x)'s family (`posteriors`): its noise, sample (eq. 10),
                           log_prob and KL to N(0, I), from the encoder's two outputs
    posterior(x)           those outputs, each (B, J): the mean mu and log-variance
                           logvar of each q(z_j|x), e.g. q(z|x) = N(mu, diag(exp(logvar)))
    log_px_given_z(x, z)   (B,): log p(x|z)
    log_prior(z)           (B,): log p(z)
    sample_x(z, rng)       an array (B, D): x ~ p(x|z)
    recognition, generative
                           the names of the parameters of q(z|x) (phi) and of
                           p(x|z) p(z) (theta); together they are all of `params`
"""
from typing import Protocol, runtime_checkable


@runtime_checkable
class Model(Protocol):
    """What every model provides (see the module docstring for shapes)."""
    dtype: object
    x_dim: int
    latent: int
    classes: int
    params: dict
    has_prior: bool

    def named_parameters(self): ...
    def code(self, x): ...
    def decode_mean(self, z): ...
    def reconstruction(self, x): ...


@runtime_checkable
class LatentVariableModel(Model, Protocol):
    """A model with a prior p(z), a decoder p(x|z) and an encoder q(z|x)."""
    q: object
    recognition: tuple
    generative: tuple

    def posterior(self, x): ...
    def log_px_given_z(self, x, z): ...
    def log_prior(self, z): ...
    def sample_x(self, z, rng): ...
