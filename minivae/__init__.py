"""minivae: Auto-Encoding Variational Bayes (Kingma & Welling, 2013) in NumPy and Numba.

The layers, from the bottom up:
    kernels        Numba loops for the arithmetic
    autograd       Tensor and reverse-mode backward
    ops            differentiable ops, each derivative beside its forward
    distributions  fused Bernoulli/Gaussian log-densities, KL, reparameterization
    gradcheck      the engine's gradients against finite differences
    data           MNIST IDX files and per-minibatch binarization
"""
from minivae.autograd import OPS, Tensor, no_grad
from minivae.distributions import (bernoulli_log_prob, gaussian_kl, gaussian_log_prob,
                                   reparameterize)
from minivae.gradcheck import GradcheckError, gradcheck
from minivae.ops import (abs, add, astype, concatenate, div, exp, getitem, linear, log, logsumexp,
                         matmul, mean, mul, neg, pow, relu, reshape, sigmoid, softplus, split,
                         sqrt, sub, sum, tanh, transpose)

__version__ = "0.1.0"
