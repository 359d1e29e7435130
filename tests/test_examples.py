"""Every script in examples/ runs, in a tiny configuration, and prints what it promises.

Each example has one entry in EXAMPLES: its tiny command-line flags and the
check of its output.  A test fails if a script in examples/ has no entry, so
no example can rot untested.
"""
import ast
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_frey import mat_file, random_faces

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
NUMBER = r"-?\d+\.\d+(?:e[-+]\d+)?"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_train_mnist(stdout, out):
    elbos = [float(v) for v in re.findall(rf"^epoch 1  test ELBO ({NUMBER}) nats", stdout, re.M)]
    assert len(elbos) == 1, stdout
    assert -1000 < elbos[0] < 0, f"a test ELBO of {elbos[0]} nats per image is implausible"


def check_manifold_2d(stdout, out):
    assert re.search(rf"^epoch 1  test ELBO {NUMBER} nats", stdout, re.M), stdout
    for name in ("manifold.png", "latent_scatter.png"):
        path = out / name
        assert path.is_file(), f"{name} was not written; output was:\n{stdout}"
        assert path.read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG file"


def check_gradient_check(stdout, out):
    assert stdout.count("analytic") == 2 and stdout.count("finite diff") == 2, stdout
    rows = re.findall(rf"^  (?:en|de)coder\.\S+ +\(.*?\) +({NUMBER}) +({NUMBER}) +({NUMBER})$",
                      stdout, re.M)
    assert len(rows) == 2 * 2, f"expected 2 table rows per estimator (--rows 2):\n{stdout}"
    for analytic, numeric, difference in rows:
        assert abs(float(analytic) - float(numeric)) < 1e-6 and float(difference) < 1e-6
    assert stdout.count("gradcheck passed") == 2, stdout


def check_estimators(stdout, out):
    for estimator in "AB":
        assert re.search(rf"estimator {estimator}: mean +{NUMBER} +standard error {NUMBER}",
                         stdout), stdout
    assert re.search(rf"A - B, same eps: {NUMBER} \+- {NUMBER}", stdout), stdout
    total = re.search(rf"all encoder +\d+ +({NUMBER}) +({NUMBER}) +({NUMBER})", stdout)
    assert total, stdout
    var_a, var_b, ratio = map(float, total.groups())
    assert var_a > 0 and var_b > 0
    assert ratio == pytest.approx(var_a / var_b, rel=0.01)
    assert re.search(r"Decoder \(theta\) gradients .* largest difference", stdout), stdout


def check_png(out, name, stdout):
    path = out / name
    assert path.is_file(), f"{name} was not written; output was:\n{stdout}"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG file"


def check_autoencoder(stdout, out):
    errors = [float(v) for v in re.findall(
        rf"^epoch 1  test reconstruction error ({NUMBER}) nats \(cross-entropy\) per image",
        stdout, re.M)]
    assert len(errors) == 1, stdout
    # predicting 1/2 for every pixel costs 784 log 2 = 543.4 nats
    assert 0 < errors[0] < 543.4, f"a test error of {errors[0]} nats is implausible"
    check_png(out, "reconstructions.png", stdout)


def check_sparse_autoencoder(stdout, out):
    runs = re.findall(rf"^lambda (\S+):  test reconstruction error ({NUMBER}) nats .*"
                      rf"mean \|z_k\| ({NUMBER}), mean \|\|w_k\|\| ({NUMBER})\n"
                      rf"  near zero:  \|z_k\| < 0.05: ({NUMBER})%   "
                      rf"\|z_k\| \|\|w_k\|\| < 0.1: ({NUMBER})%$", stdout, re.M)
    assert [lam for lam, *_ in runs] == ["0", "1"], stdout
    plain, sparse = [[float(v) for v in numbers] for _, *numbers in runs]
    for error, mean_z, mean_w, share, share_effect in (plain, sparse):
        assert error > 0 and mean_z > 0 and mean_w > 0
        assert 0 <= share <= 100 and 0 <= share_effect <= 100
    assert sparse[1] < plain[1], "the L1 penalty of eq. 19.4 did not shrink the codes"
    check_png(out, "codes.png", stdout)


def check_denoising_autoencoder(stdout, out):
    epoch = re.search(rf"^epoch 1  test error of y\(x~\) against x ({NUMBER}) nats per image "
                      rf"\(from clean x: ({NUMBER})\)$", stdout, re.M)
    assert epoch and all(float(v) > 0 for v in epoch.groups()), stdout
    pixels = re.search(rf"^pixels that differ from the clean image: x~ ({NUMBER})%, "
                       rf"y\(x~\) > 1/2 ({NUMBER})% \(masking noise nu = 0.5\)$", stdout, re.M)
    assert pixels, stdout
    corrupted, reconstructed = map(float, pixels.groups())
    # masking noise only turns pixels off: about half of the ~13 % that are on
    assert 2 < corrupted < 13 and 0 <= reconstructed <= 100, stdout
    check_png(out, "denoising.png", stdout)


def check_masked_autoencoder(stdout, out):
    epoch = re.search(rf"^epoch 1  test squared error on the masked pixels ({NUMBER}) per "
                      rf"image \(mean training image: ({NUMBER})\)$", stdout, re.M)
    assert epoch and all(float(v) > 0 for v in epoch.groups()), stdout
    check_png(out, "masked.png", stdout)


def check_pca_vs_linear_ae(stdout, out):
    epoch = re.search(rf"^epoch 1  test error: linear AE ({NUMBER}), PCA ({NUMBER}) \(sum of "
                      rf"squares per image\);  principal angles: median ({NUMBER}), largest "
                      rf"({NUMBER}) degrees$", stdout, re.M)
    assert epoch, stdout
    ae_error, pca_error, median, largest = map(float, epoch.groups())
    assert ae_error > 0 and pca_error > 0
    assert 0 <= median <= largest <= 90, f"principal angles lie in [0, 90] degrees:\n{stdout}"
    for name in ("components.png", "error_curve.png"):
        check_png(out, name, stdout)


def check_denoising_score(stdout, out):
    lines = re.findall(rf"^(before|after) training:  mean cosine similarity with grad log "
                       rf"p_sigma ({NUMBER}), median relative error ({NUMBER}), on the (\d+) "
                       rf"grid points where p_sigma > 1% of its maximum", stdout, re.M)
    assert [line[0] for line in lines] == ["before", "after"], stdout
    (before, _, points), (after, relative, _) = [map(float, line[1:]) for line in lines]
    assert -1 <= before <= 1 and -1 <= after <= 1 and relative > 0 and points > 0
    assert after > before, "training did not turn the field towards the score"
    check_png(out, "score_field.png", stdout)


def check_conditional_vae(stdout, out):
    elbos = [float(v) for v in re.findall(rf"^epoch 1  test ELBO ({NUMBER}) nats", stdout, re.M)]
    assert len(elbos) == 1 and -1000 < elbos[0] < 0, stdout
    log_px = re.search(rf"^log p\(x\|y\), K=100, first 500 test images: ({NUMBER}) nats$",
                       stdout, re.M)
    assert log_px and -1000 < float(log_px.group(1)) < 0, stdout
    both = re.search(rf"^test ELBO with the true label ({NUMBER}), with a wrong label "
                     rf"({NUMBER}) nats$", stdout, re.M)
    assert both and float(both.group(1)) == elbos[0], stdout
    check_png(out, "classes.png", stdout)


def check_active_units(stdout, out):
    epoch = re.search(r"^epoch 1  test ELBO -?\d+\.\d+ nats  active units (\d+) of 20$",
                      stdout, re.M)
    assert epoch, stdout
    rows = re.findall(rf"^  +(\d+) +({NUMBER}) +({NUMBER})(   inactive)?$", stdout, re.M)
    assert sorted(int(u) for u, *_ in rows) == list(range(20)), stdout
    activity = [float(a) for _, a, _, _ in rows]
    assert activity == sorted(activity, reverse=True), "the table is not sorted by A_u"
    assert sum(not inactive for *_, inactive in rows) == int(epoch.group(1))
    assert all(float(kl) >= 0 for _, _, kl, _ in rows), "a KL divergence is never negative"
    check_png(out, "activity.png", stdout)


def check_posterior_families(stdout, out):
    rows = re.findall(rf"^(\w+) +(location-scale|inverse CDF) +({NUMBER}) \(({NUMBER})\) \| "
                      rf"+({NUMBER}) +({NUMBER}) \(({NUMBER})\) \| +({NUMBER})$", stdout, re.M)
    assert [r[0] for r in rows] == ["gaussian", "laplace", "logistic"], stdout
    for _, _, *values in rows:
        mc_mu, se_mu, exact_mu, mc_b, se_b, exact_b = map(float, values)
        assert abs(mc_mu - exact_mu) < 5 * se_mu and abs(mc_b - exact_b) < 5 * se_b, stdout
    scores = re.findall(rf"^(gaussian|laplace|logistic) +({NUMBER}) +({NUMBER})$", stdout, re.M)
    assert [s[0] for s in scores] == ["gaussian", "laplace", "logistic"], stdout
    for _, bound, log_px in scores:
        assert math.isfinite(float(bound)) and float(bound) < float(log_px) + 1 < 1, stdout


def check_score_function(stdout, out):
    for title in ("at initialization", r"after 1 epoch\(s\) of training"):
        assert re.search(rf"^{title}\n  ELBO of the minibatch -\d+\.\d+ nats per image$",
                         stdout, re.M), stdout
    rows = re.findall(rf"^ +(\d+) +({NUMBER}) +({NUMBER}) +({NUMBER}) +({NUMBER}|-) +"
                      rf"({NUMBER}|-)$", stdout, re.M)
    assert [L for L, *_ in rows] == ["1", "3", "1", "3"], stdout
    for L, rp, sf, ratio, loo, loo_ratio in rows:
        assert float(rp) > 0 and float(ratio) == pytest.approx(float(sf) / float(rp), rel=0.01)
        assert float(ratio) > 1, "the score function's variance is the higher one"
        assert (loo == "-") == (L == "1"), "leave-one-out needs L >= 2 and is shown for it"
        if loo != "-":
            assert float(loo_ratio) == pytest.approx(float(loo) / float(rp), rel=0.01)
    check_png(out, "variance.png", stdout)


def check_amortization_gap(stdout, out):
    rows = re.findall(rf"^(log p\(x\)|local ELBO|encoder ELBO|approximation gap|amortization "
                      rf"gap) +({NUMBER}) \+- {NUMBER}  \({NUMBER}\)$", stdout, re.M)
    assert [name for name, _ in rows] == ["log p(x)", "local ELBO", "encoder ELBO",
                                          "approximation gap", "amortization gap"], stdout
    v = {name: float(value) for name, value in rows}
    assert -1000 < v["encoder ELBO"] < v["local ELBO"] < 0, stdout   # the local q climbs
    for gap, upper, lower in (("approximation gap", "log p(x)", "local ELBO"),
                              ("amortization gap", "local ELBO", "encoder ELBO")):
        assert abs(v[gap] - (v[upper] - v[lower])) < 0.011, stdout  # printed to 0.01
    assert re.search(r"^q\* was the better proposal for log p\(x\) on \d+ of 10 images$",
                     stdout, re.M), stdout
    check_png(out, "gaps.png", stdout)


def check_iwae_vs_elbo(stdout, out):
    rows = re.findall(rf"^(ELBO|IWAE, k=\d+) +({NUMBER}) +({NUMBER}) +({NUMBER}) +({NUMBER})$",
                      stdout, re.M)
    assert [r[0] for r in rows] == ["ELBO", "IWAE, k=5"], stdout
    for _, *values in rows:
        l1, l5, l50, log_px = map(float, values)
        assert -1000 < l1 < l50 < 0 and l5 < log_px + 1, stdout   # L_k rises with k
    assert re.search(rf"IWAE minus ELBO training: log p\(x\) [-+]{NUMBER[2:]} nats, "
                     rf"L_1 [-+]{NUMBER[2:]} nats", stdout), stdout


def check_kl_warmup(stdout, out):
    runs = stdout.split("warm-up over")
    assert len(runs) == 2, stdout
    epochs = [re.findall(rf"^ +(\d+) +({NUMBER}) +({NUMBER}) +({NUMBER})$", run, re.M)
              for run in runs]
    assert [len(e) for e in epochs] == [2, 2], stdout
    assert all(float(b) == 1 and o == e for _, b, o, e in epochs[0]), stdout   # beta = 1
    (_, beta, objective, elbo), (_, last, _, _) = epochs[1]
    assert float(beta) == 0.5 and float(last) == 1.0, stdout
    assert float(objective) > float(elbo), stdout   # beta < 1 adds back part of the KL
    assert len(re.findall(r"active units \d+ of 50", stdout)) == 2, stdout


def check_learned_variance(stdout, out):
    bound = re.search(rf"^D log 256 = ({NUMBER}) nats", stdout, re.M)
    assert bound and float(bound.group(1)) == 4347.4, stdout   # 784 log 256
    runs = re.findall(rf"^ *(output|pixel|scalar) variance, +(dequantized|scaled): test ELBO by "
                      rf"epoch ({NUMBER}) nats", stdout, re.M)
    assert [run[:2] for run in runs] == [("output", "dequantized"), ("pixel", "dequantized"),
                                         ("scalar", "dequantized"), ("output", "scaled")], stdout
    assert all(float(run[2]) < float(bound.group(1)) for run in runs), stdout
    bits = [float(b) for b in re.findall(rf"<= ({NUMBER}) bits/dim", stdout)]
    assert len(bits) == 3 and all(0 < b < 16 for b in bits), stdout


def check_mcem(stdout, out):
    epochs = re.findall(rf"^epoch +(\d+)  acceptance ({NUMBER})  step size ({NUMBER})  "
                        rf"log p\(x, z\) +({NUMBER})  test ELBO +({NUMBER}) nats$", stdout, re.M)
    assert [e[0] for e in epochs] == ["2"], stdout
    for _, acceptance, step_size, log_joint, bound in epochs:
        assert 0 <= float(acceptance) <= 1 and float(step_size) > 0
        assert -1000 < float(log_joint) < 0 and -1000 < float(bound) < 0
    log_px = re.search(rf"^log p\(x\), K=100, .* 100 test images: ({NUMBER}) nats$", stdout,
                       re.M)
    assert log_px and float(epochs[-1][4]) - 1 < float(log_px.group(1)) < 0, stdout


def check_wake_sleep(stdout, out):
    bounds = dict(re.findall(rf"^(AEVB|wake-sleep) +({NUMBER})$", stdout, re.M))
    assert bounds.keys() == {"AEVB", "wake-sleep"}, stdout
    assert all(-550 < float(b) < 0 for b in bounds.values()), stdout


def check_frey_face(stdout, out):
    assert re.search(rf"^epoch 1  test ELBO {NUMBER}", stdout, re.M), stdout
    check_png(out, "manifold.png", stdout)


# name -> (tiny flags, check(stdout, out_dir)); "{out}" is replaced by a temporary directory
EXAMPLES = {
    "train_mnist": (["--epochs", "1", "--train-images", "500"], check_train_mnist),
    "manifold_2d": (["--epochs", "1", "--train-images", "500", "--test-images", "200",
                     "--hidden", "50", "--out", "{out}"], check_manifold_2d),
    "gradient_check": (["--rows", "2"], check_gradient_check),
    "estimators": (["--epochs", "1", "--train-images", "500", "--draws", "20",
                    "--batch-size", "20"], check_estimators),
    "autoencoder": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                    check_autoencoder),
    "sparse_autoencoder": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                           check_sparse_autoencoder),
    "denoising_autoencoder": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                              check_denoising_autoencoder),
    "masked_autoencoder": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                           check_masked_autoencoder),
    "pca_vs_linear_ae": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                         check_pca_vs_linear_ae),
    "denoising_score": (["--epochs", "2", "--points", "2000", "--out", "{out}"],
                        check_denoising_score),
    "active_units": (["--epochs", "1", "--train-images", "500", "--test-images", "500",
                      "--out", "{out}"], check_active_units),
    "learned_variance": (["--epochs", "1", "--train-images", "500", "--test-images", "200"],
                         check_learned_variance),
    "iwae_vs_elbo": (["--epochs", "1", "--train-images", "500", "--test-images", "100"],
                     check_iwae_vs_elbo),
    "kl_warmup": (["--epochs", "2", "--warmup", "2", "--train-images", "500"], check_kl_warmup),
    "conditional_vae": (["--epochs", "1", "--train-images", "500", "--out", "{out}"],
                        check_conditional_vae),
    "score_function": (["--epochs", "1", "--train-images", "500", "--draws", "5", "--samples",
                        "1", "3", "--batch-size", "20", "--out", "{out}"], check_score_function),
    "amortization_gap": (["--epochs", "1", "--train-images", "500", "--images", "10",
                          "--steps", "20", "--k", "100", "--out", "{out}"],
                         check_amortization_gap),
    "posterior_families": (["--epochs", "1", "--train-images", "500", "--test-images", "100"],
                           check_posterior_families),
    "wake_sleep": (["--epochs", "1", "--train-images", "500", "--test-images", "200",
                    "--hidden", "50"], check_wake_sleep),
    "mcem": (["--epochs", "2", "--train-images", "200", "--test-images", "100"], check_mcem),
    # {frey}: a synthetic frey_rawface.mat written for the test (tests/test_frey.py)
    "frey_face": (["{frey}", "--epochs", "1", "--hidden", "20", "--batch-size", "25",
                   "--out", "{out}"], check_frey_face),
}


def example_scripts():
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.py"))


def test_every_example_has_an_entry_in_the_table():
    scripts = set(example_scripts())
    assert scripts, f"no examples found in {EXAMPLES_DIR}"
    assert scripts - set(EXAMPLES) == set(), "examples without a test entry in EXAMPLES"
    assert set(EXAMPLES) - scripts == set(), "EXAMPLES names scripts that do not exist"


@pytest.mark.parametrize("name", example_scripts())
def test_example_docstring_says_what_it_shows_and_how_to_run_it(name):
    docstring = ast.get_docstring(ast.parse((EXAMPLES_DIR / f"{name}.py").read_text()))
    assert docstring, f"examples/{name}.py has no header docstring"
    assert "Shows:" in docstring and f"python examples/{name}.py" in docstring


def run_python(args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_in_tiny_form_and_prints_its_results(name, tmp_path):
    flags, check = EXAMPLES[name]
    out, frey = tmp_path / "out", tmp_path / "frey_rawface.mat"
    if "{frey}" in flags:
        mat_file(frey, random_faces())
    result = run_python([str(EXAMPLES_DIR / f"{name}.py"), *[
        flag.replace("{out}", str(out)).replace("{frey}", str(frey)) for flag in flags]],
        tmp_path)
    assert result.returncode == 0, (f"examples/{name}.py exited with {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    check(result.stdout, out)


# The ELBO plus a term that depends on a parameter outside the graph: backward
# never sees it, finite differences do, so every gradient check must fail.
BREAK_THE_GRADIENT = """
import runpy, sys
import numpy as np
import minivae.objectives
from minivae.autograd import Tensor
elbo = minivae.objectives.elbo
minivae.objectives.elbo = lambda model, x, eps, estimator="B": elbo(
    model, x, eps, estimator) + Tensor(np.sum(model.params["decoder.logits.W"].data))
sys.argv = ["gradient_check.py", "--rows", "1"]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_gradient_check_exits_nonzero_when_a_gradient_is_wrong(tmp_path):
    script = str(EXAMPLES_DIR / "gradient_check.py")
    result = run_python(["-c", BREAK_THE_GRADIENT.format(script=script)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("gradcheck FAILED") == 2, result.stdout
    assert "gradcheck passed" not in result.stdout
