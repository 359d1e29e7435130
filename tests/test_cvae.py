"""The conditional VAE (Sohn et al. 2015; Bishop 19.2): its bound's gradient,
that both networks really read the label y where the contract puts it (the
last C entries of x, and of the decoder's input [z, y]), that rows without a
label are refused, and a tiny run through the command line: training,
`sample --digit`, the class grid, and a checkpoint that computes what the
trained model did."""
import matplotlib.image
import numpy as np
import pytest

from minivae import data, plots
from minivae.config import Config
from minivae.evaluate import mean_objective
from minivae.gradcheck import gradcheck
from minivae.models import MODELS
from minivae.objectives import ELBO, elbo
from minivae.runs import RunDir
from minivae.train import train
from tests.test_cli import run as run_cli

D, J, C = 6, 2, 3


def tiny_cvae(seed=0):
    return MODELS["cvae"](x_dim=D, hidden=(4,), latent=J, classes=C, dtype=np.float64,
                          rng=np.random.default_rng(seed))


def rows(pixels, labels):
    """x = [pixels, onehot(labels)], the rows a conditional model reads."""
    return np.hstack([pixels, np.eye(C)[labels]])


PIXELS = (np.random.default_rng(1).random((4, D)) > 0.5).astype(np.float64)


def mlp_by_hand(params, prefix, inputs, heads):
    """A one-hidden-layer tanh MLP in plain numpy: the reference forward pass."""
    h = np.tanh(inputs @ params[f"{prefix}.hidden.0.W"].data + params[f"{prefix}.hidden.0.b"].data)
    return [h @ params[f"{prefix}.{head}.W"].data + params[f"{prefix}.{head}.b"].data
            for head in heads]


@pytest.mark.parametrize("estimator", ["A", "B"])
def test_the_conditional_bound_has_the_gradient_of_finite_differences(estimator):
    model = tiny_cvae()
    x = rows(PIXELS, [0, 1, 2, 1])
    eps = np.random.default_rng(2).standard_normal((2, len(x), J))
    names = list(model.params)

    def loss(*tensors):
        model.params = dict(zip(names, tensors))
        return -elbo(model, x, eps, estimator).mean()
    gradcheck(loss, [t.data for _, t in model.named_parameters()])


def test_the_decoder_reads_z_followed_by_the_one_hot_label():
    model = tiny_cvae()
    z = np.random.default_rng(3).standard_normal((4, J))
    labels = np.array([0, 1, 2, 0])
    (logits,) = mlp_by_hand(model.params, "decoder", np.hstack([z, np.eye(C)[labels]]),
                            ["logits"])
    expected = np.sum(PIXELS * logits - np.logaddexp(0, logits), axis=1)   # Bernoulli
    np.testing.assert_allclose(model.log_px_given_z(rows(PIXELS, labels), z).data, expected,
                               rtol=1e-12)
    other = model.log_px_given_z(rows(PIXELS, (labels + 1) % C), z).data
    assert np.all(np.abs(other - expected) > 1e-6), "changing y left log p(x|z, y) alone"
    mean = model.decode_mean(np.hstack([z, np.eye(C)[labels]])).data
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-logits)), rtol=1e-12)


def test_the_encoder_reads_the_pixels_followed_by_the_one_hot_label():
    model = tiny_cvae()
    labels = np.array([2, 0, 1, 1])
    mu, logvar = mlp_by_hand(model.params, "encoder", rows(PIXELS, labels), ["mu", "logvar"])
    got_mu, got_logvar = model.posterior(rows(PIXELS, labels))
    np.testing.assert_allclose(got_mu.data, mu, rtol=1e-12)
    np.testing.assert_allclose(got_logvar.data, logvar, rtol=1e-12)
    assert not np.allclose(model.code(rows(PIXELS, (labels + 1) % C)).data, mu)


def test_the_prior_is_the_standard_normal_whatever_the_label():
    model = tiny_cvae()
    z = np.array([[0.0, 0.0], [1.0, -2.0]])
    np.testing.assert_allclose(model.log_prior(z).data,
                               -np.log(2 * np.pi) - 0.5 * np.sum(z ** 2, axis=1), rtol=1e-12)


@pytest.mark.parametrize("x, words", [
    (PIXELS, "expected x rows of 9 = 6 pixels + 3 one-hot labels, got shape (4, 6)"),
    (np.hstack([PIXELS, np.full((4, C), 0.5)]), "must be a one-hot label"),
])
def test_rows_without_a_one_hot_label_are_a_one_line_error(x, words):
    model = tiny_cvae()
    eps = np.zeros((1, len(x), J))
    for compute in (lambda: model.posterior(x), lambda: elbo(model, x, eps),
                    lambda: model.reconstruction(x)):
        with pytest.raises(ValueError) as err:
            compute()
        assert words in str(err.value) and "\n" not in str(err.value)


def test_the_class_grid_holds_each_column_s_z_fixed_and_varies_the_class_by_row(tmp_path):
    model = MODELS["cvae"](x_dim=16, hidden=(4,), latent=J, classes=C, dtype=np.float64,
                           rng=np.random.default_rng(0))
    fig = plots.class_grid(model, tmp_path / "classes.png", np.random.default_rng(5), n=4,
                           image_shape=(4, 4))
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (C * 4, 4 * 4)
    z = np.random.default_rng(5).standard_normal((4, J))
    for y in range(C):
        for col in range(4):
            expected = model.decode_mean(np.hstack([z[col], np.eye(C)[y]])[None]).data
            np.testing.assert_allclose(grid[4 * y:4 * y + 4, 4 * col:4 * col + 4],
                                       expected.reshape(4, 4), rtol=1e-12)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["y = 0", "y = 1", "y = 2"]


# ---------------------------------------------------------------- a tiny run

FLAGS = ["--latent", "2", "--hidden", "8", "--epochs", "1", "--no-progress", "--k", "2"]


@pytest.fixture(scope="module")
def cvae_run(data_dir, tmp_path_factory):
    """A CVAE trained one epoch on the tiny data by `train`: its directory and summary."""
    out = tmp_path_factory.mktemp("cvae") / "run"
    config = Config.from_flags(model="cvae", latent=2, hidden=(8,), epochs=1,
                               data=str(data_dir))
    return out, train(config, out, progress=False, log=lambda *a: None, k=2)


def test_sample_digit_draws_that_class_and_says_so(cvae_run, capsys):
    run_dir, _ = cvae_run
    code, out, err = run_cli(["sample", run_dir, "--digit", "7", "--n", "8"], capsys)
    assert code == 0, err
    assert "8 samples from the prior of digit 7" in out
    image = matplotlib.image.imread(run_dir / "samples_seed0.png")
    assert image.shape[:2] == plots.SIZES["samples"][::-1]


def test_sample_without_digit_cycles_through_the_classes(cvae_run, capsys):
    code, out, err = run_cli(["sample", cvae_run[0], "--n", "20"], capsys)
    assert code == 0 and "classes 0..9 in turn" in out, err


def test_a_digit_outside_the_classes_is_a_one_line_error(cvae_run, capsys):
    code, _, err = run_cli(["sample", cvae_run[0], "--digit", "10"], capsys)
    assert code == 1 and "--digit must lie in 0..9, got 10" in err and err.count("\n") == 1


def test_a_digit_for_a_model_that_is_not_conditional_is_a_one_line_error(
        data_dir, tmp_path, capsys):
    assert run_cli(["train", "--data", data_dir, "--out", tmp_path / "vae", "--no-figures",
                    *FLAGS], capsys)[0] == 0
    code, _, err = run_cli(["sample", tmp_path / "vae", "--digit", "3"], capsys)
    assert code == 1 and "not conditional" in err and err.count("\n") == 1


def test_plot_draws_the_class_grid_of_a_conditional_run(cvae_run, capsys):
    code, out, err = run_cli(["plot", cvae_run[0], "--what", "classes"], capsys)
    assert code == 0, err
    image = matplotlib.image.imread(cvae_run[0] / "classes.png")
    assert image.shape[:2] == plots.SIZES["class_grid"][::-1]


def test_the_gaps_of_a_conditional_run_speak_of_log_p_x_given_y(cvae_run, capsys):
    code, out, err = run_cli(["evaluate", cvae_run[0], "--k", "20", "--limit", "2", "--gaps",
                              "2", "--gap-steps", "3", "--no-progress"], capsys)
    assert code == 0, err
    gaps = out[out.index("inference gaps"):]
    assert gaps.count("log p(x|y)") == 2 and "log p(x)" not in gaps   # the bound and proposal


def test_a_saved_cvae_computes_the_bound_the_trained_one_reported(cvae_run):
    run_dir, result = cvae_run
    trained = RunDir(run_dir).load()
    assert trained.model.classes == 10 and trained.model.x_dim == 784
    c = trained.config
    inputs = data.Inputs(data.load_mnist(c.data.data), trained.model.likelihood.pixels,
                         c.data.binarize, c.run.seed, c.run.dtype, classes=10)
    again = mean_objective(trained.model, ELBO("B", 1), inputs.test_batches(),
                           np.random.default_rng([c.run.seed, 0]))
    assert again == result["test_elbo"] and np.isfinite(again)
