"""The explorer page's data, without a browser (`tests/test_explore_browser.py`
drives the page itself in Chromium).

The page recomputes the decoder in JavaScript from `explore.decoder_layers`;
here those layers, applied in numpy exactly as the page applies them, must
give `model.decode_mean` for every model in the registry, every decoder and
activation, and a conditional model's label.  Then: what `page_data` embeds
decodes back to the model's own codes and the test digits; the page is one
file that fetches nothing; and the command writes it, or says in one line why
it cannot.
"""
import base64
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest

from minivae.cli import main
from minivae.data import load_mnist
from minivae.explore import SCRIPT, decoder_layers, page_data, write_page
from minivae.models import MODELS
from tests.test_cli import TINY_FLAGS, assert_one_line_error, run

D, J, C = 12, 3, 4
ACTS = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "identity": lambda a: a,
        "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "softplus": lambda a: np.logaddexp(0, a)}


def page_decode(layers, output, inputs):
    """The page's forward pass, written again in numpy: (B, J [+ C]) -> (B, D)."""
    h = inputs
    for W, b, activation in layers:
        h = ACTS[activation](h @ W + b)
    return ACTS[output](h)


def build(name, **options):
    rng = np.random.default_rng(0)
    cls = MODELS[name]
    if name == "pca":
        model = cls(x_dim=D, latent=J, dtype=np.float64)
        x = rng.random((50, D))
        model.fit(x.mean(axis=0), np.cov(x, rowvar=False))
        return model
    if name == "linear-ae":
        return cls(x_dim=D, latent=J, init="xavier", dtype=np.float64, rng=rng, **options)
    if name == "cvae":
        options["classes"] = C
    return cls(x_dim=D, hidden=(7, 5), latent=J, init="xavier", dtype=np.float64, rng=rng,
               **options)


CASES = [("vae", {}), ("vae", {"decoder": "gaussian"}), ("vae", {"activation": "relu"}),
         ("vae", {"decoder": "gaussian", "variance": "scalar"}),
         ("vae", {"decoder": "gaussian", "decoder_mean": "sigmoid"}),
         ("cvae", {"decoder": "gaussian", "decoder_mean": "sigmoid"}), ("cvae", {}),
         ("ae", {}), ("ae", {"decoder": "bernoulli", "activation": "softplus"}),
         ("linear-ae", {}), ("sparse-ae", {}), ("denoising-ae", {}), ("masked-ae", {}),
         ("pca", {})]


@pytest.mark.parametrize("name, options", CASES, ids=lambda c: str(c))
def test_the_pages_layers_compute_the_models_decode_mean(name, options):
    model = build(name, **options)
    layers, output = decoder_layers(model)
    z = np.random.default_rng(1).normal(0, 2, (6, J))
    y = np.eye(C)[[0, 1, 2, 3, 0, 1]]
    inputs = np.hstack([z, y]) if model.classes else z
    expected = model.decode_mean(model.with_condition(z, y) if model.classes else z).data
    assert np.allclose(page_decode(layers, output, inputs), expected, rtol=0, atol=1e-12)
    # power: the pixels depend on z, and on y for a conditional model
    assert np.ptp(expected, axis=0).max() > 1e-3
    if model.classes:
        other = page_decode(layers, output, np.hstack([z, np.roll(y, 1, axis=0)]))
        assert np.abs(other - expected).max() > 1e-3


def unpack(text, dtype, shape):
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("latent", [1, 2, 5])
def test_page_data_embeds_the_codes_digits_and_a_plane_that_covers_them(latent):
    rng = np.random.default_rng(2)
    model = MODELS["vae"](x_dim=D, hidden=(6,), latent=latent, init="xavier", rng=rng)
    images = (rng.random((9, D)) * 255).astype(np.uint8)
    x = images.astype(np.float32) / 255
    data = json.loads(json.dumps(page_data(model, "a title", (3, 4), x, images,
                                           list(range(9)))))
    codes = unpack(data["test"]["codes"], "<f4", (9, latent))
    assert np.array_equal(codes, model.code(x).data)
    assert np.array_equal(unpack(data["test"]["images"], np.uint8, (9, D)), images)
    center, axes = np.array(data["plane"]["center"]), np.array(data["plane"]["axes"])
    assert axes.shape == (2, latent) and center.shape == (latent,)
    if latent == 2:
        assert np.array_equal(axes, np.eye(2)) and not center.any()   # the plane is z
    if latent > 2:
        assert np.allclose(axes @ axes.T, np.eye(2), atol=1e-12)
        assert np.allclose(center, codes.mean(axis=0), atol=1e-6)
    lo, hi = data["plane"]["range"]
    assert lo <= -3 and hi >= 3 and np.all(np.abs((codes - center) @ axes.T) <= hi)
    assert all(lo <= -3 and hi >= np.abs(codes).max() for lo, hi in data["slider_ranges"])
    assert data["latent"] == latent and data["image_shape"] == [3, 4] and data["dims"] is None


@pytest.mark.parametrize("latent", [1, 2, 5])
def test_without_a_prior_the_plane_and_sliders_fit_the_codes(latent):
    # an autoencoder's codes need not sit around 0: the page must start among them
    rng = np.random.default_rng(5)
    model = MODELS["ae"](x_dim=D, hidden=(6,), latent=latent, init="xavier", rng=rng)
    model.params["encoder.z.b"].data += 40.0          # codes far from the origin
    images = (rng.random((20, D)) * 255).astype(np.uint8)
    x = images.astype(np.float32) / 255
    data = page_data(model, "t", (3, 4), x, images, [0] * 20)
    codes = model.code(x).data.astype(np.float64)
    center = np.array(data["plane"]["center"])
    assert np.allclose(center, codes.mean(axis=0), atol=1e-4)
    lo, hi = data["plane"]["range"]
    axes = np.array(data["plane"]["axes"])
    assert np.all(np.abs((codes - center) @ axes.T) <= hi) and lo == -hi
    for j, (low, high) in enumerate(data["slider_ranges"]):
        assert low < codes[:, j].min() and high > codes[:, j].max()
        assert high - low < 1.3 * np.ptp(codes[:, j]) + 3e-3   # its own span, not +-40


def test_the_plane_draws_more_digits_than_the_strip_holds():
    rng = np.random.default_rng(4)
    model = MODELS["vae"](x_dim=D, hidden=(6,), latent=J, init="xavier", rng=rng)
    images = (rng.random((30, D)) * 255).astype(np.uint8)
    x = images.astype(np.float32) / 255
    data = page_data(model, "t", (3, 4), x, images[:5], list(range(30)))
    assert data["test"]["n"] == 5 and data["test"]["labels"] == list(range(5))
    assert data["points"]["n"] == 30 and data["points"]["labels"] == list(range(30))
    codes = model.code(x).data
    assert np.array_equal(unpack(data["points"]["codes"], "<f4", (30, J)), codes)
    assert np.array_equal(unpack(data["test"]["codes"], "<f4", (5, J)), codes[:5])
    assert np.array_equal(unpack(data["test"]["images"], np.uint8, (5, D)), images[:5])


def test_the_page_is_one_file_that_fetches_nothing(tmp_path):
    model = build("vae")
    x = np.random.default_rng(3).random((4, D))
    data = page_data(model, "</script><script>alert(1)</script>", (3, 4), x,
                     (x * 255).astype(np.uint8), [0, 1, 2, 3])
    path = tmp_path / "explorer.html"
    write_page(data, path)
    html = path.read_text()
    assert "__MINIVAE_DATA__" not in html and "__MINIVAE_SCRIPT__" not in html
    assert "</script" not in SCRIPT.read_text()   # the script cannot end its element early
    assert SCRIPT.read_text() in html
    # the embedded JSON is intact, and text in it cannot close its <script> element
    found = re.search(r'<script id="minivae-data" type="application/json">(.*?)</script>',
                      html, re.S)
    assert json.loads(found.group(1)) == json.loads(json.dumps(data))
    assert "alert(1)</script>" not in html
    # no resource from anywhere else: no URL, no src or href attribute, no @import or url()
    for pattern in (r"https?://", r"//[a-z0-9.-]+\.[a-z]{2,}/", r"\bsrc\s*=", r"\bhref\s*=",
                    r"@import", r"url\("):
        assert not re.search(pattern, html, re.I), pattern


def test_the_default_models_page_stays_under_two_and_a_half_megabytes(tmp_path):
    model = MODELS["vae"](rng=np.random.default_rng(0))   # 784-500-20, float32
    images = (np.random.default_rng(1).random((100, 784)) * 255).astype(np.uint8)
    data = page_data(model, "the paper's model", (28, 28), images / np.float32(255),
                     images, [0] * 100)
    write_page(data, tmp_path / "explorer.html")
    assert (tmp_path / "explorer.html").stat().st_size < 2.5e6


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    """A 2-D VAE trained one epoch on the tiny data by `minivae train`."""
    out = tmp_path_factory.mktemp("explore") / "run"
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
        assert main(["train", "--data", str(data_dir), "--out", str(out), *TINY_FLAGS,
                     "--no-figures"]) == 0
    return out


def test_explore_writes_the_page_into_the_run_and_says_so(run_dir, data_dir, capsys):
    code, out, err = run(["explore", run_dir, "--images", "20"], capsys)
    assert code == 0, err
    # the tiny test set is smaller than --points 1000: all of it on the plane, 20 in the strip
    size = len(load_mnist(data_dir).test_images)
    assert size < 1000
    assert f"wrote {run_dir / 'explorer.html'}" in out and "20 test images" in out
    assert f"{size} on the plane" in out
    html = (run_dir / "explorer.html").read_text()
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', html, re.S)[1])
    assert data["test"]["n"] == 20 and data["points"]["n"] == size
    assert len(data["dims"]) == 2


def test_explore_writes_where_out_says(run_dir, tmp_path, capsys):
    code, out, err = run(["explore", run_dir, "--out", tmp_path / "page.html"], capsys)
    assert code == 0 and (tmp_path / "page.html").is_file(), err


@pytest.mark.parametrize("what", ["empty directory", "truncated checkpoint"])
def test_explore_of_no_run_is_a_one_line_error(run_dir, tmp_path, capsys, what):
    target = tmp_path / "nothing"
    target.mkdir()
    if what == "truncated checkpoint":
        target = tmp_path / "checkpoint.npz"
        target.write_bytes((run_dir / "checkpoint.npz").read_bytes()[:1000])
    code, _, err = run(["explore", target], capsys)
    assert_one_line_error(code, err)
