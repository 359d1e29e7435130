"""The `minivae` command: train, evaluate and sample.

    minivae train                      the paper's MNIST model on the embedded data
    minivae evaluate RUN_OR_CKPT       test ELBO and importance-sampled log p(x)
    minivae sample RUN_OR_CKPT         a PNG grid of samples from the prior
"""
import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from minivae.train import Config

DEFAULTS = Config()


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _parser():
    parser = argparse.ArgumentParser(
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
    objective.add_argument("--optimizer", choices=("adagrad", "sgd", "adam"), default=d.optimizer)
    objective.add_argument("--lr", type=_positive_float, default=None,
                           help="step size (default: 0.02 adagrad, 1e-3 adam, 1e-3 sgd)")
    objective.add_argument("--momentum", type=_nonnegative_float, default=d.momentum,
                           help="SGD momentum")
    objective.add_argument("--batch-size", type=_positive_int, default=d.batch_size,
                           help="minibatch size M")
    objective.add_argument("--epochs", type=_positive_int, default=d.epochs)
    objective.add_argument("--weight-decay", type=_nonnegative_float, default=d.weight_decay,
                           help="Gaussian prior on the parameters, N(0, I/weight_decay), "
                                "scaled by 1/N in the per-datapoint objective")
    objective.add_argument("--clip-norm", type=_positive_float, default=None,
                           help="clip the global gradient norm to this value")
    objective.add_argument("--seed", type=int, default=d.seed)
    objective.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    io = train.add_argument_group("data and output")
    io.add_argument("--data", default=None,
                    help="directory of MNIST-format IDX files (default: the embedded MNIST)")
    io.add_argument("--binarize", choices=("dynamic", "static", "none"), default=d.binarize,
                    help="Bernoulli decoder: a fresh binarization per minibatch, one fixed "
                         "binarization, or data that is already binary (pixels 0 or 255)")
    io.add_argument("--out", default=None, help="run directory (default: runs/<date-time>)")
    io.add_argument("--resume", default=None, metavar="RUN_OR_CKPT",
                    help="continue a run from its checkpoint, exactly where it stopped")
    io.add_argument("--k", type=_positive_int, default=d.k,
                    help="importance samples for the log p(x) printed at the end")
    io.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    evaluate.add_argument("--k", type=_positive_int, default=1000, help="importance samples K")
    evaluate.add_argument("--limit", type=_positive_int, default=None,
                          help="evaluate only the first LIMIT test images")
    evaluate.add_argument("--seed", type=int, default=0)

    sample = commands.add_parser(
        "sample", help="write samples from the prior as a PNG grid",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    sample.add_argument("--n", type=_positive_int, default=64, help="number of samples")
    sample.add_argument("--out", default=None, help="PNG path (default: samples.png in the run)")
    sample.add_argument("--seed", type=int, default=0)
    return parser


def _train(args):
    from minivae.train import train
    given = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    config = Config(**given)
    out = args.out or (Path(args.resume).parent if args.resume and Path(args.resume).is_file()
                       else args.resume) or Path("runs") / time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"minivae: training a {config.decoder} VAE 784-{'-'.join(map(str, config.hidden))}-"
          f"{config.latent} with {config.optimizer} (lr {config.lr}) for {config.epochs} epochs; "
          f"run directory {out}")
    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    print(f"test ELBO            {result['test_elbo']:.2f} nats")
    print(f"test log p(x), K={result['k']:<4d} {result['log_px']:.2f} nats")
    print(f"checkpoint           {result['checkpoint']}")
    print(f"next: minivae evaluate {out} --k 1000   |   minivae sample {out}")


def _load(path):
    """The model, config and Inputs of a checkpoint."""
    from minivae import data
    from minivae.checkpoint import load_checkpoint, restore_params
    from minivae.train import Inputs, build_model
    params, _, meta, _ = load_checkpoint(path)
    config = Config.from_dict(meta["config"])
    dataset = data.load_mnist(config.data)
    model = build_model(config, dataset.dim, np.random.default_rng(0))
    restore_params(model, params, path)
    return model, config, dataset, Inputs(config, dataset)


def _evaluate(args):
    from minivae.evaluate import log_likelihood, mean_elbo
    model, config, _, inputs = _load(args.checkpoint)
    count = min(args.limit or len(inputs.test), len(inputs.test))
    elbo = mean_elbo(model, inputs.test_batches(limit=count), np.random.default_rng(args.seed),
                     config.estimator)
    log_px = log_likelihood(model, inputs.test_batches(batch_size=100, limit=count),
                            np.random.default_rng([args.seed, 1]), k=args.k)
    print(f"test images          {count}")
    print(f"test ELBO            {elbo:.2f} nats (estimator {config.estimator})")
    print(f"test log p(x), K={args.k:<4d} {log_px:.2f} nats")


def _sample(args):
    from minivae.autograd import no_grad
    from minivae.plots import save_image_grid
    model, _, dataset, _ = _load(args.checkpoint)
    z = np.random.default_rng(args.seed).standard_normal((args.n, model.latent), dtype=model.dtype)
    with no_grad():
        images = model.mean_x(z).data.reshape(args.n, *dataset.image_shape)
    run = Path(args.checkpoint)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / "samples.png"
    save_image_grid(images, out)
    print(f"wrote {args.n} samples from the prior to {out}")


def main(argv=None):
    """Entry point of the `minivae` console script and `python -m minivae`."""
    from minivae.checkpoint import CheckpointError
    from minivae.train import TrainingError
    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "sample": _sample}[args.command]
    try:
        command(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, OSError, CheckpointError, TrainingError) as err:
        print(f"minivae {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0
