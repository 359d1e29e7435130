"""PyTorch as an independent oracle: same inputs, same expressions, same numbers.

Each composite expression is written once against a small namespace of
functions, `F`, and evaluated twice: with F = minivae and with F = torch.
Values and gradients must agree to float64 rounding.  The fused
distribution ops are compared with torch's own formulas for them.
"""
from types import SimpleNamespace

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import minivae as mv

torch = pytest.importorskip(
    "torch", reason="PyTorch is the optional oracle: pip install torch==2.13.0")

TOL = dict(rtol=1e-10, atol=1e-12)  # float64 throughout: only summation order differs


def torch_softplus(x):
    # not torch.nn.functional.softplus: it returns x itself above x = 20 (threshold)
    return torch.logaddexp(torch.zeros_like(x), x)


TORCH_ACT = {"identity": lambda v: v, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "relu": torch.relu, "softplus": torch_softplus}

MINIVAE = SimpleNamespace(
    leaf=lambda a: mv.Tensor(a, requires_grad=True),
    value=lambda t: t.data,
    grad=lambda t: t.grad,
    backward=lambda out, w: out.backward(w),
    linear=mv.linear, tanh=mv.tanh, sigmoid=mv.sigmoid, relu=mv.relu, softplus=mv.softplus,
    exp=mv.exp, log=mv.log, sqrt=mv.sqrt, abs=mv.abs,
    logsumexp=lambda x, axis: mv.logsumexp(x, axis),
    sum=lambda x, axis=None: mv.sum(x, axis),
    mean=lambda x, axis=None: mv.mean(x, axis),
    transpose=mv.transpose,
    concatenate=mv.concatenate,
)

TORCH = SimpleNamespace(
    leaf=lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True),
    value=lambda t: t.detach().numpy(),
    grad=lambda t: t.grad.numpy(),
    backward=lambda out, w: out.backward(torch.from_numpy(w)),
    linear=lambda x, W, b=None, act="identity": TORCH_ACT[act](x @ W if b is None else x @ W + b),
    tanh=torch.tanh, sigmoid=torch.sigmoid, relu=torch.relu, softplus=torch_softplus,
    exp=torch.exp, log=torch.log, sqrt=torch.sqrt, abs=torch.abs,
    logsumexp=lambda x, axis: torch.logsumexp(x, dim=axis),
    sum=lambda x, axis=None: x.sum() if axis is None else x.sum(dim=axis),
    mean=lambda x, axis=None: x.mean() if axis is None else x.mean(dim=axis),
    transpose=lambda x, axes: x.permute(axes),
    concatenate=lambda ts, axis: torch.cat(list(ts), dim=axis),
)


# ---------------------------------------------------------------- composite expressions
# Each takes the namespace F and the sizes n, k, m, j; it returns the input
# shapes and a function of the input tensors.

def mlp(n, k, m, j):
    """Two linear layers (tanh, sigmoid), softplus, a slice, a row log-sum-exp."""
    def fn(F, x, W1, b1, W2, b2):
        h = F.linear(x, W1, b1, "tanh")
        o = F.linear(h, W2, b2, "sigmoid")
        return F.logsumexp(F.softplus(o) * 3.0 - h[:, :1], axis=1)
    return [(n, k), (k, m), (m,), (m, j), (j,)], fn


def broadcasting(n, k, m, j):
    """add, sub, mul, div and pow across three mutually broadcast shapes, then a mean."""
    def fn(F, a, b, c):
        y = (a + b) * c / (F.exp(b) + 1.0) - a ** 2 + (c ** 3) * 0.5 - 2.0 / (1.0 + b * b)
        return F.mean(y, axis=0)
    return [(n, 1, m), (k, 1), (m,)], fn


def shapes(n, k, m, j):
    """concatenate, transpose, reshape and strided getitem feeding a linear layer."""
    def fn(F, x, y, W):
        joined = F.concatenate([x, y.T], axis=1)                      # (n, k + m)
        # a 3-cycle, not its own inverse, so a vjp that undoes it wrongly shows
        rotated = F.transpose(joined.reshape(n, 1, k + m), (2, 0, 1))  # (k + m, n, 1)
        picked = rotated[::2, :, 0]                                    # every other row
        return F.linear(picked.T, W[::2], None, "relu") - F.abs(picked).T.mean()
    return [(n, k), (m, n), (k + m, j)], fn


def elementwise(n, k, m, j):
    """exp, log, sqrt and fractional powers on a positive path, reduced two ways."""
    def fn(F, x, W):
        u = F.sqrt(F.exp(x) + x * x)                               # > 0 everywhere
        v = F.log(1.0 + u) / u
        s = F.sum(v ** 1.5 * F.sigmoid(x), axis=1)
        return s - F.mean(v) + F.sum(F.linear(v, W, None, "softplus"), axis=1)
    return [(n, k), (k, j)], fn


def identity_layers(n, k, m, j):
    """linear with identity and with no bias, and softplus with a bias, summed over axis 0."""
    def fn(F, x, W1, W2, b2):
        h = F.linear(x, W1, None, "identity")
        return F.sum(F.linear(F.tanh(h), W2, b2, "softplus"), axis=0) - F.sum(h)
    return [(n, k), (k, m), (m, j), (j,)], fn


EXPRESSIONS = [mlp, broadcasting, shapes, elementwise, identity_layers]


def evaluate(F, fn, arrays, weights=None):
    leaves = [F.leaf(a.copy()) for a in arrays]
    out = fn(F, *leaves)
    if weights is None:
        weights = np.random.default_rng(1).standard_normal(F.value(out).shape)
    F.backward(out, weights)
    return F.value(out), [F.grad(t) for t in leaves], weights


sizes = st.integers(1, 5)


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=[e.__name__ for e in EXPRESSIONS])
@given(n=sizes, k=sizes, m=sizes, j=sizes, seed=st.integers(0, 2**32 - 1))
def test_composite_expression_values_and_gradients_match_torch(expression, n, k, m, j, seed):
    input_shapes, fn = expression(n, k, m, j)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in input_shapes]
    value, grads, weights = evaluate(MINIVAE, fn, arrays)
    torch_value, torch_grads, _ = evaluate(TORCH, fn, arrays, weights)
    assert value.dtype == np.float64
    np.testing.assert_allclose(value, torch_value, **TOL)
    for i, (grad, torch_grad) in enumerate(zip(grads, torch_grads)):
        np.testing.assert_allclose(grad, torch_grad, **TOL, err_msg=f"input {i}")


# ---------------------------------------------------------------- distribution ops

def compare_with_torch(ours, theirs, arrays, seed):
    """Value and every input's gradient of ours(*tensors) vs theirs(*torch tensors)."""
    tensors = [mv.Tensor(a.copy(), requires_grad=True) for a in arrays]
    torch_tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, torch_out = ours(*tensors), theirs(*torch_tensors)
    np.testing.assert_allclose(out.data, torch_out.detach().numpy(), **TOL)
    weights = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(weights)
    torch_out.backward(torch.from_numpy(weights))
    for i, (t, tt) in enumerate(zip(tensors, torch_tensors)):
        np.testing.assert_allclose(t.grad, tt.grad.numpy(), **TOL, err_msg=f"input {i}")


row_sizes = dict(n=st.integers(1, 6), d=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))


@given(**row_sizes, scale=st.sampled_from([1.0, 5.0, 40.0]))
def test_bernoulli_log_prob_is_minus_torch_bce_with_logits(n, d, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))                       # intensities in [0, 1]
    logits = rng.standard_normal((n, d)) * scale
    compare_with_torch(
        mv.bernoulli_log_prob,
        lambda x, l: -torch.nn.functional.binary_cross_entropy_with_logits(
            l, x, reduction="none").sum(1),
        [x, logits], seed)


@given(**row_sizes)
def test_gaussian_kl_matches_appendix_b_in_torch(n, d, seed):
    rng = np.random.default_rng(seed)
    mu, logvar = rng.standard_normal((n, d)), rng.uniform(-4, 4, (n, d))
    compare_with_torch(
        mv.gaussian_kl,
        lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1),   # Appendix B
        [mu, logvar], seed)


@given(**row_sizes)
def test_gaussian_log_prob_matches_torch_normal_log_prob(n, d, seed):
    rng = np.random.default_rng(seed)
    x, mu, logvar = (rng.standard_normal((n, d)), rng.standard_normal((n, d)),
                     rng.uniform(-4, 4, (n, d)))
    compare_with_torch(
        mv.gaussian_log_prob,
        lambda x, mu, lv: torch.distributions.Normal(mu, (lv / 2).exp()).log_prob(x).sum(1),
        [x, mu, logvar], seed)


@given(**row_sizes)
def test_reparameterize_matches_mu_plus_sigma_eps_in_torch(n, d, seed):
    rng = np.random.default_rng(seed)
    mu, logvar, eps = (rng.standard_normal((n, d)), rng.uniform(-4, 4, (n, d)),
                       rng.standard_normal((n, d)))
    compare_with_torch(
        mv.reparameterize,
        lambda mu, lv, eps: mu + (lv / 2).exp() * eps,                  # eq. 10
        [mu, logvar, eps], seed)
