"""The autoencoder family of Bishop's ch. 19.1 beside the VAE: each loss's
gradient against finite differences, exact resume for every model, the
flags that apply (and refuse what does not), and the book's claim that a
linear autoencoder learns PCA's principal subspace."""
import json

import numpy as np
import pytest

from minivae import ops
from minivae.algorithms import FitPCA, GradientAscent
from minivae.autograd import Tensor
from minivae.checkpoint import load_checkpoint
from minivae.cli import main
from minivae.config import Config
from minivae.corruptions import GaussianNoise, MaskingNoise, patch_mask
from minivae.data import intensities, load_mnist, minibatch_indices
from minivae.evaluate import reconstruction_error
from minivae.gradcheck import gradcheck
from minivae.models import MODELS
from minivae.objectives import MaskedReconstruction, Reconstruction
from minivae.optim import Adam
from minivae.train import train

FAMILY = [m for m in MODELS if not MODELS[m].has_prior]


def small(name, x_dim=16, latent=3, decoder=None, seed=0):
    cls = MODELS[name]
    fields = {"hidden": (5,), "latent": latent, "decoder": decoder, "activation": "tanh",
              "init": "normal"}
    return cls(x_dim=x_dim, dtype=np.float64, rng=np.random.default_rng(seed),
               **{k: v for k, v in fields.items() if k in cls.options})


# ---------------------------------------------------------------- gradients

OBJECTIVES = {
    "ae": Reconstruction(),
    "linear-ae": Reconstruction(),
    "sparse-ae": Reconstruction(sparsity=0.7),
    "denoising-ae": Reconstruction(corruption=MaskingNoise(0.3)),
    "denoising-ae-gaussian": Reconstruction(corruption=GaussianNoise(0.2)),
    "masked-ae": MaskedReconstruction((4, 4), patch=2, ratio=0.5),
}


# every objective with each likelihood its model can take
CASES = [(kind, decoder) for kind in sorted(OBJECTIVES) for decoder in ("bernoulli", "squared")
         if "decoder" in MODELS[kind.replace("-gaussian", "")].options or decoder == "squared"]


@pytest.mark.parametrize("kind, decoder", CASES)
def test_each_autoencoders_loss_has_the_gradient_of_finite_differences(kind, decoder):
    name = kind.replace("-gaussian", "")
    model = small(name, decoder=decoder if "decoder" in MODELS[name].options else None)
    x = (np.random.default_rng(1).random((4, 16)) > 0.5).astype(np.float64)
    names = list(model.params)

    def loss(*tensors):
        model.params = dict(zip(names, tensors))
        rng = np.random.default_rng(2)     # the same corruption or mask at every call
        return -OBJECTIVES[kind](model, x, rng).mean()
    gradcheck(loss, [t.data for _, t in model.named_parameters()])


def test_the_subgradient_of_abs_is_zero_at_zero_and_the_sign_elsewhere():
    x = Tensor(np.array([-2.0, 0.0, 3.0]), requires_grad=True)
    ops.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])


def test_the_sparsity_penalty_shrinks_codes_towards_zero():
    """The same autoencoder trained with and without lambda sum |z|: the penalty
    leaves more of the code near zero and shrinks it overall.  Measured on the
    recording machine: 0 % of |z_k| < 0.05 without it, 10.7 % with lambda = 2."""
    images = load_mnist().train_images[:2000]
    fractions = {}
    for sparsity in (0.0, 2.0):
        model = MODELS["ae"](x_dim=784, hidden=(64,), latent=16, rng=np.random.default_rng(0))
        learn = GradientAscent(model, Reconstruction(sparsity=sparsity),
                               Adam(model.params, lr=3e-3))
        rng = np.random.default_rng(1)
        for _ in range(3):
            for idx in minibatch_indices(rng.permutation(len(images)), 100):
                learn.step((images[idx] > 127).astype(np.float32), rng)
        z = model.code(intensities(images[:500], np.float32)).data
        fractions[sparsity] = (np.mean(np.abs(z) < 0.05), np.mean(np.abs(z)))
    assert fractions[2.0][0] > fractions[0.0][0] + 0.05, fractions
    assert fractions[2.0][1] < 0.8 * fractions[0.0][1], fractions


def test_a_patch_mask_hides_the_stated_share_of_whole_patches():
    mask = patch_mask(50, (28, 28), 4, 0.75, np.random.default_rng(0), np.float32)
    patches = mask.reshape(50, 7, 4, 7, 4)
    assert np.all(patches.min(axis=(2, 4)) == patches.max(axis=(2, 4)))   # whole patches
    assert np.all(patches[:, :, 0, :, 0].sum(axis=(1, 2)) == 37)          # round(0.75 * 49)
    assert not np.array_equal(mask[0], mask[1])                            # drawn per image


@pytest.mark.parametrize("corruption", [MaskingNoise(0.4), GaussianNoise(0.5)])
def test_corruptions_come_from_the_generator_they_are_given(corruption):
    x = np.random.default_rng(0).random((20, 30))
    a = corruption(x, np.random.default_rng(5))
    b = corruption(x, np.random.default_rng(5))
    c = corruption(x, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ---------------------------------------------------------------- training and resuming

def tiny(data_dir, model, **changes):
    flags = {"model": model, "latent": 3, "epochs": 2, "data": str(data_dir), **changes}
    if "hidden" in MODELS[model].options:
        flags.setdefault("hidden", (16,))
    return Config.from_flags(**flags)


def quiet(config, out, **kwargs):
    return train(config, out, progress=False, log=lambda *a: None, **{"k": 2, **kwargs})


@pytest.mark.parametrize("model", FAMILY)
def test_every_model_resumed_after_one_epoch_ends_bit_for_bit_like_two_straight(
        model, data_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = quiet(tiny(data_dir, model), straight)
    quiet(tiny(data_dir, model, epochs=1), resumed)
    again = quiet(tiny(data_dir, model), resumed, resume=resumed)
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(resumed / "checkpoint.npz")
    for name in a[0]:
        assert np.array_equal(a[0][name], b[0][name]), name
    for key in a[1]:
        assert np.array_equal(a[1][key], b[1][key]), key
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert rows == [dict(r, epoch_seconds=rows[i]["epoch_seconds"],
                         train_seconds=rows[i]["train_seconds"],
                         eval_seconds=rows[i]["eval_seconds"])
                    for i, r in enumerate(json.loads(line) for line in
                                          (resumed / "metrics.jsonl").read_text().splitlines())]
    assert result["test_error"] == again["test_error"] and np.isfinite(result["test_error"])
    assert "log_px" not in result and "test_objective" in result


@pytest.mark.parametrize("model", ["denoising-ae", "masked-ae", "pca"])
def test_ctrl_c_mid_epoch_then_resume_equals_the_uninterrupted_run(
        model, data_dir, tmp_path, monkeypatch):
    import os
    import signal
    import minivae.train
    from tqdm import tqdm as real_tqdm
    count = [0]

    class InterruptingTqdm(real_tqdm):
        def update(self, n=1):
            count[0] += 1
            if count[0] == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return super().update(n)
    quiet(tiny(data_dir, model), tmp_path / "straight")
    monkeypatch.setattr(minivae.train, "tqdm", InterruptingTqdm)
    with pytest.raises(KeyboardInterrupt):
        quiet(tiny(data_dir, model), tmp_path / "cut")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz")[2]["position"]["step"] == 2
    quiet(tiny(data_dir, model), tmp_path / "cut", resume=tmp_path / "cut")
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")[0]
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- flags

@pytest.mark.parametrize("flags, words", [
    (["--model", "nonesuch"], "invalid choice: 'nonesuch'"),
    (["--model", "vae", "--mask-ratio", "0.5"], "--mask-ratio does not apply to --model vae"),
    (["--model", "ae", "--sparsity", "0.1"], "--sparsity does not apply to --model ae"),
    (["--model", "linear-ae", "--hidden", "32"], "--hidden does not apply to --model linear-ae"),
    (["--model", "pca", "--lr", "0.1"], "--lr does not apply to --model pca"),
    (["--model", "masked-ae", "--decoder", "bernoulli"], "--decoder does not apply"),
    (["--model", "vae", "--drop-prob", "0.2"], "--drop-prob does not apply"),
    (["--model", "masked-ae", "--mask-ratio", "1.5"], "mask ratio must lie in (0, 1)"),
    (["--model", "masked-ae", "--patch", "5"], "patch size 5 does not divide"),
    (["--model", "denoising-ae", "--drop-prob", "1"], "drop probability must lie in (0, 1)"),
    (["--model", "masked-ae", "--mask-ratio", "0"], "mask_ratio must be a finite number > 0"),
])
def test_a_flag_that_does_not_fit_the_model_is_a_one_line_error(
        data_dir, tmp_path, capsys, flags, words):
    try:     # usage errors exit 2 from the parser, the others return 1
        code = main(["train", "--data", str(data_dir), "--epochs", "1", "--no-progress",
                     "--no-figures", "--out", str(tmp_path / "run"), *flags])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code in (1, 2) and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_every_model_is_listed_with_a_line_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in MODELS:
        assert f"{name}, " in text


# ---------------------------------------------------------------- the linear AE is PCA

EIGENGAP_M = 5     # lambda_5 = 2.57, lambda_6 = 2.27 on MNIST intensities: a clear gap


def test_a_linear_autoencoder_learns_pcas_principal_subspace():
    """Bishop 19.1.1: with M < D the optimum of the sum-of-squares error spans the
    top-M principal subspace.  Four epochs of Adam (two at 3e-3, then 1e-3 and
    3e-4) on the 60,000 training images.  Measured on the recording machine:
    largest principal angle 1.9 deg (all five: 1.9, 1.2, 1.1, 0.9, 0.8) and a
    test error 0.04 % above PCA's.  Minibatch noise sets the angles' floor; the
    bound of 5 deg leaves room for other CPUs, and an untrained model's angles
    are near 90 deg, so the test has power."""
    mnist = load_mnist()
    train_x, rng = mnist.train_images, np.random.default_rng(0)
    test = [intensities(mnist.test_images[s:s + 1000], np.float32) for s in range(0, 10000, 1000)]
    pca = MODELS["pca"](x_dim=784, latent=EIGENGAP_M)
    fit = FitPCA(pca, Reconstruction())
    for idx in minibatch_indices(np.arange(len(train_x)), 1000):
        fit.step(intensities(train_x[idx], np.float32), rng)
    fit.end_epoch()
    ae = MODELS["linear-ae"](x_dim=784, latent=EIGENGAP_M, init="xavier", rng=rng)

    def largest_angle():
        basis, _ = np.linalg.qr(ae.params["decoder.mean.W"].data.T.astype(np.float64))
        cosines = np.linalg.svd(pca.params["pca.components"].data.T @ basis, compute_uv=False)
        return np.degrees(np.arccos(np.clip(cosines.min(), -1, 1)))
    assert largest_angle() > 45
    adam = Adam(ae.params, lr=3e-3)
    learn = GradientAscent(ae, Reconstruction(), adam)
    for lr in (3e-3, 3e-3, 1e-3, 3e-4):
        adam.lr = lr
        for idx in minibatch_indices(rng.permutation(len(train_x)), 100):
            learn.step(intensities(train_x[idx], np.float32), rng)
    assert largest_angle() < 5.0
    assert reconstruction_error(ae, test) < 1.01 * reconstruction_error(pca, test)


# ---------------------------------------------------------------- the commands on every model

@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """One finished 2-epoch run of every model of the family."""
    root = tmp_path_factory.mktemp("family")
    for model in FAMILY:
        quiet(tiny(data_dir, model), root / model)
    return root


@pytest.mark.parametrize("model", FAMILY)
def test_evaluate_and_probe_report_what_applies_to_each_model(runs, model, capsys):
    assert main(["evaluate", str(runs / model), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test recon. error" in out and "log p(x)" not in out   # no prior, no log p(x)
    assert main(["probe", str(runs / model)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy")[1].split("%")[0])
    assert 0 <= accuracy <= 100 and "frozen 3-D codes" in out


@pytest.mark.parametrize("model", FAMILY)
def test_plot_draws_what_applies_and_sample_refuses_a_model_without_a_prior(
        runs, model, capsys):
    assert main(["plot", str(runs / model)]) == 0
    written = capsys.readouterr().out
    assert "recon.png" in written and "latent_scatter.png" in written
    assert "samples.png" not in written and "manifold.png" not in written
    assert main(["sample", str(runs / model)]) == 1
    err = capsys.readouterr().err
    assert "no prior" in err and err.count("\n") == 1
