"""Threads for the matmuls: the same split of the work on one core or on two.

numpy's OpenBLAS splits a product among its threads by how many it has, so
the same product rounds differently on 1 and on 2 threads (float32 and
float64, tests/test_threads.py), and its idle threads spin: with another
process busy on a 2-core machine, a training epoch took 3x as long
(benchmarks/RESULTS.md).  So here OpenBLAS runs one thread, and a large
product is cut into PIECES row blocks, always the same blocks for the same
shapes.  The blocks run at once, one per thread (numpy lets go of the GIL
inside BLAS), or one after another on the calling thread; never at once
where OpenBLAS was started on one thread (OPENBLAS_NUM_THREADS=1 or
OMP_NUM_THREADS=1 keep minivae on one core, as before).  Either way each
block is the same single-threaded BLAS call, so the numbers do not depend
on how many cores did the work, and the policy may change that at any step:

- "adaptive" (the default): at most every CHECK_SECONDS, `tick` looks at
  the CPU time other processes used since its last look (/proc/stat's busy
  time less this process's own): blocks in sequence while they keep a core
  busy that the blocks would need, at once when it is free again;
- "parallel": always at once; "serial": always in sequence (one core);
- "openblas": no split, OpenBLAS's own threads, as before this module
  (numbers that differ from the others' in the last bits).

The environment variable MINIVAE_THREADS chooses it; `set_policy` changes
it in a running process.  Where Linux's pieces are missing, nothing breaks:
without /proc/stat "adaptive" stays parallel, and without OpenBLAS's thread
setter (another BLAS) nothing is split and BLAS keeps its own threads.
"""
import ctypes
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

POLICIES = ("adaptive", "parallel", "serial", "openblas")
DEFAULT = "adaptive"
PIECES = 2                # row blocks of a split product; fixed, so results do not depend on cores
SPLIT_FLOPS = 10_000_000  # below this, handing a block to a thread costs more than it saves
CHECK_SECONDS = 0.25      # how often "adaptive" looks at the other processes' load
BUSY, FREE = 0.4, 0.2     # CPUs of load (above what the blocks leave) to go serial / parallel
SYMBOLS = (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"),
           ("openblas_", ""))


class OpenBLAS:
    """numpy's OpenBLAS, found among the libraries this process loaded: its
    core type and its thread count, which can change at run time."""

    def __init__(self, lib, prefix, suffix):
        self._get = getattr(lib, f"{prefix}get_num_threads{suffix}")
        self._set = getattr(lib, f"{prefix}set_num_threads{suffix}")
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._corename = getattr(lib, f"{prefix}get_corename{suffix}")
        self._corename.restype = ctypes.c_char_p
        self.default_threads = self.threads()

    def threads(self):
        return self._get()

    def set_threads(self, n):
        self._set(n)

    def corename(self):
        return self._corename().decode()

    @staticmethod
    @functools.cache
    def find():
        """The OpenBLAS numpy loaded, or None (another BLAS, or no /proc/self/maps);
        one object per process, so that `default_threads` is the count numpy
        started with, before any policy changed it."""
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
        except OSError:
            return None
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in SYMBOLS:
                if all(hasattr(lib, f"{prefix}{what}{suffix}") for what in
                       ("get_num_threads", "set_num_threads", "get_corename")):
                    return OpenBLAS(lib, prefix, suffix)
        return None


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


class Policy:
    """Where matmuls run: one of POLICIES over numpy's OpenBLAS (`blas`,
    None if not found: then every product is a plain `a @ b`)."""

    def __init__(self, name, blas):
        self.blas, self.pool, self.pool_pid, self.load = blas, None, None, None
        self.parallel, self.checked = True, time.perf_counter()
        self.use(name)

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

    def splits(self, a, b):
        """Whether a @ b is cut into blocks: shapes alone decide, never the load."""
        return (self.name != "openblas" and self.blas is not None and a.ndim == b.ndim == 2
                and a.shape[0] >= PIECES and 2 * a.shape[0] * a.shape[1] * b.shape[1]
                >= SPLIT_FLOPS)

    def matmul(self, a, b):
        """a @ b, (n, k) @ (k, m) -> (n, m), in PIECES row blocks if `splits`."""
        if not self.splits(a, b):
            return a @ b
        n = a.shape[0]
        out = np.empty((n, b.shape[1]), np.result_type(a, b))
        rows = [slice(n * i // PIECES, n * (i + 1) // PIECES) for i in range(PIECES)]

        def block(r):
            np.matmul(a[r], b, out=out[r])
        if self.parallel and self.blas.default_threads > 1:
            if self.pool_pid != os.getpid():   # none yet, or a fork's child: its threads stayed
                self.pool = ThreadPoolExecutor(PIECES - 1, thread_name_prefix="minivae-matmul")
                self.pool_pid = os.getpid()
            others = [self.pool.submit(block, r) for r in rows[1:]]
            block(rows[0])
            for future in others:
                future.result()
        else:
            for r in rows:
                block(r)
        return out

    def tick(self):
        """Between training steps: under "adaptive", at most every
        CHECK_SECONDS, run the blocks in sequence while other processes
        leave fewer free CPUs than blocks (with hysteresis), at once when
        they leave enough again."""
        now = time.perf_counter()
        if self.name != "adaptive" or self.load is None or now - self.checked < CHECK_SECONDS:
            return
        others = self.load.cpus()
        spare = os.cpu_count() - PIECES   # CPUs that others may use without slowing the blocks
        if self.parallel and others > spare + BUSY:
            self.parallel = False
        elif not self.parallel and others < spare + FREE:
            self.parallel = True
        self.load.restart()
        self.checked = now


_policy = None


def configured():
    """The policy the environment chose: MINIVAE_THREADS, or DEFAULT."""
    return os.environ.get("MINIVAE_THREADS", DEFAULT)


def policy():
    """The process's Policy, made on first use as `configured` says."""
    global _policy
    if _policy is None:
        _policy = Policy(configured(), OpenBLAS.find())
    return _policy


def set_policy(name):
    """Run matmuls under policy `name` from now on (see POLICIES)."""
    policy().use(name)


def matmul(a, b):
    """a @ b under the process's policy."""
    return policy().matmul(a, b)


def tick():
    """Call between training steps: lets the "adaptive" policy follow the load."""
    policy().tick()
