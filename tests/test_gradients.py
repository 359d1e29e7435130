"""Every differentiable op's gradient equals central finite differences.

One factory per op draws shapes (broadcastable ones, size-1 axes and 0-d
scalars where the op takes them) and values inside the op's domain; one
property test runs them all through `minivae.gradcheck` in float64.  The
registry test makes a new op without a factory fail the suite.
"""
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import assume, given

import minivae as mv
from minivae.autograd import OPS


def values(data, shape, lo=-3.0, hi=3.0, away_from_zero=0.0):
    """A float64 array of `shape` in [lo, hi], with |v| >= away_from_zero."""
    elements = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if away_from_zero:
        elements = elements.filter(lambda v: abs(v) >= away_from_zero)
    return data.draw(hnp.arrays(np.float64, shape, elements=elements))


def shape(data, min_dims=0, max_dims=3, min_side=1):
    return data.draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                                      min_side=min_side, max_side=4))


def broadcastable_pair(data, **domain):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    return [values(data, s, **domain) for s in shapes.input_shapes]


def axis_and_keepdims(data, ndim):
    axes = st.none() | st.integers(-ndim, ndim - 1) if ndim else st.none()
    return data.draw(axes), data.draw(st.booleans())


def rows(data, count, **domain):
    """`count` float64 arrays of one 2-D shape (n, d), for the fused ops."""
    n, d = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    return [values(data, (n, d), **domain) for _ in range(count)]


def spec_unary(op, **domain):
    def draw(data):
        return op, [values(data, shape(data), **domain)]
    return draw


def spec_binary(op, **domain_of_y):
    def draw(data):
        x, y = broadcastable_pair(data)
        if domain_of_y:
            y = values(data, y.shape, **domain_of_y)
        return op, [x, y]
    return draw


def spec_pow(data):
    exponent = data.draw(st.sampled_from([2, 3, -1, 0.5, -1.5, 1.7]))
    return (lambda x: mv.pow(x, exponent)), [values(data, shape(data), 0.5, 3.0)]


def spec_matmul(data):
    n, k, m = (data.draw(st.integers(1, 5)) for _ in range(3))
    return mv.matmul, [values(data, (n, k)), values(data, (k, m))]


def spec_reduction(op):
    def draw(data):
        x = values(data, shape(data))
        axis, keepdims = axis_and_keepdims(data, x.ndim)
        return (lambda t: op(t, axis, keepdims)), [x]
    return draw


def spec_reshape(data):
    x = values(data, shape(data))
    target = data.draw(st.sampled_from([(-1,), x.shape[::-1], (1,) + x.shape, (x.size, 1)]))
    return (lambda t: mv.reshape(t, target)), [x]


def spec_transpose(data):
    x = values(data, shape(data))
    axes = data.draw(st.permutations(range(x.ndim)))
    return (lambda t: mv.transpose(t, axes)), [x]


def spec_getitem(data):
    x = values(data, shape(data, min_dims=1))
    first = x.shape[0]
    index = data.draw(st.one_of(
        st.integers(-first, first - 1),                                   # an integer
        st.builds(slice, st.integers(0, first), st.integers(0, first),    # a slice
                  st.integers(1, 2)),
        hnp.arrays(np.intp, data.draw(st.integers(1, 6)),                  # repeats add up
                   elements=st.integers(0, first - 1))))
    return (lambda t: t[index]), [x]


def spec_concatenate(data):
    base = shape(data, min_dims=1)
    axis = data.draw(st.integers(0, len(base) - 1))
    parts = [values(data, base[:axis] + (data.draw(st.integers(1, 3)),) + base[axis + 1:])
             for _ in range(data.draw(st.integers(1, 3)))]
    return (lambda *ts: mv.concatenate(ts, axis)), parts


def spec_split(data):
    x = values(data, shape(data, min_dims=1))
    axis = data.draw(st.integers(0, x.ndim - 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, x.shape[axis]), max_size=3)))
    # split returns pieces; weight each differently so every piece is checked
    return (lambda t: mv.concatenate([p * (i + 1) for i, p in enumerate(mv.split(t, cuts, axis))],
                                     axis)), [x]


def spec_astype(data):
    # float64 -> float32 -> float64 round trip; checked with a wide eps (below)
    return (lambda t: mv.astype(mv.astype(t, np.float32) * 3.0, np.float64)), \
        [values(data, shape(data))]


def spec_linear(data):
    n, k, m = (data.draw(st.integers(1, 5)) for _ in range(3))
    activation = data.draw(st.sampled_from(["identity", "tanh", "sigmoid", "relu", "softplus"]))
    x, W = values(data, (n, k)), values(data, (k, m))
    b = values(data, (m,)) if data.draw(st.booleans()) else None
    assume(np.all(np.abs(x @ W + (0 if b is None else b)) > 1e-3))  # relu's kink at 0
    if b is None:
        return (lambda x, W: mv.linear(x, W, None, activation)), [x, W]
    return (lambda x, W, b: mv.linear(x, W, b, activation)), [x, W, b]


def spec_bernoulli_log_prob(data):
    (x,) = rows(data, 1, lo=0.0, hi=1.0)
    logits = values(data, x.shape, -6.0, 6.0)
    return mv.bernoulli_log_prob, [x, logits]


def spec_gaussian_log_prob(data):
    x, mu = rows(data, 2)
    return mv.gaussian_log_prob, [x, mu, values(data, x.shape, -2.0, 2.0)]


def spec_gaussian_kl(data):
    (mu,) = rows(data, 1)
    return mv.gaussian_kl, [mu, values(data, mu.shape, -2.0, 2.0)]


def spec_reparameterize(data):
    mu, eps = rows(data, 2)
    return mv.reparameterize, [mu, values(data, mu.shape, -2.0, 2.0), eps]


def spec_location_scale(data):
    mu, eps = rows(data, 2)
    return mv.location_scale, [mu, values(data, mu.shape, -2.0, 2.0), eps]


def spec_location_scale_kl(data):
    # the standard member's entropy and variance: any real and positive pair
    entropy, variance = data.draw(st.floats(-2.0, 3.0)), data.draw(st.floats(0.2, 4.0))
    (mu,) = rows(data, 1)
    return (lambda m, s: mv.location_scale_kl(m, s, entropy, variance)), \
        [mu, values(data, mu.shape, -2.0, 2.0)]


def spec_laplace_log_prob(data):
    z, mu = rows(data, 2)
    assume(np.all(np.abs(z - mu) > 1e-3))   # |z - mu|'s kink
    return mv.laplace_log_prob, [z, mu, values(data, z.shape, -2.0, 2.0)]


def spec_logistic_inverse_cdf(data):
    (mu,) = rows(data, 1)
    return mv.logistic_inverse_cdf, [mu, values(data, mu.shape, -2.0, 2.0),
                                     values(data, mu.shape, 0.05, 0.95)]


def spec_logistic_log_prob(data):
    z, mu = rows(data, 2)
    return mv.logistic_log_prob, [z, mu, values(data, z.shape, -2.0, 2.0)]


SPECS = {
    "add": spec_binary(mv.add),
    "sub": spec_binary(mv.sub),
    "mul": spec_binary(mv.mul),
    "div": spec_binary(mv.div, lo=-3.0, hi=3.0, away_from_zero=0.5),
    "neg": spec_unary(mv.neg),
    "pow": spec_pow,
    "matmul": spec_matmul,
    "sum": spec_reduction(mv.sum),
    "mean": spec_reduction(mv.mean),
    "logsumexp": spec_reduction(mv.logsumexp),
    "exp": spec_unary(mv.exp),
    "log": spec_unary(mv.log, lo=0.1, hi=5.0),
    "sqrt": spec_unary(mv.sqrt, lo=0.1, hi=5.0),
    "abs": spec_unary(mv.abs, away_from_zero=0.1),
    "tanh": spec_unary(mv.tanh),
    "sigmoid": spec_unary(mv.sigmoid, lo=-8.0, hi=8.0),
    "relu": spec_unary(mv.relu, away_from_zero=0.1),
    "softplus": spec_unary(mv.softplus, lo=-8.0, hi=8.0),
    "reshape": spec_reshape,
    "transpose": spec_transpose,
    "getitem": spec_getitem,
    "concatenate": spec_concatenate,
    "split": spec_split,
    "astype": spec_astype,
    "linear": spec_linear,
    "bernoulli_log_prob": spec_bernoulli_log_prob,
    "gaussian_log_prob": spec_gaussian_log_prob,
    "gaussian_kl": spec_gaussian_kl,
    "reparameterize": spec_reparameterize,
    "location_scale": spec_location_scale,
    "location_scale_kl": spec_location_scale_kl,
    "laplace_log_prob": spec_laplace_log_prob,
    "logistic_inverse_cdf": spec_logistic_inverse_cdf,
    "logistic_log_prob": spec_logistic_log_prob,
}

# The float32 round trip of `astype` is flat below float32's resolution.
CHECK_OPTIONS = {"astype": dict(eps=1e-2, atol=1e-4, rtol=1e-4)}


def test_every_registered_op_has_a_property_test():
    assert set(OPS) == set(SPECS), (
        f"ops without a gradient property test: {sorted(set(OPS) - set(SPECS))}; "
        f"tests for ops that no longer exist: {sorted(set(SPECS) - set(OPS))}")


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data())
def test_gradient_matches_central_differences(name, data):
    fn, inputs = SPECS[name](data)
    mv.gradcheck(fn, inputs, **CHECK_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"astype"}))
@given(data=st.data())
def test_float32_inputs_give_float32_outputs_and_gradients(name, data):
    fn, inputs = SPECS[name](data)
    tensors = [mv.Tensor(x.astype(np.float32), requires_grad=True) for x in inputs]
    out = fn(*tensors)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, np.float32))
    for t in tensors:
        assert t.grad is None or t.grad.dtype == np.float32


def test_linear_s_gradient_where_its_product_skips_the_zeros_of_binarized_pixels():
    # at the first layer's shape x (100, 784) W (784, 500), with 13 % ones in x,
    # the forward product x W skips x's zeros (minivae.sparse)
    rng = np.random.default_rng(0)
    x = (rng.random((100, 784)) < 0.13).astype(np.float64)
    W, b = rng.normal(0, 0.05, (784, 500)), rng.normal(0, 0.05, 500)
    assert mv.sparse.mostly_zeros(x, W)
    mv.gradcheck(lambda W, b: mv.linear(x, W, b, "tanh"), [W, b], max_elements=12)

