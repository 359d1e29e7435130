"""The Gaussian decoder's variance: from a head, shared per pixel, or one scalar,
with an optional floor; and dequantized MNIST, on which its density is bounded.

Reference values are written out here from the formulas: the bound
E_u[log p(x)] <= D log 256 holds for any density p on [0, 1)^D when
x = (pixel + u) / 256 (Jensen: E_u[log p(x)] <= log(256^D * P(x's cell)) <= D log 256).
"""
import numpy as np
import pytest

from minivae.config import Config
from minivae.data import dequantize, intensities
from minivae.gradcheck import gradcheck
from minivae.likelihoods import Gaussian, likelihood
from minivae.models.vae import VAE
from minivae.objectives import elbo
from minivae.runs import RunDir
from minivae.train import train

LOG_2PI = np.log(2 * np.pi)
SHARED_SHAPES = {"pixel": (6,), "scalar": (1,)}


def gaussian_vae(variance, logvar_floor=None, x_dim=6, dtype=np.float64, seed=0):
    """A tiny Gaussian VAE with weights large enough that mistakes show, and a
    shared logvar (if any) spread on both sides of the floor."""
    rng = np.random.default_rng(seed)
    model = VAE(x_dim=x_dim, hidden=(5,), latent=2, decoder="gaussian", variance=variance,
                logvar_floor=logvar_floor, dtype=dtype, rng=rng)
    for name, p in model.named_parameters():
        p.data = rng.normal(0.0, 0.7, p.shape).astype(dtype)
    return model


# ---------------------------------------------------------------- the options

@pytest.mark.parametrize("variance", ["output", "pixel", "scalar"])
@pytest.mark.parametrize("floor", [None, -0.5])
def test_the_elbo_gradient_matches_finite_differences_for_each_variance_and_floor(
        variance, floor):
    model = gaussian_vae(variance, floor)
    x = np.random.default_rng(1).random((4, 6))
    eps = np.random.default_rng(2).standard_normal((2, 4, 2))
    names = list(model.params)

    def bound(*tensors):
        model.params = dict(zip(names, tensors))
        return elbo(model, x, eps)
    gradcheck(bound, [model.params[n] for n in names])


@pytest.mark.parametrize("variance", ["pixel", "scalar"])
def test_a_shared_logvar_is_one_generative_parameter_of_its_shape_used_for_every_image(variance):
    model = gaussian_vae(variance)
    shared = model.params["decoder.logvar"]
    assert shared.shape == SHARED_SHAPES[variance] and shared.requires_grad
    assert "decoder.logvar" in model.generative and "decoder.logvar.W" not in model.params
    assert model.likelihood.heads == ("mu",)
    # log p(x|z) written out with that one logvar for every row: the same for all images
    z = np.random.default_rng(3).standard_normal((5, 2))
    x = np.random.default_rng(4).random((5, 6))
    mu = model.decode_mean(z).data
    logvar = np.broadcast_to(shared.data, mu.shape)
    expected = -0.5 * np.sum(LOG_2PI + logvar + (x - mu) ** 2 / np.exp(logvar), axis=1)
    np.testing.assert_allclose(model.log_px_given_z(x, z).data, expected, rtol=1e-12)


def test_a_fresh_shared_logvar_starts_at_zero_as_documented():
    model = VAE(x_dim=6, hidden=(5,), latent=2, decoder="gaussian", variance="pixel",
                rng=np.random.default_rng(0))
    assert model.params["decoder.logvar"].dtype == np.float32
    np.testing.assert_array_equal(model.params["decoder.logvar"].data, np.zeros(6))


@pytest.mark.parametrize("variance, raw_shape", [("output", (3, 6)), ("pixel", (6,)),
                                                 ("scalar", (1,))])
def test_the_floor_holds_even_for_very_negative_raw_log_variances(variance, raw_shape):
    floor = -4.0
    gaussian = Gaussian(variance, logvar_floor=floor)
    raw = np.resize([-1e30, -1e4, -50.0, -4.0, 0.0, 30.0], raw_shape)
    mu = np.zeros((3, 6))
    logvar = gaussian.logvar((mu, raw)).data
    assert np.all(logvar >= floor)
    # floor + softplus(raw - floor), softplus written out: the floor far below it,
    # floor + log 2 at it, nearly raw far above it
    np.testing.assert_allclose(logvar, floor + np.logaddexp(0.0, raw - floor), rtol=1e-12)
    log_p = gaussian.log_prob(np.full((3, 6), 0.5), (mu, raw)).data
    assert np.all(np.isfinite(log_p))


def test_the_decoders_without_a_variance_refuse_the_variance_options_in_one_line():
    for decoder in ("bernoulli", "squared"):
        for options in ({"variance": "pixel"}, {"logvar_floor": -3.0}):
            with pytest.raises(ValueError, match="only to the gaussian decoder") as err:
                VAE(x_dim=4, hidden=(3,), latent=2, decoder=decoder, **options)
            assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="output, pixel, scalar|'output', 'pixel', 'scalar'"):
        likelihood("gaussian", "VAE", variance="image")
    with pytest.raises(ValueError, match="logvar_floor"):
        likelihood("gaussian", "VAE", logvar_floor=float("nan"))


# ---------------------------------------------------------------- why dequantize

def test_on_scaled_pixels_the_density_has_no_maximum_and_on_dequantized_ones_it_does():
    """An oracle decoder that knows each image's pixels, with one scalar logvar.
    On pixel / 255 it can put mu exactly on x (as a real decoder does on the
    background, exactly 0 in every image), and log p(x|z) rises without limit
    as the variance shrinks: the runaway.  On (pixel + u) / 256 the u it cannot
    know keeps log p below D log 256, which no density on [0, 1)^D exceeds in
    expectation, and the best variance is finite."""
    pixels = np.random.default_rng(5).choice([0, 0, 0, 128, 255], size=(50, 40)).astype(np.uint8)
    D = pixels.shape[1]
    gaussian = Gaussian("scalar")
    logvars = np.arange(-2.0, -40.0, -1.0)

    def mean_log_p(x, mu):
        return np.array([gaussian.log_prob(x, (mu, np.array([v]))).data.mean() for v in logvars])

    scaled = intensities(pixels, np.float64)
    runaway = mean_log_p(scaled, scaled)
    assert np.all(np.diff(runaway) > 0) and runaway[-1] > 2 * D * np.log(256)
    dequantized = mean_log_p(dequantize(pixels, np.random.default_rng(6), np.float64),
                             (pixels + 0.5) / 256)
    assert dequantized.max() < D * np.log(256)
    assert 0 < dequantized.argmax() < len(logvars) - 1   # a maximum inside the sweep


# ---------------------------------------------------------------- training and checkpoints

def tiny_run(data_dir, out, **changes):
    config = Config.from_flags(**{
        "decoder": "gaussian", "intensities": "dequantized", "hidden": (32,), "latent": 4,
        "optimizer": "adam", "lr": 3e-3, "epochs": 3, "batch_size": 100,
        "data": str(data_dir), **changes})
    train(config, out, progress=False, log=lambda *a: None, k=5)
    return config


@pytest.mark.parametrize("variance, floor", [("pixel", -6.0), ("scalar", None)])
def test_a_checkpoint_saves_and_restores_the_shared_logvar(data_dir, tmp_path, variance, floor):
    tiny_run(data_dir, tmp_path, variance=variance, logvar_floor=floor, epochs=1)
    trained = RunDir(tmp_path).load()
    model = trained.model
    assert model.likelihood.variance == variance and model.likelihood.logvar_floor == floor
    saved = np.load(tmp_path / "checkpoint.npz")["param/decoder.logvar"]
    assert saved.shape == {"pixel": (784,), "scalar": (1,)}[variance]
    assert np.any(saved != 0)   # it was trained, so a fresh model's zeros would not match
    np.testing.assert_array_equal(model.params["decoder.logvar"].data, saved)


def test_on_dequantized_mnist_the_test_elbo_is_finite_and_below_d_log_256(data_dir, tmp_path):
    tiny_run(data_dir, tmp_path, variance="output")
    rows = RunDir(tmp_path).read_metrics()
    test_elbo = np.array([row["test_elbo"] for row in rows])
    assert len(test_elbo) == 3 and np.all(np.isfinite(test_elbo))
    assert np.all(test_elbo < 784 * np.log(256))
    assert test_elbo[-1] > test_elbo[0]   # it did learn: the bound is not met by doing nothing
