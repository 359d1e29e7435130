"""The families q(z|x) of section 2.4 sample, score and measure what they claim.

Each family's sampler is checked against its CDF (Kolmogorov-Smirnov), its
KL to N(0, I) against a Monte Carlo average of log q - log p, and its
reparameterized gradient against the gradient of a closed-form expectation:
E[(z - c)^2] = (mu - c)^2 + variance * scale^2.  Every statistical check has
a fixed seed and states its standard error, and beside it a check that a
wrong sign or factor would have been caught.  Then a VAE with each family
trains, both estimators agree in expectation, and the flag is refused
where it does not apply.
"""
import json
import math
import warnings

import numpy as np
import pytest

from minivae.autograd import Tensor, no_grad
from minivae.distributions import gaussian_log_prob, location_scale_kl, logistic_inverse_cdf
from minivae.models import VAE
from minivae.objectives import elbo, log_weights, noise
from minivae.posteriors import POSTERIORS
from tests.test_cli import assert_one_line_error, run

N = 200_000   # draws per Monte Carlo check


def cdf(name, z, mu, scale):
    """The family's CDF written from its definition, for the KS test."""
    t = (z - mu) / scale
    if name == "gaussian":
        return 0.5 * (1 + np.vectorize(math.erf)(t / math.sqrt(2)))
    if name == "laplace":
        return np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1 - 0.5 * np.exp(-np.maximum(t, 0)))
    return 1 / (1 + np.exp(-t))


def scale_parameter(name, scale):
    """The encoder's second output for a family's scale b: logvar = log(v b^2),
    with v the variance of the family's standard member."""
    return math.log(second_moment(name) * scale ** 2)


def second_moment(name):
    """Var of the standard member: 1, 2 (Laplace), pi^2 / 3 (logistic)."""
    return {"gaussian": 1.0, "laplace": 2.0, "logistic": math.pi ** 2 / 3}[name]


def draw(name, mu, scale, n, seed, requires_grad=False):
    """n draws z ~ q(mu, scale) as (n, 1) rows, each row its own copy of the
    parameters, so that backward gives one gradient per draw."""
    q = POSTERIORS[name]
    m = Tensor(np.full((n, 1), mu), requires_grad=requires_grad)
    s = Tensor(np.full((n, 1), scale_parameter(name, scale)), requires_grad=requires_grad)
    eps = q.noise(np.random.default_rng(seed), (n, 1), np.float64)
    return q.sample(m, s, eps), m, s


def ks_statistic(samples, cdf_values):
    """sup |F_n - F| of sorted samples, given F at them."""
    n = len(samples)
    upper = np.arange(1, n + 1) / n - cdf_values
    lower = cdf_values - np.arange(0, n) / n
    return max(upper.max(), lower.max())


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_samples_follow_the_family_and_not_a_neighbour(name):
    mu, scale = 0.7, 1.3
    with no_grad():
        z = np.sort(draw(name, mu, scale, N, seed=1)[0].data[:, 0])
    # the KS statistic exceeds 1.95 / sqrt(n) with probability 0.001 under the null
    critical = 1.95 / math.sqrt(N)
    assert ks_statistic(z, cdf(name, z, mu, scale)) < critical
    # power: the neighbouring families with the same variance are rejected
    for other in sorted(set(POSTERIORS) - {name}):
        matched = scale * math.sqrt(second_moment(name) / second_moment(other))
        assert ks_statistic(z, cdf(other, z, mu, matched)) > 5 * critical, other


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_log_prob_is_a_normalized_density_matching_the_cdf(name):
    q, mu, scale = POSTERIORS[name], -0.4, 0.6
    grid = np.linspace(mu - 40 * scale, mu + 40 * scale, 400_001)[:, None]
    with no_grad():
        log_p = q.log_prob(grid, np.full_like(grid, mu),
                           np.full_like(grid, scale_parameter(name, scale))).data
    density, step = np.exp(log_p), grid[1, 0] - grid[0, 0]
    assert abs(density.sum() * step - 1) < 1e-6
    # the density is the CDF's slope, at a few points
    for z in (-1.0, 0.0, 0.9):
        slope = (cdf(name, z + 1e-6, mu, scale) - cdf(name, z - 1e-6, mu, scale)) / 2e-6
        i = np.argmin(np.abs(grid[:, 0] - z))
        assert np.exp(log_p[i]) == pytest.approx(slope, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_closed_form_kl_equals_the_monte_carlo_kl(name):
    q, mu, scale = POSTERIORS[name], 0.8, 0.5
    with no_grad():
        z, m, s = draw(name, mu, scale, N, seed=2)
        zeros = np.zeros_like(z.data)
        terms = q.log_prob(z, m, s).data - gaussian_log_prob(z, zeros, zeros).data
        kl = q.kl(m[:1], s[:1]).data[0]
    se = terms.std() / math.sqrt(N)
    assert abs(terms.mean() - kl) < 4 * se
    # power: a KL that got the standard member's variance wrong by 25%, or the
    # log-scale term's sign, lies beyond 8 SEs
    assert 0.25 * second_moment(name) * scale ** 2 / 2 > 8 * se
    assert 2 * abs(math.log(scale)) > 8 * se


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_reparameterized_gradient_of_a_closed_form_expectation(name):
    # E[(z - c)^2] = (mu - c)^2 + v scale^2, v the standard member's variance, so
    # d/dmu = 2 (mu - c) (negative here) and d/dlog scale = 2 v scale^2
    mu, scale, c, v = 0.3, 0.8, 1.5, second_moment(name)
    z, m, s = draw(name, mu, scale, N, seed=3, requires_grad=True)
    ((z - c) ** 2).sum().backward()
    per_draw_mu, per_draw_s = m.grad[:, 0], 2 * s.grad[:, 0]   # d/dlog b = 2 d/dlogvar
    for per_draw, exact in ((per_draw_mu, 2 * (mu - c)), (per_draw_s, 2 * v * scale ** 2)):
        se = per_draw.std() / math.sqrt(N)
        assert abs(per_draw.mean() - exact) < 4 * se
        # power: a wrong sign or a factor of 2 lies many standard errors away
        assert abs(-exact - exact) > 20 * se and abs(exact / 2) > 20 * se


def small_vae(posterior, seed=0):
    return VAE(x_dim=6, hidden=(5,), latent=2, posterior=posterior, dtype=np.float64,
               init="xavier", rng=np.random.default_rng(seed))


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_estimators_a_and_b_agree_in_expectation(name):
    # B takes the KL in closed form, A estimates it by the samples: the same
    # bound on average.  The SE treats the two as independent, which with
    # shared eps overstates it: the check is conservative.
    model, L = small_vae(name), 20_000
    x = (np.random.default_rng(4).random((3, 6)) > 0.5).astype(np.float64)
    with no_grad():
        eps = noise(model, L, x, np.random.default_rng(5))
        log_w = log_weights(model, x, eps).data          # (L, B): estimator A's terms
        b = elbo(model, x, eps, "B").data
        b_draws = np.stack([elbo(model, x, eps[l:l + 1], "B").data for l in range(0, L, 50)])
        mu, s = model.posterior(x)
        kl = model.q.kl(mu, s).data
    se = np.sqrt(log_w.var(axis=0) / L + b_draws.var(axis=0) / L)
    assert np.all(np.abs(log_w.mean(axis=0) - b) < 4 * se), (log_w.mean(axis=0), b, se)
    # power: a KL term off by 25% would move B beyond 8 SEs
    assert np.all(0.25 * kl > 8 * se), (kl, se)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_noise_is_in_the_model_dtype_and_the_sampler_keeps_it(name):
    model = VAE(x_dim=6, hidden=(5,), latent=2, posterior=name, dtype=np.float32,
                rng=np.random.default_rng(0))
    x = np.ones((4, 6), np.float32)
    eps = noise(model, 3, x, np.random.default_rng(0))
    assert eps.dtype == np.float32 and eps.shape == (3, 4, 2)
    value = elbo(model, x, eps, "A")
    assert value.dtype == np.float32 and np.all(np.isfinite(value.data))


def test_logistic_noise_has_symmetric_finite_tails_and_raises_no_warning():
    class Extremes:   # uniform draws at both ends: 0 (where F^-1 is -inf) and the largest < 1
        def random(self, shape, dtype):
            u = np.zeros(shape, dtype)
            u[1] = np.nextafter(dtype(1), dtype(0))
            return u
    for dtype in (np.float32, np.float64):
        u = POSTERIORS["logistic"].noise(Extremes(), (2, 3), dtype)
        assert u.dtype == dtype and np.all(u > 0)
        mu, logvar = Tensor(np.zeros((2, 3), dtype), requires_grad=True), \
            Tensor(np.full((2, 3), 20.0, dtype), requires_grad=True)   # a scale of e^10
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            z = POSTERIORS["logistic"].sample(mu, logvar, u)
            z.sum().backward()
        assert np.all(np.isfinite(z.data)) and np.all(np.isfinite(logvar.grad))
        np.testing.assert_allclose(z.data[0], -z.data[1], rtol=1e-6)   # the tails mirror


def test_bad_inputs_to_the_family_ops_are_refused_in_one_line():
    with pytest.raises(ValueError, match="u must lie strictly between 0 and 1"):
        logistic_inverse_cdf(np.zeros((1, 2)), np.zeros((1, 2)), np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="expected a finite entropy and a variance > 0"):
        location_scale_kl(np.zeros((1, 2)), np.zeros((1, 2)), 1.0, -2.0)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_the_encoders_logvar_is_the_log_variance_of_q_for_every_family(name):
    # the same (mu, logvar) give every family the same mean and variance
    mu, logvar = 0.4, math.log(0.3)
    with no_grad():
        z = draw(name, mu, math.sqrt(0.3 / second_moment(name)), N, seed=6)[0].data[:, 0]
    assert "encoder.logvar.W" in small_vae(name).params
    assert abs(z.mean() - mu) < 4 * math.sqrt(0.3 / N)
    # Var of the sample variance: (m4 - sigma^4) / n, with m4 from the draws
    se = math.sqrt((((z - z.mean()) ** 4).mean() - z.var() ** 2) / N)
    assert abs(z.var() - math.exp(logvar)) < 4 * se and 0.1 * 0.3 > 8 * se


def test_an_unknown_family_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"unknown posterior 'cauchy'; expected one of gaussian, "
                                         r"laplace, logistic"):
        small_vae("cauchy")


@pytest.mark.parametrize("name", ["laplace", "logistic"])
def test_the_cli_trains_evaluates_and_resumes_a_vae_with_the_family(name, data_dir, tmp_path,
                                                                     capsys):
    def train(out, *flags):
        return run(["train", "--data", data_dir, "--out", out, "--latent", "3", "--hidden",
                    "16", "--k", "5", "--no-progress", *flags], capsys)

    for estimator in ("A", "B"):
        out = tmp_path / estimator
        code, _, err = train(out, "--posterior", name, "--estimator", estimator, "--epochs", "1")
        assert code == 0, err
        saved = json.loads((out / "config.json").read_text())
        assert saved["model"]["posterior"] == name
    code, out, err = run(["evaluate", tmp_path / "B", "--k", "20", "--no-progress"], capsys)
    assert code == 0 and "log p(x)" in out, err
    code, _, err = run(["train", "--resume", tmp_path / "B", "--epochs", "2", "--no-progress"],
                       capsys)
    assert code == 0, err
    # resuming with another family is refused, naming both
    code, _, err = run(["train", "--resume", tmp_path / "B", "--epochs", "3", "--posterior",
                        "gaussian"], capsys)
    assert_one_line_error(code, err, f"--posterior saved {name}, given gaussian")


def test_the_flag_is_refused_for_a_model_without_a_posterior(data_dir, tmp_path, capsys):
    code, _, err = run(["train", "--data", data_dir, "--out", tmp_path / "ae", "--model", "ae",
                        "--posterior", "laplace", "--epochs", "1"], capsys)
    assert_one_line_error(code, err, "--posterior does not apply to --model ae",
                          "it applies to vae, cvae")
