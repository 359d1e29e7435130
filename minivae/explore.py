"""The latent-space explorer: one self-contained HTML page per trained model.

`minivae explore RUN` writes `explorer.html` into the run directory: the
decoder's weights and a strip of test digits embedded in the page, and the
decoder's forward pass written again in plain JavaScript, so that moving a
point through z redraws E[x|z] (a VAE; a conditional VAE's E[x|z, y]) or an
autoencoder's reconstruction y(z) at once, with no server, script or font
fetched from anywhere.  The page is the template `explorer.html` beside this
module with its script `explorer.js` put inside; this module fills it with
one JSON object, `page_data`:

    decoder   the layers h = act(h W + b), W (inputs, outputs) as base64
              float32, then the likelihood's mean: sigmoid for a Bernoulli
              decoder's logits (Appendix C.1) and for a Gaussian mean squashed
              into (0, 1) (the paper's Frey Face decoder, section 5), the
              identity for a Gaussian mean (Appendix C.2) or an autoencoder's y
    test      n test digits as the model sees them (uint8 grey levels), their
              labels (null for a data set without labels, Frey Face) and
              codes: the encoder mean mu of each (eq. 9's deterministic
              part), or the autoencoder's code f(x)
    points    the codes and labels of more test digits (the first P >= n),
              drawn as dots on the plane
    plane     the 2-D plane the pointer moves in: z itself for J = 2, else the
              two principal directions of the P codes through their mean
    dims      whether each latent dimension is active, and its KL (`activity`),
              for a model with a prior

`decoder_layers` is the contract the page computes: `tests/test_explore.py`
checks that those layers, applied in numpy, give `model.decode_mean` exactly,
for every model in the registry.
"""
import base64
import json
from pathlib import Path

import numpy as np

from minivae.autograd import no_grad

TEMPLATE, SCRIPT = (Path(__file__).with_name(name) for name in ("explorer.html", "explorer.js"))
PLACEHOLDER, SCRIPT_PLACEHOLDER = '"__MINIVAE_DATA__"', "/*__MINIVAE_SCRIPT__*/"
PRIOR_RANGE = 3.0                     # +-3 standard deviations of N(0, I)


def _base64(array, dtype):
    """The bytes of `array` as `dtype` (little-endian float32 or uint8), base64 text."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def decoder_layers(model):
    """[(W (inputs, outputs), b (outputs,), activation)] and the output function
    ('sigmoid' or 'identity', the likelihood's `output`) whose composition is
    `model.decode_mean`.

    An MLP decoder gives its hidden layers and then the head of the mean (the
    first head: logits, mu or y), which is affine; PCA's decoder is the one
    affine map y = z W^T + mean.  The first layer reads [z, onehot(y)] for a
    conditional model, z otherwise.
    """
    params = {name: p.data for name, p in model.named_parameters()}
    if "pca.components" in params:
        return [(params["pca.components"].T, params["pca.mean"], "identity")], "identity"
    decoder = model.decoder
    layers = [(params[f"{prefix}.W"], params[f"{prefix}.b"], decoder.activation)
              for prefix, _, _ in decoder.layers[:decoder.n_hidden]]
    mean = f"{decoder.name}.{decoder.heads[0]}"
    layers.append((params[f"{mean}.W"], params[f"{mean}.b"], "identity"))
    return layers, model.likelihood.output


def _plane(codes, has_prior):
    """The plane for codes (P, J): its center (J,), two orthonormal axes (2, J) and
    the range [lo, hi] of both plane coordinates (u, v) = ((z - center) . axes)."""
    J = codes.shape[1]
    if J <= 2 or len(codes) < 2:
        # z's own axes (J = 1: v is unused), through 0 under the prior N(0, I), else
        # through the codes' mean: an autoencoder's codes need not sit around 0
        center = np.zeros(J) if has_prior else codes.mean(axis=0)
        axes = np.eye(2, J)
    else:        # the two directions along which the test codes vary most
        center = codes.mean(axis=0)
        vt = np.linalg.svd(codes - center, full_matrices=False)[2][:2]
        axes = vt * np.sign(vt[range(2), np.abs(vt).argmax(axis=1)])[:, None]   # fixed signs
    spread = np.abs((codes - center) @ axes.T).max()
    half = max(PRIOR_RANGE, 1.1 * spread) if has_prior else 1.1 * spread or 1.0
    return center, axes, [-float(half), float(half)]


def page_data(model, title, image_shape, x, images, labels, activity=None):
    """The JSON object `explorer.html` reads, for `model`.

    x (P, D) or (P, D + C), P >= 1: the test digits as the model reads them,
    all drawn on the plane; labels (P,) or None; images (n, D) uint8, n <= P: the
    first n as grey levels, the strip of digits to click;
    activity: `activity.LatentActivity` of the model, or None.
    """
    with no_grad():
        codes = np.asarray(model.code(x).data, dtype=np.float64)
    n = len(images)
    layers, output = decoder_layers(model)
    center, axes, plane_range = _plane(codes, model.has_prior)
    if model.has_prior:   # one range for every slider, at least the prior's +-3
        half = max(PRIOR_RANGE, 1.1 * float(np.abs(codes).max()))
        sliders = [[-half, half]] * model.latent
    else:                 # each dimension's own span of the codes, and a tenth on each side
        low, high = codes.min(axis=0), codes.max(axis=0)
        margin = np.maximum(0.1 * (high - low), 1e-3)
        sliders = np.stack([low - margin, high + margin], axis=1).tolist()
    dims = None if activity is None else [
        {"active": bool(a > activity.threshold), "kl": float(kl)}
        for a, kl in zip(activity.activity, activity.kl)]
    return {
        "title": title, "latent": int(model.latent),
        "image_shape": [int(size) for size in image_shape],
        "classes": int(model.classes or 0), "has_prior": bool(model.has_prior),
        "decoder": {"layers": [{"W": _base64(W, "<f4"), "b": _base64(b, "<f4"),
                                "shape": [int(size) for size in W.shape], "activation": act}
                               for W, b, act in layers],
                    "output": output},
        "test": {"n": int(n), "images": _base64(images, np.uint8),
                 "labels": _labels(labels, n), "codes": _base64(codes[:n], "<f4")},
        "points": {"n": int(len(codes)), "labels": _labels(labels, len(codes)),
                   "codes": _base64(codes, "<f4")},
        "dims": dims,
        "plane": {"center": center.tolist(), "axes": axes.tolist(), "range": plane_range},
        "slider_ranges": sliders,
    }


def _labels(labels, n):
    """The first n labels as JSON integers, or None for a data set without labels."""
    return None if labels is None else [int(y) for y in labels[:n]]


def write_page(data, path):
    """explorer.html at `path`: the template with its script and `data` inside, one
    file, written atomically."""
    from minivae.checkpoint import write_atomically
    template = TEMPLATE.read_text(encoding="utf-8")
    script = SCRIPT.read_text(encoding="utf-8")
    # "</" would end the <script> element that holds the JSON early
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = template.replace(SCRIPT_PLACEHOLDER, script, 1).replace(PLACEHOLDER, text, 1)
    write_atomically(path, page.encode("utf-8"))
