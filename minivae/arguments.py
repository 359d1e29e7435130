"""The grammar of the `minivae` command: its subcommands, flags, their types,
defaults and help.  The training flags are the fields of `config`: their
names, defaults, choices and help come from there; `cli` runs what is parsed.
"""
import argparse
import math
import textwrap

from minivae import config as cfg
from minivae.reproduce import FIGURES

# what `minivae plot --what` can draw, and whether it needs the test data
PLOTS = {"manifold": False, "scatter": True, "recon": True, "samples": False, "curves": False,
         "activity": True, "classes": False}
# the --gap-* flags' values when --gaps is given without them
GAP_DEFAULTS = {"gap_steps": 500, "gap_samples": 10, "gap_lr": 1e-2}


def _value_type(name, meta):
    """An argparse type for config field `name`: text -> value, or a one-line error."""
    convert, _, _ = cfg.KINDS[meta["kind"]]

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {cfg.KINDS[meta['kind']][2]}, got {text!r}") from None
        try:
            return cfg.check_value(name, value, {**meta, "many": False})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _samples(text):
    """An argparse type for a count of samples, which may be written 1e8: an int >= 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1 and value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 such as 300000 or "
                                         f"1e8, got {text!r}")
    return int(value)


def _number(kind):
    """An argparse type for a number of `kind` (a key of config.KINDS)."""
    return _value_type("value", {"kind": kind, "choices": None, "optional": False})


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_flags(parser):
    """One flag per config field, grouped by section; a flag that is not given
    is absent from the parsed arguments, so a preset or a resumed run fills it."""
    for section, cls in cfg.SECTIONS.items():
        group = parser.add_argument_group(section)
        for name, (_, f) in cfg.FLAGS.items():
            if f.name not in cls.__dataclass_fields__:
                continue
            meta, default = f.metadata, cfg.default(name)
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = meta["help"] + ("" if default is None else f" (default: {shown})")
            group.add_argument(f"--{name.replace('_', '-')}", dest=name,
                               default=argparse.SUPPRESS, nargs="+" if meta["many"] else None,
                               choices=meta["choices"], help=help_text,
                               type=None if meta["choices"] else _value_type(name, meta))


def parser():
    """The `minivae` argument parser: one subcommand per command of `cli`."""
    parser = _Parser(
        prog="minivae", description="Auto-Encoding Variational Bayes (Kingma & Welling, 2013) "
                                    "in NumPy and Numba.")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    train = commands.add_parser("train", help="train a VAE (defaults: the paper's MNIST setup)")
    _add_config_flags(train)
    io = train.add_argument_group("this invocation (may change when a run is resumed)")
    io.add_argument("--config", metavar="PRESET", default=None,
                    help="start from a preset: a name in minivae/presets (e.g. paper-mnist) "
                         "or a JSON file of field -> value; flags given here override it")
    io.add_argument("--out", default=None,
                    help="run directory (default: runs/<date-time>, or the resumed run's)")
    io.add_argument("--resume", default=None, metavar="RUN_OR_CKPT",
                    help="continue a run exactly where it stopped, with its own settings")
    io.add_argument("--k", type=_number("positive int"), default=100,
                    help="importance samples for the log p(x) printed at the end (default: 100)")
    io.add_argument("--max-minutes", type=_number("positive number"), default=None,
                    help="stop after the last epoch that fits in this much wall time")
    io.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    io.add_argument("--no-figures", action="store_true",
                    help="do not draw recon.png, samples.png and latent.gif after each epoch")

    evaluate = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a checkpoint",
        formatter_class=defaults)
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    evaluate.add_argument("--k", type=_number("positive int"), default=1000,
                          help="importance samples K")
    evaluate.add_argument("--limit", type=_number("positive int"), default=None,
                          help="evaluate only the first LIMIT test images (the active "
                               "units are counted on them too)")
    evaluate.add_argument("--seed", type=_number("int >= 0"), default=0,
                          help="seed of the evaluation's random draws")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gaps = evaluate.add_argument_group(
        "inference gaps (Cremer, Li & Duvenaud 2018): the ELBO of each image's own "
        "q(z|x_i), optimized from the encoder's output with the decoder fixed")
    gaps.add_argument("--gaps", metavar="N", nargs="?", const=100, default=argparse.SUPPRESS,
                      type=_number("positive int"),
                      help="measure log p(x), the local and the encoder's ELBO and the "
                           "approximation and amortization gaps on the first N test images "
                           "(N = 100 when --gaps is given alone; put it after RUN_OR_CKPT), "
                           "each from --k samples; draws gaps.png into the run directory. "
                           "--limit does not bound N, only the evaluation before it: with "
                           "a large --k, add --limit N too. Time grows as N x (--gap-steps "
                           "x --gap-samples + 4 --k)")
    gaps.add_argument("--gap-steps", metavar="STEPS", type=_number("positive int"),
                      default=argparse.SUPPRESS,
                      help="Adam steps of each image's local optimization "
                           f"(default: {GAP_DEFAULTS['gap_steps']})")
    gaps.add_argument("--gap-samples", metavar="L", type=_number("positive int"),
                      default=argparse.SUPPRESS,
                      help="eps samples L per datapoint in each local step "
                           f"(default: {GAP_DEFAULTS['gap_samples']})")
    gaps.add_argument("--gap-lr", metavar="LR", type=_number("positive number"),
                      default=argparse.SUPPRESS,
                      help="learning rate of the local Adam, falling linearly to 0 "
                           f"(default: {GAP_DEFAULTS['gap_lr']:g})")

    explore = commands.add_parser(
        "explore", help="write explorer.html: move through the latent space in a browser",
        formatter_class=defaults)
    explore.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    explore.add_argument("--images", type=_number("positive int"), default=100,
                         help="test digits to click on, the first IMAGES of the test set")
    explore.add_argument("--points", type=_number("positive int"), default=1000,
                         help="test digits whose codes are drawn on the plane, the first "
                              "POINTS of the test set (at least IMAGES)")
    explore.add_argument("--out", default=argparse.SUPPRESS,
                         help="the HTML file to write (default: explorer.html in the run "
                              "directory)")
    explore.add_argument("--open", action="store_true",
                         help="open the page in the default web browser")

    sample = commands.add_parser("sample", help="write samples from the prior as a PNG grid",
                                 formatter_class=defaults)
    sample.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    sample.add_argument("--n", type=_number("positive int"), default=64,
                        help="number of samples")
    sample.add_argument("--out", default=None,
                        help="PNG path (default: samples_seed<SEED>.png in the run)")
    sample.add_argument("--seed", type=_number("int >= 0"), default=0, help="seed of z ~ N(0, I)")
    sample.add_argument("--digit", type=_number("int >= 0"), default=None,
                        help="a conditional model (cvae) draws this class y only; without "
                             "it, its samples take the classes 0..C-1 in turn, one per column")

    plot = commands.add_parser("plot", help="draw figures of a run as PNGs into its directory",
                               formatter_class=defaults)
    plot.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    plot.add_argument("--what", choices=tuple(PLOTS) + ("all",), default="all",
                      help="which figure; 'all' draws every one that applies to the model")
    plot.add_argument("--images", type=_number("positive int"), default=5000,
                      help="test images in the latent scatter")
    plot.add_argument("--seed", type=_number("int >= 0"), default=0, help="seed of z ~ N(0, I)")
    plot.add_argument("--out", default=argparse.SUPPRESS,
                      help="directory for the PNGs (default: the run directory)")

    probe = commands.add_parser(
        "probe", help="linear probe: softmax regression on the frozen codes of the training "
                      "set, accuracy on the test set", formatter_class=defaults)
    probe.add_argument("checkpoint", metavar="RUN_OR_CKPT")
    probe.add_argument("--seed", type=_number("int >= 0"), default=0,
                       help="seed of the probe's minibatch order")
    _add_reproduce(commands)
    return parser


def _add_reproduce(commands):
    """`minivae reproduce FIGURE`: the flags of `reproduce.reproduce`."""
    figures = "\n".join(textwrap.fill(f"{name:5s} {f.summary}; default --budget "
                                       f"{f.budget:,}: {f.measured}; the paper: {f.paper}",
                                       78, initial_indent="  ", subsequent_indent=" " * 8,
                                       break_on_hyphens=False)
                         for name, f in FIGURES.items())
    reproduce = commands.add_parser(
        "reproduce", help="run the paper's experiments (section 5) and draw them over the "
                          "paper's points", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one resumable run per curve of a figure of the paper, with its "
                    "settings\n(Adagrad, step size 0.02, M = 100, L = 1), then draw the curves "
                    "(lines)\nbeside the paper's points (markers). Times: --jobs 2 on this "
                    "2-core machine;\nthey grow about in proportion to the budget.\n\n" +
                    figures)
    reproduce.add_argument("figure", choices=tuple(FIGURES), help="which figure (above)")
    reproduce.add_argument("--budget", metavar="SAMPLES", type=_samples, default=None,
                           help="training samples evaluated a curve, e.g. 1e8 as in the "
                                "paper: each run trains ceil(SAMPLES / N) epochs of its N "
                                "images (default: the figure's, above)")
    reproduce.add_argument("--out", metavar="DIR", default=None,
                           help="where the runs (one directory each) and the figure go "
                                "(default: reproduce/FIGURE)")
    reproduce.add_argument("--jobs", metavar="N", type=_number("positive int"), default=2,
                           help="runs trained at a time, each a subprocess with cores / N "
                                "BLAS threads (default: 2)")
    reproduce.add_argument("--print-commands", action="store_true",
                           help="print the `minivae train` line of each run still to do, "
                                "for a batch scheduler, and run nothing (default: off)")
    reproduce.add_argument("--plot-only", action="store_true",
                           help="train nothing; draw the figure from the runs under --out "
                                "(default: off)")
    reproduce.add_argument("--frey", metavar="PATH", default=None,
                           help="the Frey Face file frey_rawface.mat; needed by frey, adds "
                                "Frey Face to fig4 (default: none)")
    reproduce.add_argument("--data", metavar="DIR", default=None,
                           help="a directory of MNIST-format IDX files in place of the "
                                "embedded MNIST (default: the embedded MNIST)")
    reproduce.add_argument("--hidden", metavar="H", nargs="+", type=_number("positive int"),
                           default=None,
                           help="hidden layer widths of every run in place of the paper's "
                                "(500 MNIST, 200 Frey Face, 100 fig3): a small-scale knob for "
                                "tests and quick looks, not the paper (default: the paper's)")
    reproduce.add_argument("--only", metavar="NAME", nargs="+", default=None,
                           help="the runs whose directory names match one of these patterns "
                                "(e.g. '*-aevb' or latent20-wake-sleep) (default: all)")
