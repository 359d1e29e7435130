"""Differentiable ops: each forward, with its derivative written beside it.

Every op takes Tensors (or numbers, which take the other operand's dtype)
and returns a Tensor whose `vjp` maps the upstream gradient g to one
gradient per input.  Elementwise binary ops broadcast like numpy, and
`unbroadcast` sums the gradient back to each input's shape.  Operands of
different dtypes are an error, never a silent promotion.
"""
import math

import numpy as np

from minivae import kernels
from minivae.autograd import Tensor, as_tensor, as_tensors, checked_dtype, node, op, unbroadcast


def _operands(x, y, name):
    """Both operands as Tensors of one dtype whose shapes broadcast."""
    x, y = as_tensors((x, y), name)
    if x.shape == y.shape:
        return x, y
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {x.shape} and {y.shape} do not broadcast") from None
    return x, y


# ---------------------------------------------------------------- arithmetic

@op
def add(x, y):
    """x + y, broadcasting."""
    x, y = _operands(x, y, "add")

    def vjp(g):  # d(x + y)/dx = d(x + y)/dy = 1
        return unbroadcast(g, x.shape), unbroadcast(g, y.shape)
    return node(x.data + y.data, (x, y), vjp, "add")


@op
def sub(x, y):
    """x - y, broadcasting."""
    x, y = _operands(x, y, "sub")

    def vjp(g):  # d(x - y)/dx = 1, d(x - y)/dy = -1
        return unbroadcast(g, x.shape), unbroadcast(-g, y.shape)
    return node(x.data - y.data, (x, y), vjp, "sub")


@op
def mul(x, y):
    """x * y elementwise, broadcasting."""
    x, y = _operands(x, y, "mul")

    def vjp(g):  # d(xy)/dx = y, d(xy)/dy = x
        return unbroadcast(g * y.data, x.shape), unbroadcast(g * x.data, y.shape)
    return node(x.data * y.data, (x, y), vjp, "mul")


@op
def div(x, y):
    """x / y elementwise, broadcasting."""
    x, y = _operands(x, y, "div")
    out = x.data / y.data

    def vjp(g):  # d(x/y)/dx = 1/y, d(x/y)/dy = -x/y^2 = -(x/y)/y
        return unbroadcast(g / y.data, x.shape), unbroadcast(-g * out / y.data, y.shape)
    return node(out, (x, y), vjp, "div")


@op
def neg(x):
    """-x."""
    x = as_tensor(x)
    return node(-x.data, (x,), lambda g: (-g,), "neg")  # d(-x)/dx = -1


@op
def pow(x, exponent):
    """x ** exponent elementwise, for a constant number `exponent`."""
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        raise TypeError(f"pow: exponent must be a Python number, got {type(exponent).__name__}")
    x = as_tensor(x)

    def vjp(g):  # d(x^p)/dx = p x^(p-1)
        return (g * exponent * x.data ** (exponent - 1),)
    return node(x.data ** exponent, (x,), vjp, "pow")


@op
def matmul(x, y):
    """(n, k) @ (k, m) -> (n, m); both operands must be 2-D (no broadcasting)."""
    x, y = as_tensors((x, y), "matmul")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[0]:
        raise ValueError(f"matmul: expected 2-D shapes (n, k) @ (k, m), got "
                         f"{x.shape} @ {y.shape}")

    def vjp(g):  # d(XY)/dX = g Y^T, d(XY)/dY = X^T g
        return (kernels.matmul(g, y.data.T) if x.requires_grad else None,
                kernels.matmul(x.data.T, g) if y.requires_grad else None)
    return node(kernels.matmul(x.data, y.data), (x, y), vjp, "matmul")


# ---------------------------------------------------------------- reductions

def _axes(axis, ndim):
    """`axis` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


@op
def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (None: all axes)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)

    def vjp(g):  # d(sum x)/dx_i = 1: copy g back along the summed axes
        g = g if keepdims or not axes else np.expand_dims(g, axes)
        return (np.array(np.broadcast_to(g, x.shape), order="C"),)
    return node(x.data.sum(axis=axes, keepdims=keepdims), (x,), vjp, "sum")


@op
def mean(x, axis=None, keepdims=False):
    """Mean over `axis` (None: all axes); composed from `sum`."""
    x = as_tensor(x)
    count = math.prod(x.shape[a] for a in _axes(axis, x.ndim))
    return sum(x, axis, keepdims) * (1 / count)


@op
def logsumexp(x, axis=None, keepdims=False):
    """log sum exp(x) over `axis`, computed stably as m + log sum exp(x - m)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    m = np.max(x.data, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf along an axis: keep -inf, not NaN
    out = np.log(np.exp(x.data - m).sum(axis=axes, keepdims=True)) + m

    def vjp(g):  # d lse/dx_i = exp(x_i - lse) = softmax(x)_i
        g = g if keepdims or not axes else np.expand_dims(g, axes)
        return (g * np.exp(x.data - out),)
    return node(out if keepdims else np.squeeze(out, axes), (x,), vjp, "logsumexp")


# ---------------------------------------------------------------- elementwise functions

@op
def exp(x):
    """e ** x elementwise."""
    x = as_tensor(x)
    out = np.exp(x.data)
    return node(out, (x,), lambda g: (g * out,), "exp")  # d e^x/dx = e^x


@op
def log(x):
    """Natural logarithm elementwise, for x > 0."""
    x = as_tensor(x)
    return node(np.log(x.data), (x,), lambda g: (g / x.data,), "log")  # d log x/dx = 1/x


@op
def sqrt(x):
    """Square root elementwise, for x > 0."""
    x = as_tensor(x)
    out = np.sqrt(x.data)
    return node(out, (x,), lambda g: (g / (2 * out),), "sqrt")  # d sqrt(x)/dx = 1/(2 sqrt(x))


@op
def abs(x):
    """|x| elementwise (derivative sign(x), taken as 0 at 0)."""
    x = as_tensor(x)
    return node(np.abs(x.data), (x,), lambda g: (g * np.sign(x.data),), "abs")  # d|x|/dx = sign(x)


def _activation(x, name):
    """act(x) through the `activate` kernel; its slope is kernels._activate_slope."""
    x = as_tensor(x)
    code = kernels.ACTIVATIONS[name]
    out = np.asarray(kernels.activate(x.data, code))

    def vjp(g):
        return (kernels.activate_grad(out.ravel(), g.ravel(), code).reshape(x.shape),)
    return node(out, (x,), vjp, name)


@op
def tanh(x):
    """tanh(x) elementwise; d/dx = 1 - tanh(x)^2."""
    return _activation(x, "tanh")


@op
def sigmoid(x):
    """1 / (1 + e^-x) elementwise, stable for any x; d/dx = s (1 - s)."""
    return _activation(x, "sigmoid")


@op
def relu(x):
    """max(x, 0) elementwise; d/dx = [x > 0]."""
    return _activation(x, "relu")


@op
def softplus(x):
    """log(1 + e^x) elementwise, stable for any x; d/dx = sigmoid(x)."""
    return _activation(x, "softplus")


# ---------------------------------------------------------------- shapes and dtypes

@op
def astype(x, dtype):
    """x cast to float32 or float64: the one way to change a tensor's dtype."""
    x = as_tensor(x)
    out = x.data.astype(checked_dtype(dtype, "astype"))
    return node(out, (x,), lambda g: (g.astype(x.dtype),), "astype")  # the cast back

@op
def reshape(x, shape):
    """x with a new shape holding the same number of elements."""
    x = as_tensor(x)
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) "
                         f"into {shape}") from None
    return node(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


@op
def transpose(x, axes=None):
    """x with its axes permuted (default: reversed)."""
    x = as_tensor(x)
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
    inverse = tuple(np.argsort(axes))
    return node(np.transpose(x.data, axes), (x,),
                lambda g: (np.transpose(g, inverse),), "transpose")  # undo the permutation


@op
def getitem(x, index):
    """x[index], for basic slicing and integer-array indexing."""
    x = as_tensor(x)

    def vjp(g):  # each selected element receives its g; repeats add up
        g_x = np.zeros_like(x.data)
        np.add.at(g_x, index, g)
        return (g_x,)
    return node(x.data[index], (x,), vjp, "getitem")


@op
def concatenate(tensors, axis=0):
    """Join tensors of one dtype along `axis`."""
    tensors = as_tensors(tensors, "concatenate")
    try:
        out = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as err:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"concatenate: shapes {shapes} do not join along axis "
                         f"{axis}: {err}") from None
    ends = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return node(out, tuple(tensors), lambda g: tuple(np.split(g, ends, axis=axis)),
                "concatenate")  # each input receives its own slice of g


@op
def split(x, indices_or_sections, axis=0):
    """Cut x along `axis` like numpy.split; composed from `getitem`."""
    x = as_tensor(x)
    pieces = np.split(np.arange(x.shape[axis]), indices_or_sections)
    before = (slice(None),) * (axis % x.ndim)
    return [x[before + (slice(p[0], p[-1] + 1) if len(p) else slice(0, 0),)]
            for p in pieces]


# ---------------------------------------------------------------- fused linear layer

@op
def linear(x, W, b=None, activation="identity"):
    """act(x @ W + b): (n, k), (k, m), (m,) -> (n, m), in one fused pass.

    The matmul runs in BLAS; bias and activation are one kernel over its
    output, and the backward takes the activation's slope from the output.
    """
    params = tuple(as_tensors((x, W) if b is None else (x, W, b), "linear"))
    x, W = params[:2]
    if activation not in kernels.ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}; expected one "
                         f"of {', '.join(kernels.ACTIVATIONS)}")
    b_shape = params[2].shape if b is not None else (W.shape[-1],)
    if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[0] or b_shape != W.shape[1:]:
        raise ValueError(f"linear: expected x (n, k), W (k, m), b (m,), got x {x.shape}, "
                         f"W {W.shape}, b {b_shape}")
    code = kernels.ACTIVATIONS[activation]
    out = kernels.matmul(x.data, W.data)
    if b is not None:
        kernels.bias_activate(out, params[2].data, code)
    elif code != kernels.IDENTITY:
        out = kernels.activate(out, code)

    def vjp(g):
        if code == kernels.IDENTITY:    # act' = 1: g_pre is g itself
            g_pre, g_b = g, (g.sum(axis=0) if b is not None else None)
        elif b is not None:             # g_pre = g act'(pre), and d/db = g_pre summed over rows
            g_pre, g_b = kernels.bias_activate_grad(out, g, code)
        else:
            g_pre = kernels.activate_grad(out, g, code)
        grads = (kernels.matmul(g_pre, W.data.T) if x.requires_grad else None,  # d/dx = g W^T
                 kernels.matmul(x.data.T, g_pre))                               # d/dW = x^T g
        return grads if b is None else grads + (g_b,)
    return node(out, params, vjp, "linear")



# ---------------------------------------------------------------- operator syntax
# x + y, x @ W, x.sum() ... call the ops above.  They are bound here rather than
# in `autograd`, so that the graph machinery imports nothing of the ops.

def _bind_operators():
    T = Tensor
    T.__add__, T.__radd__ = add, lambda self, other: add(other, self)
    T.__sub__, T.__rsub__ = sub, lambda self, other: sub(other, self)
    T.__mul__, T.__rmul__ = mul, lambda self, other: mul(other, self)
    T.__truediv__, T.__rtruediv__ = div, lambda self, other: div(other, self)
    T.__neg__, T.__pow__ = neg, pow
    T.__matmul__, T.__rmatmul__ = matmul, lambda self, other: matmul(other, self)
    T.__getitem__ = getitem
    T.T = property(transpose)
    T.sum, T.mean, T.transpose = sum, mean, transpose
    T.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
    T.astype, T.exp, T.log = astype, exp, log


_bind_operators()
