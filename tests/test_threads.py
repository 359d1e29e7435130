"""The thread policy changes where matmuls run, never what they compute."""
import os
import signal
import time

import numpy as np
import pytest

from minivae import threads
from minivae.config import Config
from minivae.train import train

# (n, k, m) of a training step's products on the paper's model: the encoder's
# 784 -> 500 layer, the 500 -> 20 heads, the decoder's 20 -> 500 and 500 -> 784.
STEP_SHAPES = [(100, 784, 500), (100, 500, 20), (100, 20, 500), (100, 500, 784)]
BLAS = threads.OpenBLAS.find()
needs_openblas = pytest.mark.skipif(BLAS is None, reason="numpy's BLAS is not OpenBLAS")


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


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, k, m", STEP_SHAPES)
def test_a_step_s_products_are_bit_identical_on_one_core_or_two(n, k, m, dtype,
                                                                restore_policy):
    for a, b in step_products(n, k, m, dtype):
        threads.set_policy("serial")
        serial = threads.matmul(a, b)
        threads.set_policy("parallel")
        parallel = threads.matmul(a, b)
        assert parallel.dtype == dtype
        np.testing.assert_array_equal(parallel, serial)
        np.testing.assert_allclose(serial, a @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-3 if dtype == np.float32 else 1e-10)


@needs_openblas
def test_the_split_policies_run_openblas_on_one_thread_and_openblas_restores_its_own(
        restore_policy):
    for name in ("adaptive", "parallel", "serial"):
        threads.set_policy(name)
        assert BLAS.threads() == 1
    threads.set_policy("openblas")
    assert BLAS.threads() == BLAS.default_threads


@needs_openblas
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_parallel_products_on_threads_of_its_own(restore_policy):
    threads.set_policy("parallel")
    a, b = step_products(100, 784, 500, np.float32)[0]
    expected = threads.matmul(a, b)   # the parent's worker thread exists now
    pid = os.fork()
    if pid == 0:   # the child: exit 0 only if the product finished and is the same
        os._exit(0 if np.array_equal(threads.matmul(a, b), expected) else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the child's product never finished")


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
