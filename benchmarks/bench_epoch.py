"""Time a training epoch of minivae against the same VAE written in PyTorch and in JAX.

The model is the paper's MNIST setup: 784-500-20 with tanh, Bernoulli
decoder, estimator B (analytic KL, eq. 7) with L = 1, batch 100, dynamic
binarization, float32; all frameworks run on the same number of threads.
What it measures:

  1. that all compute the same thing, before anything is timed: the loss
     and every gradient on one minibatch, and the parameters after a few
     optimizer steps, agree in float64 (exit status 1 if they do not);
  2. one epoch (600 steps over the 60,000 training images) with Adam and
     with Adagrad: the median seconds of each framework, alternating in one
     process, and minivae's achieved matmul GFLOP/s against the sgemm peak
     of numpy (and of torch and JAX) measured in the same run; in the same
     rounds, minivae with every product dense ("minivae dense":
     minivae.sparse.SPARSE_SHARE below 0), since minivae's first layer skips the
     zeros of the binarized pixels and the peers multiply them all (the
     FLOP counts, of the GFLOP/s and of the floor, are the dense ones);
  2b. each epoch as a multiple of its floor: the epoch's matmul FLOPs at
     numpy's sgemm peak plus the bytes the optimizer update moves (Adam
     reads theta, g, m, v and writes theta, m, v: 7 arrays the size of the
     parameters a step; Adagrad reads theta, g, G and writes theta, G: 5) at
     the memory bandwidth, both measured in the same run (the higher of
     a = b + c on one thread, numpy's, and on two, a Numba prange loop, as
     minivae's large updates run; on arrays the size of the parameters:
     the update's arrays, a few MB each, stay in the caches from step to
     step; a 64 MB add, DRAM's, is printed beside it);
  3. the peak resident memory of a training epoch, each framework in a
     fresh process;
  4. the time to the first training step of a fresh process: minivae with a
     warm and with a cold Numba cache, PyTorch, and JAX (its first step
     traces and compiles the jitted step: that time is in it, and only
     there: the timed epochs start after a warm-up that compiled it);
  5. a scaling table, batch x hidden width x latent size: time per sample
     over a fixed number of steps;
  6. under contention: the first optimizer's epochs again, idle and with one
     competing CPU-bound process (a Python busy loop), alternating in the
     same rounds: each framework's slowdown, loaded median / idle median,
     with minivae also under the thread policies it does not use by default
     (minivae/threads.py: "openblas", its old behaviour, and "serial"), so
     that the default's cost when idle and its gain under load show.

All sides start from the same weights and see the same minibatches: the
binarization and eps are drawn with numpy inside the timed loop for all,
PyTorch takes torch.from_numpy of the same arrays and JAX's jitted step
takes the numpy arrays as its arguments.

JAX (benchmarks/_jax_vae.py: the whole step under one jax.jit, Adam and
Adagrad written by hand with minivae's update rules) is optional: without
it the JAX columns are left out, with one line saying how to install it
(pip install "jax[cpu]").  Its threads: XLA's CPU client sizes its thread
pool to the CPUs the process may run on when the client is made, and with
jax 0.10 it ignores the old XLA_FLAGS recipe (--xla_cpu_multi_thread_eigen=
false intra_op_parallelism_threads=N: two XLAEigen threads still ran a
matmul on 2 CPUs with it).  So when --threads is below the usable CPUs, the
main thread restricts its own CPU affinity to --threads CPUs while the JAX
CPU client is made, so that the pool's threads (which inherit it) are that
many and run on those CPUs, then restores it; numpy's, Numba's and torch's
threads are not affected.  The float64 check runs under the scoped
jax.enable_x64(True): x64 is part of jit's cache key, so the float32 timings
trace and run exactly as in a program that never enabled it.

Run from the repository root; PyTorch is needed (pip install torch==2.13.0),
JAX is optional (pip install "jax[cpu]").  Where the environment sets
OPENBLAS_CORETYPE (some machines pin older kernels that way, and with them
numpy's sgemm), unset it and OPENBLAS_L2_SIZE for the benchmark command
alone, `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python
benchmarks/bench_epoch.py`; the machine section prints the core type
OpenBLAS runs and any such variable it found:

    PYTHONPATH=. python benchmarks/bench_epoch.py              # full run, minutes on 2 idle cores
    PYTHONPATH=. python benchmarks/bench_epoch.py --quick      # smoke test, 2-3 minutes
    PYTHONPATH=. python benchmarks/bench_epoch.py --threads 2 --repeats 5 --json epoch.json
    PYTHONPATH=. python benchmarks/bench_epoch.py --skip-scaling --skip-contention

It ends with a Markdown summary block for benchmarks/RESULTS.md.
"""
import argparse
import contextlib
import functools
import gc
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import product

STARTED = time.perf_counter()  # "process start" for the time to the first step

X_DIM, HIDDEN, LATENT, BATCH, SEED = 784, 500, 20, 100, 0
EPOCH_STEPS, QUICK_EPOCH_STEPS = 600, 30
LR = {"adam": 1e-3, "adagrad": 0.02}
FIRST_LAYER = "encoder.hidden.0.W"  # its input is the data: no dx in the backward pass
SCALING = {"batch": (32, 100, 256, 1000), "hidden": (200, 500, 1000), "latent": (2, 20, 200)}
QUICK_SCALING = {"batch": (32, 256), "hidden": (200, 500), "latent": (2, 20)}
SGEMM_N = 2048
CHECK_RTOL, CHECK_STEPS = 1e-9, 3
UPDATE_ARRAYS = {"adam": 7, "adagrad": 5}  # parameter-sized arrays an update reads and writes
DRAM_BYTES = 64 * 2 ** 20  # an add of arrays this large streams from memory, not the caches
CONTENDER = "while True: pass"  # the competing CPU-bound process of the contention section
OTHER_POLICIES = ("openblas", "serial")  # minivae's thread policies timed beside its default
BUSY = 0.10  # share of the CPUs used by other processes above which timings are suspect
PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set, they choose OpenBLAS's kernels
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
NEEDS_TORCH = ("bench_epoch.py compares minivae with PyTorch, which is not installed.\n"
               "Install it with:  pip install torch==2.13.0")
NO_JAX = ('JAX is not installed: no JAX column. Install it with:  pip install "jax[cpu]"')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per framework, alternating (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_EPOCH_STEPS}-step epochs, 8 scaling configs")
    parser.add_argument("--threads", type=int, default=2, help="threads for all (default 2)")
    parser.add_argument("--skip-scaling", action="store_true", help="no scaling table")
    parser.add_argument("--skip-contention", action="store_true",
                        help="no epochs under a competing busy process")
    parser.add_argument("--optimizers", default="adam,adagrad",
                        help="comma-separated, from adam and adagrad (default adam,adagrad); "
                             "the first one also runs the memory and scaling measurements")
    parser.add_argument("--json", metavar="PATH", help="also write all results to PATH")
    parser.add_argument("--_child", choices=("minivae", "torch", "jax"), help=argparse.SUPPRESS)
    parser.add_argument("--_steps", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    unknown = [name for name in args.optimizers if name not in LR]
    if unknown or not args.optimizers:
        parser.error(f"--optimizers: expected names from {tuple(LR)}, got {unknown or 'none'}")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    return args


# Thread counts are read once, when numpy, Numba and torch load: set them first
# (JAX's: see import_jax).
ARGS = parse_args()
for _var in THREAD_VARS:
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

# ---------------------------------------------------------------- the three frameworks


def import_torch(threads):
    """torch with `threads` intra-op threads and one inter-op thread, or a clean exit."""
    try:
        import torch
    except ImportError:
        print(NEEDS_TORCH)
        sys.exit(0)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    return torch


def import_jax(threads):
    """jax with XLA's CPU thread pool of `threads` threads, or None (saying how to
    install it) if it is not installed.

    The pool is made with the CPU client, one thread per CPU the creating
    thread may run on.  Below the usable CPUs, this thread's affinity (only
    this thread's: pid 0 is the calling thread) is narrowed while the client
    is made, so that the pool's threads inherit the narrow set, and then
    restored.  It must run before anything else touches JAX's CPU backend.
    """
    try:
        import jax
    except ImportError:
        print(NO_JAX)
        return None
    usable = os.sched_getaffinity(0)
    if threads < len(usable):
        os.sched_setaffinity(0, sorted(usable)[:threads])
        try:
            jax.devices("cpu")
        finally:
            os.sched_setaffinity(0, usable)
    else:
        jax.devices("cpu")
    return jax


def xla_pool():
    """XLA's intra-op threads (named XLAEigen) of this process, and the CPUs they may use."""
    cpus = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                if "XLAEigen" in f.read():
                    cpus.append(tuple(sorted(os.sched_getaffinity(int(task)))))
        except OSError:
            continue
    return f"{len(cpus)} XLAEigen threads on CPUs {sorted(set(c for t in cpus for c in t))}"


def minivae_data(alone=False):
    """The module minivae.data.  With alone=True, minivae/data.py is loaded
    by itself: `import minivae` loads the whole package, Numba included,
    which must not count in PyTorch's memory and start-up time."""
    if not alone:
        from minivae import data
        return data
    package = importlib.util.find_spec("minivae")
    if package is None:
        sys.exit("bench_epoch.py: cannot find minivae; run with PYTHONPATH=<repository root>")
    path = os.path.join(package.submodule_search_locations[0], "data.py")
    spec = importlib.util.spec_from_file_location("minivae_data", path)
    data = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = data
    spec.loader.exec_module(data)
    return data


class Trainer:
    """One training step; minivae's Tensor and optimizers share PyTorch's method names."""

    def start(self):
        """Before a timed run: nothing here; minivae sets its thread policy."""

    def step(self, x, eps):
        loss = self.loss(x, eps)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def loss_and_grads(self, x, eps):
        """The loss on one minibatch, and its gradients named and shaped like minivae's."""
        loss = self.loss(x, eps)
        loss.backward()
        return loss.item(), self.grads()


class DrawnEps:
    """Stands in for the run's generator inside one step: hands out the eps the
    feed drew (so both frameworks see the same numbers) where the objective
    asks its generator for standard normals."""

    def __init__(self, eps):
        self.eps = eps

    def standard_normal(self, shape, dtype):
        assert self.eps.shape == tuple(shape) and self.eps.dtype == dtype
        return self.eps


class MinivaeTrainer(Trainer):
    """minivae's training step, as minivae.train takes it: GradientAscent on the
    ELBO, then threads.tick() as train_epochs calls it; under thread `policy`
    (None: the process's, MINIVAE_THREADS or minivae.threads.DEFAULT); with
    `dense`, no product skips the zeros of its left operand.  `serial_steps`
    counts the steps whose matmuls ran on one core."""
    name = "minivae"
    sparse_share = None   # minivae's sparse.SPARSE_SHARE, kept before a dense trainer lowers it

    def __init__(self, optimizer, hidden=HIDDEN, latent=LATENT, dtype=np.float32, init=None,
                 policy=None, dense=False):
        from minivae import sparse, threads
        from minivae.algorithms import GradientAscent
        from minivae.models.vae import VAE
        from minivae.objectives import ELBO
        from minivae.optim import Adagrad, Adam
        self.model = VAE(x_dim=X_DIM, hidden=(hidden,), latent=latent, dtype=dtype,
                         rng=np.random.default_rng(SEED))
        if init is not None:
            for name, tensor in self.model.named_parameters():
                tensor.data[...] = init[name]
        if optimizer == "adam":
            self.optimizer = Adam(self.model.params, lr=LR["adam"], weight_decay=0.0)
        else:
            self.optimizer = Adagrad(self.model.params, lr=LR["adagrad"], eps=1e-8,
                                     weight_decay=0.0)
        self.objective = ELBO("B", samples=1)
        self.algorithm = GradientAscent(self.model, self.objective, self.optimizer)
        self.threads, self.policy, self.serial_steps = threads, policy or threads.configured(), 0
        self.sparse, self.dense = sparse, dense
        if MinivaeTrainer.sparse_share is None:
            MinivaeTrainer.sparse_share = sparse.SPARSE_SHARE

    def start(self):
        self.threads.set_policy(self.policy)
        self.sparse.SPARSE_SHARE = -1.0 if self.dense else MinivaeTrainer.sparse_share

    def loss(self, x, eps):   # -ELBO (eq. 7) averaged over the minibatch
        return -self.objective(self.model, x, DrawnEps(eps)).mean()

    def step(self, x, eps):
        elbo = self.algorithm.step(x, DrawnEps(eps))["elbo"]
        self.serial_steps += not self.threads.policy().parallel
        self.threads.tick()
        return -float(np.mean(elbo, dtype=np.float64))

    def grads(self):
        return {name: t.grad for name, t in self.model.named_parameters()}

    def params(self):
        return {name: t.data for name, t in self.model.named_parameters()}


class TorchTrainer(Trainer):
    """The same step in idiomatic PyTorch (benchmarks/_torch_vae.py)."""
    name = "PyTorch"

    def __init__(self, optimizer, hidden=HIDDEN, latent=LATENT, dtype=np.float32, init=None):
        import torch
        from _torch_vae import TorchVAE
        self.torch = torch
        self.model = TorchVAE(x_dim=X_DIM, hidden=(hidden,), latent=latent,
                              dtype=getattr(torch, np.dtype(dtype).name))
        if init is not None:
            self.model.load_minivae(init.items())
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR["adam"])
        else:
            self.optimizer = torch.optim.Adagrad(self.model.parameters(), lr=LR["adagrad"],
                                                 eps=1e-8, initial_accumulator_value=0.0)

    def loss(self, x, eps):
        return self.model.loss(self.torch.from_numpy(x), self.torch.from_numpy(eps[0]))

    def grads(self):
        return self.model.minivae_grads()

    def params(self):
        return self.model.minivae_params()


class JaxTrainer(Trainer):
    """The same step in JAX, all of it under one jax.jit (benchmarks/_jax_vae.py)."""
    name = "JAX"

    def __init__(self, optimizer, hidden=HIDDEN, latent=LATENT, dtype=np.float32, init=None):
        import _jax_vae
        if optimizer == "adam":
            rule = _jax_vae.Adam(lr=LR["adam"], weight_decay=0.0)
        else:
            rule = _jax_vae.Adagrad(lr=LR["adagrad"], eps=1e-8, weight_decay=0.0)
        self.model = _jax_vae.JaxVAE(rule, x_dim=X_DIM, hidden=(hidden,), latent=latent,
                                     dtype=dtype, init=init)

    def step(self, x, eps):
        return self.model.step(x, eps[0])

    def loss_and_grads(self, x, eps):
        return self.model.loss_and_grads(x, eps[0])

    def params(self):
        return self.model.minivae_params()


# main() drops "jax" when JAX is not installed.
TRAINERS = {"minivae": MinivaeTrainer, "torch": TorchTrainer, "jax": JaxTrainer}


def peers():
    """The frameworks minivae is compared with: PyTorch, and JAX if installed."""
    return [fw for fw in TRAINERS if fw != "minivae"]


def initial_params(hidden, latent, dtype):
    """minivae's initial weights for one config, {name: array}: all sides start from them."""
    from minivae.models.vae import VAE
    model = VAE(x_dim=X_DIM, hidden=(hidden,), latent=latent, dtype=dtype,
                rng=np.random.default_rng(SEED))
    return {name: t.data.copy() for name, t in model.named_parameters()}


def minibatches(data, images, batch, steps, latent, dtype, seed):
    """`steps` minibatches (x (B, D), eps (1, B, J)) drawn as minivae.train draws
    them: a permutation per epoch, a fresh binarization per minibatch."""
    rng = np.random.default_rng(seed)
    done = 0
    while True:
        for idx in data.minibatch_indices(rng.permutation(len(images)), batch):
            if done == steps:
                return
            x = data.binarize_dynamic(images[idx], rng, dtype)
            eps = rng.standard_normal((1, len(idx), latent), dtype=dtype)
            yield x, eps
            done += 1


def timed_steps(trainer, feed):
    """Seconds to run every step of `feed` (drawing the minibatch included), mean loss."""
    gc.collect()
    trainer.start()
    total, steps = 0.0, 0
    started = time.perf_counter()
    for x, eps in feed:
        total += trainer.step(x, eps)
        steps += 1
    return time.perf_counter() - started, total / steps


def step_flops(params, batch):
    """Matmul FLOPs of one training step, 2 n k m per (n, k) @ (k, m):
    forward x W for every layer; backward dW = x^T g for every layer and
    dx = g W^T for every layer but the first (the data needs no gradient)."""
    total = 0
    for name, array in params.items():
        if name.endswith(".W"):
            k, m = array.shape
            total += (2 if name == FIRST_LAYER else 3) * 2 * batch * k * m
    return total


def update_bytes(params, optimizer):
    """Bytes one optimizer update must move: UPDATE_ARRAYS[optimizer] arrays
    the size of all parameters (read theta, g and the state, write theta and
    the state)."""
    return UPDATE_ARRAYS[optimizer] * sum(array.nbytes for array in params.values())


def floor_seconds(flops, update, peak_gflops, bandwidth_gbs):
    """An epoch's floor: its matmul FLOPs at the sgemm peak plus the bytes its
    updates move at the memory bandwidth, EPOCH_STEPS steps of `flops` and
    `update` bytes."""
    return EPOCH_STEPS * (flops / (peak_gflops * 1e9) + update / (bandwidth_gbs * 1e9))


# ---------------------------------------------------------------- the machine


def cpu_description():
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line.split(":", 1) for line in f if ":" in line]
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((v.strip() for k, v in lines if k.strip() == "model name"), "unknown CPU")
    cores = {(p.strip(), c.strip()) for p, c in zip(
        (v for k, v in lines if k.strip() == "physical id"),
        (v for k, v in lines if k.strip() == "core id"))}
    flags = next((v.split() for k, v in lines if k.strip() == "flags"), [])
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{model}, {os.cpu_count()} logical CPUs ({len(cores) or '?'} cores), "
            f"{len(os.sched_getaffinity(0))} usable, {simd}")


def numpy_blas():
    """numpy's BLAS; for OpenBLAS the core type and threads it chose at start,
    and the thread policy minivae's matmuls run under (minivae/threads.py)."""
    from minivae import threads
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas['name']} {blas['version']}"
    except (KeyError, TypeError):
        text = "unknown BLAS"
    from minivae.blas import PIECES, OpenBLAS
    openblas = OpenBLAS.find()
    if openblas is None:
        return f"{text}; minivae's thread policy {threads.configured()} (no OpenBLAS: no effect)"
    policy = threads.configured()
    how = ("OpenBLAS's own threads" if policy == "openblas" else
           f"OpenBLAS on 1 thread, products of {threads.SPLIT_FLOPS:,} FLOP and more in "
           f"{PIECES} halves on Numba's threads ({numba_layer()})")
    pinned = "".join(f", {v}={os.environ[v]} from the environment" for v in PINNING
                     if v in os.environ)
    return (f"{text} (core {openblas.corename()}{pinned}, {openblas.default_threads} threads); "
            f"minivae's thread policy {policy}: {how}")


def numba_layer():
    """The threading layer Numba runs parallel loops on (after its first one)."""
    import numba
    try:
        return f"{numba.threading_layer()} threading layer"
    except ValueError:
        return "threading layer not started"


def torch_blas(torch):
    """torch's BLAS and the SIMD level its kernels use, from its build configuration."""
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    simd = re.search(r"CPU capability usage: (\w+)", config)
    return f"{blas[1] if blas else '?'}, CPU capability {simd[1] if simd else '?'}"


def describe_machine(torch, jax):
    import numba
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_description(),
        "load_average": round(os.getloadavg()[0], 2),
        "threads": (", ".join(f"{v}={os.environ[v]}" for v in THREAD_VARS)
                    + f"; numba {numba.get_num_threads()}, torch {torch.get_num_threads()} "
                    f"intra-op + {torch.get_num_interop_threads()} inter-op"
                    + (f"; jax {xla_pool()}" if jax else "")),
        "versions": (f"python {platform.python_version()}, numpy {np.__version__}, "
                     f"numba {numba.__version__}, torch {torch.__version__}"
                     + (f", jax {jax.__version__}" if jax else "")),
        "numpy_blas": numpy_blas(),
        "torch_blas": torch_blas(torch),
    }
    for key, value in info.items():
        print(f"- {key.replace('_', ' ')}: {value}")
    return info


# ---------------------------------------------------------------- measurements


def relative_difference(a, b):
    """max |a - b| / max |b|: the difference relative to the array's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(np.float64).tiny))


def by_peer(values, fmt):
    """'1e-16 (PyTorch), 2e-16 (JAX)' from {peer: value}."""
    return ", ".join(f"{format(v, fmt)} ({TRAINERS[fw].name})" for fw, v in values.items())


def check_same_computation(data, images, optimizers, jax):
    """Loss, gradients and a few optimizer steps of every framework against
    minivae's, in float64 (JAX's under the scoped jax.enable_x64)."""
    with jax.enable_x64(True) if jax else contextlib.nullcontext():
        return _check_same_computation(data, images, optimizers)


def _check_same_computation(data, images, optimizers):
    init = initial_params(HIDDEN, LATENT, np.float64)

    def feed(steps):
        return minibatches(data, images, BATCH, steps, LATENT, np.float64, SEED)
    x, eps = next(feed(1))
    loss, grads = {}, {}
    for fw in TRAINERS:
        loss[fw], grads[fw] = TRAINERS[fw]("adam", dtype=np.float64, init=init) \
            .loss_and_grads(x, eps)
    result = {"loss": {fw: relative_difference(loss["minivae"], loss[fw]) for fw in peers()},
              "gradients": {fw: max(relative_difference(array, grads[fw][name])
                                    for name, array in grads["minivae"].items())
                            for fw in peers()}}
    print(f"- loss {loss['minivae']:.6f} (minivae) vs "
          + ", ".join(f"{loss[fw]:.6f} ({TRAINERS[fw].name})" for fw in peers())
          + f": relative difference {by_peer(result['loss'], '.1e')}")
    print(f"- gradients: max over parameters of max|minivae - it| / max|it| = "
          f"{by_peer(result['gradients'], '.1e')}")
    result["params"] = {}
    for optimizer in optimizers:
        trainers = {fw: TRAINERS[fw](optimizer, dtype=np.float64, init=init) for fw in TRAINERS}
        for x, eps in feed(CHECK_STEPS):
            for trainer in trainers.values():
                trainer.step(x, eps)
        ours = trainers["minivae"].params()
        result["params"][optimizer] = {}
        for fw in peers():
            expected = trainers[fw].params()
            result["params"][optimizer][fw] = max(relative_difference(array, expected[name])
                                                  for name, array in ours.items())
        print(f"- parameters after {CHECK_STEPS} {optimizer} steps: max relative difference "
              f"{by_peer(result['params'][optimizer], '.1e')}")
    differences = [*result["loss"].values(), *result["gradients"].values(),
                   *(d for p in result["params"].values() for d in p.values())]
    result["ok"] = max(differences) <= CHECK_RTOL
    return result


def sgemm_peak(torch, jax, repeats):
    """Median GFLOP/s of SGEMM_N^3 float32 products, numpy, torch (and jax)
    alternating; numpy's with OpenBLAS's own threads (the "openblas" policy),
    the most its BLAS does on --threads cores."""
    from minivae import threads
    threads.set_policy("openblas")
    rng = np.random.default_rng(SEED)
    a, b = (rng.standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    products = {"numpy": lambda: a @ b, "torch": lambda: ta @ tb}
    if jax:
        ja, jb = jax.device_put(a), jax.device_put(b)
        jitted = jax.jit(jax.numpy.matmul)
        products["jax"] = lambda: jitted(ja, jb).block_until_ready()
    times = {name: [] for name in products}
    for _ in range(1 + repeats):  # the first round warms up and is dropped
        for name, matmul in products.items():
            started = time.perf_counter()
            matmul()
            times[name].append(time.perf_counter() - started)
    threads.set_policy(threads.configured())
    return {name: 2 * SGEMM_N ** 3 / statistics.median(t[1:]) / 1e9 for name, t in times.items()}


def two_core_add():
    """a = b + c as a Numba prange loop, on the threads minivae's updates use."""
    from numba import njit, prange

    @njit(parallel=True)
    def add(b, c, out):
        for i in prange(out.size):
            out[i] = b[i] + c[i]
    return add


def memory_bandwidth(nbytes, repeats, add=np.add):
    """GB/s of a = b + c (read 2 arrays, write 1) on float32 arrays of
    `nbytes` each, by `add` (numpy's, one thread, by default), best of
    `repeats` after a warm-up."""
    b, c = (np.full(nbytes // 4, v, np.float32) for v in (1.0, 2.0))
    a = np.empty_like(b)
    best = math.inf
    for r in range(1 + repeats):
        started = time.perf_counter()
        add(b, c, a)
        if r:
            best = min(best, time.perf_counter() - started)
    return 3 * a.nbytes / best / 1e9


def time_epochs(data, images, optimizer, steps, repeats, trainers=TRAINERS):
    """Seconds of `steps` training steps of each of `trainers` ({key: class
    or factory}, by default the frameworks), `repeats` times, alternating the
    order, from the same weights and minibatches; and the trainers of the
    last round."""
    init = initial_params(HIDDEN, LATENT, np.float32)

    def feed(n):
        return minibatches(data, images, BATCH, n, LATENT, np.float32, SEED)
    for key in trainers:  # warm-up: Numba kernels, torch's first calls, JAX's jit, page faults
        timed_steps(trainers[key](optimizer, init=init), feed(min(10, steps)))
    seconds, losses, last = {k: [] for k in trainers}, {k: [] for k in trainers}, {}
    for r in range(repeats):
        for key in (list(trainers) if r % 2 == 0 else list(trainers)[::-1]):
            last[key] = trainers[key](optimizer, init=init)
            s, loss = timed_steps(last[key], feed(steps))
            seconds[key].append(s)
            losses[key].append(loss)
    return seconds, losses, last


@contextlib.contextmanager
def competing_process():
    """One CPU-bound process (CONTENDER, a Python busy loop) running while the
    block runs, killed after it."""
    process = subprocess.Popen([sys.executable, "-c", CONTENDER])
    try:
        time.sleep(0.2)  # let it start
        yield process
    finally:
        process.kill()
        process.wait()


def variant_name(key):
    """How the contention section names a trainer: a framework, or minivae under a policy."""
    from minivae import threads
    return f"minivae ({threads.configured()})" if key == "minivae" else \
        TRAINERS[key].name if key in TRAINERS else key


def contention(data, images, optimizer, steps, repeats):
    """Epochs of every framework, and of minivae under OTHER_POLICIES, idle and
    beside one competing busy process: each round times all of them idle,
    then all of them loaded, in alternating order.  Returns the seconds of
    `steps` steps {"idle"|"loaded": {key: [s]}}, the slowdowns (loaded
    median / idle median), the share of minivae's steps whose matmuls ran on
    one core, and the share of the CPUs other processes used."""
    from minivae.threads import OtherLoad
    variants = {**TRAINERS, **{f"minivae {p}": functools.partial(MinivaeTrainer, policy=p)
                               for p in OTHER_POLICIES}}
    seconds = {c: {k: [] for k in variants} for c in ("idle", "loaded")}
    serial = {c: {k: 0 for k in variants if k.startswith("minivae")} for c in seconds}
    load = {c: [] for c in seconds}
    for r in range(repeats):
        order = dict(reversed(variants.items())) if r % 2 else variants
        for condition in seconds:
            with competing_process() if condition == "loaded" else contextlib.nullcontext():
                other = OtherLoad()
                runs, _, trainers = time_epochs(data, images, optimizer, steps, 1, order)
                load[condition].append(other.share())
            for key, s in runs.items():
                seconds[condition][key] += s
            for key in serial[condition]:
                serial[condition][key] += trainers[key].serial_steps / (steps * repeats)
    slowdown = {k: statistics.median(seconds["loaded"][k]) / statistics.median(seconds["idle"][k])
                for k in variants}
    return {"seconds": seconds, "slowdown": slowdown, "serial_share": serial,
            "other_load": {c: statistics.mean(v) for c, v in load.items()}}


def run_child(framework, steps, optimizer, env=None):
    """This script in a fresh interpreter: its JSON report, plus the process wall time."""
    command = [sys.executable, os.path.abspath(__file__), "--_child", framework,
               "--_steps", str(steps), "--threads", str(ARGS.threads), "--optimizers", optimizer]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_wall"] = wall
    return report


def peak_rss_mb():
    """The peak resident memory of this process so far, in MB: VmHWM.

    Not ru_maxrss: on Linux a process started by fork (or vfork) and exec
    keeps its parent's high-water mark in ru_maxrss, so a child of this
    large parent would report the parent's size.  VmHWM is the same
    high-water mark, of this process image alone.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child_main(args):
    """A fresh process: import, load MNIST, build, train `--_steps` steps, report."""
    if args._child == "torch":
        import_torch(args.threads)
        data = minivae_data(alone=True)
    elif args._child == "jax":
        if import_jax(args.threads) is None:
            sys.exit(NO_JAX)
        data = minivae_data(alone=True)
    else:
        import minivae  # noqa: F401  (the whole package, as a user's script loads it)
        data = minivae_data()
    imported = time.perf_counter() - STARTED
    images = data.load_mnist().train_images
    # Each framework's own initial weights: memory and start-up do not depend on them.
    trainer = TRAINERS[args._child](args.optimizers[0])
    setup_mb = peak_rss_mb()
    first_step = None
    for x, eps in minibatches(data, images, BATCH, args._steps, LATENT, np.float32, SEED):
        trainer.step(x, eps)
        if first_step is None:
            first_step = time.perf_counter() - STARTED
    print(json.dumps({"imports": imported, "first_step": first_step, "steps": args._steps,
                      "setup_peak_mb": setup_mb, "peak_mb": peak_rss_mb(),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def first_step_times(optimizer, repeats):
    """Time to the first step: minivae cold (empty Numba cache), then warm (the
    cache the cold run filled), then PyTorch, then JAX (tracing and compiling
    its step: it keeps no compilation cache across processes unless told to),
    `repeats` times."""
    runs = {"minivae cold": [], "minivae warm": [], **{fw: [] for fw in peers()}}
    for _ in range(repeats):
        cache = tempfile.mkdtemp(prefix="minivae-bench-cold-")
        try:
            runs["minivae cold"].append(run_child("minivae", 1, optimizer,
                                                  {"NUMBA_CACHE_DIR": cache}))
            runs["minivae warm"].append(run_child("minivae", 1, optimizer,
                                                  {"NUMBA_CACHE_DIR": cache}))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        for fw in peers():
            runs[fw].append(run_child(fw, 1, optimizer))
    return {kind: {key: statistics.median(r[key] for r in reports)
                   for key in ("imports", "first_step", "process_wall")}
            for kind, reports in runs.items()}


def scaling_steps(batch, quick):
    """(warm-up, timed) steps for one config: 30 timed steps, fewer for the
    largest batches (at least 10 and about 6,000 samples) to keep the run short."""
    if quick:
        return 1, min(10, max(3, math.ceil(500 / batch)))
    return 5, min(30, max(10, math.ceil(6000 / batch)))


def scaling_table(data, images, optimizer, repeats, quick):
    grid = QUICK_SCALING if quick else SCALING
    rows = []
    print(scaling_header())
    for batch, hidden, latent in product(grid["batch"], grid["hidden"], grid["latent"]):
        init = initial_params(hidden, latent, np.float32)
        warm, steps = scaling_steps(batch, quick)
        trainers = {fw: TRAINERS[fw](optimizer, hidden, latent, init=init) for fw in TRAINERS}
        times = {fw: [] for fw in TRAINERS}
        for r in range(-1, repeats):  # round -1 warms up (and compiles JAX's step)
            for fw in (list(TRAINERS) if r % 2 == 0 else list(TRAINERS)[::-1]):
                n = warm if r < 0 else steps
                s, _ = timed_steps(trainers[fw], minibatches(data, images, batch, n, latent,
                                                             np.float32, SEED + 1 + r))
                if r >= 0:
                    times[fw].append(s)
        median = {fw: statistics.median(t) for fw, t in times.items()}
        flops = step_flops(init, batch) * steps
        row = {"batch": batch, "hidden": hidden, "latent": latent, "steps": steps,
               "us_per_sample": {fw: s / (steps * batch) * 1e6 for fw, s in median.items()},
               "gflops": {fw: flops / s / 1e9 for fw, s in median.items()},
               "ratio": {fw: median["minivae"] / median[fw] for fw in peers()}}
        rows.append(row)
        print(scaling_row(row), flush=True)
    return rows


def scaling_header():
    names = [TRAINERS[fw].name for fw in TRAINERS]
    columns = ([f"{n} µs/sample" for n in names] + [f"minivae / {n}" for n in names[1:]]
               + [f"{n} GFLOP/s" for n in names])
    return ("| batch | hidden | latent | steps | " + " | ".join(columns) + " |\n"
            + "|---:" * (4 + len(columns)) + "|")


def scaling_row(row):
    us, gf = row["us_per_sample"], row["gflops"]
    cells = ([f"{us[fw]:.1f}" for fw in TRAINERS] + [f"{row['ratio'][fw]:.2f}" for fw in peers()]
             + [f"{gf[fw]:.1f}" for fw in TRAINERS])
    return (f"| {row['batch']} | {row['hidden']} | {row['latent']} | {row['steps']} | "
            + " | ".join(cells) + " |")


# ---------------------------------------------------------------- the report


def main(args):
    from minivae.threads import OtherLoad
    torch = import_torch(args.threads)
    jax = import_jax(args.threads)
    if jax is None:
        del TRAINERS["jax"]
    data = minivae_data()
    results = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")}}
    epoch_steps = QUICK_EPOCH_STEPS if args.quick else EPOCH_STEPS
    against = " and ".join(TRAINERS[fw].name for fw in peers())

    print(f"# One training epoch, minivae against {against} (bench_epoch.py)\n")
    results["machine"] = describe_machine(torch, jax)
    images = data.load_mnist().train_images
    init = initial_params(HIDDEN, LATENT, np.float32)
    flops = step_flops(init, BATCH)
    results["step_flops"] = flops
    print(f"- model {X_DIM}-{HIDDEN}-{LATENT} tanh, Bernoulli decoder, estimator B, L = 1, "
          f"batch {BATCH}, float32: {flops:,} FLOP of matmuls per step (forward, dW, dx)")

    print("\n## Same computation (float64, before timing)\n")
    results["check"] = check_same_computation(data, images, args.optimizers, jax)
    if not results["check"]["ok"]:
        print(f"\nFAILED: minivae and {against} differ by more than rtol {CHECK_RTOL}; "
              f"the timings would compare different computations.")
        sys.exit(1)

    print(f"\n## sgemm peak, {SGEMM_N}^3 float32, {args.threads} threads\n")
    results["sgemm_gflops"] = sgemm_peak(torch, jax, 3 if args.quick else 7)
    print("- " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in results["sgemm_gflops"].items()))

    param_bytes = sum(a.nbytes for a in init.values())
    print(f"\n## Memory bandwidth, a = b + c, float32, best of {5 if args.quick else 20}\n")
    one, two = (memory_bandwidth(param_bytes, 5 if args.quick else 20, add)
                for add in (np.add, two_core_add()))
    results["bandwidth_gbs"] = bw = {
        "update": max(one, two), "update_one_thread": one, "update_two_threads": two,
        "dram": memory_bandwidth(DRAM_BYTES, 3 if args.quick else 10)}
    print(f"- arrays the size of the parameters ({param_bytes / 1e6:.1f} MB each, as the "
          f"optimizer update moves them): {one:.1f} GB/s on one thread (numpy), {two:.1f} on "
          f"two (Numba); the floor takes {bw['update']:.1f}; {DRAM_BYTES >> 20} MB arrays "
          f"(DRAM, numpy): {bw['dram']:.1f} GB/s")

    label = "epoch" if epoch_steps == EPOCH_STEPS else \
        f"epoch (extrapolated from {epoch_steps} steps)"
    print(f"\n## One {label}, median of {args.repeats}\n")
    results["epochs"] = {}
    for optimizer in args.optimizers:
        load = OtherLoad()
        seconds, losses, _ = time_epochs(data, images, optimizer, epoch_steps, args.repeats,
                                         {**TRAINERS, "minivae dense": functools.partial(
                                             MinivaeTrainer, dense=True)})
        median = {fw: statistics.median(s) * EPOCH_STEPS / epoch_steps for fw, s in seconds.items()}
        gflops = {fw: flops * epoch_steps / statistics.median(s) / 1e9
                  for fw, s in seconds.items()}
        # The machine's speed drifts over minutes; the runs of one round are
        # seconds apart, so the median of per-round ratios resists the drift.
        paired = {fw: statistics.median(m / t for m, t in zip(seconds["minivae"], seconds[fw]))
                  for fw in peers()}
        dense = {fw: statistics.median(d / t for d, t in zip(seconds["minivae dense"],
                                                             seconds[fw])) for fw in TRAINERS}
        moved = update_bytes(init, optimizer)
        floor = floor_seconds(flops, moved, results["sgemm_gflops"]["numpy"], bw["update"])
        results["epochs"][optimizer] = e = {
            "floor_seconds": floor, "update_bytes": moved,
            "floor_multiple": {fw: median[fw] / floor for fw in TRAINERS},
            "steps_timed": epoch_steps, "epoch_seconds": median, "runs_seconds": seconds,
            "mean_loss": {fw: statistics.median(v) for fw, v in losses.items()},
            "gflops": gflops, "ratio": {fw: median["minivae"] / median[fw] for fw in peers()},
            "paired_ratio": paired, "dense_paired_ratio": dense, "other_load": load.share()}
        for fw in TRAINERS:
            runs = ", ".join(f"{s:.2f}" for s in seconds[fw])
            print(f"- {optimizer}, {TRAINERS[fw].name}: {median[fw]:.2f} s per epoch "
                  f"(runs of {epoch_steps} steps: {runs} s), {gflops[fw]:.1f} GFLOP/s, "
                  f"mean -ELBO {statistics.median(losses[fw]):.2f}")
        runs = ", ".join(f"{s:.2f}" for s in seconds["minivae dense"])
        print(f"- {optimizer}, minivae with every product dense: {median['minivae dense']:.2f} s "
              f"per epoch (runs: {runs} s), {dense['minivae']:.2f} of the default's time")
        for fw in peers():
            print(f"- {optimizer}: minivae / {TRAINERS[fw].name} = {e['ratio'][fw]:.2f} "
                  f"(ratio of medians), {paired[fw]:.2f} (median of per-round ratios); "
                  f"with every product dense {dense[fw]:.2f}")
        print(f"- {optimizer}: floor {floor:.2f} s = {flops * EPOCH_STEPS / 1e9:.0f} GFLOP at "
              f"numpy's sgemm peak + {moved * EPOCH_STEPS / 1e9:.1f} GB of updates at "
              f"{bw['update']:.1f} GB/s; each epoch / floor: "
              + ", ".join(f"{TRAINERS[fw].name} {e['floor_multiple'][fw]:.2f}" for fw in TRAINERS))
        print(f"- {optimizer}: other processes used {e['other_load']:.0%} of the CPUs")

    optimizer = args.optimizers[0]
    print(f"\n## Peak resident memory of {label}, {optimizer}, fresh processes\n")
    results["memory"] = {fw: run_child(fw, epoch_steps, optimizer) for fw in TRAINERS}
    for fw, report in results["memory"].items():
        print(f"- {TRAINERS[fw].name}: peak {report['peak_mb']:.0f} MB "
              f"({report['setup_peak_mb']:.0f} MB after imports, data and model)")

    repeats = 1 if args.quick else args.repeats
    print(f"\n## Time to the first training step, fresh processes, median of {repeats}\n")
    results["first_step"] = first_step_times(optimizer, repeats)
    for kind, t in results["first_step"].items():
        print(f"- {TRAINERS[kind].name if kind in TRAINERS else kind}: first step done "
              f"{t['first_step']:.2f} s after the script started (imports {t['imports']:.2f} s"
              f"{'; tracing and compiling the jitted step included' if kind == 'jax' else ''})"
              f"; whole process {t['process_wall']:.2f} s")

    if not args.skip_scaling:
        print(f"\n## Scaling, {optimizer}, time per sample, median of {args.repeats}\n")
        load = OtherLoad()
        results["scaling"] = scaling_table(data, images, optimizer, args.repeats, args.quick)
        results["scaling_other_load"] = load.share()
        print(f"\nOther processes used {results['scaling_other_load']:.0%} of the CPUs.")

    if not args.skip_contention:
        print(f"\n## Under contention: {label}, {optimizer}, idle and beside one busy "
              f"process, median of {args.repeats}\n")
        results["contention"] = c = contention(data, images, optimizer, epoch_steps,
                                               args.repeats)
        for key, slowdown in c["slowdown"].items():
            idle, loaded = (statistics.median(c["seconds"][k][key]) * EPOCH_STEPS / epoch_steps
                            for k in ("idle", "loaded"))
            serial = (f"; matmuls on one core in {c['serial_share']['idle'][key]:.0%} of the "
                      f"idle steps, {c['serial_share']['loaded'][key]:.0%} of the loaded"
                      if key in c["serial_share"]["idle"] else "")
            print(f"- {variant_name(key)}: {idle:.2f} s idle, {loaded:.2f} s loaded, slowdown "
                  f"{slowdown:.2f}{serial}")
        print(f"- other processes used {c['other_load']['idle']:.0%} of the CPUs idle, "
              f"{c['other_load']['loaded']:.0%} loaded (the competing process included)")

    results["run_seconds"] = time.perf_counter() - STARTED
    print_summary(results, label)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\n(all results written to {args.json})")


def table_row(measure, values, ratios):
    """| measure | one cell per framework | minivae / each peer |"""
    return f"| {measure} | " + " | ".join(values) + " | " + " | ".join(ratios) + " |"


def print_summary(results, label):
    m, check, peak = results["machine"], results["check"], results["sgemm_gflops"]
    args = results["args"]
    fws, names = list(TRAINERS), [TRAINERS[fw].name for fw in TRAINERS]
    print("\n" + "=" * 72 + f"\n\n## Summary: one epoch, minivae against "
          f"{' and '.join(names[1:])} (bench_epoch.py)\n")
    print(f"- {m['date']}; {m['cpu']}; load average {m['load_average']:.1f} at start")
    print(f"- {m['versions']}")
    print(f"- numpy BLAS {m['numpy_blas']}; torch BLAS {m['torch_blas']}")
    print(f"- threads: {m['threads']}")
    if "jax" not in TRAINERS:
        print(f"- {NO_JAX}")
    print(f"- run: --repeats {args['repeats']}{' --quick' if args['quick'] else ''}; "
          f"model {X_DIM}-{HIDDEN}-{LATENT} tanh, Bernoulli, estimator B, L = 1, batch {BATCH}, "
          f"float32, {results['step_flops'] / 1e6:.1f} MFLOP of matmuls per step")
    print(f"- same computation (float64), max relative difference from minivae: loss "
          f"{by_peer(check['loss'], '.0e')}; gradients {by_peer(check['gradients'], '.0e')}; "
          f"parameters after {CHECK_STEPS} steps "
          + "; ".join(f"{k} {by_peer(v, '.0e')}" for k, v in check["params"].items()))
    print("\n| measure | " + " | ".join(names) + " | "
          + " | ".join(f"minivae / {n}" for n in names[1:]) + " |\n|---|"
          + "---:|" * (2 * len(names) - 1))
    for optimizer, e in results["epochs"].items():
        s = e["epoch_seconds"]
        print(table_row(f"{label}, {optimizer} (s)", [f"{s[fw]:.2f}" for fw in fws],
                        [f"{e['paired_ratio'][fw]:.2f}" for fw in fws[1:]]))
    for optimizer, e in results["epochs"].items():
        print(table_row(f"{label}, {optimizer}, minivae with every product dense (s)",
                        [f"{e['epoch_seconds']['minivae dense']:.2f}"] + ["" for _ in fws[1:]],
                        [f"{e['dense_paired_ratio'][fw]:.2f}" for fw in fws[1:]]))
    for optimizer, e in results["epochs"].items():
        print(table_row(f"{label}, {optimizer} / its floor of {e['floor_seconds']:.2f} s",
                        [f"{e['floor_multiple'][fw]:.2f}" for fw in fws], ["" for _ in fws[1:]]))
    if "contention" in results:
        slow = results["contention"]["slowdown"]
        print(table_row(f"{label}, {args['optimizers'][0]}, beside one busy process / idle",
                        [f"{slow[fw]:.2f}" for fw in fws], ["" for _ in fws[1:]]))
    e = results["epochs"][args["optimizers"][0]]
    print(table_row(f"matmul GFLOP/s in that epoch ({args['optimizers'][0]})",
                    [f"{e['gflops'][fw]:.1f} ({e['gflops'][fw] / peak[sgemm]:.0%} of {sgemm} "
                     f"sgemm)" for fw, sgemm in zip(fws, ("numpy", *fws[1:]))],
                    ["" for _ in fws[1:]]))
    bw = results["bandwidth_gbs"]
    print(table_row("memory bandwidth, a = b + c (GB/s)",
                    [f"{bw['update']:.1f} (parameter-sized arrays, the better of one and two "
                     f"threads), {bw['dram']:.1f} ({DRAM_BYTES >> 20} MB, one thread)"]
                    + ["" for _ in fws[1:]], ["" for _ in fws[1:]]))
    print(table_row(f"sgemm {SGEMM_N}^3 GFLOP/s",
                    [f"{peak['numpy']:.1f} (numpy)"] + [f"{peak[fw]:.1f}" for fw in fws[1:]],
                    [f"{peak['numpy'] / peak[fw]:.2f}" for fw in fws[1:]]))
    mem = {fw: report["peak_mb"] for fw, report in results["memory"].items()}
    print(table_row(f"peak RSS of an {label} (MB)", [f"{mem[fw]:.0f}" for fw in fws],
                    [f"{mem['minivae'] / mem[fw]:.2f}" for fw in fws[1:]]))
    first = results["first_step"]
    for kind in ("minivae warm", "minivae cold"):
        print(table_row(f"time to first step, {kind.split()[1]} Numba cache (s; whole process)",
                        [f"{first[k]['first_step']:.2f} ({first[k]['process_wall']:.2f})"
                         for k in (kind, *fws[1:])],
                        [f"{first[kind]['first_step'] / first[fw]['first_step']:.2f}"
                         for fw in fws[1:]]))
    print("\nEpoch ratios: the median of per-round ratios (the ratios of medians are in "
          "the epoch section above)."
          + (" JAX's time to the first step includes tracing and compiling its jitted step "
             "(no persistent compilation cache); its epochs are timed after a warm-up that "
             "compiled it." if "jax" in fws else ""))
    print("Floor: the epoch's matmul FLOPs at numpy's sgemm peak plus the bytes its optimizer "
          "updates move (Adam 7, Adagrad 5 parameter-sized arrays a step) at the bandwidth of "
          "parameter-sized arrays (the better of one and two threads), both measured in this "
          "run. The FLOPs, there and in GFLOP/s, are the dense products' for every framework: "
          "minivae's first layer skips the zeros of the binarized pixels, and so does fewer.")
    if "contention" in results:
        c = results["contention"]
        idle = {k: statistics.median(v) for k, v in c["seconds"]["idle"].items()}
        print("Under contention, minivae's thread policies (idle epoch relative to the "
              "\"openblas\" policy; slowdown beside one busy process): "
              + "; ".join(f"{variant_name(k)} {idle[k] / idle['minivae openblas']:.2f}, "
                          f"{c['slowdown'][k]:.2f}" for k in c["serial_share"]["idle"])
              + f". Other processes used {c['other_load']['loaded']:.0%} of the CPUs in the "
              f"loaded rounds (the competing process included), "
              f"{c['other_load']['idle']:.0%} in the idle ones.")
    loads = ", ".join(f"{k} {e['other_load']:.0%}" for k, e in results["epochs"].items())
    print(f"Other processes used this share of the CPUs during the epoch timings: {loads}. "
          f"The whole run took {results['run_seconds'] / 60:.1f} min.")
    if max(e["other_load"] for e in results["epochs"].values()) > BUSY:
        print(f"WARNING: other processes used more than {BUSY:.0%} of the CPUs: the machine "
              f"was busy, and these timings say little about any framework.")
    if "scaling" in results:
        rows = results["scaling"]
        spans = []
        for fw in fws[1:]:
            ratios = [row["ratio"][fw] for row in rows]
            spans.append(f"minivae / {TRAINERS[fw].name} from {min(ratios):.2f} to "
                         f"{max(ratios):.2f}, median {statistics.median(ratios):.2f}")
        print(f"\n### Scaling ({args['optimizers'][0]}, median of {args['repeats']}; "
              + "; ".join(spans) + f"; other processes used "
              f"{results['scaling_other_load']:.0%} of the CPUs)\n")
        print(scaling_header())
        for row in rows:
            print(scaling_row(row))


if __name__ == "__main__":
    child_main(ARGS) if ARGS._child else main(ARGS)
