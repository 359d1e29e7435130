"""minivae: Auto-Encoding Variational Bayes (Kingma & Welling, 2013) in NumPy and Numba.

The modules, from the bottom up:
    kernels        the loops that do the arithmetic (Numba, and NumPy's SIMD ufuncs)
    autograd       Tensor and reverse-mode backward
    ops            differentiable ops, each derivative beside its forward
    distributions  fused Bernoulli/Gaussian log-densities, KL, reparameterization
    gradcheck      the engine's gradients against finite differences
    vae            encoder, decoders and the SGVB estimators A and B
    optim          SGD, Adagrad and Adam
    evaluate       test ELBO and importance-sampled log p(x)
    data           MNIST IDX files and per-minibatch binarization
    checkpoint     atomic .npz checkpoints
    train          the AEVB loop (Algorithm 1)
    plots          figures of what a model learned
    cli            the `minivae` command

This namespace holds the engine: Tensor, the ops and gradcheck.
"""
from minivae.autograd import OPS, Tensor, no_grad
from minivae.distributions import (bernoulli_log_prob, gaussian_kl, gaussian_log_prob,
                                   reparameterize)
from minivae.gradcheck import GradcheckError, gradcheck
from minivae.ops import (abs, add, astype, concatenate, div, exp, getitem, linear, log, logsumexp,
                         matmul, mean, mul, neg, pow, relu, reshape, sigmoid, softplus, split,
                         sqrt, sub, sum, tanh, transpose)

__version__ = "0.1.0"
__all__ = ["OPS", "Tensor", "no_grad", "gradcheck", "GradcheckError",
           "bernoulli_log_prob", "gaussian_kl", "gaussian_log_prob", "reparameterize",
           "abs", "add", "astype", "concatenate", "div", "exp", "getitem", "linear", "log",
           "logsumexp", "matmul", "mean", "mul", "neg", "pow", "relu", "reshape", "sigmoid",
           "softplus", "split", "sqrt", "sub", "sum", "tanh", "transpose"]
