"""Active units (Burda, Grosse & Salakhutdinov 2016, 5.2) and the per-dimension KL.

The hand-built model is a VAE with no hidden layer, so that mu = x W + b and
logvar = x V + c are affine maps whose weights the tests set: each latent
dimension copies one input column, and the inputs take two values per
column, +-s around a centre, so that Var_x[mu_u] = s^2 exactly.
"""
import numpy as np
import pytest

from minivae import gaussian_kl
from minivae.activity import LatentActivity, active_units, collapse_warning
from minivae.models.autoencoder import Autoencoder
from minivae.models.vae import VAE

# per latent dimension u: the centre and half-spread s of mu_u, and log sigma_u^2
CENTRES = np.array([0.5, -1.0, 0.0, 2.0, 1e4])
SPREADS = np.array([0.0, 0.25, 0.125, 0.0625, 0.125])   # A_u = s^2: 0, 1/16, 1/64, 1/256, 1/64
LOGVARS = np.log([1.0, 0.25, 4.0, 0.01, 1.0])
J = len(CENTRES)


def two_valued_inputs(n):
    """x (n, J): column u alternates between CENTRES[u] + SPREADS[u] and
    CENTRES[u] - SPREADS[u], values that float64 holds exactly."""
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
    return CENTRES + signs * SPREADS


def copying_vae():
    """A float64 VAE with mu = x (W = I, b = 0) and logvar = LOGVARS for every x."""
    model = VAE(x_dim=J, hidden=(), latent=J, dtype=np.float64, rng=np.random.default_rng(0))
    model.params["encoder.mu.W"].data[...] = np.eye(J)
    model.params["encoder.mu.b"].data[...] = 0.0
    model.params["encoder.logvar.W"].data[...] = 0.0
    model.params["encoder.logvar.b"].data[...] = LOGVARS
    return model


def kl_by_quadrature(mu, var):
    """KL(N(mu, var) || N(0, 1)) = int q log(q / p) dz, by the trapezoid rule."""
    z = np.linspace(mu - 12 * np.sqrt(var), mu + 12 * np.sqrt(var), 40001)
    log_q = -0.5 * (np.log(2 * np.pi * var) + (z - mu) ** 2 / var)
    log_p = -0.5 * (np.log(2 * np.pi) + z ** 2)
    f = np.exp(log_q) * (log_q - log_p)
    return np.sum((f[1:] + f[:-1]) / 2 * np.diff(z))


def test_activity_is_the_variance_of_the_encoder_mean_over_the_inputs():
    x = two_valued_inputs(100)
    result = active_units(copying_vae(), [x])
    assert result.activity.dtype == np.float64 and result.activity.shape == (J,)
    np.testing.assert_allclose(result.activity, SPREADS ** 2, rtol=1e-9, atol=1e-15)
    assert result.images == 100 and result.latent == J


def test_a_dimension_whose_mean_does_not_move_has_activity_zero():
    result = active_units(copying_vae(), [two_valued_inputs(10)])
    assert result.activity[0] == 0.0


def test_count_uses_burda_et_al_s_threshold_of_one_hundredth():
    # A_u = 0, 1/16, 1/64, 1/256, 1/64: three exceed 0.01
    result = active_units(copying_vae(), [two_valued_inputs(10)])
    assert result.threshold == 0.01 and result.count == 3


def test_a_dimension_exactly_at_the_threshold_is_not_active():
    x = two_valued_inputs(10)
    at = active_units(copying_vae(), [x], threshold=1 / 16)         # A_1 = 1/16 exactly
    below = active_units(copying_vae(), [x], threshold=np.nextafter(1 / 16, 0))
    assert at.count == 0 and below.count == 1


def test_per_dimension_kl_matches_numerical_integration():
    x = two_valued_inputs(10)
    result = active_units(copying_vae(), [x])
    # half the rows have mu = centre + s, half centre - s
    expected = [np.mean([kl_by_quadrature(c + s, v), kl_by_quadrature(c - s, v)])
                for c, s, v in zip(CENTRES[:4], SPREADS, np.exp(LOGVARS))]
    np.testing.assert_allclose(result.kl[:4], expected, rtol=1e-6)
    # the fifth sits at mu = 1e4 with sigma = 1: KL = mu^2 / 2 (+ s^2 / 2 on average)
    assert result.kl[4] == pytest.approx((1e4 ** 2 + 0.125 ** 2) / 2, rel=1e-12)


def test_per_dimension_kl_sums_to_the_kl_term_of_the_bound():
    model = VAE(x_dim=6, hidden=(5,), latent=4, dtype=np.float64, init="xavier",
                rng=np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(size=(50, 6))
    mu, logvar = model.posterior(x)
    total = gaussian_kl(mu, logvar).data.mean()
    assert active_units(model, [x]).kl.sum() == pytest.approx(total, rel=1e-12)


def test_streaming_over_batches_equals_one_big_batch_and_numpy_variance():
    model = VAE(x_dim=6, hidden=(5,), latent=4, dtype=np.float64, init="xavier",
                rng=np.random.default_rng(3))
    x = np.random.default_rng(4).uniform(size=(97, 6))
    whole = active_units(model, [x])
    cuts = [0, 1, 8, 8, 30, 64, 97]     # batches of 1, 7, 0, 22, 34 and 33 rows
    streamed = active_units(model, (x[a:b] for a, b in zip(cuts, cuts[1:])))
    np.testing.assert_allclose(streamed.activity, whole.activity, rtol=1e-12)
    np.testing.assert_allclose(streamed.kl, whole.kl, rtol=1e-12)
    assert streamed.images == whole.images == 97
    np.testing.assert_allclose(whole.activity, np.var(model.posterior(x)[0].data, axis=0),
                               rtol=1e-12)


def test_a_variance_far_from_zero_survives_streaming_in_many_batches():
    # mu = 1e4 +- 0.125: E[mu^2] - E[mu]^2 in float32 would lose the 1/64 entirely
    model = copying_vae()
    x = two_valued_inputs(1000)
    result = active_units(model, (x[s:s + 10] for s in range(0, 1000, 10)))
    assert result.activity[4] == pytest.approx(1 / 64, rel=1e-9)


def test_a_float32_model_gives_float64_results():
    model = VAE(x_dim=6, hidden=(5,), latent=4, rng=np.random.default_rng(5))
    x = np.random.default_rng(6).uniform(size=(20, 6)).astype(np.float32)
    result = active_units(model, [x])
    assert result.activity.dtype == result.kl.dtype == np.float64


def test_a_model_without_a_posterior_is_a_one_line_error():
    model = Autoencoder(x_dim=6, hidden=(5,), latent=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Autoencoder has no posterior") as err:
        active_units(model, [np.zeros((3, 6), np.float32)])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("batches, words", [([], "no datapoints"), ([np.zeros((3, 4))], "x")])
def test_no_data_or_the_wrong_width_is_a_one_line_error(batches, words):
    with pytest.raises(ValueError, match=words) as err:
        active_units(copying_vae(), batches)
    assert "\n" not in str(err.value)


def test_a_negative_threshold_is_an_error():
    with pytest.raises(ValueError, match="threshold"):
        active_units(copying_vae(), [two_valued_inputs(4)], threshold=-0.1)


def usage(active, latent):
    """A LatentActivity with `active` of `latent` dimensions above 0.01."""
    activity = np.where(np.arange(latent) < active, 1.0, 1e-4)
    return LatentActivity(activity=activity, kl=activity, threshold=0.01, images=100)


@pytest.mark.parametrize("active, latent", [(9, 20), (0, 20), (2, 5), (0, 1)])
def test_collapse_warning_names_the_count_when_fewer_than_half_are_active(active, latent):
    line = collapse_warning(usage(active, latent), run="runs/x")
    assert line.startswith("warning:") and "\n" not in line
    assert f"{active} of {latent} latent dimensions" in line
    assert line.endswith("; see minivae plot runs/x --what activity")


def test_without_a_run_the_collapse_warning_suggests_no_command():
    line = collapse_warning(usage(1, 20))
    assert line.endswith("collapsed onto the prior in the others") and "minivae plot" not in line


@pytest.mark.parametrize("active, latent", [(10, 20), (20, 20), (3, 5), (1, 2), (1, 1)])
def test_no_collapse_warning_when_at_least_half_are_active(active, latent):
    assert collapse_warning(usage(active, latent)) is None
