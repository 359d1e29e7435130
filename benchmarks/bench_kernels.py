"""Time every kernel in minivae.kernels against the plain-numpy expression.

What it measures, on the VAE's shapes (batch 100, encoder 784 -> 500 -> 20,
latent 20, data dimension 784, parameters 784 x 500):

  * each kernel (activations and their slopes, bias + activation and its
    backward, the Bernoulli and Gaussian log-densities, the KL,
    reparameterization, each with its gradient, and the optimizer updates)
    against the obvious vectorized numpy expression in its stable form:
    median time of each and the ratio kernel / numpy (above 1: the kernel
    is slower);
  * matmul: `matmul_loop`, the fast path `kernels.matmul` and numpy's `@`
    (with all BLAS threads, and with one when numpy's BLAS is OpenBLAS),
    as time and GFLOP/s (2 n k m / time), on the forward and backward
    shapes of the layers and on a 1024 x 1024 x 1024 product as the peak;
  * the fused layer `minivae.linear(x, W, b, 'tanh')`, forward + backward,
    against the same layer written by hand in numpy;
  * the one-time cost of the first call of each kernel, twice: compiling
    into an empty Numba cache, and loading from the disk cache that the
    first run wrote (what a second process pays with ``cache=True``).

Before any timing, each kernel's results are checked against numpy's with
np.allclose, so the two sides compute the same thing.  Kernel and numpy
samples alternate (in a rotating order), and ratios are the median of
per-round ratios, so slow phases of a shared machine hit both sides alike.
Each row also says how much of the CPUs other processes used while it was
timed ("busy elsewhere"): rows timed on a loaded machine are not comparable
with rows timed on an idle one, above all for threaded code (BLAS, prange).

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_kernels.py [--repeat N] [--dtype float32|float64]
                                                    [--threads N]

`--threads` limits Numba's threads; numpy's BLAS threads follow
OPENBLAS_NUM_THREADS.  The tables are printed as Markdown, ready for
benchmarks/RESULTS.md.  A public function of minivae.kernels that no case
covers is listed at the end, so the script says when it falls behind.
"""
import argparse
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager, nullcontext

_OWN_CACHE = __name__ == "__main__" and "--first-calls-only" not in sys.argv
if _OWN_CACHE:
    # A fresh, private Numba cache (shared with the child processes that time
    # first calls): first calls then compile for real, and the benchmark
    # writes nothing into minivae/__pycache__.  Must be set before numba loads.
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="minivae-bench-numba-")

import numba  # noqa: E402
import numpy as np  # noqa: E402

import minivae  # noqa: E402
from minivae import kernels, updates  # noqa: E402

BATCH, DATA, HIDDEN, LATENT = 100, 784, 500, 20
ACTS = ("tanh", "sigmoid", "relu", "softplus")
SAMPLE_SECONDS = 0.01  # each timing sample repeats a call until it lasts about this long
SETTLE_SECONDS = 0.5   # a pause for spinning worker threads to go to sleep

# kernel: the minivae.kernels function timed; the two calls return equal results.
Case = namedtuple("Case", "name kernel shape kernel_fn numpy_fn")


# ---------------------------------------------------------------- inputs

def make_inputs(dtype, seed=0):
    """Arrays shaped like one minibatch passing through the VAE."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return {
        "x": (rng.random((BATCH, DATA)) < 0.3).astype(dtype),   # binarized pixels
        "logits": normal(BATCH, DATA, scale=3.0),
        "pre": normal(BATCH, HIDDEN, scale=2.0),                # a hidden pre-activation
        "b": normal(HIDDEN, scale=0.1),
        "g_hidden": normal(BATCH, HIDDEN),
        "g_rows": normal(BATCH),                                # upstream grad of a per-row sum
        "mu": normal(BATCH, LATENT),
        "logvar": normal(BATCH, LATENT, scale=0.5),
        "eps": normal(BATCH, LATENT),
        "g_latent": normal(BATCH, LATENT),
        "x_real": normal(BATCH, DATA),                          # Gaussian decoder data
        "mu_x": normal(BATCH, DATA),
        "logvar_x": normal(BATCH, DATA, scale=0.5),
        "theta": normal(DATA, HIDDEN, scale=DATA ** -0.5),      # the largest parameter
        "g_theta": normal(DATA, HIDDEN, scale=0.01),
    }


# ---------------------------------------------------------------- numpy references

def np_sigmoid(v):
    """1 / (1 + e^-v) without overflow: e^-|v| never exceeds 1."""
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


NP_ACTIVATE = {
    "tanh": np.tanh,
    "sigmoid": np_sigmoid,
    "relu": lambda v: np.maximum(v, 0),
    "softplus": lambda v: np.logaddexp(0, v),
}
NP_SLOPE_FROM_OUTPUT = {  # act'(v) from y = act(v), as the kernels take it
    "tanh": lambda y: 1 - y * y,
    "sigmoid": lambda y: y * (1 - y),
    "relu": lambda y: (y > 0).astype(y.dtype),
    "softplus": lambda y: -np.expm1(-y),
}


def np_bias_activate(buf, b, act):
    """In place, like the kernel: buf <- act(buf + b)."""
    buf += b
    buf[...] = NP_ACTIVATE[act](buf)
    return buf


def np_bias_activate_grad(y, g, slope):
    """(g_pre, g_b) = (g act'(pre), g_pre summed over rows), from y = act(pre)."""
    g_pre = g * slope(y)
    return g_pre, g_pre.sum(axis=0)


def np_gaussian_kl(mu, logvar):
    """KL per row, and sigma^2 = exp(logvar)   (Appendix B)."""
    var = np.exp(logvar)
    return 0.5 * np.sum(var + mu * mu - logvar - 1, axis=1), var


def np_gaussian_log_prob(x, mu, logvar):
    """log N(x; mu, sigma^2) per row, and 1 / sigma^2 = exp(-logvar)."""
    inv_var = np.exp(-logvar)
    log_2pi = x.dtype.type(np.log(2 * np.pi))  # a float64 scalar would promote float32
    return -0.5 * np.sum(log_2pi + logvar + (x - mu) ** 2 * inv_var, axis=1), inv_var


def np_reparameterize(mu, logvar, eps):
    """z = mu + sigma eps, and sigma = exp(logvar / 2)   (eq. 10)."""
    sigma = np.exp(0.5 * logvar)
    return mu + sigma * eps, sigma


def np_reparameterize_grad(sigma, eps, g):
    """(g dz/dlogvar, g dz/deps) = (g eps sigma / 2, g sigma)."""
    g_eps = g * sigma
    return 0.5 * g_eps * eps, g_eps


def np_gaussian_log_prob_grad(x, mu, inv_var, g):
    """(d/dx, d/dmu, d/dlogvar) of g_i log N(x; mu, sigma^2), r = (x - mu) / sigma^2."""
    diff = x - mu
    r = diff * inv_var
    g = g[:, None]
    return -g * r, g * r, g * 0.5 * (diff * r - 1)


# Optimizer steps, in place on (theta, state...), as numpy would write them.
OPT = {"lr": 1e-3, "momentum": 0.9, "eps": 1e-8, "beta1": 0.9, "beta2": 0.999,
       "step": 10, "weight_decay": 1e-4, "scale": 0.5}


def np_sgd_update(theta, g, velocity):
    """v <- momentum v + g';  theta <- theta - lr v,  with g' = scale g + wd theta."""
    velocity[...] = OPT["momentum"] * velocity + OPT["scale"] * g + OPT["weight_decay"] * theta
    theta -= OPT["lr"] * velocity


def np_adagrad_update(theta, g, G):
    """G <- G + g'^2;  theta <- theta - lr g' / (sqrt(G) + eps)."""
    g = OPT["scale"] * g + OPT["weight_decay"] * theta
    G += g * g
    theta -= OPT["lr"] * g / (np.sqrt(G) + OPT["eps"])


def np_adam_update(theta, g, m, v):
    """Adam with bias-corrected running means m^ and v^ of g' and g'^2."""
    b1, b2, step = OPT["beta1"], OPT["beta2"], OPT["step"]
    g = OPT["scale"] * g + OPT["weight_decay"] * theta
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** step), v / (1 - b2 ** step)
    theta -= OPT["lr"] * m_hat / (np.sqrt(v_hat) + OPT["eps"])


# ---------------------------------------------------------------- cases

def kernel_cases(d):
    """Every kernel but the matmuls, each against numpy."""
    cases = []
    g_hidden = d["g_hidden"]
    for act in ACTS:
        code = kernels.ACTIVATIONS[act]
        y = NP_ACTIVATE[act](d["pre"])
        slope = NP_SLOPE_FROM_OUTPUT[act]
        cases += [
            Case(f"activate {act}", "activate", d["pre"].shape,
                 lambda code=code: kernels.activate(d["pre"], code),
                 lambda act=act: NP_ACTIVATE[act](d["pre"])),
            Case(f"activate_grad {act}", "activate_grad", y.shape,
                 lambda code=code, y=y: kernels.activate_grad(y, g_hidden, code),
                 lambda slope=slope, y=y: g_hidden * slope(y)),
            Case(f"bias_activate_grad {act}", "bias_activate_grad", y.shape,
                 lambda code=code, y=y: kernels.bias_activate_grad(y, g_hidden, code),
                 lambda slope=slope, y=y: np_bias_activate_grad(y, g_hidden, slope)),
        ]
    for act in ACTS:
        # In place, so both sides first restore the pre-activation (the copy row below).
        code = kernels.ACTIVATIONS[act]

        def bias_kernel(code=code, buf=np.empty_like(d["pre"])):
            np.copyto(buf, d["pre"])
            kernels.bias_activate(buf, d["b"], code)
            return buf

        def bias_numpy(act=act, buf=np.empty_like(d["pre"])):
            np.copyto(buf, d["pre"])
            return np_bias_activate(buf, d["b"], act)
        cases.append(Case(f"bias_activate {act} (+copy)", "bias_activate", d["pre"].shape,
                          bias_kernel, bias_numpy))

    def copy(buf=np.empty_like(d["pre"])):
        np.copyto(buf, d["pre"])
        return buf
    cases.append(Case("copy alone (in both rows above)", None, d["pre"].shape, copy, copy))

    x, l, g = d["x"], d["logits"], d["g_rows"]
    mu, lv, eps = d["mu"], d["logvar"], d["eps"]
    xr, mx, lvx = d["x_real"], d["mu_x"], d["logvar_x"]
    var, inv_var_x, sigma = np.exp(lv), np.exp(-lvx), np.exp(0.5 * lv)
    cases += [
        Case("bernoulli_log_prob (+ x - sigmoid)", "bernoulli_log_prob", x.shape,
             lambda: kernels.bernoulli_log_prob(x, l),
             lambda: (np.sum(x * l - np.logaddexp(0, l), axis=1), x - np_sigmoid(l))),
        Case("gaussian_kl (+ sigma^2)", "gaussian_kl", mu.shape,
             lambda: kernels.gaussian_kl(mu, lv),
             lambda: np_gaussian_kl(mu, lv)),
        Case("gaussian_kl_grad", "gaussian_kl_grad", mu.shape,
             lambda: kernels.gaussian_kl_grad(mu, var, g),
             lambda: (g[:, None] * mu, g[:, None] * 0.5 * (var - 1))),
        Case("gaussian_log_prob (+ 1/sigma^2)", "gaussian_log_prob", xr.shape,
             lambda: kernels.gaussian_log_prob(xr, mx, lvx),
             lambda: np_gaussian_log_prob(xr, mx, lvx)),
        Case("gaussian_log_prob_grad", "gaussian_log_prob_grad", xr.shape,
             lambda: kernels.gaussian_log_prob_grad(xr, mx, inv_var_x, g),
             lambda: np_gaussian_log_prob_grad(xr, mx, inv_var_x, g)),
        Case("reparameterize (+ sigma)", "reparameterize", mu.shape,
             lambda: kernels.reparameterize(mu, lv, eps),
             lambda: np_reparameterize(mu, lv, eps)),
        Case("reparameterize_grad", "reparameterize_grad", mu.shape,
             lambda: kernels.reparameterize_grad(sigma, eps, d["g_latent"], sigma.dtype.type(0.5)),
             lambda: np_reparameterize_grad(sigma, eps, d["g_latent"])),
    ]
    cases += optimizer_cases(d)
    return cases


def optimizer_cases(d):
    """The in-place updates of one 784 x 500 parameter, from equal starting states.

    Timing repeats the update on its own state, which drifts but stays finite.
    """
    theta, g, o = d["theta"], d["g_theta"], OPT
    square = np.abs(g) + 1e-3                   # a running mean of g^2 must be positive
    starts = {"sgd": (theta, g, g), "adagrad": (theta, g, square),
              "adam": (theta, g, g, square * square)}
    calls = {
        "sgd": (lambda t, g, v: updates.sgd_update(t, g, v, o["lr"], o["momentum"],
                                                   o["weight_decay"], o["scale"]),
                np_sgd_update),
        "adagrad": (lambda t, g, G: updates.adagrad_update(t, g, G, o["lr"], o["eps"],
                                                           o["weight_decay"], o["scale"]),
                    np_adagrad_update),
        "adam": (lambda t, g, m, v: updates.adam_update(t, g, m, v, o["lr"], o["beta1"],
                                                        o["beta2"], o["eps"], o["step"],
                                                        o["weight_decay"], o["scale"]),
                 np_adam_update),
    }
    cases = []
    for name, (kernel_update, numpy_update) in calls.items():
        state_k = [a.copy() for a in starts[name]]
        state_n = [a.copy() for a in starts[name]]

        def with_kernel(update=kernel_update, state=state_k):
            update(*state)
            return tuple(a for i, a in enumerate(state) if i != 1)  # all but g

        def with_numpy(update=numpy_update, state=state_n):
            update(*state)
            return tuple(a for i, a in enumerate(state) if i != 1)
        cases.append(Case(f"{name}_update", f"{name}_update", theta.shape,
                          with_kernel, with_numpy))
    return cases


def check_optimizer_steps(d, dtype):
    """One step from equal states: theta's change must agree, not just theta.

    A step moves theta by about lr, which a tolerance on theta itself would
    not see; fresh states, so the timed cases start where they should.
    """
    for case in optimizer_cases(d):
        got, want = case.kernel_fn(), case.numpy_fn()
        check(f"{case.name} step", got[0] - d["theta"], want[0] - d["theta"], dtype)
        check(f"{case.name} state", got[1:], want[1:], dtype)


def matmul_cases(dtype, seed=1):
    """(what, a, b): the layers' products, and a large one for the peak.

    The backward products are timed twice: with the transposed views that
    ops.linear's backward passes (x.T @ g and g @ W.T), and with
    C-contiguous copies of the same operands.
    """
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)
    x, W1, W2 = normal(BATCH, DATA), normal(DATA, HIDDEN), normal(HIDDEN, LATENT)
    g_hidden, h = normal(BATCH, HIDDEN), normal(BATCH, HIDDEN)
    return [("forward, encoder layer 1", x, W1),
            ("forward, encoder layer 2", h, W2),
            ("backward dW = x.T @ g", x.T, g_hidden),
            ("backward dW = x.T @ g", np.ascontiguousarray(x.T), g_hidden),
            ("backward dx = g @ W.T", g_hidden, W1.T),
            ("backward dx = g @ W.T", g_hidden, np.ascontiguousarray(W1.T)),
            ("peak", normal(1024, 1024), normal(1024, 1024))]


def layout(a, b):
    """'C @ C', 'T-view @ C', ...: how the operands lie in memory."""
    def one(m):
        return "C" if m.flags.c_contiguous else "T-view" if m.T.flags.c_contiguous else "strided"
    return f"{one(a)} @ {one(b)}"


def linear_cases(dtype):
    """minivae.linear(x, W, b, 'tanh') forward + backward, and numpy by hand."""
    cases = []
    rng = np.random.default_rng(2)
    for what, k in (("encoder 784 -> 500", DATA), ("decoder 20 -> 500", LATENT)):
        x = rng.standard_normal((BATCH, k)).astype(dtype)
        W = (rng.standard_normal((k, HIDDEN)) * k ** -0.5).astype(dtype)
        b = (0.1 * rng.standard_normal(HIDDEN)).astype(dtype)
        g = rng.standard_normal((BATCH, HIDDEN)).astype(dtype)

        def with_minivae(x=x, W=W, b=b, g=g):
            xt, Wt, bt = (minivae.Tensor(a, requires_grad=True) for a in (x, W, b))
            minivae.linear(xt, Wt, bt, "tanh").backward(g)
            return xt.grad, Wt.grad, bt.grad

        def with_numpy(x=x, W=W, b=b, g=g):
            h = np.tanh(x @ W + b)
            g_pre = g * (1 - h * h)       # tanh' = 1 - tanh^2
            return g_pre @ W.T, x.T @ g_pre, g_pre.sum(axis=0)
        cases.append(Case(f"linear tanh fwd+bwd, {what}", "linear", (BATCH, k, HIDDEN),
                          with_minivae, with_numpy))
    return cases


def uncovered_kernels(cases):
    """Public functions of minivae.kernels that no case times."""
    public = {name for name, obj in vars(kernels).items()
              if not name.startswith("_") and callable(obj)
              and getattr(obj, "py_func", obj).__module__ == kernels.__name__}
    return sorted(public - {c.kernel for c in cases} - {"matmul", "matmul_loop"})


# ---------------------------------------------------------------- checking and timing

def check(name, got, want, dtype):
    """Assert the kernel and numpy agree, relative to each result's scale."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want), f"{name}: {len(got)} results against {len(want)}"
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    for i, (a, e) in enumerate(zip(got, want)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape and a.dtype == e.dtype, \
            f"{name}[{i}]: {a.dtype}{a.shape} against numpy's {e.dtype}{e.shape}"
        atol = rtol * max(1.0, float(np.abs(e).max()))
        assert np.allclose(a, e, rtol=rtol, atol=atol), \
            f"{name}[{i}]: max |diff| {np.abs(a - e).max():.3g} (atol {atol:.3g})"


def calls_per_sample(fn):
    """How many calls make one sample last about SAMPLE_SECONDS."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 >= SAMPLE_SECONDS or number >= 1 << 20:
            return number
        number *= 2


def busy_elsewhere():
    """A meter of CPU time spent outside this process (and its children).

    Returns a function giving, since the meter started, the fraction of all
    CPUs that other processes kept busy.  On a shared machine this says
    which rows were timed while something else was running.
    """
    def busy_seconds():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]  # everything but idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")

    def own_seconds():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    start = time.perf_counter(), busy_seconds(), own_seconds()

    def fraction():
        wall = time.perf_counter() - start[0]
        other = (busy_seconds() - start[1]) - (own_seconds() - start[2])
        return max(0.0, other) / (wall * os.cpu_count())
    return fraction


def time_side_by_side(fns, repeat, contexts=None):
    """Per-call times of each fn, samples interleaved: an array (repeat, len(fns)),
    and the fraction of the CPUs that other processes used meanwhile.

    contexts[j], if given, is entered around each sample of fns[j].
    """
    contexts = contexts or [nullcontext] * len(fns)
    numbers = []
    for fn, context in zip(fns, contexts):
        with context():
            numbers.append(calls_per_sample(fn))
    times = np.empty((repeat, len(fns)))
    elsewhere = busy_elsewhere()
    for r in range(repeat):
        # Rotate the order each round, so that no fn always runs right after
        # the same other one and inherits its leftovers (caches, spinning threads).
        for j in np.roll(np.arange(len(fns)), -r):
            fn, number = fns[j], numbers[j]
            with contexts[j]():
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                times[r, j] = (time.perf_counter() - t0) / number
    return times, elsewhere()


def fmt_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(ratios):
    """Median of per-round ratios, and its interquartile range."""
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    return f"{q50:.2f}", f"{q25:.2f}-{q75:.2f}"


# ---------------------------------------------------------------- first calls

def first_calls(dtype):
    """Seconds taken by the first call of each kernel (compile or cache load + one run).

    A kernel compiles once per dtype and memory layout, not per activation
    code, so only its first case is timed; matmul_loop once per layout.
    """
    out, seen = [], set()
    for case in kernel_cases(make_inputs(dtype)):
        if case.kernel and case.kernel not in seen:
            seen.add(case.kernel)
            t0 = time.perf_counter()
            case.kernel_fn()
            out.append((case.kernel, time.perf_counter() - t0))
    for _, a, b in matmul_cases(dtype):
        key = f"matmul_loop ({layout(a, b)})"
        if key not in seen:
            seen.add(key)
            t0 = time.perf_counter()
            kernels.matmul_loop(a, b)
            out.append((key, time.perf_counter() - t0))
    return out


def first_calls_in_fresh_process(dtype):
    """Run `first_calls` in a new interpreter sharing this process's Numba cache."""
    cmd = [sys.executable, os.path.abspath(__file__), "--first-calls-only", "--dtype", dtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        raise RuntimeError(f"first calls failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def kind(name):
    """How a kernel runs: Numba (threaded or not), or numpy and the Numba helpers it calls."""
    kernel = getattr(kernels, name.split()[0])
    if hasattr(kernel, "py_func"):
        return "numba, threaded" if kernel.targetoptions.get("parallel") else "numba"
    helpers = [n for n in kernel.__code__.co_names if hasattr(getattr(kernels, n, None), "py_func")]
    return "numpy" + "".join(f" + numba {n}" for n in helpers)


# ---------------------------------------------------------------- the machine

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, "
                f"model {info.get('model', '?')}, {info.get('cpu MHz', '?')} MHz)")
    except OSError:
        return platform.processor() or "unknown"


def openblas():
    """numpy's OpenBLAS as (corename, get_num_threads, set_num_threads), or None.

    Found through ctypes in the libraries this process has loaded, under
    the names of plain and of scipy-openblas (prefixed, 64-bit) builds.
    """
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", ""):
                    try:
                        fns = [getattr(lib, f"{prefix}{name}{suffix}") for name in
                               ("get_corename", "get_num_threads", "set_num_threads")]
                    except AttributeError:
                        continue
                    fns[0].restype = ctypes.c_char_p
                    fns[2].argtypes = [ctypes.c_int]
                    return fns
    except OSError:
        pass
    return None


@contextmanager
def blas_threads(n):
    """Within this block numpy's OpenBLAS runs n threads."""
    _, get_threads, set_threads = openblas()
    before = get_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)


def blas_description():
    """numpy's BLAS from np.show_config, and, for OpenBLAS, its runtime core and threads."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no mode="dicts"
        text = "unknown (see np.show_config())"
    if openblas() is None:
        return text
    corename, get_threads, _ = openblas()
    return f"{text}; runtime core {corename().decode()}, {get_threads()} threads"


def threading_layer():
    """Numba's threading layer, known once a parallel kernel has run."""
    try:
        return numba.threading_layer()
    except ValueError:
        return "not started (no parallel kernel has run)"


def source_version():
    """The commit checked out, whether kernels.py differs from it, and its hash."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(kernels.__file__)))
    with open(kernels.__file__, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]

    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True)
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return f"minivae/kernels.py sha256 {digest}"
    edited = git("diff", "--quiet", "HEAD", "--", "minivae/kernels.py").returncode != 0
    return (f"HEAD {head.stdout.strip()}" + (", minivae/kernels.py edited since" if edited else "")
            + f"; kernels.py sha256 {digest}")


def describe_machine(dtype, repeat):
    kernels.matmul_loop(np.ones((2, 2), dtype), np.ones((2, 2), dtype))  # parallel: starts threads
    lines = [
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- CPU: {cpu_model()}; {os.cpu_count()} logical CPUs, "
        f"{len(os.sched_getaffinity(0))} usable",
        f"- python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}",
        f"- numba threading layer: {threading_layer()}, {numba.get_num_threads()} threads; "
        f"SVML (vectorized exp/tanh/log) {'on' if numba.config.USING_SVML else 'off'}",
        f"- numpy BLAS: {blas_description()}",
        f"- minivae source: {source_version()}",
        f"- dtype {dtype}, {repeat} interleaved samples per timing, "
        f"each sample >= {SAMPLE_SECONDS * 1e3:g} ms of repeated calls",
        f"- load average at start: {os.getloadavg()[0]:.2f}; 'busy elsewhere' = share of "
        f"all CPUs used by other processes while that row was timed",
    ]
    print("\n".join(lines))


# ---------------------------------------------------------------- report

def print_against_numpy(cases, dtype, repeat, label):
    print(f"| case | shape | {label} | numpy | ratio | ratio IQR | busy elsewhere |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for case in cases:
        check(case.name, case.kernel_fn(), case.numpy_fn(), dtype)
        t, other = time_side_by_side([case.kernel_fn, case.numpy_fn], repeat)
        ratio, iqr = fmt_ratio(t[:, 0] / t[:, 1])
        k_med, n_med = np.median(t, axis=0)
        shape = "x".join(map(str, case.shape))
        print(f"| {case.name} | {shape} | {fmt_time(k_med)} | {fmt_time(n_med)} | {ratio} "
              f"| {iqr} | {other:.0%} |")


def print_matmuls(dtype, repeat):
    """Loop, fast path and numpy on each product; BLAS on all threads and on one.

    The loop is timed in a block of its own, not interleaved with BLAS:
    Numba's OpenMP threads and OpenBLAS's threads each spin for a while
    after a call, and on two cores each pool then stalls the other.
    """
    columns, contexts = ["loop", "fast path", "numpy"], [nullcontext] * 2
    if openblas() is not None:  # numpy again on one BLAS thread, for a shared machine
        columns.append("numpy 1 thread")
        contexts.append(lambda: blas_threads(1))
    print("| product | n x k @ k x m | layout | " + " | ".join(columns) + " | "
          + " | ".join(f"{c} GFLOP/s" for c in columns) + " | loop/numpy | busy elsewhere |")
    print("|---|---|---|" + "---:|" * (2 * len(columns) + 2))
    for what, a, b in matmul_cases(dtype):
        (n, k), m = a.shape, b.shape[1]
        want = a @ b
        check(f"matmul_loop {n}x{k}x{m}", kernels.matmul_loop(a, b), want, dtype)
        check(f"matmul {n}x{k}x{m}", kernels.matmul(a, b), want, dtype)
        blas = [lambda: kernels.matmul(a, b)] + [lambda: a @ b] * (len(columns) - 2)
        time.sleep(SETTLE_SECONDS)
        t_loop, other_loop = time_side_by_side([lambda: kernels.matmul_loop(a, b)], repeat)
        time.sleep(SETTLE_SECONDS)
        t_blas, other_blas = time_side_by_side(blas, repeat, contexts)
        med = np.concatenate([np.median(t_loop, axis=0), np.median(t_blas, axis=0)])
        gflops = 2 * n * k * m / med / 1e9
        print(f"| {what} | {n}x{k} @ {k}x{m} | {layout(a, b)} | "
              + " | ".join(fmt_time(s) for s in med) + " | "
              + " | ".join(f"{f:.1f}" for f in gflops)
              + f" | {med[0] / med[2]:.2f} | {max(other_loop, other_blas):.0%} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="timing samples per case")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=None,
                        help="Numba threads (default: all, NUMBA_NUM_THREADS)")
    parser.add_argument("--first-calls-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    if args.threads:
        numba.set_num_threads(args.threads)
    if args.first_calls_only:
        print(json.dumps(first_calls(dtype)))
        return

    # First: no kernel may run in this process before the compile measurement.
    compiled = first_calls_in_fresh_process(args.dtype)
    loaded = first_calls_in_fresh_process(args.dtype)
    print("# Kernels (bench_kernels.py)\n")
    describe_machine(args.dtype, args.repeat)

    print("\n## First call of each kernel (one-time)\n")
    print("Compile = first process, empty Numba cache; load = second process, cache on "
          "disk; both include one run of the kernel.  Numba helpers compile with the first "
          "kernel that calls them, and the first threaded kernel starts the thread pool.\n")
    print("| kernel | runs as | compile | load from cache |\n|---|---|---:|---:|")
    for (name, t_compile), (_, t_load) in zip(compiled, loaded):
        print(f"| {name} | {kind(name)} | {fmt_time(t_compile)} | {fmt_time(t_load)} |")
    print(f"| **total** | | {fmt_time(sum(t for _, t in compiled))} | "
          f"{fmt_time(sum(t for _, t in loaded))} |")

    d = make_inputs(dtype)
    cases = kernel_cases(d)
    print("\n## Kernels against numpy\n")
    print("Ratio = kernel time / numpy time, the median of per-round ratios (IQR beside "
          "it); above 1 the kernel is slower.  '(+ ...)' names a second result the kernel "
          "returns for its derivative; numpy computes it too.\n")
    check_optimizer_steps(d, dtype)
    print_against_numpy(cases, dtype, args.repeat, "kernel")

    print("\n## Matmul: matmul_loop, fast path (kernels.matmul), numpy @\n")
    print("GFLOP/s = 2 n k m / median time.  Loop/numpy = ratio of median times against "
          "numpy on all BLAS threads (above 1: the loop is slower).  The loop is timed in its "
          "own block, then the BLAS columns interleaved: Numba's and OpenBLAS's thread pools "
          "stall each other when alternated on two cores.\n")
    print_matmuls(dtype, args.repeat)

    print("\n## Fused linear layer, forward + backward\n")
    print("minivae: Tensors, linear(x, W, b, 'tanh'), backward(g) -> grads of x, W, b.  "
          "numpy: tanh(x @ W + b), g * (1 - h^2), g_pre @ W.T, x.T @ g_pre, sum.\n")
    print_against_numpy(linear_cases(dtype), dtype, args.repeat, "minivae")

    missing = uncovered_kernels(cases)
    print("\nKernels not benchmarked: " + (", ".join(missing) if missing else "none"))


if __name__ == "__main__":
    try:
        main()
    finally:
        if _OWN_CACHE:
            shutil.rmtree(os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)
