"""The autograd engine's graph semantics, its errors on bad input, and gradcheck.

Gradients here are derived by hand (d(x^2 + x)/dx = 2x + 1, ...), never by
the engine under test.
"""
import re

import numpy as np
import pytest

import minivae as mv
from minivae.autograd import Tensor, no_grad, node, unbroadcast
from minivae.gradcheck import GradcheckError, gradcheck


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype), requires_grad=True)


# ---------------------------------------------------------------- graph semantics

def test_diamond_x_times_x_plus_x_has_gradient_2x_plus_1():
    x = leaf([-1.5, 0.0, 2.0])
    y = x * x + x                     # x reaches y along three edges
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [-2.0, 1.0, 5.0])


def test_intermediate_used_twice_receives_both_contributions():
    x = leaf([0.5, -1.0])
    h = mv.exp(x)
    y = h * h + 3 * h                 # dy/dh = 2h + 3, dh/dx = h
    y.sum().backward()
    h_value = np.exp([0.5, -1.0])
    np.testing.assert_allclose(x.grad, (2 * h_value + 3) * h_value, rtol=1e-15, atol=0)


def test_leaf_gradients_accumulate_across_two_backward_calls_on_one_graph():
    x, w = leaf([1.0, 2.0]), leaf([3.0, -4.0])
    loss = (x * w).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, [6.0, -8.0])   # 2 w
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])    # 2 x


def test_backward_on_a_rebuilt_graph_gives_exactly_twice_the_leaf_gradient():
    x = leaf([0.3, -0.7, 1.1])

    def loss():  # intermediates used several times: a double count would show
        h = mv.tanh(x * 2.0)
        return (h * h + h * x + mv.sigmoid(h)).sum()

    loss().backward()
    once = x.grad.copy()
    loss().backward()
    np.testing.assert_array_equal(x.grad, 2 * once)
    loss().backward()
    np.testing.assert_array_equal(x.grad, 3 * once)


def test_resetting_grad_to_none_starts_accumulation_afresh():
    x = leaf([2.0])
    (x * x).sum().backward()
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0])


def test_no_grad_records_no_graph_and_backward_on_its_result_raises():
    x = leaf([1.0, 2.0])
    with no_grad():
        y = (x * 2.0).sum()
    assert y.requires_grad is False and y._parents == () and y.op is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_restores_recording_after_an_exception_inside_it():
    x = leaf([1.0])
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert (x * 2.0).requires_grad is True


def test_nested_no_grad_stays_off_until_the_outer_block_ends():
    x = leaf([1.0])
    with no_grad():
        with no_grad():
            pass
        assert (x * 2.0).requires_grad is False
    assert (x * 2.0).requires_grad is True


def test_detach_cuts_the_graph_and_shares_the_data():
    x = leaf([1.0, 3.0])
    y = x * x
    d = y.detach()
    assert d.requires_grad is False and d.data is y.data
    (d * x).sum().backward()          # only the direct path x -> d*x: gradient d = x^2
    np.testing.assert_array_equal(x.grad, [1.0, 9.0])


def test_a_chain_of_10000_ops_runs_backward_without_recursion_error():
    x = leaf([0.5, -2.0])
    y = x
    for _ in range(10_000):
        y = y + x                     # y = 10001 x, a chain 10000 nodes deep
    y.sum().backward()
    np.testing.assert_array_equal(y.data, 10_001 * x.data)
    np.testing.assert_array_equal(x.grad, [10_001.0, 10_001.0])


def test_a_chain_of_10000_multiplications_gives_the_analytic_gradient():
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001                # y = 1.0001^10000 x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000], rtol=1e-11, atol=0)


# ---------------------------------------------------------------- backward's arguments

def test_backward_on_a_non_scalar_without_grad_raises_naming_the_shape():
    y = leaf(np.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        y.backward()


def test_backward_with_a_grad_of_the_wrong_shape_raises_naming_both_shapes():
    y = leaf(np.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_backward_with_an_explicit_grad_weights_the_outputs():
    x = leaf([1.0, 2.0])
    (x * x).backward(np.array([10.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [20.0, -4.0])


# ---------------------------------------------------------------- dtypes

@pytest.mark.parametrize("data", [np.arange(3), np.array([1, 2], np.int32),
                                  np.array([True]), np.array([1 + 2j])])
def test_tensor_of_a_non_float_dtype_raises_naming_the_supported_dtypes(data):
    with pytest.raises(TypeError, match=f"{data.dtype}.*float32 and float64"):
        Tensor(data)


def test_tensor_with_an_int_dtype_argument_raises():
    with pytest.raises(TypeError, match="int32.*float32 and float64"):
        Tensor([1.0, 2.0], dtype=np.int32)


def test_python_numbers_become_float32_by_default():
    assert Tensor(1.5).dtype == np.float32 and Tensor([1, 2]).dtype == np.float32


MIXED = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("matmul", lambda a, b: a @ b),
    ("linear", lambda a, b: mv.linear(a, b)), ("concatenate", lambda a, b: mv.concatenate([a, b])),
    ("gaussian_kl", mv.gaussian_kl), ("bernoulli_log_prob", mv.bernoulli_log_prob),
]


@pytest.mark.parametrize("name,fn", MIXED, ids=[n for n, _ in MIXED])
@pytest.mark.parametrize("first,second", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("second_is_array", [False, True], ids=["tensor", "ndarray"])
def test_mixing_float32_and_float64_raises_naming_both_dtypes(name, fn, first, second,
                                                              second_is_array):
    a = leaf(np.ones((2, 2)), first)
    b = np.ones((2, 2), second)
    with pytest.raises(TypeError, match=f"{name}: .*({np.dtype(first)}.*{np.dtype(second)}|"
                                        f"{np.dtype(second)}.*{np.dtype(first)})"):
        fn(a, b if second_is_array else Tensor(b))


SCALAR_EXPRESSIONS = [
    ("x + 1.5", lambda x: x + 1.5), ("1.5 + x", lambda x: 1.5 + x),
    ("x - 2", lambda x: x - 2), ("2 - x", lambda x: 2 - x),
    ("x * 3.0", lambda x: x * 3.0), ("3 * x", lambda x: 3 * x),
    ("x / 4.0", lambda x: x / 4.0), ("4.0 / x", lambda x: 4.0 / x),
    ("x ** 2", lambda x: x ** 2), ("x ** 0.5", lambda x: x ** 0.5),
    ("-x", lambda x: -x), ("x.mean()", lambda x: x.mean()),
    ("x.sum() * 0.5", lambda x: x.sum() * 0.5), ("logsumexp(x) - 1", lambda x: mv.logsumexp(x) - 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("expression,fn", SCALAR_EXPRESSIONS,
                         ids=[e for e, _ in SCALAR_EXPRESSIONS])
def test_python_numbers_take_the_tensors_dtype(expression, fn, dtype):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], dtype)
    y = fn(x)
    assert y.dtype == dtype, expression
    y.sum().backward()
    assert x.grad.dtype == dtype, expression


LIST_OPERANDS = [
    ("x + list", lambda x: x + [1.0, 2.0]),
    ("matmul(x, list)", lambda x: mv.matmul(x, [[1.0], [2.0]])),
    ("linear(x, list W)", lambda x: mv.linear(x, [[1.0], [2.0]])),
    ("linear(x, W, list b)", lambda x: mv.linear(x, Tensor(np.ones((2, 1), x.dtype)), [0.5])),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("expression,fn", LIST_OPERANDS, ids=[e for e, _ in LIST_OPERANDS])
def test_lists_of_numbers_take_the_tensors_dtype_like_numbers(expression, fn, dtype):
    # ops.py: "Every op takes Tensors (or numbers, which take the other operand's dtype)"
    x = leaf([[1.0, 2.0], [3.0, 4.0]], dtype)
    assert fn(x).dtype == dtype, expression


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("name,fn", [("add", mv.add), ("sub", mv.sub), ("mul", mv.mul),
                                     ("div", mv.div)])
def test_broadcasting_failure_names_the_op_and_both_shapes(name, fn):
    with pytest.raises(ValueError, match=rf"{name}: shapes \(2, 3\) and \(4,\)"):
        fn(leaf(np.ones((2, 3))), leaf(np.ones(4)))


@pytest.mark.parametrize("a,b", [((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)),
                                 ((2, 3), (4, 2)), ((2, 3, 4), (4, 2)), ((2, 3), ())])
def test_matmul_of_1d_or_misaligned_shapes_raises_naming_both_shapes(a, b):
    with pytest.raises(ValueError) as error:
        mv.matmul(leaf(np.ones(a)), leaf(np.ones(b)))
    assert f"{a} @ {b}" in str(error.value)


def test_linear_with_an_unknown_activation_raises_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match="'gelu'.*identity, tanh, sigmoid, relu, softplus"):
        mv.linear(leaf(np.ones((2, 3))), leaf(np.ones((3, 4))), leaf(np.ones(4)), "gelu")


@pytest.mark.parametrize("x,W,b", [((2, 3), (4, 5), (5,)),     # k disagrees
                                   ((2, 3), (3, 4), (5,)),     # m disagrees with b
                                   ((3,), (3, 4), (4,)),       # x is 1-D
                                   ((2, 3), (3, 4), (1, 4)),   # b is 2-D
                                   ((2, 3), (3, 4, 1), (4,))])  # W is 3-D
def test_linear_with_bad_shapes_raises_naming_every_shape(x, W, b):
    with pytest.raises(ValueError) as error:
        mv.linear(leaf(np.ones(x)), leaf(np.ones(W)), leaf(np.ones(b)))
    message = str(error.value)
    assert f"x {x}" in message and f"W {W}" in message and f"b {b}" in message


# ---------------------------------------------------------------- leaf gradients

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 1), (2, 3)])
def test_leaf_grad_is_read_only_with_the_leafs_shape_and_dtype(shape, dtype):
    x = leaf(np.full(shape, 2.0), dtype)
    other = leaf(np.ones((4, 2, 3)), dtype)      # x is broadcast against it
    (x * other + x).sum().backward()
    for t in (x, other):
        assert isinstance(t.grad, np.ndarray)
        assert t.grad.shape == t.shape and t.grad.dtype == dtype
        with pytest.raises(ValueError, match="read-only"):
            t.grad += 1


def test_two_leaves_sharing_one_gradient_array_cannot_change_each_other():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + y).backward(np.array([1.0, 1.0]))       # add hands one array to both
    with pytest.raises(ValueError, match="read-only"):
        x.grad[0] = 100.0
    np.testing.assert_array_equal(y.grad, [1.0, 1.0])


def test_leaf_grad_stays_read_only_after_a_second_backward_accumulates_into_it():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])
    with pytest.raises(ValueError, match="read-only"):
        x.grad += 1


# ---------------------------------------------------------------- unbroadcast

def test_unbroadcast_returns_a_gradient_of_the_same_shape_unchanged():
    g = np.arange(6.0).reshape(2, 3)
    assert unbroadcast(g, (2, 3)) is g


def test_unbroadcast_sums_over_added_and_stretched_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    # written out as explicit sums over the axes that broadcasting created
    expected = {
        (): np.array(sum(g[a, j, k] for a in range(2) for j in range(3) for k in range(4))),
        (4,): np.array([sum(g[a, j, k] for a in range(2) for j in range(3))
                        for k in range(4)]),
        (3, 4): np.array([[g[0, j, k] + g[1, j, k] for k in range(4)] for j in range(3)]),
        (3, 1): np.array([[sum(g[a, j, k] for a in range(2) for k in range(4))]
                          for j in range(3)]),
        (1, 4): np.array([[sum(g[a, j, k] for a in range(2) for j in range(3))
                           for k in range(4)]]),
        (2, 1, 4): np.array([[[sum(g[a, j, k] for j in range(3)) for k in range(4)]]
                             for a in range(2)]),
        (1, 3, 1): np.array([[[sum(g[a, j, k] for a in range(2) for k in range(4))]
                              for j in range(3)]]),
        (1, 1, 1): np.full((1, 1, 1), g.sum()),
    }
    for shape, want in expected.items():
        got = unbroadcast(g, shape)
        assert np.shape(got) == shape, shape
        np.testing.assert_array_equal(got, want, err_msg=str(shape))


# ---------------------------------------------------------------- gradcheck

def test_gradcheck_passes_on_a_correct_function_and_returns_a_tiny_error():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    worst = gradcheck(lambda x, W, b: mv.logsumexp(mv.linear(x, W, b, "tanh"), axis=1),
                      [x, W, b])
    assert 0.0 <= worst < 1e-7


def wrong_square(x, wrong_at, wrong_value):
    """x^2 with a vjp that is right (2 x g) except at one element."""
    def vjp(g):
        grad = 2 * x.data * g
        grad[wrong_at] = wrong_value
        return (grad,)
    return node(x.data ** 2, (x,), vjp, "wrong_square")


def test_gradcheck_fails_on_a_wrong_vjp_naming_input_element_and_both_values():
    a = np.array([[0.3, -0.2], [1.5, 0.7]])
    b = np.array([[0.4, 1.2, -0.5], [0.9, -1.1, 0.0]])  # d(b^2)/db = 0 at (1, 2)
    with pytest.raises(GradcheckError) as error:
        gradcheck(lambda a, b: mv.concatenate([a * 2.0, wrong_square(b, (1, 2), 7.0)], axis=1),
                  [a, b])
    message = str(error.value)
    assert "input 1" in message and "index (1, 2)" in message
    # the engine says 7.0; the central difference of b^2 at b = 0 is exactly 0.0
    # (numpy 2 writes a float64 scalar as np.float64(7.0): accept both spellings)
    assert re.search(r"analytic (np\.float64\()?7\.0\b", message), message
    assert re.search(r"finite difference (np\.float64\()?0\.0\b", message), message


def test_gradcheck_checks_elements_before_the_wrong_one_and_they_pass():
    b = np.array([0.4, 1.2, 0.0])
    with pytest.raises(GradcheckError, match=r"input 0 .*index \(2,\)"):
        gradcheck(lambda b: wrong_square(b, 2, -3.0), [b])


def test_gradcheck_max_elements_limits_the_elements_it_perturbs():
    calls = []

    def fn(x, y):
        calls.append(1)
        return mv.sum(x * 2.0) + mv.sum(y)

    x, y = np.ones((4, 5)), np.ones(2)
    gradcheck(fn, [x, y], max_elements=3)
    assert len(calls) == 1 + 2 * (3 + 2)     # one backward pass, two evaluations per element
    calls.clear()
    gradcheck(fn, [x, y])
    assert len(calls) == 1 + 2 * (20 + 2)


def test_gradcheck_with_max_elements_still_fails_when_every_element_is_wrong():
    x = np.ones((10, 10))
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: node(x.data * 3, (x,), lambda g: (g * 4,), "wrong_scale"), [x],
                  max_elements=2)


def test_gradcheck_of_a_float32_output_raises_type_error():
    with pytest.raises(TypeError, match="float64.*float32"):
        gradcheck(lambda x: x.astype(np.float32), [np.ones(3)])
