"""Multilayer perceptrons: the encoder and decoder networks of Appendix C.

An `MLP` is a stack of hidden layers h = act(h W + b) followed by one affine
"head" per output (mu and logvar of a Gaussian, the logits of a Bernoulli).
Its parameters live in a dict under stable names, `<name>.hidden.<i>.{W,b}`
and `<name>.<head>.{W,b}`, so that a model made of several MLPs is the union
of their dicts and a checkpoint stores each array by name.
"""
import numpy as np

from minivae.autograd import Tensor, checked_dtype
from minivae.kernels import ACTIVATIONS as _ACTIVATION_CODES
from minivae.ops import linear

ACTIVATIONS = tuple(_ACTIVATION_CODES)   # identity, tanh, sigmoid, relu, softplus
INITS = ("normal", "xavier")


def init_layer(fan_in, fan_out, init, rng, dtype):
    """W (fan_in, fan_out) and b (fan_out,) of one layer, drawn from `rng`.

    'normal': every entry N(0, 0.01^2), the paper's choice (section 5);
    'xavier': W Glorot-uniform in +-sqrt(6 / (fan_in + fan_out)), b = 0.
    """
    if init == "normal":
        W = rng.normal(0.0, 0.01, (fan_in, fan_out))
        b = rng.normal(0.0, 0.01, fan_out)
    elif init == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        W, b = rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)
    else:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    return W.astype(dtype), b.astype(dtype)


class MLP:
    """n_in -> hidden widths -> one affine head per entry of `heads` (name -> width).

    With no hidden widths the heads are affine maps of the input itself.

    An MLP is a description: its parameters live in the caller's dict, so
    that a model's `params` is the one place its weights are read from (swap
    the dict, and the same network computes with other weights).
    `MLP("encoder", 784, (500,), {"mu": 20, "logvar": 20}, "tanh")` is the
    paper's MNIST encoder; `init` draws its parameters.
    """

    def __init__(self, name, n_in, hidden, heads, activation="tanh"):
        hidden = tuple(hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"{name}: unknown activation {activation!r}; expected one of "
                             f"{ACTIVATIONS}")
        if n_in < 1 or min(hidden + tuple(heads.values())) < 1:
            raise ValueError(f"{name}: sizes must be positive, got n_in={n_in}, "
                             f"hidden={hidden}, heads={heads}")
        self.name, self.activation, self.heads = name, activation, tuple(heads)
        self.n_hidden = len(hidden)
        self.layers = [(f"{name}.hidden.{i}", a, b)
                       for i, (a, b) in enumerate(zip((n_in,) + hidden, hidden))]
        last = ((n_in,) + hidden)[-1]   # no hidden layers: the heads read x itself (linear)
        self.layers += [(f"{name}.{head}", last, width) for head, width in heads.items()]

    def init(self, init="normal", rng=None, dtype=np.float32):
        """The parameters {'<layer>.W': Tensor, '<layer>.b': Tensor}, drawn from `rng`
        layer by layer (hidden layers first, then the heads in order, W before b)."""
        rng = np.random.default_rng() if rng is None else rng
        dtype = checked_dtype(dtype, self.name)
        params = {}
        for prefix, fan_in, fan_out in self.layers:
            W, b = init_layer(fan_in, fan_out, init, rng, dtype)
            params[f"{prefix}.W"] = Tensor(W, requires_grad=True)
            params[f"{prefix}.b"] = Tensor(b, requires_grad=True)
        return params

    def hidden(self, params, x):
        """The last hidden layer's activations: x (B, n_in) -> (B, hidden[-1])."""
        h = x
        for i in range(self.n_hidden):
            prefix = f"{self.name}.hidden.{i}"
            h = linear(h, params[f"{prefix}.W"], params[f"{prefix}.b"], self.activation)
        return h

    def __call__(self, params, x):
        """Every head's output h W + b, in the order of `heads`: a tuple of (B, width)."""
        h = self.hidden(params, x)
        return tuple(linear(h, params[f"{self.name}.{head}.W"], params[f"{self.name}.{head}.b"])
                     for head in self.heads)
