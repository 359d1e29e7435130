"""minivae: Auto-Encoding Variational Bayes (Kingma & Welling, 2013) in NumPy and Numba.

The modules, from the bottom up:
    kernels        the loops that do the arithmetic (Numba, and NumPy's SIMD ufuncs)
    family_kernels the loops of the Laplace and logistic posteriors (section 2.4)
    numba_cache    where Numba caches the compiled kernels (a per-user place if need be)
    autograd       Tensor and reverse-mode backward
    ops            differentiable ops, each derivative beside its forward
    distributions  fused Bernoulli/Gaussian log-densities, KL, reparameterization, and the
                   Laplace and logistic densities and samplers of section 2.4
    gradcheck      the engine's gradients against finite differences
    posteriors     the families q(z|x) of section 2.4: Gaussian, Laplace, logistic
    nn             MLPs: hidden layers and one affine head per output
    likelihoods    p(x|z): Bernoulli, Gaussian and sum of squares; the pixels each models
    models         the model contract (models.base) and the registry: the VAE, the
                   conditional VAE, the autoencoders of Bishop 19.1 and PCA
    corruptions    masking and Gaussian noise, and patch masks (Bishop 19.1.4-5)
    objectives     the SGVB estimators A (eq. 6) and B (eq. 7), beta and its warm-up, the
                   IWAE bound; the autoencoders' losses
    optim          SGD, Adagrad and Adam
    algorithms     one step of learning: GradientAscent (Algorithm 1's update), FitPCA
    hmc            Hamiltonian Monte Carlo over many chains, its step sizes, log p(x, z)
    mcem           Monte Carlo EM with HMC chains per training point (section 5)
    evaluate       test objective, reconstruction error, importance-sampled log p(x)
    activity       active units: which latent dimensions a model uses
    data           MNIST IDX files, binarization, dequantization, the model's x per minibatch
    config         a run's configuration in sections, and presets
    checkpoint     atomic .npz checkpoints
    runs           the run directory: its files, metrics, loading a trained model
    train          the AEVB loop (Algorithm 1)
    plots          figures of what a model learned
    epoch_figures  the figures a run draws after every epoch
    probe          a linear probe of a model's code
    cli            the `minivae` command

This namespace holds the engine (kernels, autograd, ops, distributions,
gradcheck): Tensor, the ops and gradcheck.  Importing it loads nothing else.
"""
from minivae.autograd import OPS, Tensor, no_grad
from minivae.distributions import (bernoulli_log_prob, gaussian_kl, gaussian_log_prob,
                                   laplace_log_prob, location_scale, location_scale_kl,
                                   logistic_inverse_cdf, logistic_log_prob, reparameterize)
from minivae.gradcheck import GradcheckError, gradcheck
from minivae.ops import (abs, add, astype, concatenate, div, exp, getitem, linear, log, logsumexp,
                         matmul, mean, mul, neg, pow, relu, reshape, sigmoid, softplus, split,
                         sqrt, sub, sum, tanh, transpose)

__version__ = "0.1.0"
__all__ = ["OPS", "Tensor", "no_grad", "gradcheck", "GradcheckError",
           "bernoulli_log_prob", "gaussian_kl", "gaussian_log_prob", "reparameterize",
           "laplace_log_prob", "location_scale", "location_scale_kl", "logistic_inverse_cdf",
           "logistic_log_prob",
           "abs", "add", "astype", "concatenate", "div", "exp", "getitem", "linear", "log",
           "logsumexp", "matmul", "mean", "mul", "neg", "pow", "relu", "reshape", "sigmoid",
           "softplus", "split", "sqrt", "sub", "sum", "tanh", "transpose"]
