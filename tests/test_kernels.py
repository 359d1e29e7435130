"""Every kernel agrees with the plain-numpy formula, in float32 and float64.

Each reference below is the obvious formula from the paper, evaluated in
float64 on the very values the kernel receives, so the only difference
left is the kernel's own rounding.  A forward kernel's second output (the
sigmoid, sigma^2, 1/sigma^2 or sigma that its derivative reuses) is fed to
the derivative kernel as the library does, and the pair is checked against
the formula written from the forward's inputs.  Then: no dtype promotion,
exact values at extreme inputs, NaN propagation, float32 code that really
is float32 (read from the LLVM IR), and a second process that loads the
compiled kernels from the disk cache instead of compiling them again.
"""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from minivae import family_kernels, kernels, sparse, updates
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


def assert_float_array(array, dtype, shape):
    assert isinstance(array, np.ndarray) and array.dtype == dtype and array.shape == shape


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


# ---------------------------------------------------------------- the zero-skipping product

def with_zeros(rng, shape, share, dtype):
    """An array with about `share` nonzeros: ones (binarized pixels), other
    values of either sign, and zeros of both signs (-0.0 is multiplied)."""
    values = np.where(rng.random(shape) < 0.5, 1.0, rng.uniform(-3, 3, shape))
    zeros = np.where(rng.random(shape) < 0.5, 0.0, -0.0)
    return np.where(rng.random(shape) < share, values, zeros).astype(dtype)


@given(n=st.integers(1, 30), k=st.integers(1, 60), m=st.integers(1, 40),
       share=st.sampled_from([0.0, 0.05, 0.13, 0.5, 1.0]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2 ** 16))
def test_zero_skipping_matmul_is_the_product_at_any_share_of_zeros(n, k, m, share, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = with_zeros(rng, (n, k), share, dtype), draw(rng, (k, m), dtype)
    out = sparse.zero_skipping_matmul(a, b)
    assert out.dtype == dtype and out.shape == (n, m)
    a64, b64 = f64(a, b)
    # k products of |a| <= 3 and |b| <= 3 summed: a few ulps of 9 k each
    np.testing.assert_allclose(out, a64 @ b64, rtol=0, atol=9 * k * 4 * np.finfo(dtype).eps)
    for layout in (a.T.copy().T, a[:, ::-1].copy()[:, ::-1]):   # column-major, and strided
        np.testing.assert_allclose(sparse.zero_skipping_matmul(layout, b), out,
                                   rtol=0, atol=9 * k * 4 * np.finfo(dtype).eps)


def test_zero_skipping_matmul_refuses_operands_it_cannot_multiply():
    a = np.zeros((3, 4), np.float32)
    for b in (np.zeros((5, 2), np.float32), np.zeros((4, 2)), np.zeros((4, 2), np.int32),
              np.zeros(4, np.float32)):
        with pytest.raises(ValueError, match="zero_skipping_matmul: expected"):
            sparse.zero_skipping_matmul(a, b)


def test_zero_skipping_matmul_skips_zeros_as_a_sparse_product_and_propagates_the_rest():
    nan, inf = np.nan, np.inf
    b = np.array([[nan, 1.0], [2.0, 3.0], [inf, 5.0]])
    a = np.array([[0.0, 1.0, 0.0],      # zeros meet NaN and Inf: they contribute nothing
                  [1.0, 0.0, 0.0],      # a nonzero meets NaN: NaN, as in any product
                  [0.0, 2.0, -1.0],     # a nonzero meets Inf: -Inf
                  [nan, 0.0, 0.0]])     # NaN in a is a nonzero: NaN across the row
    np.testing.assert_array_equal(sparse.zero_skipping_matmul(a, b),
                                  [[2.0, 3.0], [nan, 1.0], [-inf, 1.0], [nan, nan]])


def test_matmul_skips_the_zeros_of_binarized_pixels_and_of_nothing_else(monkeypatch):
    skipped = []
    real = sparse.zero_skipping_matmul
    monkeypatch.setattr(sparse, "zero_skipping_matmul",
                        lambda a, b: skipped.append(a.shape) or real(a, b))
    rng = np.random.default_rng(7)
    x = (rng.random((100, 784)) < 0.13).astype(np.float32)   # MNIST's share of ones
    W = draw(rng, (784, 500), np.float32)
    g = draw(rng, (100, 500), np.float32)
    for dtype in DTYPES:
        a, b = x.astype(dtype), W.astype(dtype)   # the first layer's x W
        np.testing.assert_allclose(kernels.matmul(a, b), f64(a)[0] @ f64(b)[0],
                                   rtol=1e-5, atol=1e-4)
    expected = [(100, 784)] * 2
    assert skipped == expected
    dense_rows = x.copy()
    dense_rows[:sparse.SAMPLE_ROWS] = 1.0
    for a, b in [(draw(rng, (100, 784), np.float32), W),   # no zeros
                 (g, W.T),                                 # dx = g W^T: g has none
                 (x, np.asfortranarray(W)),                # W column-major: no vectorizing
                 (x.T, g),                                 # dW = x^T g: left to BLAS
                 (x[:10], W[:, :50]),                       # too small to pay
                 (dense_rows, W),                          # the rows that decide say no
                 ((x > 0).astype(np.int32), W.astype(np.int32))]:   # not floats
        kernels.matmul(a, b)
    assert skipped == expected


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (37,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_equals_the_activation_formula(name, shape, dtype):
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    x = draw(rng, shape, dtype, -6.0, 6.0)
    before = x.copy()
    y = kernels.activate(x, ACTIVATIONS[name])
    assert_float_array(y, dtype, shape)
    assert y is not x and np.array_equal(x, before)      # a new array; x is left alone
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
    assert_float_array(out, dtype, shape)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (5, 1), (4, 7)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_bias_activate_grad_is_g_times_the_slope_and_its_column_sums(name, n, m, dtype):
    rng = np.random.default_rng(n * 10 + m + 1)
    pre64 = f64(draw(rng, (n, m), dtype, -6.0, 6.0))[0]
    act, slope = ACT_REF[name]
    y = act(pre64).astype(dtype)        # the layer's output, as bias_activate leaves it
    g = draw(rng, (n, m), dtype)
    g_pre, g_b = kernels.bias_activate_grad(y, g, ACTIVATIONS[name])
    assert_float_array(g_pre, dtype, (n, m))
    assert_float_array(g_b, dtype, (m,))
    expected_g_pre = f64(g)[0] * slope(pre64)
    assert_close(g_pre, expected_g_pre, dtype)
    # d/db sums g_pre over the batch: n <= 5 roundings of terms below 3 in size
    assert_close(g_b, expected_g_pre.sum(axis=0), dtype)
    assert_close(g_b, f64(g_pre)[0].sum(axis=0), dtype)          # the sum of its own g_pre
    # the same slope as activate_grad, element for element
    np.testing.assert_array_equal(g_pre, kernels.activate_grad(y, g, ACTIVATIONS[name]))


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
    log_p, _ = kernels.bernoulli_log_prob(x, logits)
    assert_float_array(log_p, dtype, (shape[0],))
    assert_close(log_p, bernoulli_log_prob_ref(*f64(x, logits)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_bernoulli_log_prob_also_returns_its_gradient_x_minus_sigmoid(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 1)
    x = rng.random(shape).astype(dtype)
    logits = draw(rng, shape, dtype, -8.0, 8.0)
    _, x_minus_sigmoid = kernels.bernoulli_log_prob(x, logits)
    assert_float_array(x_minus_sigmoid, dtype, shape)
    x64, l64 = f64(x, logits)
    assert_close(x_minus_sigmoid, x64 - sigmoid_ref(l64), dtype)


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
    log_p, _ = kernels.bernoulli_log_prob(x, logits)
    expected = np.array(EXTREME_LOG_PROB, dtype) * dtype(L)
    assert log_p.dtype == dtype
    np.testing.assert_array_equal(log_p, expected)


@pytest.mark.parametrize("dtype,L", EXTREME_LOGITS)
def test_bernoulli_gradient_x_minus_sigmoid_is_exact_at_huge_logits(dtype, L):
    x = np.array(EXTREME_X, dtype)[:, None]
    logits = (np.array(EXTREME_SIGN) * L).astype(dtype)[:, None]
    _, x_minus_sigmoid = kernels.bernoulli_log_prob(x, logits)
    assert x_minus_sigmoid.dtype == dtype
    np.testing.assert_array_equal(x_minus_sigmoid, np.array(EXTREME_GRAD, dtype)[:, None])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_log_prob_sums_exact_terms_over_a_row(dtype):
    # a binarized image row with confident logits: every term is 0 or -|l|
    x = np.array([[1, 0, 1, 0, 1]], dtype)
    logits = np.array([[1000, -1000, -1000, 1000, 1000]], dtype)
    log_p, x_minus_sigmoid = kernels.bernoulli_log_prob(x, logits)
    np.testing.assert_array_equal(log_p, np.array([-2000.0], dtype))
    np.testing.assert_array_equal(x_minus_sigmoid, np.array([[0, 0, 1, -1, 0]], dtype))


# ---------------------------------------------------------------- Gaussian KL

def gaussian_kl_ref(mu, logvar):
    """-KL = 1/2 sum_j (1 + log sigma^2 - mu^2 - sigma^2)   (Appendix B)."""
    return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_kl_equals_appendix_b_and_returns_sigma2(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 2)
    mu, logvar = draw(rng, shape, dtype), draw(rng, shape, dtype)
    kl, var = kernels.gaussian_kl(mu, logvar)
    assert_float_array(kl, dtype, (shape[0],))
    assert_float_array(var, dtype, shape)
    mu64, lv64 = f64(mu, logvar)
    assert_close(kl, gaussian_kl_ref(mu64, lv64), dtype)
    assert_close(var, np.exp(lv64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_kl_grad_is_g_mu_and_g_half_sigma2_minus_1(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 3)
    mu, logvar = draw(rng, shape, dtype), draw(rng, shape, dtype)
    g = draw(rng, (shape[0],), dtype)
    _, var = kernels.gaussian_kl(mu, logvar)
    gmu, glogvar = kernels.gaussian_kl_grad(mu, var, g)
    assert_float_array(gmu, dtype, shape)
    assert_float_array(glogvar, dtype, shape)
    mu64, lv64, g64 = f64(mu, logvar, g)
    assert_close(gmu, g64[:, None] * mu64, dtype)
    assert_close(glogvar, g64[:, None] * 0.5 * (np.exp(lv64) - 1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_is_finite_and_right_at_logvar_plus_minus_50(dtype):
    mu = np.array([[0.0], [0.0], [2.0]], dtype)
    logvar = np.array([[50.0], [-50.0], [-50.0]], dtype)
    kl, var = kernels.gaussian_kl(mu, logvar)
    gmu, glogvar = kernels.gaussian_kl_grad(mu, var, np.ones(3, dtype))
    # by hand: KL = (e^lv + mu^2 - lv - 1) / 2, e^50 = 5.184705528587072e21
    e50 = 5.184705528587072e21
    expected = [(e50 - 51) / 2, (50 - 1) / 2 + np.exp(-50) / 2, (4 + 50 - 1) / 2]
    assert np.all(np.isfinite(kl)) and np.all(np.isfinite(glogvar))
    assert_close(kl, expected, dtype)
    assert_close(var[:, 0], [e50, np.exp(-50), np.exp(-50)], dtype)
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
    log_p, inv_var = kernels.gaussian_log_prob(x, mu, logvar)
    assert_float_array(log_p, dtype, (shape[0],))
    assert_float_array(inv_var, dtype, shape)
    x64, mu64, lv64 = f64(x, mu, logvar)
    assert_close(log_p, gaussian_log_prob_ref(x64, mu64, lv64), dtype)
    assert_close(inv_var, 1 / np.exp(lv64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_gaussian_log_prob_grad_equals_the_hand_derivatives(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 5)
    x, mu = draw(rng, shape, dtype), draw(rng, shape, dtype)
    logvar = draw(rng, shape, dtype, -2.0, 2.0)
    g = draw(rng, (shape[0],), dtype)
    _, inv_var = kernels.gaussian_log_prob(x, mu, logvar)
    grads = kernels.gaussian_log_prob_grad(x, mu, inv_var, g)
    assert len(grads) == 3
    for array in grads:
        assert_float_array(array, dtype, shape)
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
    log_p, inv_var = kernels.gaussian_log_prob(x, mu, logvar)
    g_x, g_mu, g_logvar = kernels.gaussian_log_prob_grad(x, mu, inv_var, np.ones(2, dtype))
    # by hand, with (x - mu)^2 = 1:  log p = -(log 2 pi + lv + e^-lv) / 2,
    # d/dmu = -d/dx = e^-lv,  d/dlogvar = (e^-lv - 1) / 2
    e50 = 5.184705528587072e21
    inv = [np.exp(-50), e50]
    for array in (log_p, inv_var, g_x, g_mu, g_logvar):
        assert np.all(np.isfinite(array))
    assert_close(log_p, [-(LOG_2PI + 50 + np.exp(-50)) / 2, -(LOG_2PI - 50 + e50) / 2], dtype)
    assert_close(inv_var[:, 0], inv, dtype)
    assert_close(g_mu[:, 0], inv, dtype)
    assert_close(g_x[:, 0], [-v for v in inv], dtype)
    assert_close(g_logvar[:, 0], [(v - 1) / 2 for v in inv], dtype)


# ---------------------------------------------------------------- reparameterization

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_reparameterize_is_mu_plus_sigma_eps_and_returns_sigma(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 6)
    mu, logvar, eps = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, shape, dtype)
    z, sigma = kernels.reparameterize(mu, logvar, eps)
    assert_float_array(z, dtype, shape)
    assert_float_array(sigma, dtype, shape)
    mu64, lv64, eps64 = f64(mu, logvar, eps)
    assert_close(z, mu64 + np.sqrt(np.exp(lv64)) * eps64, dtype)
    assert_close(sigma, np.sqrt(np.exp(lv64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_reparameterize_grad_is_g_eps_sigma_over_2_and_g_sigma(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 7)
    mu, logvar = draw(rng, shape, dtype), draw(rng, shape, dtype)
    eps, g = draw(rng, shape, dtype), draw(rng, shape, dtype)
    _, sigma = kernels.reparameterize(mu, logvar, eps)
    glogvar, geps = kernels.reparameterize_grad(sigma, eps, g, dtype(0.5))
    assert_float_array(glogvar, dtype, shape)
    assert_float_array(geps, dtype, shape)
    lv64, eps64, g64 = f64(logvar, eps, g)
    sigma64 = np.sqrt(np.exp(lv64))
    assert_close(glogvar, g64 * eps64 * sigma64 / 2, dtype)
    assert_close(geps, g64 * sigma64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reparameterize_is_finite_and_right_at_logvar_plus_minus_50(dtype):
    mu = np.array([[1.0, 1.0]], dtype)
    logvar = np.array([[50.0, -50.0]], dtype)
    eps = np.array([[2.0, 2.0]], dtype)
    z, sigma = kernels.reparameterize(mu, logvar, eps)
    glogvar, geps = kernels.reparameterize_grad(sigma, eps, np.ones((1, 2), dtype),
                                                dtype(0.5))
    e25 = 72004899337.38586  # e^25, sigma at logvar 50
    for array in (z, sigma, glogvar, geps):
        assert np.all(np.isfinite(array))
    assert_close(z, [[1 + 2 * e25, 1 + 2 * np.exp(-25)]], dtype)
    assert_close(sigma, [[e25, np.exp(-25)]], dtype)
    assert_close(geps, [[e25, np.exp(-25)]], dtype)
    assert_close(glogvar, [[e25, np.exp(-25)]], dtype)  # g eps sigma / 2 with eps = 2


# ---------------------------------------------------------------- section 2.4's other families

def laplace_log_prob_ref(z, mu, logscale):
    """log of the density exp(-|z - mu| / b) / (2 b), summed."""
    b = np.exp(logscale)
    return np.sum(np.log(np.exp(-np.abs(z - mu) / b) / (2 * b)), axis=1)


def logistic_log_prob_ref(z, mu, logscale):
    """log of the density sigmoid'(t) / s = e^-t / (s (1 + e^-t)^2), t = (z - mu) / s, summed."""
    s = np.exp(logscale)
    t = (z - mu) / s
    return np.sum(np.log(np.exp(-t) / (s * (1 + np.exp(-t)) ** 2)), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_location_scale_is_mu_plus_b_eps_and_its_grad_g_eps_b_and_g_b(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 8)
    mu, logscale, eps, g = (draw(rng, shape, dtype) for _ in range(4))
    z, scale = family_kernels.location_scale(mu, logscale, eps)
    glogscale, geps = kernels.reparameterize_grad(scale, eps, g, dtype(1))
    for array in (z, scale, glogscale, geps):
        assert_float_array(array, dtype, shape)
    mu64, ls64, eps64, g64 = f64(mu, logscale, eps, g)
    assert_close(z, mu64 + np.exp(ls64) * eps64, dtype)
    assert_close(glogscale, g64 * eps64 * np.exp(ls64), dtype)
    assert_close(geps, g64 * np.exp(ls64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_location_scale_kl_with_the_gaussian_constants_is_appendix_b(shape, dtype):
    # N(0, 1) has entropy 1/2 log(2 pi e) and variance 1; its log-scale is logvar / 2
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 9)
    mu, logvar, g = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, (shape[0],), dtype)
    kl, scale2 = family_kernels.location_scale_kl(mu, logvar / 2, 0.5 * np.log(2 * np.pi * np.e), 1.0)
    assert_float_array(kl, dtype, (shape[0],))
    mu64, lv64, g64 = f64(mu, logvar, g)
    assert_close(kl, gaussian_kl_ref(mu64, lv64), dtype)
    assert_close(scale2, np.exp(lv64), dtype)
    gmu, glogscale = family_kernels.location_scale_kl_grad(mu, scale2, dtype(1), g)
    assert_close(gmu, g64[:, None] * mu64, dtype)
    assert_close(glogscale, g64[:, None] * (np.exp(lv64) - 1), dtype)   # d/dlogscale = 2 d/dlogvar


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_laplace_log_prob_and_its_grad_equal_the_density_and_hand_derivatives(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 10)
    z, mu, g = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, (shape[0],), dtype)
    logscale = draw(rng, shape, dtype, -2.0, 2.0)
    log_p, inv_scale = family_kernels.laplace_log_prob(z, mu, logscale)
    assert_float_array(log_p, dtype, (shape[0],))
    z64, mu64, ls64, g64 = f64(z, mu, logscale, g)
    assert_close(log_p, laplace_log_prob_ref(z64, mu64, ls64), dtype)
    grads = family_kernels.laplace_log_prob_grad(z, mu, inv_scale, g)
    b, g64 = np.exp(ls64), g64[:, None]
    expected = [-g64 * np.sign(z64 - mu64) / b, g64 * np.sign(z64 - mu64) / b,
                g64 * (np.abs(z64 - mu64) / b - 1)]
    for actual, want in zip(grads, expected):
        assert_float_array(actual, dtype, shape)
        assert_close(actual, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_laplace_log_prob_grad_takes_the_subgradient_0_at_the_kink(dtype):
    z = np.array([[0.5, 0.5]], dtype)
    g_z, g_mu, g_logscale = family_kernels.laplace_log_prob_grad(z, z.copy(), np.ones((1, 2), dtype),
                                                          np.ones(1, dtype))
    assert np.all(g_z == 0) and np.all(g_mu == 0)
    assert_close(g_logscale, [[-1.0, -1.0]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_logistic_inverse_cdf_is_mu_plus_s_logit_u_and_returns_s_and_logit_u(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 11)
    mu, logscale = draw(rng, shape, dtype), draw(rng, shape, dtype, -2.0, 2.0)
    u = draw(rng, shape, dtype, 0.01, 0.99)
    z, scale, logit = family_kernels.logistic_inverse_cdf(mu, logscale, u)
    mu64, ls64, u64 = f64(mu, logscale, u)
    s = np.exp(ls64)
    for actual, want in ((z, mu64 + s * np.log(u64 / (1 - u64))), (scale, s),
                         (logit, np.log(u64 / (1 - u64)))):
        assert_float_array(actual, dtype, shape)
        assert_close(actual, want, dtype)
    # F(z) = sigmoid((z - mu) / s) returns u: z is the inverse CDF's
    assert_close(sigmoid_ref((np.asarray(z, np.float64) - mu64) / s), u64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_logistic_log_prob_and_its_grad_equal_the_density_and_hand_derivatives(shape, dtype):
    rng = np.random.default_rng(shape[0] * 10 + shape[1] + 12)
    z, mu, g = draw(rng, shape, dtype), draw(rng, shape, dtype), draw(rng, (shape[0],), dtype)
    logscale = draw(rng, shape, dtype, -1.0, 1.0)
    log_p, t, e, inv_scale = family_kernels.logistic_log_prob(z, mu, logscale)
    assert_float_array(log_p, dtype, (shape[0],))
    z64, mu64, ls64, g64 = f64(z, mu, logscale, g)
    assert_close(log_p, logistic_log_prob_ref(z64, mu64, ls64), dtype)
    grads = family_kernels.logistic_log_prob_grad(t, e, inv_scale, g)
    s, g64 = np.exp(ls64), g64[:, None]
    h = np.tanh((z64 - mu64) / s / 2)   # -d log p / dt
    expected = [-g64 * h / s, g64 * h / s, g64 * ((z64 - mu64) / s * h - 1)]
    for actual, want in zip(grads, expected):
        assert_float_array(actual, dtype, shape)
        assert_close(actual, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_log_prob_is_finite_and_right_far_in_the_tails(dtype):
    # |t| = 200: e^200 overflows float32 and e^-2t underflows; by hand the
    # log-density is -(log s + |t| + 2 log(1 + e^-|t|)) = -200 with s = 1
    z = np.array([[200.0], [-200.0]], dtype)
    log_p, t, e, inv_scale = family_kernels.logistic_log_prob(z, np.zeros_like(z), np.zeros_like(z))
    g_z, g_mu, g_logscale = family_kernels.logistic_log_prob_grad(t, e, inv_scale, np.ones(2, dtype))
    for array in (log_p, g_z, g_mu, g_logscale):
        assert np.all(np.isfinite(array))
    assert_close(log_p, [-200.0, -200.0], dtype)
    assert_close(g_z[:, 0], [-1.0, 1.0], dtype)          # -tanh(t / 2) = -sign(t)
    assert_close(g_logscale[:, 0], [199.0, 199.0], dtype)  # |t| - 1


# ---------------------------------------------------------------- extreme activations

HUGE_ACTIVATION_INPUTS = [(np.float64, 1000.0), (np.float32, 1000.0), (np.float32, 1e30)]


@pytest.mark.parametrize("dtype,L", HUGE_ACTIVATION_INPUTS)
def test_sigmoid_softplus_tanh_are_exact_at_huge_inputs(dtype, L):
    x = np.array([L, -L], dtype)
    for name, expected in [("sigmoid", [1.0, 0.0]), ("tanh", [1.0, -1.0])]:
        np.testing.assert_array_equal(kernels.activate(x, ACTIVATIONS[name]), expected, name)
        pre = x[None, :].copy()
        kernels.bias_activate(pre, np.zeros(2, dtype), ACTIVATIONS[name])
        np.testing.assert_array_equal(pre[0], expected, f"bias_activate {name}")
    softplus = kernels.activate(x, ACTIVATIONS["softplus"])
    pre = x[None, :].copy()
    kernels.bias_activate(pre, np.zeros(2, dtype), ACTIVATIONS["softplus"])
    for out in (softplus, pre[0]):
        assert out[0] == dtype(L)                    # L + log(1 + e^-L), e^-L underflows
        assert 0.0 <= out[1] <= np.finfo(dtype).tiny  # log(1 + e^-L): 0 or subnormal


@pytest.mark.parametrize("dtype,L", HUGE_ACTIVATION_INPUTS)
def test_activation_slopes_are_exact_at_huge_inputs(dtype, L):
    x = np.array([L, -L], dtype)
    g = np.ones(2, dtype)
    for name, expected in [("sigmoid", [0.0, 0.0]), ("tanh", [0.0, 0.0]),
                           ("softplus", [1.0, 0.0]), ("relu", [1.0, 0.0])]:
        y = kernels.activate(x, ACTIVATIONS[name])
        slope = kernels.activate_grad(y, g, ACTIVATIONS[name])
        np.testing.assert_array_equal(slope, expected, err_msg=name)
        g_pre, g_b = kernels.bias_activate_grad(y[None, :], g[None, :], ACTIVATIONS[name])
        np.testing.assert_array_equal(g_pre[0], expected, err_msg=f"bias_activate_grad {name}")
        np.testing.assert_array_equal(g_b, expected, err_msg=f"bias_activate_grad {name}")


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
    assert np.isfinite(pre[0, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activate_grad_propagates_nan_upstream_gradient(name, dtype):
    y = np.array([0.5, -0.5, 0.0], dtype)
    g = np.array([np.nan, np.nan, np.nan], dtype)
    assert np.all(np.isnan(kernels.activate_grad(y, g, ACTIVATIONS[name])))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_bias_activate_grad_propagates_a_nan_upstream_gradient_to_its_column(name, dtype):
    y = np.array([[0.5, -0.5, 0.25], [0.75, 0.0, 0.5]], dtype)
    g = np.ones((2, 3), dtype)
    g[0, 0] = np.nan
    g_pre, g_b = kernels.bias_activate_grad(y, g, ACTIVATIONS[name])
    assert np.isnan(g_pre[0, 0]) and np.isnan(g_b[0])
    assert np.isfinite(g_pre.ravel()[1:]).all() and np.isfinite(g_b[1:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus"])
def test_smooth_activation_slopes_propagate_nan_output(name, dtype):
    # relu's slope at a NaN output is 0, as in numpy's and torch's relu backward;
    # identity's slope is 1 whatever the output, so g passes through unchanged.
    out = kernels.activate_grad(np.array([np.nan], dtype), np.ones(1, dtype), ACTIVATIONS[name])
    assert np.isnan(out[0])
    g_pre, g_b = kernels.bias_activate_grad(np.array([[np.nan]], dtype), np.ones((1, 1), dtype),
                                            ACTIVATIONS[name])
    assert np.isnan(g_pre[0, 0]) and np.isnan(g_b[0])


def nan_at_0_0(dtype, shape=(2, 3), seed=0):
    a = np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(dtype)
    a[0, 0] = np.nan
    return a


def kernel(name):
    """The kernel called `name`, from `kernels` or `family_kernels`."""
    return getattr(kernels, name, None) or getattr(family_kernels, name)


def ok(dtype, shape=(2, 3), seed=1):
    return np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(dtype)


ROW_KERNELS_WITH_NAN = [  # kernel, arguments as (dtype) -> tuple, one NaN at [0, 0], and
    # whether the first elementwise output (x - sigmoid, sigma^2, 1/sigma^2, 1/b, t) depends
    # on that input
    ("bernoulli_log_prob", lambda t: (ok(t), nan_at_0_0(t)), True),
    ("bernoulli_log_prob", lambda t: (nan_at_0_0(t), ok(t)), True),
    ("gaussian_kl", lambda t: (nan_at_0_0(t), ok(t)), False),
    ("gaussian_kl", lambda t: (ok(t), nan_at_0_0(t)), True),
    ("gaussian_log_prob", lambda t: (nan_at_0_0(t), ok(t), ok(t, seed=2)), False),
    ("gaussian_log_prob", lambda t: (ok(t), ok(t, seed=2), nan_at_0_0(t)), True),
    ("laplace_log_prob", lambda t: (nan_at_0_0(t), ok(t), ok(t, seed=2)), False),
    ("laplace_log_prob", lambda t: (ok(t), ok(t, seed=2), nan_at_0_0(t)), True),
    ("logistic_log_prob", lambda t: (nan_at_0_0(t), ok(t), ok(t, seed=2)), True),
    ("logistic_log_prob", lambda t: (ok(t), ok(t, seed=2), nan_at_0_0(t)), True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args,elementwise_sees_it", ROW_KERNELS_WITH_NAN,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(ROW_KERNELS_WITH_NAN)])
def test_row_reductions_turn_a_nan_into_a_nan_row(name, args, elementwise_sees_it, dtype):
    rows, elementwise = kernel(name)(*args(dtype))[:2]
    assert np.isnan(rows[0]) and np.isfinite(rows[1])
    assert np.isnan(elementwise[0, 0]) == elementwise_sees_it
    assert np.all(np.isfinite(elementwise.ravel()[1:]))   # only [0, 0] can be NaN


ELEMENTWISE_KERNELS_WITH_NAN = [
    ("gaussian_kl_grad", lambda t: (nan_at_0_0(t), nan_at_0_0(t), np.ones(2, t))),
    ("gaussian_log_prob_grad", lambda t: (nan_at_0_0(t), ok(t), nan_at_0_0(t), np.ones(2, t))),
    ("reparameterize", lambda t: (ok(t), nan_at_0_0(t), ok(t))),
    ("reparameterize_grad", lambda t: (nan_at_0_0(t), ok(t), np.ones((2, 3), t), t(0.5))),
    ("location_scale", lambda t: (ok(t), nan_at_0_0(t), ok(t))),
    ("location_scale_kl_grad", lambda t: (nan_at_0_0(t), nan_at_0_0(t), t(2), np.ones(2, t))),
    ("laplace_log_prob_grad", lambda t: (nan_at_0_0(t), ok(t), nan_at_0_0(t), np.ones(2, t))),
    ("logistic_log_prob_grad", lambda t: (nan_at_0_0(t), nan_at_0_0(t), ok(t), np.ones(2, t))),
    ("matmul_loop", lambda t: (nan_at_0_0(t), ok(t, (3, 2)))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args", ELEMENTWISE_KERNELS_WITH_NAN,
                         ids=[n for n, _ in ELEMENTWISE_KERNELS_WITH_NAN])
def test_elementwise_kernels_turn_a_nan_into_nan_outputs(name, args, dtype):
    out = kernel(name)(*args(dtype))
    for array in out if isinstance(out, tuple) else (out,):
        assert np.isnan(array[0, 0]), name
        assert np.all(np.isfinite(array[1:])), name  # the other row is untouched


# ---------------------------------------------------------------- optimizer updates
# The updates written out in numpy, one step, on float64 copies.  g' = scale g
# + weight_decay theta is the clipped loss gradient plus the prior's gradient.

def sgd_ref(theta, g, velocity, lr, momentum, weight_decay, scale):
    g = scale * g + weight_decay * theta
    velocity = momentum * velocity + g
    return theta - lr * velocity, velocity


def adagrad_ref(theta, g, G, lr, eps, weight_decay, scale):
    g = scale * g + weight_decay * theta
    G = G + g ** 2
    return theta - lr * g / (np.sqrt(G) + eps), G


def adam_ref(theta, g, m, v, lr, beta1, beta2, eps, step, weight_decay, scale):
    g = scale * g + weight_decay * theta
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g ** 2
    m_hat, v_hat = m / (1 - beta1 ** step), v / (1 - beta2 ** step)   # bias corrections
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# kernel, reference, number of state arrays, hyperparameters after the state;
# learning rates are large so that each step moves theta by a visible amount
OPTIMIZER_CASES = {
    "sgd": (updates.sgd_update, sgd_ref, 1,
            dict(lr=0.1, momentum=0.9, weight_decay=0.01, scale=0.5)),
    "adagrad": (updates.adagrad_update, adagrad_ref, 1,
                dict(lr=0.2, eps=1e-8, weight_decay=0.01, scale=0.5)),
    "adam": (updates.adam_update, adam_ref, 2,
             dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, step=None, weight_decay=0.01,
                  scale=0.5)),
}


def as_the_kernel_sees_them(hyper, dtype):
    """The kernels round each hyperparameter to the parameter's dtype once per
    call (Adam's step count stays an integer); the reference uses those values."""
    return {k: (v if k == "step" else float(dtype(v))) for k, v in hyper.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4)])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_CASES))
def test_optimizer_update_equals_the_update_formula_for_two_steps(optimizer, shape, dtype):
    kernel, reference, n_state, hyper = OPTIMIZER_CASES[optimizer]
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    theta = draw(rng, shape, dtype, -1.0, 1.0)
    state = [np.zeros(shape, dtype) for _ in range(n_state)]    # as Optimizer.slot starts them
    theta64, state64 = theta.astype(np.float64), [a.astype(np.float64) for a in state]  # copies
    for step in (1, 2):
        g = draw(rng, shape, dtype)
        h = dict(hyper, step=step) if "step" in hyper else hyper
        returned = kernel(theta, g, *state, *h.values())
        assert returned is None                     # in place: theta and the state change
        theta64, *state64 = reference(theta64, f64(g)[0], *state64,
                                      **as_the_kernel_sees_them(h, dtype))
        for actual, want in zip([theta, *state], [theta64, *state64]):
            assert actual.dtype == dtype and actual.shape == shape
            assert_close(actual, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_CASES))
def test_optimizer_update_leaves_theta_alone_when_the_step_is_zero(optimizer, dtype):
    # scale = 0 and weight_decay = 0 make g' = 0: SGD and Adagrad do not move;
    # Adam's first moment stays 0, so it does not move either (0 / (0 + eps))
    kernel, _, n_state, hyper = OPTIMIZER_CASES[optimizer]
    theta = np.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3)
    before = theta.copy()
    state = [np.zeros_like(theta) for _ in range(n_state)]
    h = dict(hyper, weight_decay=0.0, scale=0.0)
    h = dict(h, step=1) if "step" in h else h
    kernel(theta, np.ones_like(theta), *state, *h.values())
    np.testing.assert_array_equal(theta, before)
    for array in state:
        np.testing.assert_array_equal(array, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_CASES))
def test_optimizer_update_propagates_a_nan_gradient_to_its_own_element(optimizer, dtype):
    kernel, _, n_state, hyper = OPTIMIZER_CASES[optimizer]
    theta = ok(dtype)
    state = [np.zeros_like(theta) for _ in range(n_state)]
    g = ok(dtype, seed=3)
    g[0, 0] = np.nan
    h = dict(hyper, step=1) if "step" in hyper else hyper
    kernel(theta, g, *state, *h.values())
    for array in (theta, *state):
        assert np.isnan(array[0, 0])
        assert np.all(np.isfinite(array.ravel()[1:]))


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_CASES))
def test_optimizer_update_changes_a_non_contiguous_theta_or_refuses_it(optimizer):
    kernel, _, n_state, hyper = OPTIMIZER_CASES[optimizer]
    theta = np.ones((3, 4), np.float32).T                      # a transposed view
    state = [np.zeros_like(theta) for _ in range(n_state)]     # zeros_like keeps the layout
    h = dict(hyper, step=1) if "step" in hyper else hyper
    try:
        kernel(theta, np.ones_like(theta), *state, *h.values())
    except (TypeError, ValueError, NotImplementedError):
        return                                  # refusing a layout is fine; ignoring it is not
    assert np.all(theta != 1)


# ---------------------------------------------------------------- the gradient's norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 4), (513, 77)])
def test_squared_norm_is_the_sum_of_squares_in_float64(shape, dtype):
    rng = np.random.default_rng(sum(shape) + 1)
    g = draw(rng, shape, dtype)
    want = math.fsum(float(v) ** 2 for v in g.ravel())   # each float32 element is exact in float
    assert updates.squared_norm(g) == pytest.approx(want, rel=1e-12, abs=0)
    assert updates.squared_norm(g.T) == pytest.approx(want, rel=1e-12, abs=0)   # any layout


def test_squared_norm_of_float32_squares_beyond_float32_does_not_overflow():
    g = np.full((1000,), 1e30, np.float32)   # g^2 = 1e60: no float32 holds it, float64 does
    assert updates.squared_norm(g) == pytest.approx(1000 * float(np.float32(1e30)) ** 2,
                                                    rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 40000, 78399])   # in either piece, and the last element
def test_squared_norm_is_not_finite_when_an_element_is_not(bad, where, dtype):
    g = np.full((100, 784), 0.5, dtype)
    g.flat[where] = bad
    result = updates.squared_norm(g)
    assert np.isnan(result) if np.isnan(bad) else result == np.inf


# ---------------------------------------------------------------- compiled code

# Run in a fresh process with an empty NUMBA_CACHE_DIR: every kernel is compiled
# for float32 there (nothing loads from the cache), so its LLVM IR is available.
# Each Numba kernel is reached the way the library calls it, so that it is
# compiled for the argument types it really receives.
FLOAT32_IR_SCRIPT = textwrap.dedent(r"""
    import functools, json, re, sys
    import numpy as np
    from numba import njit
    from numba.core.registry import CPUDispatcher
    from minivae import family_kernels as F, kernels as K, sparse as S, updates as U

    def on_cores(one, update):   # the loop updates._on_cores chooses, whatever the machine
        spread, smallest = U.threads.spread, U.SPREAD_ELEMENTS
        U.threads.spread, U.SPREAD_ELEMENTS = (lambda: not one), 0
        try:
            update()
        finally:
            U.threads.spread, U.SPREAD_ELEMENTS = spread, smallest

    f = np.float32
    a, b, v = np.ones((3, 4), f), np.ones((4, 2), f), np.ones(3, f)
    calls = {
        "matmul_loop": lambda: K.matmul_loop(a, b),
        "_activate_slope": lambda: K._activate_slope(f(0.5), K.SOFTPLUS),
        "activate_grad": lambda: (K.activate_grad(a.ravel(), a.ravel(), K.SOFTPLUS),  # ops
                                  K.activate_grad(a, a, K.TANH)),                     # linear
        "_bernoulli_rows": lambda: K.bernoulli_log_prob(a, a),
        "_kl_rows": lambda: K.gaussian_kl(a, a),
        "gaussian_kl_grad": lambda: K.gaussian_kl_grad(a, a, v),
        "_gaussian_rows": lambda: K.gaussian_log_prob(a, a, a),
        "gaussian_log_prob_grad": lambda: K.gaussian_log_prob_grad(a, a, a, v),
        "mu_plus_sigma_eps": lambda: K.reparameterize(a, a, a),
        "reparameterize_grad": lambda: K.reparameterize_grad(a, a, a, f(0.5)),
        "_location_scale_kl_rows": lambda: F.location_scale_kl(a, a, 1.5, 2.0),
        "location_scale_kl_grad": lambda: F.location_scale_kl_grad(a, a, f(2), v),
        "_laplace_rows": lambda: F.laplace_log_prob(a, a, a),
        "laplace_log_prob_grad": lambda: F.laplace_log_prob_grad(a, a, a, v),
        "_logistic_rows": lambda: F.logistic_log_prob(a, a, a),
        "logistic_log_prob_grad": lambda: F.logistic_log_prob_grad(a, a, a, v),
        # the optimizers' loops, reached as the optimizers reach them (Python-float
        # hyperparameters, an int step), on two cores and on one
        **{f"_{name}_flat{twin}": functools.partial(on_cores, bool(twin), update)
           for name, update in (
               ("sgd", lambda: U.sgd_update(a.copy(), a, a.copy(), 0.1, 0.9, 1e-4, 0.5)),
               ("adagrad", lambda: U.adagrad_update(a.copy(), a, a.copy(), 0.02, 1e-8, 1e-4,
                                                    0.5)),
               ("adam", lambda: U.adam_update(a.copy(), a, a.copy(), a.copy(), 1e-3, 0.9,
                                              0.999, 1e-8, 3, 1e-4, 0.5)))
           for twin in ("", "_one_core")},
        # the product that skips the zeros of its left operand, on two cores and on one
        **{f"_skipping_rows{twin}": functools.partial(
               on_cores, bool(twin), lambda: S.zero_skipping_matmul(a, b))
           for twin in ("", "_one_core")},
        # the gradient's squared norm, which sums float32 squares in float64 by design
        **{f"_sum_of_squares{twin}": functools.partial(on_cores, bool(twin),
                                                       lambda: U.squared_norm(a))
           for twin in ("", "_one_core")},
    }
    calls["_piece_sum_of_squares"] = calls["_sum_of_squares_one_core"]
    for call in calls.values():
        call()

    @njit
    def widening_control(x):
        # a float64 accumulator: the check must report this kernel's loop
        s = 0.0
        for i in range(x.size):
            s += x[i]
        return s
    widening_control(a.ravel())

    # double arithmetic (scalar or vector), a float widened to double, or a
    # call that returns double or is a double-precision intrinsic
    double_code = re.compile(r"= (fadd|fsub|fmul|fdiv|frem|fneg)( \w+)* (<\d+ x )?double\b"
                             r"|= fpext .* to (<\d+ x )?double\b"
                             r"|= (tail )?call( \w+)* (<\d+ x )?double @"
                             r"|@llvm\.[\w.]*\.f64\b")
    float_code = re.compile(r"= (fadd|fsub|fmul|fdiv)( \w+)* (<\d+ x )?float\b"
                            r"|= (tail )?call( \w+)* float @")
    float_memory = re.compile(r"= load (<\d+ x )?float,|store (<\d+ x )?float ")
    label = re.compile(r'^([-\w.$]+|"[^"]+"):')
    branch_target = re.compile(r'label %([-\w.$]+|"[^"]+")')

    def compiled_functions(ir):
        # every function but the CPython wrapper, whose boxing of a Python
        # float goes through double by definition (PyFloat_AsDouble)
        functions = re.split(r"^(?=define )", ir, flags=re.M)[1:]
        return [f for f in functions if "@_ZN7cpython" not in f.splitlines()[0]]

    def element_loop_lines(function):
        # The lines of the loops that walk arrays: the basic blocks on a cycle
        # of the control-flow graph whose cycle loads or stores float.
        blocks, name = {"<entry>": []}, "<entry>"
        for line in function.splitlines()[1:]:
            m = label.match(line)
            if m:
                name = m.group(1)
                blocks[name] = []
            else:
                blocks[name].append(line)
        successors = {n: set(branch_target.findall("\n".join(ls))) for n, ls in blocks.items()}

        def reachable(start):
            seen, todo = set(), list(successors[start])
            while todo:
                n = todo.pop()
                if n not in seen:
                    seen.add(n)
                    todo.extend(successors.get(n, ()))
            return seen

        reach = {n: reachable(n) for n in blocks}
        in_loops = set()
        for n in blocks:
            if n in reach[n]:
                cycle = {m for m in reach[n] if n in reach[m]}   # n's strongly connected part
                if any(float_memory.search(l) for m in cycle for l in blocks[m]):
                    in_loops |= cycle
        return [l for n in sorted(in_loops) for l in blocks[n]]

    def report_for(k):
        functions = [f for sig in k.signatures for f in compiled_functions(k.inspect_llvm(sig))]
        code = "".join(functions)
        loops = [l for f in functions for l in element_loop_lines(f)]
        return {
            "signatures": [str(sig) for sig in k.signatures],
            "double_lines": [l.strip() for l in code.splitlines() if double_code.search(l)],
            "float_ops": len(float_code.findall(code)),
            "loop_double_lines": [l.strip() for l in loops if double_code.search(l)],
            "loop_float_ops": sum(len(float_code.findall(l)) for l in loops),
            "loop_float_loads": sum(1 for l in loops if float_memory.search(l)),
        }

    dispatchers = {n: k for module in (K, F, S, U) for n, k in vars(module).items()
                   if isinstance(k, CPUDispatcher)}
    report = {"dispatchers": list(dispatchers),
              "called": list(calls), "widening_control": report_for(widening_control)}
    for name, k in dispatchers.items():
        report[name] = report_for(k)
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


# The Numba kernels whose float32 code must hold no double arithmetic at all,
# the optimizers' loops among them: updates.*_update round each Python-float
# hyperparameter to float32 (Adam's bias corrections are computed in double
# first, once per call: 1 - 0.999 loses five digits in float32) and hand the
# loop float32 scalars.
OPTIMIZER_LOOPS = [f"_{name}_flat{twin}" for name in ("sgd", "adagrad", "adam")
                   for twin in ("", "_one_core")]
KERNEL_NAMES = ["matmul_loop", "_activate_slope", "activate_grad", "_bernoulli_rows", "_kl_rows",
                "gaussian_kl_grad", "_gaussian_rows", "gaussian_log_prob_grad", "mu_plus_sigma_eps", "reparameterize_grad",
                "_location_scale_kl_rows", "location_scale_kl_grad", "_laplace_rows",
                "laplace_log_prob_grad", "_logistic_rows", "logistic_log_prob_grad",
                "_skipping_rows", "_skipping_rows_one_core", *OPTIMIZER_LOOPS]


# The gradient's squared norm sums float32 squares in float64 on purpose
# (updates.squared_norm): its loop reads the float32 gradient itself and
# widens one element at a time, so no float64 copy of a gradient is made.
NORM_LOOPS = ["_piece_sum_of_squares", "_sum_of_squares", "_sum_of_squares_one_core"]


def test_the_float32_ir_check_covers_every_kernel(float32_ir):
    checked = set(KERNEL_NAMES) | set(NORM_LOOPS)
    unchecked = set(float32_ir["dispatchers"]) - checked
    assert not unchecked, f"add a float32 call to FLOAT32_IR_SCRIPT for {sorted(unchecked)}"
    assert checked <= set(float32_ir["dispatchers"])
    assert set(float32_ir["called"]) == checked


def test_the_ir_check_catches_a_kernel_that_widens_to_double(float32_ir):
    # a control kernel that sums float32 into a float64: both checks must see it
    report = float32_ir["widening_control"]
    assert any("fpext" in line for line in report["double_lines"])
    assert any("double" in line for line in report["loop_double_lines"])


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_float32_kernel_computes_in_float32_without_widening_to_double(name, float32_ir):
    report = float32_ir[name]
    # float64 in a signature is allowed only for an optimizer's Python-float hyperparameters
    assert report["signatures"] and all("float64" not in s.lower() for s in report["signatures"])
    assert report["float_ops"] > 0, "no float32 arithmetic found: is the IR the kernel's?"
    assert report["double_lines"] == [], "\n".join(report["double_lines"][:10])


@pytest.mark.parametrize("name", NORM_LOOPS)
def test_the_norm_reads_float32_and_widens_each_element_in_its_loop(name, float32_ir):
    report = float32_ir[name]
    assert report["signatures"] and all("array(float32" in s.lower() for s in report["signatures"])
    assert report["loop_float_loads"] > 0, "the loop does not read the float32 gradient"
    assert any("fpext" in line for line in report["loop_double_lines"])


CACHE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from minivae import family_kernels as F, kernels as K
    a = np.ones((2, 3))
    K.reparameterize(a, a, a)
    stats = K.mu_plus_sigma_eps.stats
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
