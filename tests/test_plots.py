import json

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from minivae import data, plots
from minivae.optim import Adam
from minivae.models.vae import VAE
from minivae.objectives import elbo
from minivae.runs import RunDir

N_IMAGES = 200


@pytest.fixture(scope="module")
def mnist_test():
    """The first 200 MNIST test images as intensities (200, 784), and their labels."""
    mnist = data.load_mnist()
    return data.intensities(mnist.test_images[:N_IMAGES], np.float32), mnist.test_labels[:N_IMAGES]


@pytest.fixture(scope="module")
def model(mnist_test):
    """A tiny 2-D latent VAE after 100 Adam steps, so that the pictures have content."""
    x, _ = mnist_test
    model = VAE(x_dim=784, hidden=(16,), latent=2, init="xavier", rng=np.random.default_rng(0))
    optimizer, rng = Adam(model.params, lr=1e-2), np.random.default_rng(1)
    for _ in range(100):
        batch = x[rng.choice(len(x), 50, replace=False)]
        eps = rng.standard_normal((1, len(batch), 2), dtype=np.float32)
        loss = -elbo(model, batch, eps).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def plot_area(fig, path):
    """The saved picture's pixels inside the axes (spines cut off), as grey levels."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255
    box = fig.axes[0].get_window_extent()
    height = pixels.shape[0]   # window y counts from the bottom, rows from the top
    top, bottom, left, right = height - box.y1, height - box.y0, box.x0, box.x1
    return pixels[int(top) + 3:int(bottom) - 3, int(left) + 3:int(right) - 3]


def assert_written_picture(fig, path, name, min_var=1e-2):
    """path holds a PNG of SIZES[name] pixels whose plotting area is not blank:
    its grey levels vary.  An empty plotting area has variance 0, an untrained
    decoder's grey means about 3e-6, digits about 0.06, 200 dots about 8e-4."""
    width, height = plots.SIZES[name]
    assert matplotlib.image.imread(path).shape[:2] == (height, width)
    assert plot_area(fig, path).var() > min_var


def metrics_rows(epochs, offset=0.0):
    return [{"epoch": e, "samples_seen": 60000 * e, "train_elbo": -200 + 10 * np.log(e) + offset,
             "test_elbo": -195 + 9 * np.log(e) + offset} for e in range(1, epochs + 1)]


def test_normal_quantile_matches_known_quantiles():
    got = plots.normal_quantile([0.5, 0.975, 0.1, 0.025])
    np.testing.assert_allclose(got, [0.0, 1.959964, -1.281552, -1.959964], rtol=0, atol=1e-6)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, np.nan])
def test_normal_quantile_rejects_p_outside_the_open_unit_interval(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        plots.normal_quantile([0.5, p])


def test_normal_manifold_grid_is_the_quantiles_of_cell_centres():
    values = plots.manifold_grid(20, "normal")
    np.testing.assert_allclose(values, plots.normal_quantile((np.arange(20) + 0.5) / 20))
    assert np.all(np.diff(values) > 0) and np.isfinite(values).all()
    np.testing.assert_allclose(values, -values[::-1], atol=1e-12)   # symmetric about 0


def test_uniform_manifold_grid_spans_minus_3_to_3():
    np.testing.assert_allclose(plots.manifold_grid(7, "uniform"), np.linspace(-3, 3, 7))


def test_manifold_grid_rejects_an_unknown_grid():
    with pytest.raises(ValueError, match="unknown grid"):
        plots.manifold_grid(20, "sobol")


def test_manifold_is_a_png_of_fixed_size_showing_the_decoded_grid(model, tmp_path):
    fig = plots.manifold(model, tmp_path / "manifold.png", n=12)
    assert_written_picture(fig, tmp_path / "manifold.png", "manifold")
    assert fig.axes[0].images[0].get_array().shape == (12 * 28, 12 * 28)


def test_manifold_with_a_uniform_grid_is_written(model, tmp_path):
    fig = plots.manifold(model, tmp_path / "manifold.png", n=5, grid="uniform")
    assert_written_picture(fig, tmp_path / "manifold.png", "manifold")


def test_manifold_refuses_a_latent_space_that_is_not_2d(tmp_path):
    model = VAE(x_dim=784, hidden=(16,), latent=5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="2-D latent.*latent=5"):
        plots.manifold(model, tmp_path / "manifold.png")
    assert not (tmp_path / "manifold.png").exists()


def test_latent_scatter_of_a_2d_latent_plots_mu_itself(model, mnist_test, tmp_path):
    x, labels = mnist_test
    fig = plots.latent_scatter(model, x, labels, tmp_path / "scatter.png")
    assert_written_picture(fig, tmp_path / "scatter.png", "latent_scatter", 1e-4)
    ax = fig.axes[0]
    assert "PCA" not in ax.get_title() and ax.get_xlabel() == "$z_1$"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), plots.codes(model, x))


def test_latent_scatter_of_a_5d_latent_says_it_is_a_pca_projection(mnist_test, tmp_path):
    x, labels = mnist_test
    model = VAE(x_dim=784, hidden=(16,), latent=5, rng=np.random.default_rng(0))
    fig = plots.latent_scatter(model, x, labels, tmp_path / "scatter.png", title="Run 7")
    assert_written_picture(fig, tmp_path / "scatter.png", "latent_scatter", 1e-4)
    title = fig.axes[0].get_title()
    assert title.startswith("Run 7") and "PCA" in title and "5-D" in title


def test_latent_scatter_rejects_labels_that_do_not_match_the_images(model, mnist_test, tmp_path):
    x, labels = mnist_test
    with pytest.raises(ValueError, match="200 images but 199 labels"):
        plots.latent_scatter(model, x, labels[:-1], tmp_path / "scatter.png")


def test_reconstructions_show_inputs_above_reconstructions_from_mu(model, mnist_test, tmp_path):
    x, _ = mnist_test
    fig = plots.reconstructions(model, x, tmp_path / "recon.png", n=10)
    assert_written_picture(fig, tmp_path / "recon.png", "reconstructions")
    ax = fig.axes[0]
    assert "encoder mean" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "recon."]
    shown = ax.images[0].get_array()
    assert shown.shape == (2 * 28, 10 * 28)
    np.testing.assert_array_equal(shown[:28, :28], x[0].reshape(28, 28))


def test_reconstructions_with_a_generator_say_z_is_sampled(model, mnist_test, tmp_path):
    x, _ = mnist_test
    fig = plots.reconstructions(model, x, tmp_path / "recon.png", n=15,
                                rng=np.random.default_rng(0))
    assert_written_picture(fig, tmp_path / "recon.png", "reconstructions")
    assert "sampled" in fig.axes[0].get_title()
    assert fig.axes[0].images[0].get_array().shape == (4 * 28, 10 * 28)   # 2 pairs of rows


def test_samples_are_a_png_of_fixed_size(model, tmp_path):
    fig = plots.samples(model, tmp_path / "samples.png", np.random.default_rng(0), n=64)
    assert_written_picture(fig, tmp_path / "samples.png", "samples")
    assert fig.axes[0].images[0].get_array().shape == (8 * 28, 8 * 28)


def test_samples_depend_only_on_the_generator(model, tmp_path):
    a = plots.samples(model, tmp_path / "a.png", np.random.default_rng(3), n=9)
    b = plots.samples(model, tmp_path / "b.png", np.random.default_rng(3), n=9)
    np.testing.assert_array_equal(a.axes[0].images[0].get_array(), b.axes[0].images[0].get_array())


def test_learning_curves_take_several_runs_rows(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_metrics(metrics_rows(5))
    fig = plots.learning_curves({"adagrad": metrics_rows(10, offset=5.0),
                                 "adam": run.read_metrics()}, tmp_path / "curves.png")
    assert_written_picture(fig, tmp_path / "curves.png", "learning_curves", 1e-4)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["adagrad train", "adagrad test", "adam train", "adam test"]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [10, 10, 5, 5]


def test_learning_curves_refuse_a_run_without_rows(tmp_path):
    with pytest.raises(ValueError, match="'empty' has no metrics rows"):
        plots.learning_curves({"empty": []}, tmp_path / "curves.png")


def test_read_metrics_keeps_the_last_copy_of_a_repeated_epoch(tmp_path):
    rows = metrics_rows(3)
    repeated = dict(rows[1], train_elbo=-1.0)
    lines = [json.dumps(r) for r in rows[:2] + [repeated, rows[2]]]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n\n")
    got = RunDir(tmp_path).read_metrics()
    assert [r["epoch"] for r in got] == [1, 2, 3] and got[1]["train_elbo"] == -1.0


def test_read_metrics_names_the_line_that_is_not_json(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps(metrics_rows(1)[0]) + "\n{\"epoch\": 2,\n")
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        RunDir(tmp_path).read_metrics()


def test_latent_animation_is_a_gif_with_one_frame_per_snapshot(model, mnist_test, tmp_path):
    x, labels = mnist_test
    mu = plots.codes(model, x)
    snapshots = [(1, 3 * mu), (2, 2 * mu), (3, mu)]
    fig = plots.latent_animation(snapshots, labels, tmp_path / "latent.gif")
    gif = Image.open(tmp_path / "latent.gif")
    assert gif.format == "GIF" and gif.size == plots.SIZES["latent_animation"]
    assert gif.n_frames == 3
    frames = []
    for i in range(3):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L"), dtype=np.float64))
    assert all(frame.var() > 1e-4 for frame in frames)
    assert not np.array_equal(frames[0], frames[-1])
    # the limits, left as they were for the last frame, still hold the first, widest one
    (x0, x1), (y0, y1) = fig.axes[0].get_xlim(), fig.axes[0].get_ylim()
    assert x0 <= (3 * mu[:, 0]).min() and (3 * mu[:, 0]).max() <= x1
    assert y0 <= (3 * mu[:, 1]).min() and (3 * mu[:, 1]).max() <= y1
    assert fig.axes[0].get_title() == "Encoder means $\\mu$, epoch 3"


def test_latent_animation_of_a_5d_latent_says_it_is_a_pca_projection(mnist_test, tmp_path):
    x, labels = mnist_test
    model = VAE(x_dim=784, hidden=(16,), latent=5, rng=np.random.default_rng(0))
    mu = plots.codes(model, x)
    fig = plots.latent_animation([(1, mu), (2, 2 * mu)], labels, tmp_path / "latent.gif")
    assert Image.open(tmp_path / "latent.gif").n_frames == 2
    assert "PCA" in fig.axes[0].get_title()


def test_latent_animation_rejects_snapshots_of_different_shapes(mnist_test, tmp_path):
    _, labels = mnist_test
    with pytest.raises(ValueError, match=r"epoch 2 has mu of shape \(100, 2\)"):
        plots.latent_animation([(1, np.zeros((200, 2))), (2, np.zeros((100, 2)))], labels,
                               tmp_path / "latent.gif")


def test_uint8_images_are_read_as_intensities(model):
    pixels = data.load_mnist().test_images[:5]
    np.testing.assert_array_equal(plots.codes(model, pixels),
                                  plots.codes(model, data.intensities(pixels, np.float32)))


def test_inputs_are_converted_to_the_models_dtype(mnist_test):
    x, _ = mnist_test
    model = VAE(x_dim=784, hidden=(16,), latent=2, dtype=np.float64, rng=np.random.default_rng(0))
    assert plots.codes(model, x[:5]).dtype == np.float64


def test_figures_leave_no_pyplot_figure_open(model, tmp_path):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    plots.samples(model, tmp_path / "samples.png", np.random.default_rng(0), n=4)
    assert plt.get_fignums() == before


def test_image_rows_draws_one_named_row_per_set_of_images(mnist_test, tmp_path):
    x, _ = mnist_test
    images = x[:10]                       # intensities in [0, 1]
    fig = plots.image_rows([images, 1 - images], ["digits", "inverted"],
                           tmp_path / "rows.png", "two rows")
    assert_written_picture(fig, tmp_path / "rows.png", "image_rows")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["digits", "inverted"]
    assert ax.images[0].get_array().shape == (2 * 28, 10 * 28)
    with pytest.raises(ValueError, match="2 rows but 1 names"):
        plots.image_rows([images, images], ["one"], tmp_path / "bad.png", "bad")


def test_latent_activity_sorts_the_dimensions_by_activity_and_greys_the_inactive(tmp_path):
    from minivae.activity import LatentActivity
    usage = LatentActivity(activity=np.array([1e-4, 0.5, 0.0, 0.02]),
                           kl=np.array([0.01, 3.0, 0.0, 0.4]), threshold=0.01, images=300)
    path = tmp_path / "activity.png"
    fig = plots.latent_activity(usage, path)
    width, height = plots.SIZES["latent_activity"]
    assert matplotlib.image.imread(path).shape[:2] == (height, width)
    top, bottom = fig.axes
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["1", "3", "0", "2"]
    assert [p.get_height() for p in bottom.patches] == [3.0, 0.4, 0.01, 0.0]
    assert [p.get_height() for p in top.patches][:3] == [0.5, 0.02, 1e-4]
    grey = [p.get_facecolor() == top.patches[-1].get_facecolor() for p in top.patches]
    assert grey == [False, False, True, True]
    assert "2 of 4 dimensions active" in top.get_title() and "300 images" in top.get_title()
