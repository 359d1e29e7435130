"""Two epochs of Adam steps of the paper's model, to see where a step's time goes.

    pip install py-spy
    PYTHONPATH=. py-spy record --native -r 200 -f raw -o /tmp/prof.txt -- python benchmarks/profile_step.py
    PYTHONPATH=. python benchmarks/profile_step.py --timings [--dense]
    PYTHONPATH=. python benchmarks/profile_step.py --skipping-rounds 20

The 784-500-20 Bernoulli VAE, estimator B, L = 1, batch 100, dynamic
binarization, float32, as bench_epoch.py times it; 20 warm-up steps first, so
that Numba's compilation is over (a profile keeps only the stacks under
GradientAscent.step that are not compiling).  With --timings, no profiler:
each matmul (by shape, and whether it skipped the zeros of its left
operand), each kernel, the gradient norm and the drawing of the minibatch
are timed with a clock around the call, and a Markdown table gives their
microseconds per step, each matmul beside its floor (its FLOPs at numpy's
sgemm peak on a 2048^3 product, measured first), and what is left: the
graph, Python and small numpy operations.  With --dense, every product is
a dense one, as before minivae skipped the pixels' zeros; --skipping-rounds
times whole steps both ways, alternating in one process.
benchmarks/RESULTS.md says what the last profile found.
"""
import argparse
import collections
import statistics
import time

import numpy as np

from minivae import kernels, optim, sparse, threads, updates
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, load_mnist
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam

KERNELS = ("bias_activate", "bias_activate_grad", "activate_grad",
           "bernoulli_log_prob", "reparameterize", "gaussian_kl", "gaussian_kl_grad")
WARM_UP, EPOCH = 20, 600


class Clock:
    """Seconds and calls of the work wrapped by `time`, counted while `on`."""

    def __init__(self):
        self.seconds, self.calls, self.on = collections.Counter(), collections.Counter(), False
        self.depth = 0   # a timed call inside another (activate_grad in bias_activate_grad)
        #                  counts in the outer one only

    def time(self, module, name, label):
        """Replace module.name by itself timed under label(args)."""
        f = getattr(module, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            self.depth += 1
            try:
                out = f(*args, **kwargs)
            finally:
                self.depth -= 1
            if self.on and self.depth == 0:
                key = label(args)
                self.seconds[key] += time.perf_counter() - started
                self.calls[key] += 1
            return out
        setattr(module, name, timed)


def sgemm_peak():
    """numpy's GFLOP/s on a 2048^3 float32 product, OpenBLAS on its own threads."""
    threads.set_policy("openblas")
    a = np.ones((2048, 2048), np.float32)
    a @ a
    started = time.perf_counter()
    for _ in range(5):
        a @ a
    threads.set_policy(threads.configured())
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - started) / 1e9


def training(seed=0):
    """The paper's model under Adam (GradientAscent), MNIST's training images,
    and the generator that draws the minibatches."""
    rng = np.random.default_rng(seed)
    model = VAE(rng=rng)
    learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=1e-3, weight_decay=0.0))
    return learn, load_mnist().train_images, rng


def minibatch(images, rng):
    return binarize_dynamic(images[rng.integers(0, 60000, 100)], rng, np.float32)


def skipping_rounds(rounds, steps=200):
    """Seconds a step with and without the zero-skipping product, alternating
    which goes first, so that the machine's drift falls on both alike."""
    learn, images, rng = training()

    def step():
        learn.step(minibatch(images, rng), rng)
        threads.tick()
    default = sparse.SPARSE_SHARE
    seconds = {default: [], -1.0: []}
    for share in seconds:   # warm-up: Numba compiles both paths
        sparse.SPARSE_SHARE = share
        for _ in range(WARM_UP):
            step()
    for r in range(rounds):
        for share in (default, -1.0) if r % 2 == 0 else (-1.0, default):
            sparse.SPARSE_SHARE = share
            started = time.perf_counter()
            for _ in range(steps):
                step()
            seconds[share].append((time.perf_counter() - started) / steps)
    ratios = [s / d for s, d in zip(seconds[default], seconds[-1.0])]
    print(f"{rounds} rounds of {steps} steps, thread policy {threads.policy().name}: "
          f"{statistics.median(seconds[default]) * 1e6:.0f} us a step skipping the pixels' "
          f"zeros, {statistics.median(seconds[-1.0]) * 1e6:.0f} us dense (medians, drawing "
          f"the minibatch included); skipping / dense per round: median "
          f"{statistics.median(ratios):.3f}, from {min(ratios):.3f} to {max(ratios):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", action="store_true",
                        help="time each kind of work and print a table (no profiler)")
    parser.add_argument("--dense", action="store_true",
                        help="no product skips zeros (sparse.SPARSE_SHARE below 0), to see "
                             "what skipping the pixels' zeros saves")
    parser.add_argument("--skipping-rounds", type=int, metavar="N",
                        help="instead: N rounds of 200 steps with the pixels' zeros skipped "
                             "and 200 with every product dense, alternating in this process, "
                             "and the median per-round ratio")
    args = parser.parse_args()
    if args.skipping_rounds:
        return skipping_rounds(args.skipping_rounds)
    if args.dense:
        sparse.SPARSE_SHARE = -1.0
    clock = Clock()
    peak = sgemm_peak() if args.timings else None
    if args.timings:
        flops = {}

        def product(a, how=""):
            x, w = a[-2], a[-1]
            key = f"matmul {x.shape[0]}x{x.shape[1]} @ {w.shape[0]}x{w.shape[1]}{how}"
            flops[key] = 2 * x.shape[0] * x.shape[1] * w.shape[1]
            return key
        clock.time(threads, "matmul", product)
        clock.time(sparse, "zero_skipping_matmul",
                   lambda a: product(a, ", the zeros of the left skipped"))
        for name in KERNELS:
            clock.time(kernels, name, lambda a, name=name: f"kernels.{name}")
        clock.time(updates, "adam_update", lambda a: "updates.adam_update")
        clock.time(optim.Optimizer, "grad_norm", lambda a: "Optimizer.grad_norm")
    learn, images, rng = training()
    steps = drawing = 0.0
    for i in range(WARM_UP + 2 * EPOCH):   # the first WARM_UP: Numba compiles
        clock.on = i >= WARM_UP
        started = time.perf_counter()
        x = minibatch(images, rng)
        drawn = time.perf_counter()
        learn.step(x, rng)
        threads.tick()
        if clock.on:
            drawing += drawn - started
            steps += time.perf_counter() - started
    if args.timings:
        n = 2 * EPOCH
        print(f"thread policy {threads.policy().name}; numpy sgemm 2048^3: {peak:.0f} GFLOP/s; "
              f"{steps / n * 1e6:.0f} us a step, drawing the minibatch included\n")
        print("| work | calls a step | us a step | share | floor (us) |\n|---|---:|---:|---:|---:|")
        for key, seconds in clock.seconds.most_common():
            floor = f"{flops[key] * clock.calls[key] / n / peak / 1e3:.0f}" if key in flops else ""
            print(f"| {key} | {clock.calls[key] // n} | {seconds / n * 1e6:.0f} | "
                  f"{seconds / steps * 100:.1f} % | {floor} |")
        rest = steps - drawing - sum(clock.seconds.values())
        for key, seconds in (("drawing the minibatch", drawing),
                             ("the rest: the graph, Python, small numpy operations", rest)):
            print(f"| {key} | | {seconds / n * 1e6:.0f} | {seconds / steps * 100:.1f} % | |")


if __name__ == "__main__":
    main()
