"""Reverse-mode automatic differentiation over numpy arrays.

A `Tensor` holds an array and, when it was computed from tensors that need
gradients, the function that sends an upstream gradient back to its
parents (its vector-Jacobian product, `vjp`).  `Tensor.backward` orders the
graph topologically without recursion and walks it once in reverse.

Every differentiable function is registered in `OPS` by the `@op`
decorator; the test suite checks that each one has a finite-difference
property test.  The ops themselves live in `ops` and `distributions`;
`ops` also gives Tensor its operator syntax (x + y, x @ W, x.sum()), so this
module imports nothing of minivae.
"""
import itertools
from contextlib import contextmanager

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
DEFAULT_DTYPE = np.dtype(np.float32)

OPS = {}
_grad_enabled = True
_creation_order = itertools.count()


def op(fn):
    """Register `fn` as a differentiable op under its name and return it."""
    OPS[fn.__name__] = fn
    return fn


@contextmanager
def no_grad():
    """Within this block, ops record no graph (evaluation, parameter updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


@contextmanager
def frozen(tensors):
    """Within this block none of `tensors` takes a gradient: graphs built from
    them treat them as constants, so backward neither fills their .grad nor
    computes it.  Each one's requires_grad is restored on the way out."""
    tensors = list(tensors)
    flags = [t.requires_grad for t in tensors]
    for t in tensors:
        t.requires_grad = False
    try:
        yield
    finally:
        for t, flag in zip(tensors, flags):
            t.requires_grad = flag


def checked_dtype(dtype, where):
    """`dtype` as a numpy dtype, if it is float32 or float64."""
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{where}: unsupported dtype {dtype}; supported dtypes "
                        f"are float32 and float64")
    return dtype


class Tensor:
    """An array in the computation graph, float32 or float64.

    `Tensor(data, requires_grad=False, dtype=None)`: numpy float arrays keep
    their dtype; Python numbers and lists become `dtype` (float32 by
    default).  After `backward()`, `.grad` holds d(output)/d(self) for
    every leaf that requires grad, with the shape and dtype of `.data`.
    """

    __array_priority__ = 100  # ndarray + Tensor dispatches to Tensor.__radd__
    __slots__ = ("data", "requires_grad", "grad", "_parents", "_vjp", "op", "_created")

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, (np.ndarray, np.generic)) and dtype is None:
            data = np.asarray(data)  # a numpy scalar (a full reduction) keeps its dtype
            if data.dtype not in SUPPORTED_DTYPES:
                checked_dtype(data.dtype, "Tensor")
        else:
            data = np.asarray(data, dtype=checked_dtype(dtype or DEFAULT_DTYPE, "Tensor"))
        self.data = data
        self.requires_grad = requires_grad
        self.grad = None
        self._parents = ()
        self._vjp = None
        self.op = None
        self._created = next(_creation_order)

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{flag})"

    def __len__(self):
        return len(self.data)

    def item(self):
        """The value of a one-element tensor as a Python float."""
        return self.data.item()

    def numpy(self):
        """The underlying array (shared, not copied)."""
        return self.data

    def detach(self):
        """The same data as a new leaf that records no graph."""
        return Tensor(self.data)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf needing it.

        `grad` is the upstream gradient, of self's shape; it may be omitted
        only when self holds a single element (a loss).  Gradients of
        intermediate tensors live only during this call, so running
        `backward()` on a rebuilt graph never double-counts them; leaf
        `.grad` accumulates across calls until it is reset to None.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad; "
                               "create its leaves with requires_grad=True")
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward: output has shape {self.shape}; pass "
                                 f"grad= of that shape for a non-scalar output")
            grad = np.ones_like(self.data)
        else:
            grad = np.array(grad.data if isinstance(grad, Tensor) else grad,
                            dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}, "
                                 f"expected the output's shape {self.shape}")
        grads = {id(self): grad}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node))
            if node._vjp is None:
                # One array may reach two leaves (add's vjp passes g to both):
                # read-only keeps an in-place update of one from changing the other.
                g = np.asarray(g if node.grad is None else node.grad + g)  # 0-d: scalars
                g.flags.writeable = False
                node.grad = g
                continue
            for parent, g_parent in zip(node._parents, node._vjp(g)):
                if g_parent is None or not parent.requires_grad:
                    continue
                if g_parent.shape != parent.shape or g_parent.dtype != parent.dtype:
                    raise AssertionError(f"{node.op}: vjp returned {g_parent.dtype}"
                                         f"{g_parent.shape} for a {parent.dtype}"
                                         f"{parent.shape} input")
                key = id(parent)
                grads[key] = grads[key] + g_parent if key in grads else g_parent


def graph(root):
    """The tensors that `root` was computed from and that need gradients, root
    included, each after all of its parents (the order backward walks in reverse)."""
    return _topological_order(root)


def _topological_order(root):
    """The nodes that lead to root and need gradients, each after all of its
    parents.  An op's output is created after its inputs, so creation order
    is such an order: collect the nodes with an explicit stack (no recursion,
    so deep graphs cannot overflow it) and sort them by `_created`."""
    found = {id(root): root}
    stack = [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent.requires_grad and id(parent) not in found:
                found[id(parent)] = parent
                stack.append(parent)
    return sorted(found.values(), key=lambda t: t._created)


def node(data, parents, vjp, name):
    """The output tensor of op `name`: `data`, with `vjp` recorded if needed.

    `vjp(g)` maps the upstream gradient g (the shape of `data`) to one
    gradient per parent, in order, each with that parent's shape, or None
    where a parent needs none.
    """
    out = Tensor(data)
    if _grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._parents = parents
        out._vjp = vjp
        out.op = name
    return out


def as_tensors(values, where):
    """`values` as Tensors of one dtype: that of the first Tensor or array
    among them (numbers take it too); any other dtype is a TypeError."""
    if all(type(v) is Tensor and v.dtype == values[0].dtype for v in values):
        return list(values)
    dtype = next((v.dtype for v in values if isinstance(v, (Tensor, np.ndarray))), None)
    return [as_tensor(v, dtype, where) for v in values]


def as_tensor(x, dtype=None, where="op"):
    """`x` as a Tensor; numbers take `dtype`, arrays must already have it."""
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = Tensor(x)
    else:
        return Tensor(x, dtype=dtype or DEFAULT_DTYPE)
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{where}: dtype mismatch, {t.dtype} where {np.dtype(dtype)} "
                        f"was expected; cast explicitly with .astype()")
    return t


def unbroadcast(g, shape):
    """Sum g over the axes that broadcasting added or stretched, to `shape`.

    The one place where broadcasting is undone: if x of `shape` was
    broadcast in the forward pass, d/dx is g summed over those axes.
    """
    if g.shape == shape:
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g
