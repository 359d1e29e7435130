"""Where the work of a training step runs: on one core or two, with the same result.

The work that can use both cores: a large matmul, cut into two fixed
halves by `blas.split_matmul` (OpenBLAS itself on one thread); a product
that skips the zeros of binarized pixels (`sparse`); and the optimizer's
passes over the parameters, the gradient's norm and the updates (`updates`).
Each is a Numba `prange` loop with a one-core twin (`numba_cache.one_core`),
the same loop without threads; `spread()` says which one runs.  The halves
are the same gemm calls either way, a row of the skipping product and an
element of an update are computed by one thread whichever runs, and the
norm adds up the same fixed pieces in the same order, so the numbers a run
computes do not depend on it, and the policy may change it at any step:

- "adaptive" (the default): at most every CHECK_SECONDS, `tick` looks at
  the CPU time other processes used since its last look (/proc/stat's busy
  time less this process's own): one core while they keep busy a core the
  halves would need, two when it is free again;
- "parallel": always two; "serial": always one;
- "openblas": no halves, OpenBLAS's own threads as numpy started it
  (numbers that differ from the others' in the last bits: OpenBLAS splits
  a product by its thread count) and Numba's loops on one core, so that no
  thread of Numba's waits for work on a core OpenBLAS's need.

The environment variable MINIVAE_THREADS chooses it; `set_policy` changes
it in a running process.  One core, with the same halves: where OpenBLAS
was started on one thread (OPENBLAS_NUM_THREADS=1 or OMP_NUM_THREADS=1),
NUMBA_NUM_THREADS=1, a Numba without OpenMP or TBB (`native_threads`), and
a forked child (GNU OpenMP, under Numba's threads, does not survive a
fork).  Where Linux's pieces are missing nothing breaks: without /proc/stat
"adaptive" stays on two cores, and without OpenBLAS (another BLAS) products
are plain `a @ b` on that BLAS's own threads.  While minivae runs, numpy's
OpenBLAS runs one thread for the whole process, except under "openblas".
"""
import functools
import os
import time

import numpy as np

from minivae import blas as _blas, numba_cache

numba_cache.configure()   # before Numba is imported: where it may cache
import numba  # noqa: E402

_forked = False   # set in a forked child, where Numba's threads must not run

POLICIES = ("adaptive", "parallel", "serial", "openblas")
DEFAULT = "adaptive"
SPLIT_FLOPS = 10_000_000  # below this a product is one call: halving it gains nothing
CHECK_SECONDS = 0.25      # how often "adaptive" looks at the other processes' load
BUSY, FREE = 0.4, 0.2     # CPUs of load (above what the halves leave) to go to one core / two


class OtherLoad:
    """The CPU time that other processes (or, in a virtual machine, the
    host: steal time) used since it was made or last restarted: /proc/stat's
    busy time of all CPUs less this process's own (os.times)."""

    def __init__(self):
        self.start = self._read()

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    def cpus(self):
        """How many CPUs' worth other processes kept busy, on average."""
        (w0, b0, o0), (w1, b1, o1) = self.start, self._read()
        return max(0.0, (b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9)

    def share(self):
        """The share of all CPUs that other processes used."""
        return self.cpus() / os.cpu_count()

    def restart(self):
        self.start = self._read()


@numba.njit(cache=True, parallel=True)
def _probe(x):
    for i in numba.prange(x.size):
        x[i] += 1


@functools.cache
def native_threads():
    """Whether Numba's parallel loops run on OpenMP's or TBB's threads,
    asked of Numba after one tiny parallel loop.  Its fallback, the
    workqueue layer (where neither library is installed, or as
    NUMBA_THREADING_LAYER chose), wakes its threads so slowly that two cores
    lost to one: 6.8 ms an Adam step against 2.7 (benchmarks/RESULTS.md)."""
    try:
        _probe(np.zeros(2))
        return numba.threading_layer() in ("tbb", "omp")
    except (ValueError, ImportError, OSError):   # no threading layer could be loaded
        return False


class Policy:
    """Where matmuls and updates run: one of POLICIES, over numpy's OpenBLAS
    (`blas`, None if not found: then every product is a plain `a @ b`)."""

    def __init__(self, name, blas):
        self.blas, self.load = blas, None
        self.parallel, self.checked = True, time.perf_counter()
        self.use(name)

    def cores(self):
        """The most cores the halves may use: PIECES, unless OpenBLAS was
        started on fewer threads or Numba has fewer, or its threads would
        not pay, or in a forked child."""
        if _forked or not native_threads():
            return 1
        started = self.blas.default_threads if self.blas is not None else _blas.PIECES
        return max(1, min(_blas.PIECES, started, numba.config.NUMBA_NUM_THREADS))

    def use(self, name):
        """Switch to policy `name`; for the split ones OpenBLAS runs one thread."""
        if name not in POLICIES:
            raise ValueError(f"thread policy: expected one of {POLICIES}, got {name!r}")
        self.name = name
        self.parallel = name != "serial"
        if self.blas is not None:
            self.blas.set_threads(self.blas.default_threads if name == "openblas" else 1)
        if name == "adaptive":   # a fresh look at the load, from now on
            try:
                self.load = OtherLoad()
            except OSError:   # no /proc/stat: stay parallel
                self.load = None
            self.checked = time.perf_counter()

    def spread(self):
        """Whether the parallel loops run on two cores now (else their one-core twins)."""
        return self.parallel and self.name != "openblas" and self.cores() > 1

    def splits(self, a, b):
        """Whether a @ b is cut in halves: shapes and dtypes alone decide, never the load."""
        return (self.name != "openblas" and self.blas is not None and large_product(a, b)
                and min(a.shape[0], b.shape[1]) >= _blas.PIECES)

    def matmul(self, a, b):
        """a @ b, (n, k) @ (k, m) -> (n, m), in halves if `splits`."""
        return _blas.split_matmul(self.blas, a, b, self.spread()) if self.splits(a, b) else a @ b

    def tick(self):
        """Between training steps: under "adaptive", at most every
        CHECK_SECONDS, one core while other processes leave fewer free CPUs
        than halves (with hysteresis), two when they leave enough again."""
        now = time.perf_counter()
        if self.name != "adaptive" or self.load is None or now - self.checked < CHECK_SECONDS:
            return
        try:
            others = self.load.cpus()
        except OSError:   # /proc/stat went away: keep the cores as they are, look no more
            self.load = None
            return
        spare = (os.cpu_count() or 1) - _blas.PIECES   # CPUs others may take without harm
        if self.parallel and others > spare + BUSY:
            self.parallel = False
        elif not self.parallel and others < spare + FREE:
            self.parallel = True
        self.load.restart()
        self.checked = now


def large_product(a, b):
    """Whether a @ b is (n, k) @ (k, m) of two 2-D ndarrays (no matrix, no mask)
    of one float dtype, of at least SPLIT_FLOPS: large enough to be worth cut
    in halves (`Policy.splits`) or its zeros skipped (`sparse`)."""
    return (type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == b.ndim == 2
            and a.shape[1] == b.shape[0] and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64)
            and 2 * a.shape[0] * a.shape[1] * b.shape[1] >= SPLIT_FLOPS)


_policy = None


def configured():
    """The policy the environment chose: MINIVAE_THREADS, or DEFAULT; a
    ValueError in one line for a name not in POLICIES."""
    name = os.environ.get("MINIVAE_THREADS", DEFAULT)
    if name not in POLICIES:
        raise ValueError(f"MINIVAE_THREADS={name}: expected one of {', '.join(POLICIES)}")
    return name


def policy():
    """The process's Policy, made on first use as `configured` says."""
    global _policy
    if _policy is None:
        _policy = Policy(configured(), _blas.OpenBLAS.find())
    return _policy


def set_policy(name):
    """Run matmuls under policy `name` from now on (see POLICIES)."""
    policy().use(name)


def matmul(a, b):
    """a @ b under the process's policy."""
    return policy().matmul(a, b)


def spread():
    """Whether the parallel loops run on two cores now, under the process's policy."""
    return policy().spread()


def _after_fork_in_child():
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def tick():
    """Call between training steps: lets the "adaptive" policy follow the load."""
    policy().tick()
