"""The `minivae` command: train, evaluate and sample.

    minivae train                      the paper's MNIST model on the embedded data
    minivae evaluate RUN_OR_CKPT       test ELBO and importance-sampled log p(x)
    minivae sample RUN_OR_CKPT         a PNG grid of samples from the prior
    minivae plot RUN_OR_CKPT           figures: manifold, latent scatter, reconstructions,
                                       samples, learning curves
"""
import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from minivae.train import Config

DEFAULTS = Config()
# what `minivae plot --what` can draw: file name, and whether it needs the test data
FIGURES = {"manifold": ("manifold.png", False), "scatter": ("latent_scatter.png", True),
           "recon": ("recon.png", True), "samples": ("samples.png", False),
           "curves": ("curves.png", False)}


def _number(convert, accepts, expected):
    """An argparse type: `convert` the text, then require `accepts(value)`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = text
        if isinstance(value, str) or not accepts(value):   # not a number, or out of range
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return value
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")         # NaN fails too
_nonnegative_float = _number(float, lambda v: v >= 0, "a number >= 0")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    parser = _Parser(
        prog="minivae", description="Auto-Encoding Variational Bayes (Kingma & Welling, 2013) "
                                    "in NumPy and Numba.")
    commands = parser.add_subparsers(dest="command", required=True)
    d = DEFAULTS

    train = commands.add_parser(
        "train", help="train a VAE (defaults: the paper's MNIST setup)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = train.add_argument_group("model")
    model.add_argument("--latent", type=_positive_int, default=d.latent, help="latent dimension J")
    model.add_argument("--hidden", type=_positive_int, nargs="+", default=list(d.hidden),
                       help="hidden layer widths of the encoder (the decoder mirrors them)")
    model.add_argument("--decoder", choices=("bernoulli", "gaussian"), default=d.decoder,
                       help="p(x|z): Bernoulli for binary data, Gaussian for intensities")
    model.add_argument("--activation", choices=("tanh", "relu", "sigmoid", "softplus"),
                       default=d.activation, help="hidden-layer activation")
    model.add_argument("--init", choices=("normal", "xavier"), default=d.init,
                       help="normal: N(0, 0.01^2) as in the paper; xavier: Glorot uniform")
    objective = train.add_argument_group("objective and optimization")
    objective.add_argument("--estimator", choices=("A", "B"), default=d.estimator,
                           help="SGVB estimator: A (eq. 6) or B with analytic KL (eq. 7)")
    objective.add_argument("--samples", type=_positive_int, default=d.samples,
                           help="L, samples of z per datapoint")
    objective.add_argument("--optimizer", choices=("adagrad", "sgd", "adam"), default=d.optimizer,
                           help="stochastic gradient method (the paper used Adagrad)")
    objective.add_argument("--lr", type=_positive_float, default=argparse.SUPPRESS,
                           help="step size (default: 0.02 for adagrad, 1e-3 for adam and sgd)")
    objective.add_argument("--momentum", type=_nonnegative_float, default=d.momentum,
                           help="SGD momentum")
    objective.add_argument("--batch-size", type=_positive_int, default=d.batch_size,
                           help="minibatch size M")
    objective.add_argument("--epochs", type=_positive_int, default=d.epochs,
                           help="passes over the training set")
    objective.add_argument("--weight-decay", type=_nonnegative_float, default=d.weight_decay,
                           help="Gaussian prior on the parameters, N(0, I/weight_decay), "
                                "scaled by 1/N in the per-datapoint objective")
    objective.add_argument("--clip-norm", type=_positive_float, default=None,
                           help="clip the global gradient norm to this value")
    objective.add_argument("--seed", type=_nonnegative_int, default=d.seed,
                           help="seed of the run's random generator")
    objective.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype,
                           help="floating-point type of parameters and arithmetic")
    io = train.add_argument_group("data and output")
    io.add_argument("--data", default=argparse.SUPPRESS,
                    help="directory of MNIST-format IDX files (default: the embedded MNIST)")
    io.add_argument("--binarize", choices=("dynamic", "static", "none"), default=d.binarize,
                    help="Bernoulli decoder: a fresh binarization per minibatch, one fixed "
                         "binarization, or data that is already binary (pixels 0 or 255)")
    io.add_argument("--out", default=argparse.SUPPRESS,
                    help="run directory (default: runs/<date-time>)")
    io.add_argument("--resume", default=None, metavar="RUN_OR_CKPT",
                    help="continue a run from its checkpoint, exactly where it stopped")
    io.add_argument("--k", type=_positive_int, default=100,
                    help="importance samples for the log p(x) printed at the end")
    io.add_argument("--max-minutes", type=_positive_float, default=None,
                    help="stop after the last epoch that fits in this much wall time")
    io.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    io.add_argument("--no-figures", action="store_true",
                    help="do not draw recon.png, samples.png and latent.gif after each epoch")

    evaluate = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    evaluate.add_argument("--k", type=_positive_int, default=1000, help="importance samples K")
    evaluate.add_argument("--limit", type=_positive_int, default=None,
                          help="evaluate only the first LIMIT test images")
    evaluate.add_argument("--seed", type=_nonnegative_int, default=0,
                          help="seed of the evaluation's random draws")

    sample = commands.add_parser(
        "sample", help="write samples from the prior as a PNG grid",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    sample.add_argument("--n", type=_positive_int, default=64, help="number of samples")
    sample.add_argument("--out", default=None, help="PNG path (default: samples.png in the run)")
    sample.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of z ~ N(0, I)")

    plot = commands.add_parser(
        "plot", help="draw figures of a run as PNGs into its directory",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    plot.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    plot.add_argument("--what", choices=tuple(FIGURES) + ("all",), default="all",
                      help="which figure; 'all' draws every one that applies to the model")
    plot.add_argument("--images", type=_positive_int, default=5000,
                      help="test images in the latent scatter")
    plot.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of z ~ N(0, I)")
    plot.add_argument("--out", default=argparse.SUPPRESS,
                      help="directory for the PNGs (default: the run directory)")
    return parser


def _train(args):
    from minivae.train import train
    given = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    config = Config(**given)
    resume = Path(args.resume) if args.resume else None
    out = getattr(args, "out", None) or (_run_dir(resume) if resume else
                                         Path("runs") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    print(f"minivae: training a {config.decoder} VAE with hidden layers "
          f"{list(config.hidden)} and latent dimension {config.latent}, {config.optimizer} "
          f"(lr {config.lr}), {config.epochs} epochs; run directory {out}")
    max_seconds = args.max_minutes * 60 if args.max_minutes else None
    result = train(config, out, resume=resume, progress=not args.no_progress,
                   figures=not args.no_figures, max_seconds=max_seconds, k=args.k)
    print(f"test ELBO            {result['test_elbo']:.2f} nats")
    print(f"test log p(x), K={result['k']:<4d} {result['log_px']:.2f} nats")
    print(f"checkpoint           {result['checkpoint']}")
    print(f"next: minivae evaluate {out} --k 1000   |   minivae plot {out}")


def _run_dir(path):
    """The run directory of a checkpoint file or of a run directory."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def _load(path):
    """The model, config and checkpoint meta of a run."""
    from minivae.checkpoint import load_checkpoint, restore_params
    from minivae.train import build_model
    params, _, meta, _ = load_checkpoint(path)
    config = Config.from_dict(meta["config"])
    model = build_model(config, meta["x_dim"], np.random.default_rng(0))
    restore_params(model, params, path)
    return model, config, meta


def _test_data(config):
    """The test images (uint8, as the model sees them) and labels of a run's data."""
    from minivae import data
    from minivae.train import Inputs
    dataset = data.load_mnist(config.data)
    return Inputs(config, dataset), dataset.test_labels


def _evaluate(args):
    from minivae.evaluate import log_likelihood, mean_elbo
    model, config, _ = _load(args.checkpoint)
    inputs, _ = _test_data(config)
    count = min(args.limit or len(inputs.test), len(inputs.test))
    elbo = mean_elbo(model, inputs.test_batches(limit=count), np.random.default_rng(args.seed),
                     config.estimator)
    log_px = log_likelihood(model, inputs.test_batches(batch_size=100, limit=count),
                            np.random.default_rng([args.seed, 1]), k=args.k)
    print(f"test images          {count}")
    print(f"test ELBO            {elbo:.2f} nats (estimator {config.estimator})")
    print(f"test log p(x), K={args.k:<4d} {log_px:.2f} nats")


def _sample(args):
    from minivae import plots
    model, _, meta = _load(args.checkpoint)
    out = Path(args.out) if args.out else _run_dir(args.checkpoint) / "samples.png"
    plots.samples(model, out, np.random.default_rng(args.seed), n=args.n,
                  image_shape=tuple(meta["image_shape"]))
    print(f"wrote {args.n} samples from the prior to {out}")


def _plot(args):
    from minivae import plots
    model, config, meta = _load(args.checkpoint)
    run = _run_dir(args.checkpoint)
    out = Path(getattr(args, "out", None) or run)
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(meta["image_shape"])
    wanted = list(FIGURES) if args.what == "all" else [args.what]
    if args.what == "all":   # leave out what does not apply to this model or run
        wanted = [w for w in wanted if not (w == "manifold" and model.latent != 2)
                  and not (w == "curves" and not (run / "metrics.jsonl").is_file())]
    if any(FIGURES[w][1] for w in wanted):
        inputs, labels = _test_data(config)
    for what in wanted:
        path = out / FIGURES[what][0]
        if what == "manifold":
            plots.manifold(model, path, image_shape=shape)
        elif what == "scatter":
            plots.latent_scatter(model, inputs.test[:args.images], labels[:args.images], path)
        elif what == "recon":
            plots.reconstructions(model, inputs.test, path, image_shape=shape)
        elif what == "samples":
            plots.samples(model, path, np.random.default_rng(args.seed), image_shape=shape)
        else:
            plots.learning_curves({run.name: run}, path)
        print(f"wrote {path}")


def main(argv=None):
    """Entry point of the `minivae` console script and `python -m minivae`."""
    from minivae.checkpoint import CheckpointError
    from minivae.train import TrainingError
    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "sample": _sample,
               "plot": _plot}[args.command]
    try:
        command(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, OSError, CheckpointError, TrainingError) as err:
        print(f"minivae {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0
