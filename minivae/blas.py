"""numpy's OpenBLAS, called directly: its thread count, and a product cut in two halves.

numpy's OpenBLAS splits a product among its threads by how many it has, so
the same product rounds differently on 1 and on 2 threads, and its idle
threads spin against other processes (benchmarks/RESULTS.md).  minivae
therefore keeps OpenBLAS on one thread and cuts a large product C = A B
itself into PIECES fixed blocks: the longer side of C is halved, and each
half is one single-threaded gemm call on the same memory.  The blocks are
the iterations of a Numba `prange`, so they run on Numba's native threads,
two at once, or one after the other in the kernel's one-core twin, and
since a block is the same call either way the result does not depend on
how many cores did the work.  Two halves, because this project's machines
have two cores: on a larger machine a product still uses two of them.

`OpenBLAS.find()` locates the library among those this process loaded and
reads its cblas_sgemm and cblas_dgemm, with 64-bit or 32-bit integers as
the library was built (its configuration string says USE64BITINT or not);
it returns None where numpy was built on another BLAS (MKL, Accelerate),
and then minivae multiplies with plain `a @ b`.
"""
import ctypes
import functools

import numpy as np

from minivae import numba_cache
from minivae.numba_cache import one_core

numba_cache.configure()   # before Numba is imported: where it may cache
from numba import njit, prange  # noqa: E402

PIECES = 2                # blocks of a split product; fixed, so results do not depend on cores
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112   # CBLAS's enum values
SYMBOLS = (("scipy_openblas_", "64_", "scipy_cblas_"), ("scipy_openblas_", "", "scipy_cblas_"),
           ("openblas_", "64_", "cblas_"), ("openblas_", "", "cblas_"))


def _gemm_type(integer, real):
    """The C signature of cblas_?gemm: (order, transA, transB, M, N, K, alpha,
    A, lda, B, ldb, beta, C, ldc), pointers passed as addresses."""
    address = ctypes.c_size_t
    return ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer,
                            integer, real, address, integer, address, integer, real, address,
                            integer)


class OpenBLAS:
    """numpy's OpenBLAS: its thread count (changeable at run time), its core
    type, and `gemm[dtype]`, cblas_?gemm for float32 and float64."""

    def __init__(self, lib, prefix, suffix, cblas):
        self._get = getattr(lib, f"{prefix}get_num_threads{suffix}")
        self._set = getattr(lib, f"{prefix}set_num_threads{suffix}")
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._corename = getattr(lib, f"{prefix}get_corename{suffix}")
        self._corename.restype = ctypes.c_char_p
        config = getattr(lib, f"{prefix}get_config{suffix}")
        config.restype = ctypes.c_char_p
        # the integers of its interface: 64-bit in a USE64BITINT build, suffix or not
        integer = ctypes.c_int64 if b"USE64BITINT" in config() else ctypes.c_int32
        self.gemm = {np.dtype(np.float32): _gemm_type(integer, ctypes.c_float)(
                         (f"{cblas}sgemm{suffix}", lib)),
                     np.dtype(np.float64): _gemm_type(integer, ctypes.c_double)(
                         (f"{cblas}dgemm{suffix}", lib))}
        self.default_threads = self.threads()

    def threads(self):
        """How many threads OpenBLAS splits a product among now."""
        return self._get()

    def set_threads(self, n):
        """Split products among n threads from now on (1: each call on its caller's)."""
        self._set(n)

    def corename(self):
        """The kernels OpenBLAS chose for this CPU, e.g. "SkylakeX" or "Haswell"."""
        return self._corename().decode()

    @staticmethod
    @functools.cache
    def find():
        """numpy's OpenBLAS, or None (numpy built on another BLAS, or no
        /proc/self/maps); one object per process, so that `default_threads`
        is the count numpy started with, before minivae changed it."""
        if "openblas" not in _numpy_blas_name():
            return None
        try:
            with open("/proc/self/maps") as f:
                paths = {_mapped_path(line) for line in f if "openblas" in line.lower()}
        except OSError:
            return None
        for path in sorted(paths, key=lambda p: ("numpy" not in p, p)):   # numpy's own first
            try:
                lib = ctypes.CDLL(path)
            except OSError:   # deleted or moved since it was loaded
                continue
            for prefix, suffix, cblas in SYMBOLS:
                names = [f"{prefix}{what}{suffix}" for what in
                         ("get_num_threads", "set_num_threads", "get_corename", "get_config")]
                names += [f"{cblas}{p}gemm{suffix}" for p in "sd"]
                if all(hasattr(lib, name) for name in names):
                    return OpenBLAS(lib, prefix, suffix, cblas)
        return None


def _numpy_blas_name():
    """The name of the BLAS numpy was built with, lower case ("" if unknown)."""
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower()
    except (KeyError, TypeError, ValueError):
        return ""


def _mapped_path(line):
    """The file of a /proc/self/maps line: its sixth field to the end, spaces
    and all, without the " (deleted)" the kernel adds to a removed file."""
    fields = line.rstrip("\n").split(maxsplit=5)
    path = fields[5] if len(fields) == 6 else ""
    return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path


@njit(cache=True, parallel=True, nogil=True)
def gemm_blocks(gemm, trans_a, trans_b, n, m, k, a, lda, b, ldb, c, itemsize, by_rows,
                pieces):
    """C (n, m) = A (n, k) B (k, m), all row-major at addresses a, b, c (C
    contiguous), A and B transposed views where trans_a, trans_b say so;
    block i of `pieces` is rows (by_rows) or columns n*i//pieces to
    n*(i+1)//pieces (m for columns) of C, one gemm call each, the blocks
    run by `prange` on Numba's threads."""
    for i in prange(pieces):
        if by_rows:
            lo, hi = n * i // pieces, n * (i + 1) // pieces
            a_block = a + (lo * lda if trans_a == NO_TRANS else lo) * itemsize
            gemm(ROW_MAJOR, trans_a, trans_b, hi - lo, m, k, 1.0, a_block, lda, b, ldb, 0.0,
                 c + lo * m * itemsize, m)
        else:
            lo, hi = m * i // pieces, m * (i + 1) // pieces
            b_block = b + (lo if trans_b == NO_TRANS else lo * ldb) * itemsize
            gemm(ROW_MAJOR, trans_a, trans_b, n, hi - lo, k, 1.0, a, lda, b_block, ldb, 0.0,
                 c + lo * itemsize, m)


gemm_blocks_one_core = one_core(gemm_blocks)


def layout(x):
    """(CBLAS transpose flag, leading dimension) of a 2-D array stored
    row-major (NO_TRANS) or as the transpose of a row-major array (TRANS),
    or None for any other strides (a copy will do)."""
    rows, cols = x.shape
    s0, s1 = x.strides
    size = x.itemsize
    if not x.flags.aligned:
        return None
    if s1 == size and s0 % size == 0 and s0 >= max(cols, 1) * size:
        return NO_TRANS, s0 // size
    if s0 == size and s1 % size == 0 and s1 >= max(rows, 1) * size:
        return TRANS, s1 // size
    return None


def split_matmul(blas, a, b, spread):
    """a @ b, (n, k) @ (k, m) -> (n, m), both float32 or both float64 and
    n, m >= PIECES, k >= 1: the longer side of the result is cut into
    PIECES blocks, each one single-threaded gemm call, run at once on
    Numba's threads if `spread` (`gemm_blocks`), else one after the other
    (`gemm_blocks_one_core`): the same calls, the same bits."""
    n, k = a.shape
    m = b.shape[1]
    if b.shape[0] != k or min(n, m) < PIECES or k < 1 or a.dtype != b.dtype \
            or a.dtype not in blas.gemm:
        raise ValueError(f"split_matmul: expected (n, k) @ (k, m) of one float dtype with "
                         f"n, m >= {PIECES} and k >= 1, got {a.shape} {a.dtype} @ "
                         f"{b.shape} {b.dtype}")
    if layout(a) is None:
        a = np.require(a, requirements="CA")   # a C-ordered, aligned copy
    if layout(b) is None:
        b = np.require(b, requirements="CA")
    (trans_a, lda), (trans_b, ldb) = layout(a), layout(b)
    out = np.empty((n, m), a.dtype)
    blocks = gemm_blocks if spread else gemm_blocks_one_core
    blocks(blas.gemm[a.dtype], trans_a, trans_b, n, m, k, a.ctypes.data, lda, b.ctypes.data,
           ldb, out.ctypes.data, a.itemsize, n >= m, PIECES)
    return out
