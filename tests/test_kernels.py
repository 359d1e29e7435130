"""Every Numba kernel agrees with the plain-numpy formula, in float32 and float64.

Each reference below is the obvious formula from the paper, evaluated in
float64 on the very values the kernel receives, so the only difference
left is the kernel's own rounding.  Then: no dtype promotion, exact values
at extreme inputs, NaN propagation, float32 code that really is float32
(read from the LLVM IR), and a second process that loads the compiled
kernels from the disk cache instead of compiling them again.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minivae import kernels
from minivae.kernels import ACTIVATIONS

REPO = Path(__file__).resolve().parents[1]
DTYPES = [np.float32, np.float64]
# float32 carries ~7 significant digits, float64 ~16; sums over d add a few ulps.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
ROW_SHAPES = [(1, 1), (1, 7), (5, 1), (4, 6)]  # (n, d), n = 1 and d = 1 included
LOG_2PI = np.log(2 * np.pi)


def draw(rng, shape, dtype, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, shape).astype(dtype)


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def assert_close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, **TOL[dtype])


# ---------------------------------------------------------------- references

def sigmoid_ref(x):
    """1 / (1 + e^-x) without overflow: e^-|x| never exceeds 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


ACT_REF = {  # name: (act(x), act'(x))
    "identity": (lambda x: x, lambda x: np.ones_like(x)),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (sigmoid_ref, lambda x: sigmoid_ref(x) * (1 - sigmoid_ref(x))),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype)),
    "softplus": (lambda x: np.logaddexp(0, x), sigmoid_ref),
}


def test_every_activation_code_has_a_reference():
    assert set(ACT_REF) == set(ACTIVATIONS)


# ---------------------------------------------------------------- matmul

MATMUL_SHAPES = [(1, 1, 1), (1, 5, 3), (4, 1, 6), (3, 7, 2), (6, 4, 6)]  # (n, k, m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,m", MATMUL_SHAPES)
@pytest.mark.parametrize("matmul", [kernels.matmul_loop, kernels.matmul], ids=["loop", "blas"])
def test_matmul_equals_numpy_matmul_in_the_input_dtype(matmul, n, k, m, dtype):
    rng = np.random.default_rng(n * 100 + k * 10 + m)
    a, b = draw(rng, (n, k), dtype), draw(rng, (k, m), dtype)
    out = matmul(a, b)
    assert out.dtype == dtype and out.shape == (n, m)
    a64, b64 = f64(a, b)
    assert_close(out, a64 @ b64, dtype)


@pytest.mark.parametrize("matmul", [kernels.matmul_loop, kernels.matmul], ids=["loop", "blas"])
def test_matmul_on_the_encoders_first_layer_shape_in_float32(matmul):
    rng = np.random.default_rng(784)
    x = rng.random((100, 784)).astype(np.float32)                  # a minibatch of images
    W = (rng.standard_normal((784, 500)) * 0.05).astype(np.float32)
    out = matmul(x, W)
    assert out.dtype == np.float32 and out.shape == (100, 500)
    x64, W64 = f64(x, W)
    # 784 float32 products summed: error grows like sqrt(784) ulps of the partial sums
    np.testing.assert_allclose(out, x64 @ W64, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (37,), (3, 5)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_equals_the_activation_formula(name, shape, dtype):
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    x = draw(rng, shape, dtype, -6.0, 6.0)
    y = kernels.activate(x, ACTIVATIONS[name])
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, ACT_REF[name][0](f64(x)[0]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (37,), (3, 5)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_grad_equals_upstream_times_the_derivative(name, shape, dtype):
    rng = np.random.default_rng(len(shape) * 10 + shape[0] + 1)
    x64 = f64(draw(rng, shape, dtype, -6.0, 6.0))[0]
    act, slope = ACT_REF[name]
    y = act(x64).astype(dtype)          # the kernel sees the forward's output, rounded
    g = draw(rng, shape, dtype)
    out = kernels.activate_grad(y, g, ACTIVATIONS[name])
    assert out.dtype == dtype and out.shape == shape
    assert_close(out, f64(g)[0] * slope(x64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (5, 1), (4, 7)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_bias_activate_overwrites_pre_with_act_of_pre_plus_bias(name, n, m, dtype):
    rng = np.random.default_rng(n * 10 + m)
    pre, b = draw(rng, (n, m), dtype), draw(rng, (m,), dtype)
    buffer = pre.copy()
    returned = kernels.bias_activate(buffer, b, ACTIVATIONS[name])
    assert returned is None                      # in place: the result is in `buffer`
    assert buffer.dtype == dtype
    # pre + b is rounded to the dtype before the activation, as in the kernel
    assert_close(buffer, ACT_REF[name][0](f64((pre + b).astype(dtype))[0]), dtype)


# ---------------------------------------------------------------- Bernoulli

def bernoulli_log_prob_ref(x, logits):
    """sum_j x log y + (1 - x) log(1 - y), y = sigmoid(l): the definition (Appendix C)."""
    y = sigmoid_ref(logits)
    return np.sum(x * np.log(y) + (1 - x) * np.log(1 - y), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_bernoulli_log_prob_equals_its_definition(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    x = rng.random(shape).astype(dtype)         # intensities in [0, 1], not only 0/1
    x[0, 0] = 1.0
    logits = draw(rng, shape, dtype, -8.0, 8.0)
    out = kernels.bernoulli_log_prob(x, logits)
    assert out.dtype == dtype and out.shape == (shape[0],)
    assert_close(out, bernoulli_log_prob_ref(*f64(x, logits)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_bernoulli_log_prob_grad_is_g_times_x_minus_sigmoid(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 1)
    x = rng.random(shape).astype(dtype)
    logits = draw(rng, shape, dtype, -8.0, 8.0)
    g = draw(rng, (shape[0],), dtype)
    out = kernels.bernoulli_log_prob_grad(x, logits, g)
    assert out.dtype == dtype and out.shape == shape
    x64, l64, g64 = f64(x, logits, g)
    assert_close(out, g64[:, None] * (x64 - sigmoid_ref(l64)), dtype)


# One row per case, d = 1:  log p(x|l) = x l - softplus(l), derived by hand:
#   x=1, l=+L: L - (L + log(1 + e^-L)) = 0        x=0, l=+L: -L
#   x=1, l=-L: -L - log(1 + e^-L)      = -L       x=0, l=-L: -log(1 + e^-L) = 0
# (e^-L underflows to 0 for L = 1000 in float64, and for L = 1e30 in float32.)
EXTREME_X = [1.0, 0.0, 1.0, 0.0]
EXTREME_SIGN = [1.0, 1.0, -1.0, -1.0]
EXTREME_LOG_PROB = [0.0, -1.0, -1.0, 0.0]     # times L
EXTREME_GRAD = [0.0, -1.0, 1.0, 0.0]          # x - sigmoid(l): sigmoid(+-L) is exactly 1, 0
EXTREME_LOGITS = [(np.float64, 1000.0), (np.float32, 1000.0), (np.float32, 1e30),
                  (np.float64, 1e300)]


@pytest.mark.parametrize("dtype,L", EXTREME_LOGITS)
def test_bernoulli_log_prob_is_exact_at_huge_logits(dtype, L):
    x = np.array(EXTREME_X, dtype)[:, None]
    logits = (np.array(EXTREME_SIGN) * L).astype(dtype)[:, None]
    out = kernels.bernoulli_log_prob(x, logits)
    expected = np.array(EXTREME_LOG_PROB, dtype) * dtype(L)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype,L", EXTREME_LOGITS)
def test_bernoulli_log_prob_grad_is_exact_at_huge_logits(dtype, L):
    x = np.array(EXTREME_X, dtype)[:, None]
    logits = (np.array(EXTREME_SIGN) * L).astype(dtype)[:, None]
    out = kernels.bernoulli_log_prob_grad(x, logits, np.ones(4, dtype))
    np.testing.assert_array_equal(out, np.array(EXTREME_GRAD, dtype)[:, None])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_log_prob_sums_exact_terms_over_a_row(dtype):
    # a binarized image row with confident logits: every term is 0 or -|l|
    x = np.array([[1, 0, 1, 0, 1]], dtype)
    logits = np.array([[1000, -1000, -1000, 1000, 1000]], dtype)
    np.testing.assert_array_equal(kernels.bernoulli_log_prob(x, logits),
                                  np.array([-2000.0], dtype))


# ---------------------------------------------------------------- Gaussian KL

def gaussian_kl_ref(mu, logvar):
    """-KL = 1/2 sum_j (1 + log sigma^2 - mu^2 - sigma^2)   (Appendix B)."""
    return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_kl_equals_appendix_b(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 2)
    mu, logvar = draw(rng, shape, dtype), draw(rng, shape, dtype)
    out = kernels.gaussian_kl(mu, logvar)
    assert out.dtype == dtype and out.shape == (shape[0],)
    assert_close(out, gaussian_kl_ref(*f64(mu, logvar)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_kl_grad_is_g_mu_and_g_half_sigma2_minus_1(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 3)
    mu, logvar = draw(rng, shape, dtype), draw(rng, shape, dtype)
    g = draw(rng, (shape[0],), dtype)
    gmu, glogvar = kernels.gaussian_kl_grad(mu, logvar, g)
    assert gmu.dtype == glogvar.dtype == dtype and gmu.shape == glogvar.shape == shape
    mu64, lv64, g64 = f64(mu, logvar, g)
    assert_close(gmu, g64[:, None] * mu64, dtype)
    assert_close(glogvar, g64[:, None] * 0.5 * (np.exp(lv64) - 1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_is_finite_and_right_at_logvar_plus_minus_50(dtype):
    mu = np.array([[0.0], [0.0], [2.0]], dtype)
    logvar = np.array([[50.0], [-50.0], [-50.0]], dtype)
    out = kernels.gaussian_kl(mu, logvar)
    gmu, glogvar = kernels.gaussian_kl_grad(mu, logvar, np.ones(3, dtype))
    # by hand: KL = (e^lv + mu^2 - lv - 1) / 2, e^50 = 5.184705528587072e21
    e50 = 5.184705528587072e21
    expected = [(e50 - 51) / 2, (50 - 1) / 2 + np.exp(-50) / 2, (4 + 50 - 1) / 2]
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(glogvar))
    assert_close(out, expected, dtype)
    assert_close(glogvar[:, 0], [(e50 - 1) / 2, (np.exp(-50) - 1) / 2, (np.exp(-50) - 1) / 2],
                 dtype)
    assert_close(gmu[:, 0], [0.0, 0.0, 2.0], dtype)


# ---------------------------------------------------------------- Gaussian log-density

def gaussian_log_prob_ref(x, mu, logvar):
    """log of the density 1/sqrt(2 pi sigma^2) exp(-(x - mu)^2 / (2 sigma^2)), summed."""
    var = np.exp(logvar)
    density = np.exp(-(x - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
    return np.sum(np.log(density), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_log_prob_equals_log_of_the_normal_density(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 4)
    x, mu = draw(rng, shape, dtype), draw(rng, shape, dtype)
    logvar = draw(rng, shape, dtype, -2.0, 2.0)
    out = kernels.gaussian_log_prob(x, mu, logvar)
    assert out.dtype == dtype and out.shape == (shape[0],)
    assert_close(out, gaussian_log_prob_ref(*f64(x, mu, logvar)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_log_prob_grad_equals_the_hand_derivatives(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 5)
    x, mu = draw(rng, shape, dtype), draw(rng, shape, dtype)
    logvar = draw(rng, shape, dtype, -2.0, 2.0)
    g = draw(rng, (shape[0],), dtype)
    grads = kernels.gaussian_log_prob_grad(x, mu, logvar, g)
    assert [a.dtype for a in grads] == [dtype] * 3 and [a.shape for a in grads] == [shape] * 3
    x64, mu64, lv64, g64 = f64(x, mu, logvar, g)
    var, g64 = np.exp(lv64), g64[:, None]
    # d/dx = -(x - mu)/var, d/dmu = (x - mu)/var, d/dlogvar = -1/2 + (x - mu)^2 / (2 var)
    expected = [-g64 * (x64 - mu64) / var, g64 * (x64 - mu64) / var,
                g64 * (-0.5 + (x64 - mu64) ** 2 / (2 * var))]
    for actual, want in zip(grads, expected):
        assert_close(actual, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_log_prob_is_finite_and_right_at_logvar_plus_minus_50(dtype):
    x = np.array([[1.0], [1.0]], dtype)
    mu = np.zeros((2, 1), dtype)
    logvar = np.array([[50.0], [-50.0]], dtype)
    out = kernels.gaussian_log_prob(x, mu, logvar)
    # by hand: -(log 2 pi + lv + e^-lv) / 2 with (x - mu)^2 = 1
    expected = [-(LOG_2PI + 50 + np.exp(-50)) / 2, -(LOG_2PI - 50 + 5.184705528587072e21) / 2]
    assert np.all(np.isfinite(out))
    assert_close(out, expected, dtype)


# ---------------------------------------------------------------- reparameterization

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_reparameterize_is_mu_plus_sigma_eps(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 6)
    mu, logvar, eps = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, shape, dtype)
    z = kernels.reparameterize(mu, logvar, eps)
    assert z.dtype == dtype and z.shape == shape
    mu64, lv64, eps64 = f64(mu, logvar, eps)
    assert_close(z, mu64 + np.sqrt(np.exp(lv64)) * eps64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_reparameterize_grad_is_g_eps_sigma_over_2_and_g_sigma(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 7)
    logvar, eps, g = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, shape, dtype)
    glogvar, geps = kernels.reparameterize_grad(logvar, eps, g)
    assert glogvar.dtype == geps.dtype == dtype and glogvar.shape == geps.shape == shape
    lv64, eps64, g64 = f64(logvar, eps, g)
    sigma = np.sqrt(np.exp(lv64))
    assert_close(glogvar, g64 * eps64 * sigma / 2, dtype)
    assert_close(geps, g64 * sigma, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reparameterize_is_finite_and_right_at_logvar_plus_minus_50(dtype):
    mu = np.array([[1.0, 1.0]], dtype)
    logvar = np.array([[50.0, -50.0]], dtype)
    eps = np.array([[2.0, 2.0]], dtype)
    z = kernels.reparameterize(mu, logvar, eps)
    glogvar, geps = kernels.reparameterize_grad(logvar, eps, np.ones((1, 2), dtype))
    e25 = 72004899337.38586  # e^25, sigma at logvar 50
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(glogvar)) and np.all(np.isfinite(geps))
    assert_close(z, [[1 + 2 * e25, 1 + 2 * np.exp(-25)]], dtype)
    assert_close(geps, [[e25, np.exp(-25)]], dtype)
    assert_close(glogvar, [[e25, np.exp(-25)]], dtype)  # g eps sigma / 2 with eps = 2


# ---------------------------------------------------------------- extreme activations

@pytest.mark.parametrize("dtype,L", [(np.float64, 1000.0), (np.float32, 1000.0),
                                     (np.float32, 1e30)])
def test_sigmoid_softplus_tanh_are_exact_at_huge_inputs(dtype, L):
    x = np.array([L, -L], dtype)
    np.testing.assert_array_equal(kernels.activate(x, ACTIVATIONS["sigmoid"]), [1.0, 0.0])
    np.testing.assert_array_equal(kernels.activate(x, ACTIVATIONS["tanh"]), [1.0, -1.0])
    softplus = kernels.activate(x, ACTIVATIONS["softplus"])
    assert softplus[0] == dtype(L)                    # L + log(1 + e^-L), e^-L underflows
    assert 0.0 <= softplus[1] <= np.finfo(dtype).tiny  # log(1 + e^-L): 0 or subnormal


@pytest.mark.parametrize("dtype,L", [(np.float64, 1000.0), (np.float32, 1000.0),
                                     (np.float32, 1e30)])
def test_activation_slopes_are_exact_at_huge_inputs(dtype, L):
    x = np.array([L, -L], dtype)
    g = np.ones(2, dtype)
    for name, expected in [("sigmoid", [0.0, 0.0]), ("tanh", [0.0, 0.0]),
                           ("softplus", [1.0, 0.0]), ("relu", [1.0, 0.0])]:
        y = kernels.activate(x, ACTIVATIONS[name])
        slope = kernels.activate_grad(y, g, ACTIVATIONS[name])
        np.testing.assert_array_equal(slope, expected, err_msg=name)


# ---------------------------------------------------------------- NaN propagation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_propagates_nan(name, dtype):
    x = np.array([np.nan, -1.0, 1.0], dtype)
    y = kernels.activate(x, ACTIVATIONS[name])
    assert np.isnan(y[0]), f"{name}(nan) = {y[0]}"
    assert np.all(np.isfinite(y[1:]))
    pre = np.array([[np.nan, -1.0]], dtype)
    kernels.bias_activate(pre, np.zeros(2, dtype), ACTIVATIONS[name])
    assert np.isnan(pre[0, 0]), f"bias_activate {name}(nan) = {pre[0, 0]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_grad_propagates_nan_upstream_gradient(name, dtype):
    y = np.array([0.5, -0.5, 0.0], dtype)
    g = np.array([np.nan, np.nan, np.nan], dtype)
    assert np.all(np.isnan(kernels.activate_grad(y, g, ACTIVATIONS[name])))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus"])
def test_smooth_activation_slopes_propagate_nan_output(name, dtype):
    # relu's slope at a NaN output is 0, as in numpy's and torch's relu backward;
    # identity's slope is 1 whatever the output, so g passes through unchanged.
    out = kernels.activate_grad(np.array([np.nan], dtype), np.ones(1, dtype), ACTIVATIONS[name])
    assert np.isnan(out[0])


def nan_at_0_0(dtype, shape=(2, 3), seed=0):
    a = np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(dtype)
    a[0, 0] = np.nan
    return a


def ok(dtype, shape=(2, 3), seed=1):
    return np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(dtype)


ROW_KERNELS_WITH_NAN = [  # kernel, arguments as (dtype) -> tuple, one NaN at [0, 0]
    ("bernoulli_log_prob", lambda t: (ok(t), nan_at_0_0(t))),
    ("bernoulli_log_prob", lambda t: (nan_at_0_0(t), ok(t))),
    ("gaussian_kl", lambda t: (nan_at_0_0(t), ok(t))),
    ("gaussian_kl", lambda t: (ok(t), nan_at_0_0(t))),
    ("gaussian_log_prob", lambda t: (nan_at_0_0(t), ok(t), ok(t, seed=2))),
    ("gaussian_log_prob", lambda t: (ok(t), ok(t, seed=2), nan_at_0_0(t))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args", ROW_KERNELS_WITH_NAN,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(ROW_KERNELS_WITH_NAN)])
def test_row_reductions_turn_a_nan_into_a_nan_row(name, args, dtype):
    out = getattr(kernels, name)(*args(dtype))
    assert np.isnan(out[0]) and np.isfinite(out[1])


ELEMENTWISE_KERNELS_WITH_NAN = [
    ("bernoulli_log_prob_grad", lambda t: (ok(t), nan_at_0_0(t), np.ones(2, t))),
    ("gaussian_kl_grad", lambda t: (nan_at_0_0(t), nan_at_0_0(t), np.ones(2, t))),
    ("gaussian_log_prob_grad", lambda t: (nan_at_0_0(t), ok(t), nan_at_0_0(t), np.ones(2, t))),
    ("reparameterize", lambda t: (ok(t), nan_at_0_0(t), ok(t))),
    ("reparameterize_grad", lambda t: (nan_at_0_0(t), ok(t), np.ones((2, 3), t))),
    ("matmul_loop", lambda t: (nan_at_0_0(t), ok(t, (3, 2)))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args", ELEMENTWISE_KERNELS_WITH_NAN,
                         ids=[n for n, _ in ELEMENTWISE_KERNELS_WITH_NAN])
def test_elementwise_kernels_turn_a_nan_into_nan_outputs(name, args, dtype):
    out = getattr(kernels, name)(*args(dtype))
    for array in out if isinstance(out, tuple) else (out,):
        assert np.isnan(array[0, 0]), name
        assert np.all(np.isfinite(array[1:])), name  # the other row is untouched


# ---------------------------------------------------------------- compiled code

# Run in a fresh process with an empty NUMBA_CACHE_DIR: every kernel is compiled
# for float32 there (nothing loads from the cache), so its LLVM IR is available.
FLOAT32_IR_SCRIPT = textwrap.dedent(r"""
    import json, re, sys
    import numpy as np
    from numba.core.registry import CPUDispatcher
    from minivae import kernels as K

    f = np.float32
    a, b, v = np.ones((3, 4), f), np.ones((4, 2), f), np.ones(3, f)
    calls = {
        "matmul_loop": (a, b),
        "activate": (a.ravel(), 1), "activate_grad": (a.ravel(), a.ravel(), 4),
        "bias_activate": (a.copy(), np.ones(4, f), 2),
        "bernoulli_log_prob": (a, a), "bernoulli_log_prob_grad": (a, a, v),
        "gaussian_kl": (a, a), "gaussian_kl_grad": (a, a, v),
        "gaussian_log_prob": (a, a, a), "gaussian_log_prob_grad": (a, a, a, v),
        "reparameterize": (a, a, a), "reparameterize_grad": (a, a, a),
    }
    for name, args in calls.items():
        getattr(K, name)(*args)

    # double arithmetic (scalar or vector), a float widened to double, or a
    # call that returns double or is a double-precision intrinsic
    double_code = re.compile(r"= (fadd|fsub|fmul|fdiv|frem|fneg)( \w+)* (<\d+ x )?double\b"
                             r"|= fpext .* to (<\d+ x )?double\b"
                             r"|= (tail )?call( \w+)* (<\d+ x )?double @"
                             r"|@llvm\.[\w.]*\.f64\b")
    float_code = re.compile(r"= (fadd|fsub|fmul|fdiv)( \w+)* (<\d+ x )?float\b"
                            r"|= (tail )?call( \w+)* float @")

    def compiled_code(ir):
        # every function but the CPython wrapper, whose boxing of a Python
        # float goes through double by definition (PyFloat_AsDouble)
        functions = re.split(r"^(?=define )", ir, flags=re.M)[1:]
        return "".join(f for f in functions if "@_ZN7cpython" not in f.splitlines()[0])

    report = {"dispatchers": [n for n, k in vars(K).items() if isinstance(k, CPUDispatcher)]}
    for name in report["dispatchers"]:
        k = getattr(K, name)
        code = "".join(compiled_code(k.inspect_llvm(sig)) for sig in k.signatures)
        report[name] = {
            "signatures": [str(sig) for sig in k.signatures],
            "double_lines": [l.strip() for l in code.splitlines() if double_code.search(l)],
            "float_ops": len(float_code.findall(code)),
        }
    json.dump(report, sys.stdout)
""")


@pytest.fixture(scope="module")
def float32_ir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba_cache_ir")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", FLOAT32_IR_SCRIPT], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


KERNEL_NAMES = ["matmul_loop", "activate", "activate_grad", "bias_activate",
                "bernoulli_log_prob", "bernoulli_log_prob_grad", "gaussian_kl",
                "gaussian_kl_grad", "gaussian_log_prob", "gaussian_log_prob_grad",
                "reparameterize", "reparameterize_grad", "_activate", "_activate_slope"]
# The optimizer updates take their hyperparameters as Python floats (double),
# cast once per call, and Adam's bias corrections are scalars computed in
# double on purpose; they belong to the optimizers' tests, not to this check.
OPTIMIZER_KERNELS = {"sgd_update", "adagrad_update", "adam_update"}


def test_the_float32_ir_check_covers_every_kernel(float32_ir):
    unchecked = set(float32_ir["dispatchers"]) - set(KERNEL_NAMES) - OPTIMIZER_KERNELS
    assert not unchecked, f"add a float32 call to FLOAT32_IR_SCRIPT for {sorted(unchecked)}"
    assert set(KERNEL_NAMES) <= set(float32_ir["dispatchers"])


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_float32_kernel_computes_in_float32_without_widening_to_double(name, float32_ir):
    report = float32_ir[name]
    assert report["signatures"] and all("float64" not in s for s in report["signatures"])
    assert report["float_ops"] > 0, "no float32 arithmetic found: is the IR the kernel's?"
    assert report["double_lines"] == [], "\n".join(report["double_lines"][:10])


CACHE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from minivae import kernels as K
    a = np.ones((2, 3))
    K.reparameterize(a, a, a)
    stats = K.reparameterize.stats
    print("hits", sum(stats.cache_hits.values()), "misses", sum(stats.cache_misses.values()))
""")


def test_a_second_process_loads_kernels_from_the_disk_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DEBUG_CACHE="1",
               PYTHONPATH=str(REPO))

    def run():
        done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        files = {p: (p.stat().st_mtime_ns, p.read_bytes())
                 for p in tmp_path.rglob("*") if p.is_file()}
        return done.stdout + done.stderr, files

    first, files_after_first = run()
    second, files_after_second = run()
    assert "data saved" in first and "hits 0 misses 1" in first
    assert "data loaded" in second and "hits 1 misses 0" in second
    assert "data saved" not in second and "index saved" not in second
    assert files_after_first and files_after_second == files_after_first
