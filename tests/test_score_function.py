"""The score-function gradient of section 2.2 beside the reparameterized (SGVB) one.

The reference is the exact gradient of the minibatch-mean ELBO of a model
with a two-dimensional Gaussian q(z|x): E_q[f(z)] by the trapezoidal rule on
a 101 x 101 grid (accurate to ~1e-6, far beyond the Monte Carlo error),
differentiated in phi by central differences.  It is written out here from
the model's densities; nothing of `minivae.score_function` computes it.

Statistical tests use fixed seeds.  Each compares P = 59 gradient entries at
once by their z-scores, (estimate - reference) / standard error, the error
estimated from the draws themselves: a correct estimator keeps every |z|
below 4.5 (a chance of about 59 * 7e-6 = 4e-4 per test, by Bonferroni), and a
second assertion shows that the same test rejects a wrong sign or a factor of 2.
"""
import warnings

import numpy as np
import pytest

from minivae.autograd import no_grad
from minivae.models.autoencoder import Autoencoder
from minivae.models.vae import VAE
from minivae.objectives import elbo, noise
from minivae.score_function import (LEAVE_ONE_OUT, gradient_moments, reparameterized_gradient,
                                    score_function_gradient)

Z_MAX = 4.5       # the largest |z| a correct estimator may show over 59 entries
Z_WRONG = 10.0    # the least max |z| a wrong sign or factor must show


def small_vae(posterior="gaussian", dtype=np.float64, seed=0):
    """A 6-5-2 Bernoulli VAE whose weights are large enough that q(z|x) is far from
    the prior and p(x|z) depends strongly on z, so that mistakes show."""
    rng = np.random.default_rng(seed)
    model = VAE(x_dim=6, hidden=(5,), latent=2, posterior=posterior, dtype=dtype, rng=rng)
    for name, p in model.named_parameters():
        p.data = rng.normal(0.0, 0.5 if name.startswith("encoder") else 1.0, p.shape).astype(dtype)
    return model


def binary_x(n=4, seed=1, dtype=np.float64):
    return (np.random.default_rng(seed).random((n, 6)) < 0.5).astype(dtype)


def loo(model, x, eps):
    return score_function_gradient(model, x, eps, LEAVE_ONE_OUT)


def flat(grads, model):
    return np.concatenate([grads[name].ravel() for name in model.recognition])


def draws_of(gradient, model, x, samples, draws, seed):
    """(draws, P): the flattened phi-gradient for `draws` independent eps (samples, B, J)."""
    rng = np.random.default_rng(seed)
    return np.stack([flat(gradient(model, x, noise(model, samples, x, rng)), model)
                     for _ in range(draws)])


def mean_and_error(g):
    return g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(len(g))


def quadrature_elbo(model, x, nodes=101, T=8.0):
    """(1/B) sum_i E_q[log p(x_i, z) - log q(z|x_i)] by the trapezoidal rule in
    t = (z - mu) / sigma on the grid [-T, T]^2 of nodes x nodes points, each
    weighted by N(t; 0, I) times the cell area.  For a smooth integrand with
    Gaussian tails the rule converges geometrically in the number of nodes."""
    t = np.linspace(-T, T, nodes)
    w = np.exp(-0.5 * t ** 2) / np.sqrt(2 * np.pi) * (t[1] - t[0])
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1).reshape(-1, 2)    # (K, 2)
    weight = np.outer(w, w).ravel()                                               # (K,)
    with no_grad():
        mu, logvar = (v.data for v in model.posterior(x))                         # (B, 2)
        z = mu + np.exp(0.5 * logvar) * grid[:, None, :]                          # (K, B, 2)
        K, B = len(grid), len(x)
        z, x_K = z.reshape(K * B, 2), np.tile(x, (K, 1))
        f = (model.log_px_given_z(x_K, z).data + model.log_prior(z).data
             - model.q.log_prob(z, np.tile(mu, (K, 1)), np.tile(logvar, (K, 1))).data)
    return float(weight @ f.reshape(K, B).mean(axis=1))


def exact_gradient(model, x, h=1e-5):
    """d quadrature_elbo / d phi by central differences, flattened like `flat`, (P,)."""
    grads = []
    for name in model.recognition:
        data = model.params[name].data
        for i in np.ndindex(data.shape):
            saved = data[i]
            data[i] = saved + h
            up = quadrature_elbo(model, x)
            data[i] = saved - h
            down = quadrature_elbo(model, x)
            data[i] = saved
            grads.append((up - down) / (2 * h))
    return np.array(grads)


@pytest.fixture(scope="module")
def exact():
    return exact_gradient(small_vae(), binary_x())


def test_the_quadrature_reference_is_converged_and_estimator_a_agrees_with_it():
    model, x = small_vae(), binary_x()
    # seen: 101 points per axis are 2.1e-6 from 301 points, and 201 points 3.3e-10;
    # far below the Monte Carlo standard errors of the tests (~1e-2)
    reference = quadrature_elbo(model, x, nodes=301)
    assert abs(quadrature_elbo(model, x, nodes=201) - reference) < 1e-8
    assert abs(quadrature_elbo(model, x) - reference) < 1e-5
    eps = np.random.default_rng(2).standard_normal((20000, len(x), 2))
    value = elbo(model, x, eps, "A").data.mean()     # 20000 draws: standard error ~0.01
    assert abs(value - quadrature_elbo(model, x)) < 0.05


# ---------------------------------------------------------------- unbiased, with power

@pytest.mark.parametrize("gradient, samples, draws", [
    (reparameterized_gradient, 1, 4000),
    (score_function_gradient, 1, 6000),
    # a constant baseline near the mean of f, -8.3 nats here
    (lambda model, x, eps: score_function_gradient(model, x, eps, baseline=-6.0), 1, 6000),
    (loo, 4, 4000),
], ids=["reparameterized", "score-function", "constant-baseline", "leave-one-out"])
def test_each_estimator_is_unbiased_for_the_exact_gradient_and_the_test_has_power(
        exact, gradient, samples, draws):
    model, x = small_vae(), binary_x()
    mean, error = mean_and_error(draws_of(gradient, model, x, samples, draws, seed=3))
    # seen: max |z| 2.0, 3.1, 1.9 and 1.4 in the order of the ids; with a wrong
    # sign at least 32, with a factor of 2 at least 17
    assert np.abs((mean - exact) / error).max() < Z_MAX
    assert np.abs((-mean - exact) / error).max() > Z_WRONG     # a wrong sign
    assert np.abs((2 * mean - exact) / error).max() > Z_WRONG  # a factor of 2


@pytest.mark.parametrize("posterior", ["gaussian", "laplace", "logistic"])
def test_for_every_family_the_score_function_and_reparameterized_means_agree(posterior):
    model, x = small_vae(posterior), binary_x()
    reparameterized = mean_and_error(draws_of(reparameterized_gradient, model, x, 1, 3000, 4))
    for gradient, samples in ((score_function_gradient, 1), (loo, 4)):
        mean, error = mean_and_error(draws_of(gradient, model, x, samples, 3000, seed=5))
        # independent draws: the variance of the difference is the sum of the two
        se = np.hypot(error, reparameterized[1])
        assert np.abs((mean - reparameterized[0]) / se).max() < Z_MAX, posterior
        assert np.abs((-mean - reparameterized[0]) / se).max() > Z_WRONG, posterior
        assert np.abs((2 * mean - reparameterized[0]) / se).max() > Z_WRONG, posterior
    # seen: max |z| at most 2.2 for the six cases; at least 21 for a wrong sign
    # and 12 for a factor of 2

# ---------------------------------------------------------------- exact, for fixed eps

def test_the_reparameterized_gradient_is_the_derivative_of_estimator_a_at_fixed_eps():
    model, x = small_vae(), binary_x()
    eps = np.random.default_rng(6).standard_normal((3, len(x), 2))
    expected = []
    for name in model.recognition:
        data = model.params[name].data
        for i in np.ndindex(data.shape):
            saved, h = data[i], 1e-6
            data[i] = saved + h
            up = elbo(model, x, eps, "A").data.mean()
            data[i] = saved - h
            down = elbo(model, x, eps, "A").data.mean()
            data[i] = saved
            expected.append((up - down) / (2 * h))
    np.testing.assert_allclose(flat(reparameterized_gradient(model, x, eps), model), expected,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("baseline", [None, 2.5, LEAVE_ONE_OUT])
def test_the_score_function_gradient_of_the_head_biases_is_the_formula_written_out(baseline):
    """For q = N(mu, sigma^2), d log q / d mu = (z - mu) / sigma^2 and
    d log q / d logvar = ((z - mu)^2 / sigma^2 - 1) / 2; the heads' biases
    receive the mean over l and i of (f - b) times these."""
    model, x = small_vae(), binary_x()
    L = 3
    eps = np.random.default_rng(7).standard_normal((L, len(x), 2))
    grads = score_function_gradient(model, x, eps, baseline)
    with no_grad():
        mu, logvar = (v.data for v in model.posterior(x))
        z = mu + np.exp(0.5 * logvar) * eps                                      # (L, B, J)
        log_q = -0.5 * np.sum(np.log(2 * np.pi) + logvar + eps ** 2, axis=-1)
        f = np.stack([model.log_px_given_z(x, z[l]).data + model.log_prior(z[l]).data
                      for l in range(L)]) - log_q                                # (L, B)
    b = {None: 0.0, 2.5: 2.5, LEAVE_ONE_OUT: (f.sum(axis=0) - f) / (L - 1)}[baseline]
    weight = (f - b)[..., None] / (L * len(x))
    np.testing.assert_allclose(grads["encoder.mu.b"],
                               np.sum(weight * (z - mu) / np.exp(logvar), axis=(0, 1)),
                               rtol=1e-10)
    np.testing.assert_allclose(grads["encoder.logvar.b"],
                               np.sum(weight * 0.5 * (eps ** 2 - 1), axis=(0, 1)), rtol=1e-10)


# ---------------------------------------------------------------- the variance

def test_the_score_function_variance_is_many_times_the_reparameterized_one():
    """Seen with these seeds: per-entry variance 0.29 (reparameterized) against
    8.6 (score function) at L = 1, a factor of 30; at L = 10, 0.032 against
    0.92, and 0.19 with the leave-one-out baseline, still 6 times more."""
    model, x = small_vae(), binary_x()
    variance = {}
    for key, gradient, samples in (("rp", reparameterized_gradient, 1),
                                   ("sf", score_function_gradient, 1),
                                   ("rp10", reparameterized_gradient, 10),
                                   ("sf10", score_function_gradient, 10),
                                   ("loo10", loo, 10)):
        variance[key] = gradient_moments(gradient, model, x, samples, 1000,
                                         np.random.default_rng(8)).mean_variance
    assert variance["sf"] > 10 * variance["rp"]
    assert variance["sf10"] > 10 * variance["rp10"]
    assert variance["rp10"] < variance["loo10"] < variance["sf10"] / 2
    # with independent samples, L samples divide the variance by about L
    assert 5 < variance["rp"] / variance["rp10"] < 20 and 5 < variance["sf"] / variance["sf10"] < 20


def test_gradient_moments_are_numpys_mean_and_variance_of_the_same_draws():
    model, x = small_vae(), binary_x()
    moments = gradient_moments(loo, model, x, 3, 50, np.random.default_rng(9))
    g = draws_of(loo, model, x, 3, 50, seed=9)
    np.testing.assert_allclose(flat(moments.mean, model), g.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(flat(moments.variance, model), g.var(axis=0, ddof=1), rtol=1e-9)
    assert moments.mean_variance == pytest.approx(g.var(axis=0, ddof=1).mean(), rel=1e-9)
    np.testing.assert_allclose(moments.standard_error("encoder.mu.b"),
                               np.sqrt(moments.variance["encoder.mu.b"] / 50))
    assert (moments.draws, moments.samples) == (50, 3)


@pytest.mark.parametrize("posterior", ["gaussian", "laplace", "logistic"])
def test_a_float32_model_gives_float32_gradients_without_numpy_warnings(posterior):
    model, x = small_vae(posterior, np.float32), binary_x(dtype=np.float32)
    eps = noise(model, 4, x, np.random.default_rng(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for baseline in (None, 1.0, np.float64(1.0), LEAVE_ONE_OUT):
            grads = score_function_gradient(model, x, eps, baseline)
            assert set(grads) == set(model.recognition)
            assert all(g.dtype == np.float32 for g in grads.values())
        assert all(g.dtype == np.float32
                   for g in reparameterized_gradient(model, x, eps).values())
    assert all(p.grad is None for p in model.params.values())


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda m, x: score_function_gradient(m, x, np.zeros((0, 4, 2))), r"L >= 1"),
    (lambda m, x: reparameterized_gradient(m, x, np.zeros((4, 2))), r"shape \(L, B, J\)"),
    (lambda m, x: score_function_gradient(m, x, np.zeros((1, 4, 2)), LEAVE_ONE_OUT),
     r"leave-one-out baseline needs L >= 2"),
    (lambda m, x: score_function_gradient(m, x, np.zeros((2, 4, 2)), "mean"), r"unknown baseline"),
    (lambda m, x: score_function_gradient(m, x, np.zeros((2, 4, 2)), float("nan")),
     r"one finite number"),
    (lambda m, x: score_function_gradient(m, x, np.zeros((2, 3, 2))), r"expected \(L, 4, 2\)"),
    (lambda m, x: gradient_moments(loo, m, x, 0, 10, np.random.default_rng(0)),
     r"samples \(L\) must be at least 1"),
    (lambda m, x: gradient_moments(loo, m, x, 2, 1, np.random.default_rng(0)),
     r"draws must be at least 2"),
    (lambda m, x: score_function_gradient(Autoencoder(6, (5,), 2), x, np.zeros((1, 4, 2))),
     r"Autoencoder has no q\(z\|x\)"),
])
def test_bad_input_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as err:
        call(small_vae(), binary_x())
    assert "\n" not in str(err.value)
