"""The reference PyTorch VAE that benchmarks/bench_epoch.py times against minivae.

The same model as minivae.vae.VAE with a Bernoulli decoder and estimator B,
written the way a PyTorch user would: nn.Linear layers, encode -> (mu,
logvar), reparameterize, decode -> logits, and the loss

    -ELBO = BCE-with-logits(logits, x) summed over pixels + KL(q(z|x) || p(z)),

averaged over the minibatch: what minivae computes as -model.elbo(x, eps).mean().
Modules are named so that a minivae parameter `encoder.mu.W` is the torch
parameter `encoder.mu.weight` (transposed: minivae's W is (in, out), an
nn.Linear weight is (out, in)) and `encoder.mu.b` is `encoder.mu.bias`.

Only the benchmark imports this file; minivae never imports torch.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


class MLP(nn.Module):
    """Hidden layers act(W h + b), then one linear head per name in `heads`."""

    def __init__(self, n_in, hidden, n_out, heads, activation, dtype):
        super().__init__()
        widths = (n_in,) + tuple(hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b, dtype=dtype)
                                    for a, b in zip(widths, widths[1:]))
        for head in heads:
            self.add_module(head, nn.Linear(widths[-1], n_out, dtype=dtype))
        self.act = ACTIVATIONS[activation]

    def body(self, h):
        for layer in self.hidden:
            h = self.act(layer(h))
        return h


class TorchVAE(nn.Module):
    """x (B, D) -> -ELBO averaged over the minibatch, Bernoulli decoder, estimator B."""

    def __init__(self, x_dim=784, hidden=(500,), latent=20, activation="tanh",
                 dtype=torch.float32):
        super().__init__()
        self.encoder = MLP(x_dim, hidden, latent, ("mu", "logvar"), activation, dtype)
        self.decoder = MLP(latent, tuple(hidden)[::-1], x_dim, ("logits",), activation, dtype)

    def encode(self, x):
        h = self.encoder.body(x)
        return self.encoder.mu(h), self.encoder.logvar(h)

    def reparameterize(self, mu, logvar, eps):
        return mu + torch.exp(0.5 * logvar) * eps                  # eq. 10

    def decode(self, z):
        return self.decoder.logits(self.decoder.body(z))

    def loss(self, x, eps):
        """-ELBO (eq. 7, L = 1) averaged over the minibatch; eps (B, J) ~ N(0, I)."""
        mu, logvar = self.encode(x)
        logits = self.decode(self.reparameterize(mu, logvar, eps))
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # Appendix B
        return (bce + kl) / x.shape[0]

    def load_minivae(self, named_arrays):
        """Copy minivae's parameters in: pairs (name, array) like ('encoder.mu.W', (500, 20))."""
        own = dict(self.named_parameters())
        with torch.no_grad():
            for name, array in named_arrays:
                target = own.pop(torch_name(name))
                array = array.T if name.endswith(".W") else array
                target.copy_(torch.from_numpy(np.ascontiguousarray(array)))
        if own:
            raise ValueError(f"load_minivae: no minivae parameter for {sorted(own)}")

    def minivae_grads(self):
        """Gradients named and shaped like minivae's: {'encoder.mu.W': (500, 20) array, ...}."""
        return {minivae_name(name): (p.grad.T if name.endswith(".weight") else p.grad).numpy()
                for name, p in self.named_parameters()}

    def minivae_params(self):
        """Parameters named and shaped like minivae's, as numpy arrays."""
        return {minivae_name(name): (p.T if name.endswith(".weight") else p).detach().numpy()
                for name, p in self.named_parameters()}


TORCH_KIND = {"W": "weight", "b": "bias"}
MINIVAE_KIND = {v: k for k, v in TORCH_KIND.items()}


def torch_name(name):
    """'encoder.hidden.0.W' -> 'encoder.hidden.0.weight', '.b' -> '.bias'."""
    stem, kind = name.rsplit(".", 1)
    return f"{stem}.{TORCH_KIND[kind]}"


def minivae_name(name):
    """'encoder.mu.weight' -> 'encoder.mu.W', '.bias' -> '.b'."""
    stem, kind = name.rsplit(".", 1)
    return f"{stem}.{MINIVAE_KIND[kind]}"
