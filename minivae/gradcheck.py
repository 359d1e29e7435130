"""Gradient checking: the engine's gradients against central differences."""
import numpy as np

from minivae.autograd import Tensor, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, max_elements=None, seed=0):
    """Check the gradients of `fn` at `inputs` against central differences.

    `fn(*tensors)` returns a Tensor of any shape; `inputs` is a sequence of
    float64 arrays or Tensors (float64: float32 has too few digits for
    finite differences).  The output is reduced to s = sum(w * fn(...))
    with fixed random weights w, so every output element is checked, and
    for each input element i the engine's ds/dx_i must satisfy

        |ds/dx_i - (s(x + eps e_i) - s(x - eps e_i)) / (2 eps)|
            <= atol + rtol * |finite difference|.

    `max_elements` checks at most that many elements per input, drawn with
    `seed` (for large inputs such as weight matrices).  `fn` must be
    deterministic: draw any noise outside it.  Returns the largest absolute
    difference seen; raises GradcheckError naming the input, the worst
    element's index and both values.
    """
    arrays = [np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64)
              for x in inputs]
    if not arrays:
        raise ValueError("gradcheck: inputs is empty; pass the arrays to differentiate")
    rng = np.random.default_rng(seed)
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    if not isinstance(out, Tensor) or out.dtype != np.float64:
        raise TypeError(f"gradcheck: fn must return a float64 Tensor, got "
                        f"{getattr(out, 'dtype', type(out).__name__)}; build its constants in float64")
    weights = rng.standard_normal(out.shape)
    out.backward(weights)

    def s(values):
        with no_grad():
            return float(np.sum(weights * fn(*[Tensor(v) for v in values]).data))

    worst = 0.0
    for k, (x, t) in enumerate(zip(arrays, tensors)):
        analytic = np.zeros_like(x) if t.grad is None else t.grad
        flat = np.arange(x.size)
        if max_elements is not None and x.size > max_elements:
            flat = rng.choice(x.size, size=max_elements, replace=False)
        for i in flat:
            index = np.unravel_index(i, x.shape)
            values = [a.copy() for a in arrays]
            values[k][index] += eps
            up = s(values)
            values[k][index] -= 2 * eps
            numeric = (up - s(values)) / (2 * eps)
            error = abs(analytic[index] - numeric)
            worst = max(worst, error)
            if not error <= atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradcheck: input {k} (shape {x.shape}) at index {tuple(map(int, index))}: "
                    f"analytic {float(analytic[index])!r} vs finite difference {numeric!r} "
                    f"(difference {error:.3g} > atol {atol} + rtol {rtol} * |fd|)")
    return worst
