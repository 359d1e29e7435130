"""Does conditioning work?  A classifier trained on real MNIST labels a CVAE's samples.

The classifiers never see the CVAE.  Each is trained with minivae's own
engine on the pixel intensities pixel / 255 of the 60,000 real training
images and scored on the 10,000 real test images:

    softmax   softmax regression on the 784 pixels (`minivae.probe.fit_probe`)
    mlp       784-256-10 MLP, ReLU, Adam 1e-3, 5 epochs of minibatches of 100

Then, for every digit y, N samples of a trained conditional run are drawn,
z ~ N(0, I) and x = E[x|z, y] (the decoder means; with --binary, binary
x ~ p(x|z, y) instead), and the accuracy per digit is the share that the
classifier labels y.  Chance is 1/C.

    PYTHONPATH=. python benchmarks/cvae_accuracy.py /tmp/cvae_run --n 1000
"""
import argparse
import time

import numpy as np

from minivae import data
from minivae.autograd import no_grad
from minivae.data import intensities, minibatch_indices, one_hot
from minivae.nn import MLP
from minivae.ops import logsumexp
from minivae.optim import Adam
from minivae.probe import cross_entropy, fit_probe
from minivae.runs import RunDir

DTYPE = np.float32


def train_mlp(images, labels, rng, hidden=256, epochs=5, batch_size=100, lr=1e-3):
    """An MLP classifier of uint8 images (n, D) with integer labels (n,): returns
    predict(x) for x (B, D) in [0, 1] -> labels (B,)."""
    classes = int(labels.max()) + 1
    net = MLP("classifier", images.shape[1], (hidden,), {"logits": classes}, "relu")
    params = net.init("xavier", rng, DTYPE)
    optimizer = Adam(params, lr=lr)
    for _ in range(epochs):
        for idx in minibatch_indices(rng.permutation(len(images)), batch_size):
            optimizer.zero_grad()
            (logits,) = net(params, intensities(images[idx], DTYPE))
            log_probs = logits - logsumexp(logits, axis=1, keepdims=True)
            cross_entropy(log_probs, labels[idx]).backward()
            optimizer.step()

    def predict(x):
        with no_grad():
            return np.argmax(net(params, np.asarray(x, DTYPE))[0].data, axis=1)
    return predict


def train_softmax(images, labels, rng):
    """Softmax regression on the pixels: predict(x) for x (B, D) in [0, 1]."""
    fitted = fit_probe(intensities(images, np.float64), labels, rng=rng)
    return fitted.predict


def conditional_samples(model, digit, n, rng, binary):
    """n samples of class `digit`: E[x|z, y] or, if binary, x ~ p(x|z, y); z ~ N(0, I)."""
    z = rng.standard_normal((n, model.latent), dtype=model.dtype)
    decoder_input = np.hstack([z, one_hot(np.full(n, digit), model.classes).astype(model.dtype)])
    with no_grad():
        if binary:
            return model.sample_x(decoder_input, rng)
        return model.decode_mean(decoder_input).data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a conditional run (minivae train --model cvae)")
    parser.add_argument("--n", type=int, default=1000, help="samples per digit")
    parser.add_argument("--classifiers", nargs="+", default=["mlp", "softmax"],
                        choices=["mlp", "softmax"])
    parser.add_argument("--binary", action="store_true",
                        help="classify binary samples x ~ p(x|z, y), not the decoder means")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = RunDir.of(args.run).load().model
    if not model.classes:
        parser.error(f"{args.run} is not a conditional run (its model has no classes)")
    mnist = data.load_mnist()
    train_labels = mnist.train_labels.astype(np.int64)
    test_labels = mnist.test_labels.astype(np.int64)
    what = "binary samples x ~ p(x|z, y)" if args.binary else "decoder means E[x|z, y]"
    print(f"{args.run}: {args.n} {what} per digit, z ~ N(0, I), seed {args.seed}")
    for name in args.classifiers:
        started = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        train_classifier = train_mlp if name == "mlp" else train_softmax
        predict = train_classifier(mnist.train_images, train_labels, rng)
        real = predict(intensities(mnist.test_images, DTYPE))
        samples_rng = np.random.default_rng([args.seed, 1])   # the same samples for each
        print(f"\n{name}: trained in {time.perf_counter() - started:.0f} s; accuracy on the "
              f"real test images {100 * np.mean(real == test_labels):.2f} %")
        print("digit   real test images   CVAE samples   most common other label")
        hits = []
        for digit in range(model.classes):
            labelled = predict(conditional_samples(model, digit, args.n, samples_rng,
                                                   args.binary))
            hits.append(labelled == digit)
            others = np.bincount(labelled[labelled != digit], minlength=model.classes)
            other = f"{others.argmax()} ({100 * others.max() / args.n:.1f} %)" \
                if others.any() else "-"
            print(f"{digit:5d}   {100 * np.mean(real[test_labels == digit] == digit):14.2f} %"
                  f"   {100 * np.mean(hits[-1]):10.2f} %   {other}")
        print(f"  all   {100 * np.mean(real == test_labels):14.2f} %   "
              f"{100 * np.mean(hits):10.2f} %")


if __name__ == "__main__":
    main()
