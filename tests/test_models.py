"""Every registered model keeps the contract of minivae.models.base; the
likelihoods say which pixels they model and sample what they score; one
step of learning is the same unit for every caller."""
import numpy as np
import pytest

from minivae.algorithms import GradientAscent, NonFiniteObjective
from minivae.data import load_mnist
from minivae.likelihoods import LIKELIHOODS
from minivae.models import MODELS
from minivae.models.base import LatentVariableModel, Model
from minivae.objectives import ELBO
from minivae.optim import SGD, Adagrad


def build(name, decoder=None, dtype=np.float64, seed=0):
    """A small model of each kind, given only the fields it takes (its `options`)."""
    cls = MODELS[name]
    fields = {"hidden": (5,), "latent": 2, "decoder": decoder, "activation": "tanh",
              "init": "normal"}
    return cls(x_dim=6, dtype=dtype, rng=np.random.default_rng(seed),
               **{k: v for k, v in fields.items() if k in cls.options})


def conditioned(model, x, z):
    """x and z as the model reads them: a conditional model's rows end with a
    one-hot label, [pixels, y] and the decoder's input [z, y] (models.base)."""
    if not model.classes:
        return x, z
    y = np.eye(model.classes)[np.arange(len(x)) % model.classes]
    return np.hstack([x, y]), np.hstack([z, y])


# every model with every likelihood it can take
KINDS = [(name, decoder) for name in sorted(MODELS) for decoder in sorted(LIKELIHOODS)
         if "decoder" in MODELS[name].options] + \
        [(name, None) for name in sorted(MODELS) if "decoder" not in MODELS[name].options]


@pytest.mark.parametrize("name, decoder", KINDS)
def test_every_model_keeps_the_contract_with_its_documented_shapes(name, decoder):
    model = build(name, decoder)
    assert isinstance(model, Model)
    B, D, J = 4, model.x_dim, model.latent
    z = np.random.default_rng(2).standard_normal((B, J))
    x, zy = conditioned(model, np.random.default_rng(1).random((B, D)), z)
    assert list(model.params) == [n for n, _ in model.named_parameters()]
    assert model.code(x).shape == (B, J) and model.decode_mean(zy).shape == (B, D)
    assert all(head.shape == (B, D) for head in model.reconstruction(x)[:1])
    if model.has_prior:
        assert isinstance(model, LatentVariableModel)
        mu, logvar = model.posterior(x)
        assert mu.shape == logvar.shape == (B, J)
        assert model.log_px_given_z(x, z).shape == model.log_prior(z).shape == (B,)
        assert model.sample_x(zy, np.random.default_rng(3)).shape == (B, D)
        assert set(model.recognition) | set(model.generative) == set(model.params)
        assert not set(model.recognition) & set(model.generative)


@pytest.mark.parametrize("name", sorted(m for m in MODELS if MODELS[m].has_prior))
def test_the_generative_parameters_alone_decide_p_x_given_z(name):
    """Changing a recognition parameter leaves log p(x|z) alone; a generative one moves it."""
    model = build(name)
    z = np.ones((3, 2))
    x, _ = conditioned(model, np.random.default_rng(1).random((3, 6)).round(), z)
    before = model.log_px_given_z(x, z).data
    model.params[model.recognition[0]].data += 1.0
    assert np.array_equal(model.log_px_given_z(x, z).data, before)
    model.params[model.generative[0]].data += 1.0
    assert not np.allclose(model.log_px_given_z(x, z).data, before)


def test_a_model_computes_with_whatever_dict_its_params_holds():
    """The weights are read from model.params on every pass (what gradcheck relies on)."""
    a, b = build("vae", seed=0), build("vae", seed=1)
    z = np.ones((2, 2))
    a.params = b.params
    np.testing.assert_array_equal(a.decode_mean(z).data, b.decode_mean(z).data)


@pytest.mark.parametrize("decoder, pixels", [("bernoulli", "binary"), ("gaussian", "continuous"),
                                             ("squared", "continuous")])
def test_each_likelihood_names_the_pixels_it_models(decoder, pixels):
    assert LIKELIHOODS[decoder].pixels == pixels


@pytest.mark.parametrize("decoder", sorted(LIKELIHOODS))
def test_samples_of_x_average_to_the_decoder_mean(decoder):
    model = build("vae", decoder)
    z = np.zeros((20000, 2))
    mean = model.decode_mean(z[:1]).data[0]
    draws = model.sample_x(z, np.random.default_rng(4))
    if decoder == "bernoulli":
        assert set(np.unique(draws)) <= {0.0, 1.0}
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se + 1e-12)


def test_gradient_ascent_raises_the_bound_on_a_minibatch_it_repeats():
    images = load_mnist().train_images[:100]
    model = MODELS["vae"](x_dim=784, hidden=(32,), latent=4, rng=np.random.default_rng(0))
    learn = GradientAscent(model, ELBO("B"), Adagrad(model.params, lr=0.02))
    x = (images > 127).astype(np.float32)
    first = learn.step(x, np.random.default_rng(1))["elbo"].mean()
    for _ in range(20):
        last = learn.step(x, np.random.default_rng(1))["elbo"].mean()
    assert learn.steps == 21 and last > first + 10


def test_gradient_ascent_changes_nothing_when_the_objective_is_not_finite():
    model = build("vae")
    learn = GradientAscent(model, ELBO("B"), SGD(model.params, lr=0.1))
    before = {n: t.data.copy() for n, t in model.named_parameters()}
    model.params["decoder.logits.b"].data[0] = np.nan
    with pytest.raises(NonFiniteObjective) as err:
        learn.step(np.ones((3, 6)), np.random.default_rng(0))
    assert err.value.step == 1 and "decoder.logits.b" in err.value.cause
    assert learn.steps == 0
    assert all(np.array_equal(t.data, before[n]) for n, t in model.named_parameters()
               if n != "decoder.logits.b")
