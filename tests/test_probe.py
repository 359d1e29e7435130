"""The linear probe: softmax regression on frozen codes, scored by test accuracy.

Synthetic codes whose label information is known (all of it, or none)
check what the probe reads out; gradcheck checks the loss it minimizes.
"""
import math

import numpy as np
import pytest

from minivae import data
from minivae.autograd import Tensor
from minivae.gradcheck import gradcheck
from minivae.models.vae import VAE
from minivae.probe import (SoftmaxRegression, accuracy, codes, cross_entropy, fit_probe,
                           probe)


def gaussian_classes(rng, n, classes, code_size, separation):
    """Codes z = separation * m_y + N(0, I) with class means m_k ~ N(0, I),
    labels y uniform on 0..classes-1 (a fixed draw of the means per rng)."""
    means = rng.standard_normal((classes, code_size))
    labels = rng.integers(0, classes, size=n)
    return separation * means[labels] + rng.standard_normal((n, code_size)), labels


def split(z, labels):
    half = len(z) // 2
    return (z[:half], labels[:half]), (z[half:], labels[half:])


# ---------------------------------------------------------------- what the probe reads out

def test_linearly_separable_classes_are_all_classified_correctly():
    # means ~20 noise standard deviations apart: no test code falls near a boundary
    (z, y), (z_test, y_test) = split(*gaussian_classes(np.random.default_rng(0), 800, 4, 5, 20.0))
    fitted = fit_probe(z, y, rng=np.random.default_rng(1))
    assert accuracy(fitted, z_test, y_test) == 1.0


def test_codes_independent_of_the_labels_are_classified_at_chance():
    # Predictions depend on test codes and training data only, both independent of
    # the test labels, so each of n test predictions is right with probability 1/K
    # exactly: accuracy ~ Binomial(n, 1/K) / n, standard error sqrt(p (1 - p) / n)
    # = 0.0067 here.  Five standard errors: a correct probe fails with p < 1e-6.
    rng = np.random.default_rng(2)
    n, classes = 2000, 10
    z, y = rng.standard_normal((n, 8)), rng.integers(0, classes, size=n)
    z_test, y_test = rng.standard_normal((n, 8)), rng.integers(0, classes, size=n)
    fitted = fit_probe(z, y, rng=rng, classes=classes)
    chance = 1 / classes
    standard_error = math.sqrt(chance * (1 - chance) / n)
    assert abs(accuracy(fitted, z_test, y_test) - chance) < 5 * standard_error


def test_scaling_the_codes_by_1e4_does_not_change_the_predictions():
    # overlapping classes, so that the predictions depend on how the fit went
    (z, y), (z_test, y_test) = split(*gaussian_classes(np.random.default_rng(3), 1000, 5, 4, 1.0))
    plain = fit_probe(z, y, rng=np.random.default_rng(4), epochs=5)
    scaled = fit_probe(1e4 * z, y, rng=np.random.default_rng(4), epochs=5)
    predictions = plain.predict(z_test)
    assert 0.3 < np.mean(predictions == y_test) < 0.95   # neither chance nor separable
    np.testing.assert_array_equal(scaled.predict(1e4 * z_test), predictions)


def test_the_standardization_is_the_training_codes_mean_and_deviation():
    z = np.random.default_rng(5).normal(loc=[3.0, -1e3, 0.0], scale=[2.0, 50.0, 1e-3], size=(500, 3))
    z[:, 2] = 7.0   # a constant dimension is only centred, never divided by 0
    fitted = fit_probe(z, np.arange(500) % 2, rng=np.random.default_rng(6), epochs=1)
    np.testing.assert_allclose(fitted.mean, z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fitted.std, [z[:, 0].std(), z[:, 1].std(), 1.0], rtol=1e-12)
    assert np.isfinite(fitted.log_probs(z).data).all()


# ---------------------------------------------------------------- the loss and its gradient

def test_the_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    fitted = SoftmaxRegression(code_size=3, classes=4)
    fitted.mean, fitted.std = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    labels = np.array([0, 3, 3, 1, 2, 0])   # repeated classes: getitem's gradients add up

    def loss(W, b, z):
        fitted.W, fitted.b = W, b
        return cross_entropy(fitted.log_probs(z), labels)

    inputs = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((6, 3))]
    assert gradcheck(loss, inputs) < 1e-7


def test_log_probs_are_normalized_even_for_huge_logits():
    fitted = SoftmaxRegression(code_size=2, classes=3)
    fitted.W = Tensor(np.array([[1e3, -1e3, 0.0], [0.0, 5e2, -5e2]]), requires_grad=True)
    log_probs = fitted.log_probs(np.array([[1.0, 2.0], [-3.0, 0.5]])).data
    assert log_probs.shape == (2, 3) and np.isfinite(log_probs).all()
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-12)


def test_the_cross_entropy_of_uniform_predictions_is_log_k():
    fitted = SoftmaxRegression(code_size=2, classes=5)   # zeros: every class 1/5
    loss = cross_entropy(fitted.log_probs(np.ones((3, 2))), np.array([0, 4, 2]))
    assert loss.item() == pytest.approx(math.log(5), rel=1e-12)


# ---------------------------------------------------------------- bad input

Z = np.zeros((4, 2))
BAD_FITS = [
    pytest.param(dict(train_codes=Z, train_labels=np.zeros(3, int)), "4 codes but labels",
                 id="lengths-differ"),
    pytest.param(dict(train_codes=Z, train_labels=np.array([0, 1, -1, 0])), r"0\.\.1",
                 id="negative-label"),
    pytest.param(dict(train_codes=Z, train_labels=np.array([0, 1, 3, 0]), classes=3), r"0\.\.2",
                 id="label-too-large"),
    pytest.param(dict(train_codes=np.zeros((0, 2)), train_labels=np.zeros(0, int)), "empty",
                 id="empty-set"),
    pytest.param(dict(train_codes=np.zeros(4), train_labels=np.zeros(4, int)), r"\(n, J\)",
                 id="codes-not-2d"),
    pytest.param(dict(train_codes=np.full((4, 2), np.nan), train_labels=np.zeros(4, int)),
                 "finite", id="nan-codes"),
    pytest.param(dict(train_codes=Z, train_labels=np.zeros(4)), "integers", id="float-labels"),
    pytest.param(dict(train_codes=Z, train_labels=np.zeros(4, int), epochs=0), "epochs",
                 id="no-epochs"),
]


@pytest.mark.parametrize("kwargs, message", BAD_FITS)
def test_bad_input_to_fit_probe_is_a_one_line_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        fit_probe(rng=np.random.default_rng(0), **kwargs)
    assert "\n" not in str(error.value)


def test_labels_outside_the_fitted_classes_are_a_one_line_value_error_when_scoring():
    fitted = fit_probe(Z, np.array([0, 1, 0, 1]), rng=np.random.default_rng(0), epochs=1)
    with pytest.raises(ValueError, match=r"0\.\.1, found 0\.\.2") as error:
        accuracy(fitted, Z, np.array([0, 1, 2, 0]))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- codes of a model

@pytest.fixture(scope="module")
def tiny_vae():
    return VAE(x_dim=784, hidden=(16,), latent=3, rng=np.random.default_rng(0))


def test_codes_are_the_model_code_of_the_intensities_whatever_the_batch_size(tiny_vae, data_dir):
    images = data.load_mnist(data_dir).test_images[:25]
    expected = tiny_vae.code(data.intensities(images, tiny_vae.dtype)).data
    in_batches = codes(tiny_vae, images, batch_size=7)
    assert in_batches.shape == (25, 3) and in_batches.dtype == tiny_vae.dtype
    # equal up to float32 rounding: BLAS may sum a 7-row and a 25-row product differently
    np.testing.assert_allclose(in_batches, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("images, message", [
    pytest.param(np.zeros((5, 10), np.uint8), r"\(n, 784\)", id="wrong-width"),
    pytest.param(np.zeros((0, 784), np.uint8), "no images", id="empty"),
])
def test_bad_images_to_codes_are_a_one_line_value_error(tiny_vae, images, message):
    with pytest.raises(ValueError, match=message) as error:
        codes(tiny_vae, images)
    assert "\n" not in str(error.value)


def test_probing_a_tiny_vae_end_to_end_reports_accuracies_and_code_size(tiny_vae, data_dir):
    result = probe(tiny_vae, data.load_mnist(data_dir), np.random.default_rng(0), epochs=3)
    assert set(result) == {"train_accuracy", "test_accuracy", "code_size", "seconds"}
    assert 0.0 <= result["train_accuracy"] <= 1.0 and 0.0 <= result["test_accuracy"] <= 1.0
    assert result["code_size"] == 3 and result["seconds"] > 0
