"""A product whose left operand is mostly zeros: the binarized pixels x of the
first layer, in its forward x W.

Binarized MNIST is mostly background: 13 % of a binarized image's pixels
are ones.  Row i of x W is therefore the sum of the rows of W that image i
switches on, about 102 of 784.  BLAS multiplies every zero; the loop here
adds only the rows the nonzeros select, each row of the result on one
thread in a fixed order, so that the bits do not depend on the cores (the
rows are cut into PIECES blocks run by `prange`, or one after the other by
the one-core twin, as `threads.spread()` says).  The backward's
dW = x^T g stays with BLAS: a loop over x's columns was no faster there
in a training step (benchmarks/RESULTS.md).

`mostly_zeros` says when a product is worth it: a large one of row-major
operands whose left one is at most SPARSE_SHARE nonzeros, wherever it
arises (binarized pixels, or a ReLU layer's mostly dead h in h W).  The
loop breaks even with BLAS near a quarter (benchmarks/RESULTS.md).  As in
any sparse product, a zero contributes nothing even against an Inf or NaN
of the other operand, where a dense product would give 0 * NaN = NaN.  In
training that operand is a weight, and a non-finite weight still stops
training: at the first minibatch that selects its row, or when the
epoch's checkpoint refuses it (`train.Run.save`).
"""
import numpy as np

from minivae import numba_cache, threads
from minivae.blas import PIECES
from minivae.numba_cache import one_core

numba_cache.configure()   # before Numba is imported: where it may cache
from numba import njit, prange  # noqa: E402

SPARSE_SHARE = 0.2   # at MNIST's 13 % ones the loop took 0.6 of BLAS's time
SAMPLE_ROWS = 8      # the rows that decide: a minibatch's images are alike in this


def mostly_zeros(a, b):
    """Whether a @ b, (n, k) @ (k, m), is large (`threads.large_product`), both
    operands are row-major (a strided b would not let the loop vectorize),
    and a has at most SPARSE_SHARE nonzeros.  a's first SAMPLE_ROWS rows
    decide: a count over all of x took a fifth of the time the skipping
    saves.  For finite operands the choice sets the speed, not the numbers
    beyond rounding, and the same data always gets the same choice."""
    if not (threads.large_product(a, b) and a.flags.c_contiguous and a.flags.aligned
            and b.flags.c_contiguous and b.flags.aligned):
        return False
    first = a[:SAMPLE_ROWS].view(np.uint32 if a.dtype == np.float32 else np.uint64)
    return np.count_nonzero(first) <= SPARSE_SHARE * first.size   # -0.0 counts, harmlessly


def zero_skipping_matmul(a, b):
    """a @ b, (n, k) @ (k, m) -> (n, m), with the zeros of a skipped: row i of
    the result is the sum of a[i, j] b[j] over the j where a[i, j] != 0.

    `kernels.matmul_loop` with the zeros skipped, in increasing j, four
    terms a[i, j] b[j] summed before they are added to a row of the result
    held apart from b (`_skipping_rows`).  An `a` that is not row-major is
    copied row-major first; a and b must be 2-D of one float dtype.
    """
    if not (a.ndim == b.ndim == 2 and a.shape[1] == b.shape[0] and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64)):
        raise ValueError(f"zero_skipping_matmul: expected (n, k) @ (k, m) of one float dtype, "
                         f"got {a.shape} {a.dtype} @ {b.shape} {b.dtype}")
    loop = _skipping_rows if threads.spread() else _skipping_rows_one_core
    return loop(np.ascontiguousarray(a), b, PIECES)


@njit(cache=True, error_model="numpy", parallel=True)
def _skipping_rows(a, b, pieces):
    n, k = a.shape
    m = b.shape[1]
    zero = b.dtype.type(0)
    out = np.empty((n, m), b.dtype)
    for piece in prange(pieces):
        row = np.empty(m, b.dtype)           # the row being summed
        nonzero = np.empty(k, np.int64)      # the j with a[i, j] != 0, in increasing order
        for i in range(n * piece // pieces, n * (piece + 1) // pieces):
            count = 0
            for j in range(k):
                if a[i, j] != zero:
                    nonzero[count] = j
                    count += 1
            row[:] = zero
            for t in range(0, count - 3, 4):       # four rows of b per pass over the row
                j0, j1, j2, j3 = nonzero[t], nonzero[t + 1], nonzero[t + 2], nonzero[t + 3]
                a0, a1, a2, a3 = a[i, j0], a[i, j1], a[i, j2], a[i, j3]
                for c in range(m):
                    row[c] += a0 * b[j0, c] + a1 * b[j1, c] + a2 * b[j2, c] + a3 * b[j3, c]
            for t in range(count - count % 4, count):   # the last count % 4
                j = nonzero[t]
                a_ij = a[i, j]
                for c in range(m):
                    row[c] += a_ij * b[j, c]
            out[i, :] = row
    return out


_skipping_rows_one_core = one_core(_skipping_rows)
