"""The thread policy changes where matmuls and updates run, never what they compute."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from minivae import blas, sparse, threads, updates
from minivae.config import Config
from minivae.train import train
from tests.conftest import run_cli

# (n, k, m) of a training step's products on the paper's model: the encoder's
# 784 -> 500 layer, the 500 -> 20 heads, the decoder's 20 -> 500 and 500 -> 784.
STEP_SHAPES = [(100, 784, 500), (100, 500, 20), (100, 20, 500), (100, 500, 784)]
BLAS = blas.OpenBLAS.find()
needs_openblas = pytest.mark.skipif(BLAS is None, reason="numpy's BLAS is not OpenBLAS")
needs_two_cores = pytest.mark.skipif(
    threads.Policy("parallel", BLAS).cores() < 2,
    reason="one core for the halves here (OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS or the "
           "threading layer): nothing to compare the one-core twins with")
TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-3), np.float64: dict(rtol=1e-12, atol=1e-10)}


@pytest.fixture
def restore_policy():
    """Leaves the process's policy as the test found it."""
    before = threads.policy().name
    yield threads.policy()
    threads.set_policy(before)


def step_products(n, k, m, dtype, seed=0):
    """The forward x W, the backward x^T g (dW) and g W^T (dx), as ops passes them
    (transposes as views)."""
    rng = np.random.default_rng(seed)
    x, W, g = (rng.standard_normal(s).astype(dtype) for s in ((n, k), (k, m), (n, m)))
    return [(x, W), (x.T, g), (g, W.T)]


def on_cores(policy_name, a, b):
    threads.set_policy(policy_name)
    return threads.matmul(a, b)


@needs_openblas
@needs_two_cores
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, k, m", STEP_SHAPES)
def test_a_step_s_products_are_bit_identical_on_one_core_or_two(n, k, m, dtype,
                                                                restore_policy):
    threads.set_policy("parallel")   # whatever MINIVAE_THREADS the suite runs under
    for a, b in step_products(n, k, m, dtype):
        # the 784 <-> 500 layers' products are split, the 20-unit ones are one call
        assert threads.policy().splits(a, b) == (k * m >= 784 * 20 * 10)
        serial, parallel = on_cores("serial", a, b), on_cores("parallel", a, b)
        assert threads.spread()
        assert parallel.dtype == dtype
        np.testing.assert_array_equal(parallel, serial)
        np.testing.assert_allclose(serial, a @ b, **TOLERANCE[dtype])


def operand(rng, shape, dtype, how):
    """An array of `shape` stored as `how` says: row-major, the transpose of a
    row-major array, inside a wider array (leading dimension > columns), or
    with a step in both dimensions (neither layout: split_matmul copies it)."""
    rows, cols = shape
    if how == "rows":
        return rng.standard_normal(shape).astype(dtype)
    if how == "transposed":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    if how == "wider":
        return rng.standard_normal((rows, cols + 3)).astype(dtype)[:, 1:cols + 1]
    return rng.standard_normal((2 * rows, 2 * cols)).astype(dtype)[::2, ::2]


LAYOUTS = ("rows", "transposed", "wider", "strided")


@needs_openblas
@given(n=st.integers(2, 70), k=st.integers(1, 70), m=st.integers(2, 70),
       layout_a=st.sampled_from(LAYOUTS), layout_b=st.sampled_from(LAYOUTS),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_split_matmul_is_the_product_for_any_shape_and_layout_on_one_core_or_two(
        n, k, m, layout_a, layout_b, dtype, seed):
    """Halves by rows (n >= m) and by columns, odd sizes, every way of storing
    either operand: the same product, and the same bits whether the halves
    ran at once (the prange kernel) or one after the other (its twin)."""
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (n, k), dtype, layout_a), operand(rng, (k, m), dtype, layout_b)
    results = [blas.split_matmul(BLAS, a, b, spread) for spread in (False, True)]
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_allclose(results[0], a.astype(np.float64) @ b.astype(np.float64),
                               **TOLERANCE[dtype])
    assert results[0].dtype == dtype and results[0].shape == (n, m)


@needs_openblas
def test_a_product_of_mismatched_or_unusual_arrays_is_numpy_s_own(restore_policy):
    threads.set_policy("parallel")
    big = np.ones((100, 784), np.float32)
    for other in (np.ones((500, 500), np.float32), np.ones((1000, 500), np.float32)):
        with pytest.raises(ValueError, match="mismatch"):   # numpy's message, not a crash
            threads.matmul(big, other)
        with pytest.raises(ValueError, match="split_matmul: expected"):
            blas.split_matmul(BLAS, big, other, True)
    class Tagged(np.ndarray):   # a subclass: numpy's product keeps its type, a split would not
        pass
    product = threads.matmul(np.ones((100, 784), np.float32).view(Tagged),
                             np.ones((784, 500), np.float32))
    assert type(product) is Tagged and product[0, 0] == 784
    unaligned = np.frombuffer(b"\0" + np.ones(100 * 784, np.float32).tobytes(), np.float32,
                              offset=1).reshape(100, 784)
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(threads.matmul(unaligned, np.ones((784, 500), np.float32)),
                                  np.full((100, 500), 784, np.float32))


def test_which_products_are_split_depends_on_shapes_and_dtypes_only(restore_policy):
    threads.set_policy("parallel")
    policy = threads.policy()
    x, W, g = (np.ones(s, np.float32) for s in ((100, 784), (784, 500), (100, 500)))
    assert policy.splits(x, W) and policy.splits(x.T, g) and policy.splits(g, W.T)
    assert not policy.splits(np.ones((100, 500), np.float32), np.ones((500, 20), np.float32))
    assert not policy.splits(x, W.astype(np.float64))          # mixed dtypes: numpy's rules
    assert not policy.splits(x.astype(np.int64), W.astype(np.int64))
    assert not policy.splits(np.ones((1, 5000), np.float32), np.ones((5000, 5000), np.float32))
    threads.set_policy("serial")
    assert policy.splits(x, W)
    threads.set_policy("openblas")
    assert not policy.splits(x, W)


@pytest.mark.parametrize("update, slots, hyper", [
    (updates.adam_update, 2, (1e-3, 0.9, 0.999, 1e-8, 7, 1e-4, 0.5)),
    (updates.adagrad_update, 1, (0.02, 1e-8, 1e-4, 0.5)),
    (updates.sgd_update, 1, (0.01, 0.9, 1e-4, 0.5))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_optimizer_updates_are_bit_identical_on_one_core_or_two(update, slots, hyper, dtype,
                                                                  monkeypatch):
    rng = np.random.default_rng(1)
    assert 513 * 77 >= updates.SPREAD_ELEMENTS   # large enough for the prange loop
    start = [rng.standard_normal((513, 77)).astype(dtype) for _ in range(2)]
    start += [rng.random((513, 77)).astype(dtype) for _ in range(slots)]  # v and G are >= 0
    results = []
    for spread in (False, True):   # the one-core twin, then the prange loop
        monkeypatch.setattr(threads, "spread", lambda: spread)
        arrays = [x.copy() for x in start]
        for _ in range(3):
            update(*arrays, *hyper)
        results.append(arrays)
    for i, (one, two, before) in enumerate(zip(*results, start)):
        assert i == 1 or not np.array_equal(one, before)   # theta and the state moved; g did not
        np.testing.assert_array_equal(two, one)


@given(n=st.integers(1, 40), k=st.integers(1, 80), m=st.integers(1, 80),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 32 - 1))
def test_the_zero_skipping_product_is_bit_identical_on_one_core_or_two(n, k, m, dtype, seed):
    rng = np.random.default_rng(seed)
    a = np.where(rng.random((n, k)) < 0.13, rng.standard_normal((n, k)), 0.0).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    np.testing.assert_array_equal(sparse._skipping_rows(a, b, blas.PIECES),
                                  sparse._skipping_rows_one_core(a, b, blas.PIECES))


@given(size=st.integers(0, 3 * (1 << 15)), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_the_gradient_norm_is_bit_identical_on_one_core_or_two(size, dtype, seed):
    g = np.random.default_rng(seed).standard_normal(size).astype(dtype)
    one = updates._sum_of_squares_one_core(g, blas.PIECES)
    assert updates._sum_of_squares(g, blas.PIECES) == one   # the same pieces, the same sums


@needs_openblas
@needs_two_cores
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_trains_on_one_core_with_the_same_numbers(restore_policy):
    """GNU OpenMP does not survive a fork (Numba ends a child that enters a
    parallel loop): after a parent ran both kinds of parallel loop, its
    forked child multiplies and updates on one core, with the same result."""
    threads.set_policy("parallel")
    assert threads.spread()   # the parent runs Numba's threads before it forks
    a, b = step_products(100, 784, 500, np.float32)[0]
    theta, g, G = (np.full(1 << 16, v, np.float32) for v in (1.0, 0.5, 0.25))  # spread
    expected = threads.matmul(a, b)
    updates.adagrad_update(theta.copy(), g, G.copy(), 0.02, 1e-8, 0.0, 1.0)
    pid = os.fork()
    if pid == 0:   # the child: exit 0 only if both finished and are the same
        same = np.array_equal(threads.matmul(a, b), expected) and not threads.spread()
        updates.adagrad_update(theta, g, G, 0.02, 1e-8, 0.0, 1.0)
        os._exit(0 if same and theta[0] < 1.0 else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the child never finished")


@needs_openblas
def test_the_split_policies_run_openblas_on_one_thread_and_openblas_restores_its_own(
        restore_policy):
    for name in ("adaptive", "parallel", "serial"):
        threads.set_policy(name)
        assert BLAS.threads() == 1
    threads.set_policy("openblas")
    assert BLAS.threads() == BLAS.default_threads


def test_an_unknown_policy_is_a_value_error(restore_policy):
    with pytest.raises(ValueError, match="thread policy"):
        threads.set_policy("fast")


def test_without_openblas_every_product_is_a_plain_matmul():
    policy = threads.Policy("adaptive", blas=None)
    for a, b in step_products(100, 784, 500, np.float32):
        assert not policy.splits(a, b)
        np.testing.assert_array_equal(policy.matmul(a, b), a @ b)
    policy.tick()


def test_without_proc_stat_adaptive_stays_parallel(monkeypatch):
    def no_proc_stat():
        raise OSError("no /proc/stat")
    monkeypatch.setattr(threads.OtherLoad, "_read", staticmethod(no_proc_stat))
    policy = threads.Policy("adaptive", blas=None)
    policy.checked = -np.inf   # a look is due
    policy.tick()
    assert policy.parallel and policy.load is None


class Competitor:
    """OtherLoad's stand-in: other processes keep `cpus` CPUs busy."""

    def __init__(self, cpus):
        self.value = cpus

    def cpus(self):
        return self.value

    def restart(self):
        pass


def test_adaptive_goes_serial_while_another_process_holds_a_needed_core_and_back_after(
        monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    policy = threads.Policy("adaptive", blas=None)
    policy.load = Competitor(1.0)
    for load, parallel in ((1.0, False), (0.3, False), (0.1, True), (0.3, True), (0.9, False)):
        policy.load.value, policy.checked = load, -np.inf
        policy.tick()
        assert policy.parallel == parallel, (load, parallel)


def trained_state(data_dir, out):
    """Parameters and optimizer state after two epochs of a small float32 VAE
    whose encoder and decoder products are big enough to be split."""
    config = Config.from_flags(hidden=(500,), latent=20, epochs=2, batch_size=100,
                               data=str(data_dir))
    train(config, out, progress=False, log=lambda *a: None, k=1)
    with np.load(out / "checkpoint.npz") as saved:
        return {key: saved[key] for key in saved.files if key.startswith(("param/", "optim/"))}


@needs_openblas
@needs_two_cores
def test_a_run_switching_cores_every_step_equals_one_that_never_switches_bit_for_bit(
        data_dir, tmp_path, monkeypatch, restore_policy):
    threads.set_policy("parallel")
    steady = trained_state(data_dir, tmp_path / "steady")
    used = []

    def flip():   # the test hook: serial after a parallel step, parallel after a serial one
        used.append("serial" if threads.policy().parallel else "parallel")
        threads.set_policy(used[-1])
    monkeypatch.setattr(threads, "tick", flip)
    switching = trained_state(data_dir, tmp_path / "switching")
    assert used.count("serial") >= 2 and used.count("parallel") >= 2, used
    assert steady.keys() == switching.keys() and any(k.startswith("param/") for k in steady)
    for key, array in steady.items():
        np.testing.assert_array_equal(switching[key], array, err_msg=key)


def test_without_openmp_or_tbb_numba_s_threads_are_not_used(monkeypatch):
    """Numba's fallback workqueue layer is slower on two cores than its
    loops' one-core twins: without OpenMP or TBB, everything runs on one."""
    monkeypatch.setattr(threads, "native_threads", lambda: False)
    policy = threads.Policy("parallel", blas=None)
    assert policy.cores() == 1 and not policy.spread()


@pytest.mark.parametrize("layer", ["workqueue", "forksafe"])
def test_where_numba_would_run_its_workqueue_layer_minivae_stays_on_one_core(layer):
    """NUMBA_THREADING_LAYER=workqueue, or forksafe where TBB is not installed
    (GNU OpenMP is not fork-safe), leaves Numba its workqueue layer: minivae
    then runs the one-core twins, in a fresh process that asks Numba."""
    script = ("import numba; from minivae import threads; t = threads.native_threads(); "
              "print(t, numba.threading_layer(), threads.Policy('parallel', None).spread())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_THREADING_LAYER": layer,
                               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    native, used, spread = done.stdout.split()
    assert (native == "True") == (used in ("tbb", "omp")) and spread == native
    if layer == "workqueue":
        assert (native, used) == ("False", "workqueue")


def test_a_bad_minivae_threads_is_a_usage_error_before_anything_is_written(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIVAE_THREADS", "fast")
    code, out, err = run_cli(["train", "--epochs", "1", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and not (tmp_path / "run").exists()
    assert err.strip().splitlines() == [
        "minivae train: error: MINIVAE_THREADS=fast: expected one of adaptive, parallel, "
        "serial, openblas"]
