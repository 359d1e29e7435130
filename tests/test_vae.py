"""The VAE of Appendix C: shapes, parameters, and the estimators' statistics.

The statistical tests use a fixed seed, and each tolerance is five Monte
Carlo standard errors (estimated from the samples themselves), so they are
deterministic and a correct implementation passes them with a wide margin.
Reference values are computed here, in numpy, by hand: a quadrature of
log p(x) = log int p(x|z) p(z) dz for a two-dimensional latent space, and
Monte Carlo averages written out from the densities' formulas.
"""
import numpy as np
import pytest

from minivae.gradcheck import gradcheck
from minivae.distributions import gaussian_kl
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.models.vae import VAE
from minivae.objectives import elbo, log_weights

LOG_2PI = np.log(2 * np.pi)


def tiny_vae(decoder="bernoulli", hidden=(5,), latent=2, x_dim=6, dtype=np.float64, seed=0,
             encoder_std=0.5, decoder_std=1.0):
    """A small VAE whose weights are large enough that q(z|x) is far from the
    prior and p(x|z) depends strongly on z, so that mistakes show."""
    rng = np.random.default_rng(seed)
    model = VAE(x_dim=x_dim, hidden=hidden, latent=latent, decoder=decoder, dtype=dtype, rng=rng)
    for name, p in model.named_parameters():
        std = encoder_std if name.startswith("encoder") else decoder_std
        p.data = rng.normal(0.0, std, p.shape).astype(dtype)
    return model


def data_for(decoder, n, x_dim, seed, dtype=np.float64):
    """Binary x for a Bernoulli decoder, intensities in (0, 1) for a Gaussian one."""
    rng = np.random.default_rng(seed)
    if decoder == "bernoulli":
        return (rng.random((n, x_dim)) < 0.5).astype(dtype)
    return rng.random((n, x_dim)).astype(dtype)


def normal_log_density(x, mu, logvar):
    """sum_j log N(x_j; mu_j, exp(logvar_j)), written out from the formula."""
    return -0.5 * np.sum(LOG_2PI + logvar + (x - mu) ** 2 / np.exp(logvar), axis=-1)


def reference_mlp(params, prefix, h, n_hidden):
    for i in range(n_hidden):
        h = np.tanh(h @ params[f"{prefix}.hidden.{i}.W"] + params[f"{prefix}.hidden.{i}.b"])
    return h


def reference_log_px_given_z(params, x, z, decoder, n_hidden=1):
    """log p(x|z) of Appendix C, in numpy: (..., J) -> (...)."""
    h = reference_mlp(params, "decoder", z, n_hidden)
    if decoder == "bernoulli":
        logits = h @ params["decoder.logits.W"] + params["decoder.logits.b"]
        return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)
    mu = h @ params["decoder.mu.W"] + params["decoder.mu.b"]
    logvar = h @ params["decoder.logvar.W"] + params["decoder.logvar.b"]
    return normal_log_density(x, mu, logvar)


def reference_encoder(params, x, n_hidden=1):
    h = reference_mlp(params, "encoder", x, n_hidden)
    return (h @ params["encoder.mu.W"] + params["encoder.mu.b"],
            h @ params["encoder.logvar.W"] + params["encoder.logvar.b"])


def mean_and_standard_error(values):
    values = np.asarray(values, dtype=np.float64)
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("L", [1, 3])
def test_encode_decode_elbo_and_log_weights_have_the_documented_shapes(decoder, L):
    B, D, J = 4, 7, 3
    model = tiny_vae(decoder, hidden=(5,), latent=J, x_dim=D)
    x = data_for(decoder, B, D, seed=1)
    mu, logvar = model.posterior(x)
    assert mu.shape == (B, J) and logvar.shape == (B, J)
    decoded = model.decode(np.zeros((B, J)))       # one (B, D) output per likelihood head
    assert [t.shape for t in decoded] == [(B, D)] * {"bernoulli": 1, "gaussian": 2}[decoder]
    assert model.decode_mean(np.zeros((B, J))).shape == (B, D)
    eps = np.random.default_rng(2).standard_normal((L, B, J))
    assert log_weights(model, x, eps).shape == (L, B)
    for estimator in ("A", "B"):
        assert elbo(model, x, eps, estimator).shape == (B,)


def test_eps_of_the_wrong_shape_is_rejected_naming_the_expected_shape():
    model = tiny_vae(latent=3)
    x = data_for("bernoulli", 4, 6, seed=1)
    with pytest.raises(ValueError, match=r"\(L, 4, 3\)"):
        elbo(model, x, np.zeros((1, 4, 2)))
    with pytest.raises(ValueError, match=r"\(L, 4, 3\)"):
        elbo(model, x, np.zeros((1, 5, 3)))


def test_an_unknown_estimator_decoder_or_init_is_a_value_error():
    with pytest.raises(ValueError, match="estimator"):
        elbo(tiny_vae(), np.zeros((1, 6)), np.zeros((1, 1, 2)), estimator="C")
    with pytest.raises(ValueError, match="decoder"):
        VAE(x_dim=4, hidden=(3,), latent=2, decoder="poisson")
    with pytest.raises(ValueError, match="init"):
        VAE(x_dim=4, hidden=(3,), latent=2, init="zeros")


# ---------------------------------------------------------------- parameters

def test_named_parameters_of_the_papers_bernoulli_model_are_named_and_shaped_as_documented():
    model = VAE(rng=np.random.default_rng(0))   # 784-500-20, Bernoulli decoder
    assert [(name, t.shape) for name, t in model.named_parameters()] == [
        ("encoder.hidden.0.W", (784, 500)), ("encoder.hidden.0.b", (500,)),
        ("encoder.mu.W", (500, 20)), ("encoder.mu.b", (20,)),
        ("encoder.logvar.W", (500, 20)), ("encoder.logvar.b", (20,)),
        ("decoder.hidden.0.W", (20, 500)), ("decoder.hidden.0.b", (500,)),
        ("decoder.logits.W", (500, 784)), ("decoder.logits.b", (784,)),
    ]


def test_named_parameters_of_a_gaussian_decoder_with_two_hidden_layers_mirror_the_encoder():
    model = VAE(x_dim=10, hidden=(6, 4), latent=3, decoder="gaussian",
                rng=np.random.default_rng(0))
    assert [(name, t.shape) for name, t in model.named_parameters()] == [
        ("encoder.hidden.0.W", (10, 6)), ("encoder.hidden.0.b", (6,)),
        ("encoder.hidden.1.W", (6, 4)), ("encoder.hidden.1.b", (4,)),
        ("encoder.mu.W", (4, 3)), ("encoder.mu.b", (3,)),
        ("encoder.logvar.W", (4, 3)), ("encoder.logvar.b", (3,)),
        ("decoder.hidden.0.W", (3, 4)), ("decoder.hidden.0.b", (4,)),
        ("decoder.hidden.1.W", (4, 6)), ("decoder.hidden.1.b", (6,)),
        ("decoder.mu.W", (6, 10)), ("decoder.mu.b", (10,)),
        ("decoder.logvar.W", (6, 10)), ("decoder.logvar.b", (10,)),
    ]


def test_named_parameters_are_the_same_tensors_in_the_same_order_on_every_call():
    model = VAE(x_dim=8, hidden=(5,), latent=2, rng=np.random.default_rng(0))
    first, second = model.named_parameters(), model.named_parameters()
    assert [n for n, _ in first] == [n for n, _ in second]
    assert all(a is b for (_, a), (_, b) in zip(first, second))
    assert all(t.requires_grad for _, t in first)


def test_the_same_rng_seed_gives_the_same_initial_parameters():
    a = VAE(x_dim=8, hidden=(5,), latent=2, rng=np.random.default_rng(3))
    b = VAE(x_dim=8, hidden=(5,), latent=2, rng=np.random.default_rng(3))
    assert all(np.array_equal(p.data, q.data)
               for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()))


def test_normal_init_draws_every_parameter_from_n_0_0_01_squared():
    model = VAE(rng=np.random.default_rng(0), dtype=np.float64)   # 784-500-20
    for name, t in model.named_parameters():
        n, values = t.size, t.data.ravel()
        # standard errors of the sample mean and standard deviation of N(0, 0.01^2)
        assert abs(values.mean()) <= 5 * 0.01 / np.sqrt(n), name
        assert abs(values.std() - 0.01) <= 5 * 0.01 / np.sqrt(2 * n), name


def test_xavier_init_has_zero_biases_and_weights_uniform_within_the_glorot_bound():
    model = VAE(init="xavier", rng=np.random.default_rng(0), dtype=np.float64)  # 784-500-20
    fans = {"encoder.hidden.0.W": (784, 500), "encoder.mu.W": (500, 20),
            "encoder.logvar.W": (500, 20), "decoder.hidden.0.W": (20, 500),
            "decoder.logits.W": (500, 784)}
    for name, t in model.named_parameters():
        if name.endswith(".b"):
            assert np.all(t.data == 0), name
            continue
        bound = np.sqrt(6.0 / sum(fans[name]))
        values = t.data.ravel()
        assert np.all(np.abs(values) <= bound), name
        # uniform on [-bound, bound]: the largest |W| is near the bound, variance bound^2 / 3
        assert np.abs(values).max() >= bound * (1 - 20 / values.size), name
        var, n = bound ** 2 / 3, values.size
        se_var = np.sqrt((bound ** 4 / 5 - var ** 2) / n)   # Var(W^2) = E W^4 - (E W^2)^2
        assert abs(np.mean(values ** 2) - var) <= 5 * se_var, name


def test_a_float32_model_stays_float32_from_parameters_to_gradients():
    model = tiny_vae(dtype=np.float32)
    x = data_for("bernoulli", 4, 6, seed=1, dtype=np.float32)
    eps = np.random.default_rng(2).standard_normal((3, 4, 2), dtype=np.float32)
    assert all(t.dtype == np.float32 for _, t in model.named_parameters())
    assert all(t.dtype == np.float32 for t in model.posterior(x))
    assert log_weights(model, x, eps).dtype == np.float32
    for estimator in ("A", "B"):
        bound = elbo(model, x, eps, estimator)
        assert bound.dtype == np.float32
        for _, t in model.named_parameters():
            t.grad = None
        (-bound.mean()).backward()
        assert all(t.grad.dtype == np.float32 for _, t in model.named_parameters())


def test_float64_eps_for_a_float32_model_is_an_error_not_a_silent_promotion():
    model = tiny_vae(dtype=np.float32)
    x = data_for("bernoulli", 4, 6, seed=1, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        elbo(model, x, np.zeros((1, 4, 2), np.float64))


# ---------------------------------------------------------------- statistics

def tiled_elbos(model, x, n_samples, seed):
    """Per-sample values of both estimators with the same eps: x repeated n
    times as one minibatch, one eps per row, so elbo returns one draw per row."""
    x_rep = np.tile(x, (n_samples, 1))
    eps = np.random.default_rng(seed).standard_normal((1, len(x_rep), model.latent))
    a = elbo(model, x_rep, eps, "A").data.reshape(n_samples, len(x))
    b = elbo(model, x_rep, eps, "B").data.reshape(n_samples, len(x))
    return a, b


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_estimators_a_and_b_have_the_same_expectation_per_datapoint(decoder):
    model = tiny_vae(decoder, latent=3)
    x = data_for(decoder, 3, 6, seed=1)
    a, b = tiled_elbos(model, x, 20000, seed=2)
    # Paired: A - B = log p(z) - log q(z|x) + KL has mean zero under q.
    diff = a - b
    mean, se = diff.mean(axis=0), diff.std(axis=0, ddof=1) / np.sqrt(len(diff))
    assert np.all(np.abs(mean) <= 5 * se), (mean, se)
    # and the paired test has power: the KL term is many standard errors away from zero
    mu, logvar = model.posterior(x)
    assert np.all(gaussian_kl(mu, logvar).data > 20 * se)


def test_mean_over_l_samples_equals_the_mean_of_single_sample_estimates():
    model = tiny_vae(latent=3)
    x = data_for("bernoulli", 3, 6, seed=1)
    eps = np.random.default_rng(2).standard_normal((4, 3, 3))
    for estimator in ("A", "B"):
        together = elbo(model, x, eps, estimator).data
        apart = np.mean([elbo(model, x, eps[l:l + 1], estimator).data for l in range(4)], axis=0)
        np.testing.assert_allclose(together, apart, rtol=1e-12, atol=1e-12)


def test_log_weights_equal_log_p_x_and_z_minus_log_q_z_written_out_by_hand():
    model = tiny_vae("gaussian", latent=2)
    x = data_for("gaussian", 3, 6, seed=1)
    eps = np.random.default_rng(2).standard_normal((5, 3, 2))
    params = {name: t.data for name, t in model.named_parameters()}
    mu, logvar = reference_encoder(params, x)
    z = mu + np.exp(logvar / 2) * eps                                      # eq. 10
    expected = (reference_log_px_given_z(params, x, z, "gaussian")
                + normal_log_density(z, 0.0, 0.0) - normal_log_density(z, mu, logvar))
    np.testing.assert_allclose(log_weights(model, x, eps).data, expected, rtol=1e-10)


def test_analytic_gaussian_kl_matches_a_monte_carlo_estimate_under_q():
    rng = np.random.default_rng(0)
    mu = rng.normal(0.0, 1.0, (3, 4))
    logvar = rng.uniform(-2.0, 1.0, (3, 4))
    n = 100000
    z = mu + np.exp(logvar / 2) * rng.standard_normal((n, 3, 4))
    draws = normal_log_density(z, mu, logvar) - normal_log_density(z, 0.0, 0.0)   # (n, 3)
    mc, se = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(n)
    kl = gaussian_kl(mu, logvar).data
    assert np.all(np.abs(kl - mc) <= 5 * se), (kl, mc, se)


@pytest.fixture(scope="module")
def quadrature_case():
    """A Bernoulli VAE with J = 2, four datapoints, and log p(x) by quadrature.

    The encoder is kept close to the prior so that importance sampling with
    q converges within a few thousand samples.  Besides exact log p(x) the
    quadrature gives the relative variance of the importance weights,
    E_q[w^2] / p(x)^2 - 1, which bounds the bias of log-mean-exp over K
    samples to about rel_var / (2K) (the delta method).
    """
    model = tiny_vae("bernoulli", latent=2, seed=1, encoder_std=0.3)
    x = data_for("bernoulli", 4, 6, seed=2)
    params = {name: t.data for name, t in model.named_parameters()}
    grid = np.linspace(-8.0, 8.0, 401)
    cell = (grid[1] - grid[0]) ** 2
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    mu, logvar = reference_encoder(params, x)
    log_px, rel_var = [], []
    for i in range(len(x)):
        log_joint = reference_log_px_given_z(params, x[i], z, "bernoulli") \
            + normal_log_density(z, 0.0, 0.0)
        log_px.append(np.logaddexp.reduce(log_joint) + np.log(cell))
        log_q = normal_log_density(z, mu[i], logvar[i])
        log_second_moment = np.logaddexp.reduce(2 * log_joint - log_q) + np.log(cell)
        rel_var.append(np.exp(log_second_moment - 2 * log_px[-1]) - 1)
    return model, x, np.mean(log_px), np.array(rel_var)


def repeated(estimate, repeats):
    return mean_and_standard_error([estimate(np.random.default_rng([7, r]))
                                    for r in range(repeats)])


def test_importance_sampled_log_px_converges_to_log_px_by_quadrature(quadrature_case):
    model, x, exact, rel_var = quadrature_case
    k = 2000
    estimate, se = repeated(lambda rng: log_likelihood(model, [x], rng, k=k), 20)
    bias = np.mean(rel_var) / (2 * k)
    assert estimate <= exact + 5 * se                  # a lower bound in expectation
    assert estimate >= exact - bias - 5 * se, (estimate, exact, bias, se)


@pytest.mark.parametrize("estimator", ["A", "B"])
def test_mean_elbo_never_exceeds_log_px(quadrature_case, estimator):
    model, x, exact, _ = quadrature_case
    elbo, se_elbo = repeated(lambda rng: mean_elbo(model, [x], rng, estimator, samples=500), 20)
    log_px, se_px = repeated(lambda rng: log_likelihood(model, [x], rng, k=2000), 20)
    assert elbo <= exact + 5 * se_elbo
    assert elbo <= log_px + 5 * np.hypot(se_elbo, se_px)
    # and the gap is real here, so an estimator that returned log p(x) would fail
    assert exact - elbo > 20 * se_elbo


def test_log_likelihood_grows_with_k_from_the_elbo_towards_log_px(quadrature_case):
    model, x, exact, _ = quadrature_case
    repeats = {1: 200, 10: 100, 100: 30, 1000: 30}   # more repeats where each is noisier
    results = {k: repeated(lambda rng: log_likelihood(model, [x], rng, k=k), r)
               for k, r in repeats.items()}
    ks = sorted(results)
    for small, large in zip(ks, ks[1:]):
        (m_small, se_small), (m_large, se_large) = results[small], results[large]
        assert m_large >= m_small - 5 * np.hypot(se_small, se_large), (small, large, results)
    # strictly: K = 1000 is well above K = 1 ...
    (m1, se1), (m1000, se1000) = results[1], results[1000]
    assert m1000 - m1 > 5 * np.hypot(se1, se1000)
    # ... and K = 1 is estimator A's ELBO in expectation
    elbo, se_elbo = repeated(lambda rng: mean_elbo(model, [x], rng, "A", samples=500), 20)
    assert abs(m1 - elbo) <= 5 * np.hypot(se1, se_elbo)


def test_log_likelihood_chunks_carry_the_log_sum_exp_across_chunks(quadrature_case):
    model, x, _, _ = quadrature_case
    # Drawing the K samples one chunk of one sample at a time, or all at once, takes
    # the same numbers from the generator, so the two estimates must agree.
    whole = log_likelihood(model, [x], np.random.default_rng(3), k=50, chunk_rows=10 ** 6)
    chunked = log_likelihood(model, [x], np.random.default_rng(3), k=50, chunk_rows=len(x))
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)


def test_log_likelihood_rejects_k_below_one():
    model = tiny_vae()
    with pytest.raises(ValueError, match="k must be at least 1"):
        log_likelihood(model, [np.zeros((1, 6))], np.random.default_rng(0), k=0)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("estimator", ["A", "B"])
def test_gradient_of_the_vae_loss_matches_central_differences(decoder, estimator):
    model = tiny_vae(decoder, hidden=(4,), latent=2, x_dim=5, encoder_std=0.4, decoder_std=0.6)
    names = [name for name, _ in model.named_parameters()]
    x = data_for(decoder, 3, 5, seed=1)
    eps = np.random.default_rng(2).standard_normal((2, 3, 2))   # L = 2

    def loss(*tensors):
        model.params = dict(zip(names, tensors))
        return -elbo(model, x, eps, estimator).mean()

    gradcheck(loss, [t.data for _, t in model.named_parameters()])


# ---------------------------------------------------------------- PyTorch oracle

def test_same_vae_in_torch_gives_the_same_elbo_and_gradients():
    torch = pytest.importorskip("torch", reason="PyTorch is the optional oracle: pip install torch==2.13.0")
    from torch.distributions import Bernoulli, Normal, kl_divergence

    def torch_elbo(params, x, eps, estimator, decoder, n_hidden):
        def mlp(prefix, h):
            for i in range(n_hidden):
                h = torch.tanh(h @ params[f"{prefix}.hidden.{i}.W"] + params[f"{prefix}.hidden.{i}.b"])
            return h

        def head(name, h):
            return h @ params[f"{name}.W"] + params[f"{name}.b"]
        h = mlp("encoder", x)
        mu, logvar = head("encoder.mu", h), head("encoder.logvar", h)
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = mu + torch.exp(0.5 * logvar) * eps                      # (L, B, J)
        h = mlp("decoder", z)
        if decoder == "bernoulli":
            log_px = Bernoulli(logits=head("decoder.logits", h)).log_prob(x).sum(-1)
        else:
            std = torch.exp(0.5 * head("decoder.logvar", h))
            log_px = Normal(head("decoder.mu", h), std).log_prob(x).sum(-1)
        prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
        if estimator == "A":
            return (log_px + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)).mean(0)
        return log_px.mean(0) - kl_divergence(q, prior).sum(-1)

    for decoder in ("bernoulli", "gaussian"):
        for estimator in ("A", "B"):
            model = tiny_vae(decoder, hidden=(5, 4), latent=3, x_dim=6, seed=3)
            x = data_for(decoder, 4, 6, seed=4)
            eps = np.random.default_rng(5).standard_normal((2, 4, 3))
            bound = elbo(model, x, eps, estimator)
            (-bound.mean()).backward()
            params = {name: torch.tensor(t.data, requires_grad=True)
                      for name, t in model.named_parameters()}
            expected = torch_elbo(params, torch.tensor(x), torch.tensor(eps), estimator,
                                  decoder, n_hidden=2)
            (-expected.mean()).backward()
            where = f"{decoder} decoder, estimator {estimator}"
            np.testing.assert_allclose(bound.data, expected.detach().numpy(),
                                       rtol=1e-10, atol=1e-10, err_msg=where)
            for name, t in model.named_parameters():
                np.testing.assert_allclose(t.grad, params[name].grad.numpy(), rtol=1e-9,
                                           atol=1e-12, err_msg=f"{name}, {where}")
