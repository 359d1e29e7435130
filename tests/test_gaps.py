"""The approximation and amortization gaps (Cremer, Li & Duvenaud 2018).

Where the answer is known exactly, it is checked: for a linear-Gaussian
model (a VAE with no hidden layer and p(x|z) = N(x; W^T z + b, sigma^2 I),
probabilistic PCA) log p(x), the posterior p(z|x) = N(m, Lambda^-1) and the
ELBO of any Gaussian q are closed forms, and the best mean-field q has mean
m and variances 1 / Lambda_jj (Bishop 19.2.1), so its approximation gap is
KL(q* || p(z|x)) = 1/2 (sum_j log Lambda_jj - log det Lambda): zero exactly
when Lambda is diagonal.  On a small VAE trained on MNIST, the orderings
L[q_phi] <= L[q*] <= log p(x) are checked within Monte Carlo error.
"""
import warnings

import matplotlib.image
import numpy as np
import pytest

from minivae import data, plots
from minivae import gaps as gaps_module
from minivae.algorithms import GradientAscent
from minivae.autograd import Tensor, no_grad
from minivae.gaps import LocalPosterior, mc_elbo, mc_log_px, measure_gaps, optimize_locally
from minivae.models import PCA, Autoencoder, ConditionalVAE
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam

D, J, SIGMA2 = 6, 2, 0.25   # the linear-Gaussian model: x (D,), z (J,), noise variance


def linear_gaussian(correlated, n=40, seed=0):
    """A VAE with decoder mean z W + b (W (J, D)) and a scalar variance SIGMA2, its
    random linear encoder left as drawn; x (n, D) drawn from the model itself.
    W's rows are orthogonal, so that W W^T and Lambda are diagonal, unless
    `correlated` adds the first row to the second."""
    rng = np.random.default_rng(seed)
    model = VAE(x_dim=D, hidden=(), latent=J, decoder="gaussian", variance="scalar",
                dtype=np.float64, rng=rng)
    U, _ = np.linalg.qr(rng.standard_normal((D, J)))       # orthonormal columns
    W = (U * [2.0, 1.0]).T.copy()
    if correlated:
        W[1] += W[0]
    b = rng.standard_normal(D)
    model.params["decoder.mu.W"].data[...] = W
    model.params["decoder.mu.b"].data[...] = b
    model.params["decoder.logvar"].data[...] = np.log(SIGMA2)
    x = rng.standard_normal((n, J)) @ W + b + np.sqrt(SIGMA2) * rng.standard_normal((n, D))
    return model, x, W, b


def exact(x, W, b):
    """Lambda (J, J), the posterior means m (n, J) and log p(x) (n,) of probabilistic
    PCA: Lambda = I + W W^T / sigma^2, m = (x - b) W^T Lambda^-1 / sigma^2,
    x ~ N(b, W^T W + sigma^2 I)."""
    precision = np.eye(J) + W @ W.T / SIGMA2
    m = (x - b) @ W.T @ np.linalg.inv(precision) / SIGMA2
    cov, d = W.T @ W + SIGMA2 * np.eye(D), x - b
    log_px = -0.5 * (D * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1]
                     + np.einsum("nd,de,ne->n", d, np.linalg.inv(cov), d))
    return precision, m, log_px


def kl_to_posterior(mu, logvar, m, precision):
    """KL(N(mu, diag(exp(logvar))) || N(m, precision^-1)) per row, (n,)."""
    v, dm = np.exp(logvar), mu - m
    return 0.5 * (v @ np.diag(precision) + np.einsum("nj,jk,nk->n", dm, precision, dm) - J
                  - logvar.sum(axis=1) - np.linalg.slogdet(precision)[1])


def encoder_output(model, x):
    with no_grad():
        return tuple(t.data for t in model.posterior(x))


# ---------------------------------------------------------------- exact answers

def mean_field_optimum(precision, n):
    """The best mean-field Gaussian's logvar (n, J): variances 1 / Lambda_jj."""
    return np.tile(-np.log(np.diag(precision)), (n, 1))


def mean_and_mc_error(gaps, name):
    """The mean over datapoints of a per-datapoint value and its Monte Carlo SE."""
    mean, _, mc = gaps.summary()[name]
    return mean, mc


@pytest.mark.parametrize("correlated", [False, True])
def test_local_optimization_reaches_the_closed_form_mean_field_optimum(correlated):
    model, x, W, b = linear_gaussian(correlated)
    precision, m, _ = exact(x, W, b)
    best = mean_field_optimum(precision, len(x))
    mu, logvar, _ = optimize_locally(model, x, np.random.default_rng(1), steps=500,
                                     samples=50, lr=0.05)
    assert np.abs(mu - m).max() < 0.05 and np.abs(logvar - best).max() < 0.3
    # the ELBO it leaves on the table, exactly: KL(q || p(z|x)) - KL(q* || p(z|x))
    shortfall = kl_to_posterior(mu, logvar, m, precision) - kl_to_posterior(m, best, m, precision)
    assert shortfall.mean() < 0.01 and shortfall.max() < 0.05
    # power: the random encoder, where the ascent starts, is far from that optimum
    mu0, logvar0 = encoder_output(model, x)
    start = kl_to_posterior(mu0, logvar0, m, precision) - kl_to_posterior(m, best, m, precision)
    assert np.abs(mu0 - m).max() > 1 and start.min() > 1


def test_the_approximation_gap_is_zero_when_the_posterior_is_in_the_family():
    model, x, W, b = linear_gaussian(correlated=False)
    precision, _, log_px = exact(x, W, b)
    assert np.allclose(precision, np.diag(np.diag(precision)))   # p(z|x) is mean-field
    gaps = measure_gaps(model, x, np.random.default_rng(2), steps=500, samples=50, lr=0.05,
                        k=2000)
    gap, mc = mean_and_mc_error(gaps, "approximation gap")
    assert abs(gap) < 4 * mc + 0.01
    assert np.all(np.abs(gaps.log_px - log_px) < 4 * gaps.log_px_se + 1e-3)


@pytest.mark.parametrize("rows_at_once", [None, 3])
def test_the_approximation_gap_is_the_kl_of_the_best_mean_field_q_when_it_is_not(
        rows_at_once, monkeypatch):
    model, x, W, b = linear_gaussian(correlated=True)
    precision, _, log_px = exact(x, W, b)
    expected = 0.5 * (np.log(np.diag(precision)).sum() - np.linalg.slogdet(precision)[1])
    assert expected > 0.5          # a gap of ~0, as above, fails here
    if rows_at_once:   # the local optimizations in groups of 3 datapoints, as for a large N
        monkeypatch.setattr(gaps_module, "CHUNK_ROWS", rows_at_once * 50)
        assert len(x) > 2 * rows_at_once
    gaps = measure_gaps(model, x, np.random.default_rng(3), steps=500, samples=50, lr=0.05,
                        k=2000)
    assert gaps.trace.shape == (500, len(x))
    gap, mc = mean_and_mc_error(gaps, "approximation gap")
    assert abs(gap - expected) < 4 * mc + 0.02
    error, mc = (gaps.log_px - log_px).mean(), np.sqrt(np.sum(gaps.log_px_se ** 2)) / len(x)
    assert abs(error) < 4 * mc + 0.01


@pytest.mark.parametrize("correlated", [False, True])
def test_the_amortization_gap_is_the_encoders_excess_kl_to_the_posterior(correlated):
    model, x, W, b = linear_gaussian(correlated)
    precision, m, _ = exact(x, W, b)
    mu0, logvar0 = encoder_output(model, x)
    best = kl_to_posterior(m, mean_field_optimum(precision, len(x)), m, precision)
    expected = kl_to_posterior(mu0, logvar0, m, precision) - best    # L[q*] - L[q_phi]
    assert expected.min() > 1      # power: the random encoder is far from q*
    gaps = measure_gaps(model, x, np.random.default_rng(4), steps=500, samples=50, lr=0.05,
                        k=2000)
    gap, mc = mean_and_mc_error(gaps, "amortization gap")
    assert abs(gap - expected.mean()) < 4 * mc + 0.02
    _, se = gaps.per_datapoint()["amortization gap"]
    assert np.all(np.abs(gaps.amortization - expected) < 5 * se + 0.1 * expected)


def test_an_exact_encoder_has_no_amortization_gap():
    # encoder weights set to the closed-form posterior: mu = (x - b) W^T Lambda^-1 / sigma^2
    model, x, W, b = linear_gaussian(correlated=False)
    precision, _, _ = exact(x, W, b)
    to_mean = W.T @ np.linalg.inv(precision) / SIGMA2
    p = model.params
    p["encoder.mu.W"].data[...], p["encoder.mu.b"].data[...] = to_mean, -b @ to_mean
    p["encoder.logvar.W"].data[...] = 0.0
    p["encoder.logvar.b"].data[...] = -np.log(np.diag(precision))
    gaps = measure_gaps(model, x, np.random.default_rng(5), steps=200, samples=50, lr=0.01,
                        k=2000)
    for name in ("amortization gap", "approximation gap"):
        gap, mc = mean_and_mc_error(gaps, name)
        assert abs(gap) < 4 * mc + 0.01, name


def test_monte_carlo_errors_match_the_spread_about_the_exact_values():
    # z = (estimate - exact) / SE over 40 datapoints: with 20 replicates each z is
    # about t_19, RMS ~ 1.05; an SE too small or too large by sqrt(20) fails the bounds
    model, x, W, b = linear_gaussian(correlated=True)
    precision, m, log_px = exact(x, W, b)
    mu0, logvar0 = encoder_output(model, x)
    elbo, elbo_se = mc_elbo(model, x, np.random.default_rng(6), samples=1000)
    estimate, log_px_se = mc_log_px(model, x, np.random.default_rng(7), k=1000)
    for z in ((elbo - (log_px - kl_to_posterior(mu0, logvar0, m, precision))) / elbo_se,
              (estimate - log_px) / log_px_se):
        assert 0.6 < np.sqrt(np.mean(z ** 2)) < 1.8, z


# ---------------------------------------------------------------- a trained VAE

@pytest.fixture(scope="module")
def trained():
    """A 784-32-4 VAE after 400 Adam steps on 1000 binarized MNIST images (float64),
    and 20 binarized test images."""
    mnist = data.load_mnist()
    x_train = data.binarize_static(mnist.train_images[:1000], seed=0).astype(np.float64)
    x_test = data.binarize_static(mnist.test_images[:20], seed=1).astype(np.float64)
    rng = np.random.default_rng(0)
    model = VAE(x_dim=784, hidden=(32,), latent=4, init="xavier", dtype=np.float64, rng=rng)
    learn = GradientAscent(model, ELBO(), Adam(model.params, lr=3e-3))
    for _ in range(400):
        learn.step(x_train[rng.choice(len(x_train), 50, replace=False)], rng)
    return model, x_test


@pytest.fixture(scope="module")
def measured(trained):
    """The trained model's parameters before, and its gaps on the test images."""
    model, x = trained
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    for p in model.params.values():
        p.grad = None
    gaps = measure_gaps(model, x, np.random.default_rng(1), steps=200, samples=10, lr=0.02,
                        k=1000)
    return before, gaps


def test_the_local_elbo_is_at_least_the_encoders_on_every_datapoint(measured):
    _, gaps = measured
    gap, se = gaps.per_datapoint()["amortization gap"]
    assert np.all(gap > -4 * se), gap / se
    mean, across, mc = gaps.summary()["amortization gap"]
    assert mean > 5 * across and mean > 5 * mc     # power: the encoder is measurably worse


def test_neither_elbo_exceeds_log_px(measured):
    _, gaps = measured
    for name in ("local ELBO", "encoder ELBO"):
        elbo, se = gaps.per_datapoint()[name]
        assert np.all(elbo < gaps.log_px + 4 * np.hypot(se, gaps.log_px_se)), name
    gap, se = gaps.per_datapoint()["approximation gap"]
    assert gap.mean() > 5 * np.sqrt(np.sum(se ** 2)) / len(gap)   # a non-linear decoder's


def test_the_local_optimization_leaves_the_model_unchanged(trained, measured):
    model, _ = trained
    before, _ = measured
    for name, p in model.named_parameters():
        assert np.array_equal(p.data, before[name]), name
        assert p.grad is None and p.requires_grad, name


def test_the_trace_rises_from_the_encoders_elbo_to_the_local_one(measured):
    _, gaps = measured
    steps, n = gaps.trace.shape
    assert (steps, n) == (200, 20)
    start, end = gaps.trace[:10].mean(), gaps.trace[-10:].mean()
    se = gaps.trace[-10:].mean(axis=0).std(ddof=1) / np.sqrt(n)
    assert abs(start - gaps.encoder_elbo.mean()) < 4 * se + 0.5 * gaps.amortization.mean()
    assert abs(end - gaps.local_elbo.mean()) < 4 * se + 0.2


def test_the_summary_averages_the_per_datapoint_values(measured):
    _, gaps = measured
    mean, across, mc = gaps.summary()["approximation gap"]
    gap = gaps.log_px - gaps.local_elbo
    assert mean == pytest.approx(gap.mean(), rel=1e-12)
    assert across == pytest.approx(gap.std(ddof=1) / np.sqrt(len(gap)), rel=1e-12)
    assert mc == pytest.approx(np.sqrt(np.sum(gaps.log_px_se ** 2 + gaps.local_elbo_se ** 2))
                               / len(gap), rel=1e-12)


def test_the_figure_has_its_fixed_size(measured, tmp_path):
    _, gaps = measured
    path = tmp_path / "gaps.png"
    fig = plots.inference_gaps(gaps, path)
    width, height = plots.SIZES["inference_gaps"]
    assert matplotlib.image.imread(path).shape[:2] == (height, width)
    assert "20 images" in fig.axes[0].get_title()


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("change, words", [
    ({"x": np.zeros((0, 6))}, ["N", "at least 1", "got 0"]),
    ({"steps": 0}, ["steps", "at least 1"]),
    ({"samples": 0}, ["samples", "at least 1"]),
    ({"k": 5}, ["k", "at least 20", "got 5"]),
    ({"model": Autoencoder(x_dim=6, hidden=(3,), latent=2)}, ["Autoencoder", "posterior"]),
    ({"model": PCA(x_dim=6, latent=2)}, ["PCA", "posterior"]),
])
def test_bad_input_is_a_one_line_error(change, words):
    model, x, _, _ = linear_gaussian(correlated=False, n=3)
    args = {"model": model, "x": x, "steps": 2, "samples": 2, "k": 20, **change}
    with pytest.raises(ValueError) as error:
        measure_gaps(args.pop("model"), args.pop("x"), np.random.default_rng(0), **args)
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("posterior", ["gaussian", "laplace", "logistic"])
@pytest.mark.parametrize("lr, steps", [(1e4, 1), (1e3, 2), (30.0, 2), (3.0, 5)])
def test_a_local_optimization_that_runs_away_is_a_one_line_error(dtype, posterior, lr, steps):
    # too large a step: q* ends non-finite (1e4), its gradient overflows on the way (1e3),
    # or it ends finite but far below where it started (30, 3); no bound may report that
    # as a gap, and no numpy warning may reach the user on the way
    rng = np.random.default_rng(0)
    model = VAE(x_dim=6, hidden=(5,), latent=2, posterior=posterior, dtype=dtype, rng=rng)
    x = (rng.random((4, 6)) < 0.5).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as error:
            measure_gaps(model, x, np.random.default_rng(0), steps=steps, samples=10, lr=lr,
                         k=40)
    message = str(error.value)
    assert "\n" not in message and f"smaller lr than {lr}" in message, message


def test_a_local_posterior_refuses_other_datapoints():
    model, x, _, _ = linear_gaussian(correlated=False, n=3)
    local = LocalPosterior(model, Tensor(np.zeros((3, J))), Tensor(np.zeros((3, J))))
    with pytest.raises(ValueError, match="3 rows of"):
        local.posterior(x[:2])


@pytest.mark.parametrize("posterior, classes", [("laplace", 0), ("logistic", 0),
                                                ("gaussian", 3)])
def test_other_families_and_a_conditional_vae_are_measured_alike(posterior, classes):
    # an untrained model: its encoder is far from each q*, so the gap must show
    rng = np.random.default_rng(0)
    options = dict(x_dim=6, hidden=(5,), latent=2, posterior=posterior, dtype=np.float64,
                   rng=rng)
    model = ConditionalVAE(classes=classes, **options) if classes else VAE(**options)
    x = (rng.random((8, 6)) < 0.5).astype(np.float64)
    if classes:   # each row [pixels, onehot(y)]
        x = np.hstack([x, data.one_hot(np.arange(8) % classes, classes).astype(np.float64)])
    gaps = measure_gaps(model, x, np.random.default_rng(1), steps=100, samples=10, lr=0.05,
                        k=400)
    mean, _, mc = gaps.summary()["amortization gap"]
    assert mean > 5 * mc and np.isfinite(gaps.log_px).all()
    gap, se = gaps.per_datapoint()["approximation gap"]
    assert np.all(gap > -4 * se)
