"""The `minivae` command: train, evaluate, sample and plot.

    minivae train                      the paper's MNIST model on the embedded data
    minivae train --config PRESET      a named setup (minivae/presets), flags override it
    minivae evaluate RUN_OR_CKPT       test ELBO, importance-sampled log p(x), active units
    minivae evaluate RUN --gaps 100    and the approximation and amortization gaps
    minivae sample RUN_OR_CKPT         a PNG grid of samples from the prior
    minivae sample RUN --digit 7       a conditional model's samples of one class
    minivae plot RUN_OR_CKPT           figures: manifold, latent scatter, reconstructions,
                                       samples, learning curves, latent activity,
                                       a conditional model's class grid
    minivae probe RUN_OR_CKPT          a linear probe of the code: softmax regression
                                       on the frozen codes, test accuracy
    minivae explore RUN_OR_CKPT        explorer.html: drag a point through z, watch
                                       the decoder's output in a browser
    minivae reproduce fig2|frey|fig3|fig4
                                       the paper's experiments, one run per curve,
                                       drawn over the paper's points

`arguments` holds the grammar (subcommands, flags, help); this module runs it.
"""
import sys
import time
from pathlib import Path

import numpy as np

from minivae import config as cfg
from minivae.applies import UsageError, check_applies
from minivae.arguments import GAP_DEFAULTS, PLOTS, parser


def _train(args):
    from minivae.runs import RunDir
    from minivae.train import train
    given = {name: getattr(args, name) for name in cfg.FLAGS if hasattr(args, name)}
    if args.config:   # a preset's defaults do not count as settings the user chose
        given = {**{name: value for name, value in cfg.load_preset(args.config).items()
                    if value != cfg.default(name)}, **given}
    if args.resume:
        config = RunDir.of(args.resume).load().config.resumed_with(given)
        out = Path(args.out) if args.out else RunDir.of(args.resume).path
    else:
        try:
            check_applies(given)
        except ValueError as err:
            raise UsageError(err) from None
        config = cfg.Config.from_flags(**given)
        out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"minivae: {'resuming' if args.resume else 'training'} {_describe(config)}, "
          f"{config.run.epochs} epochs; run directory {out}")
    on_epoch = None
    if not args.no_figures:
        from minivae.models import MODELS
        from minivae.epoch_figures import epoch_figures as on_epoch
        if not MODELS[config.model.model].has_prior:
            print(f"note: no samples.png, a {config.model.model} has no prior to sample from")
    max_seconds = args.max_minutes * 60 if args.max_minutes else None
    result = train(config, out, resume=args.resume, progress=not args.no_progress,
                   on_epoch=on_epoch, max_seconds=max_seconds, k=args.k)
    _summary(result)
    print(f"checkpoint           {result['checkpoint']}")
    k = " --k 1000" if "log_px" in result else ""
    print(f"next: minivae evaluate {out}{k}   |   minivae plot {out}")


def _describe(config):
    """'a bernoulli VAE with hidden layers [500] and latent dimension 20, adagrad (lr 0.02)'"""
    m, o = config.model, config.optimizer
    name = m.model.upper() if m.model == "vae" else m.model
    hidden = f" with hidden layers {list(m.hidden)}" if "hidden" in _options(m.model) else ""
    rule = "one SVD pass" if m.model == "pca" else f"{o.optimizer} (lr {o.lr})"
    if o.algorithm != "aevb":
        rule = f"{o.algorithm} by {rule}"
    return f"a {m.decoder} {name}{hidden} and latent dimension {m.latent}, {rule}"


def _options(model):
    from minivae.models import MODELS
    return MODELS[model].options


def _summary(result):
    """The end-of-run lines: the test objective (and the ELBO beside another
    objective), the reconstruction error, log p(x) and its bits per dimension."""
    key, label = result["key"], result["label"]
    unit = "" if key == "objective" else " nats"
    print(f"test {label:<16s}{result[f'test_{key}']:.2f}{unit}")
    if key != "elbo" and "test_elbo" in result:
        print(f"test ELBO            {result['test_elbo']:.2f} nats")
    print(f"test recon. error    {result['test_error']:.2f} {result['error_unit']}")
    if result.get("log_px") is not None:
        given = "log p(x|y)" if result.get("classes") else "log p(x)"   # a conditional model
        print(f"test {given}, K={result['k']:<4d} {result['log_px']:.2f} nats")
    if result.get("bits_per_dim") is not None:
        print(f"bits per dimension   {result['bits_per_dim']:.3f} (of the 256-level pixels)")
    if result.get("active_units") is not None:
        from minivae.activity import THRESHOLD
        print(f"active units         {result['active_units']} of {result['latent']} "
              f"(Cov_x E_q[z_u] > {THRESHOLD:g})")


def _load(path):
    """The run directory and the checked, trained model of RUN_OR_CKPT."""
    from minivae.runs import RunDir
    run = RunDir.of(path)
    return run, run.load()


def _test_inputs(trained):
    """The test images as the model sees them (data.Inputs) and their labels (None
    for a data set without labels)."""
    from minivae import data
    from minivae.datasets import load_dataset
    c = trained.config
    dataset = load_dataset(c.data.data)
    inputs = data.Inputs(dataset, trained.model.likelihood.pixels, c.data.binarize, c.run.seed,
                         c.run.dtype, c.data.intensities, trained.model.classes)
    return inputs, dataset.test_labels


def _evaluate(args):
    from tqdm import tqdm
    from minivae.activity import active_units
    from minivae import data
    from minivae.evaluate import log_likelihood, mean_measures, reconstruction_error
    gaps = _gap_settings(args)
    run, trained = _load(args.checkpoint)
    model, config = trained.model, trained.config
    if gaps and not model.has_prior:
        raise ValueError(f"--gaps needs a model with a posterior q(z|x) (vae or cvae); this "
                         f"run's {config.model.model} has none")
    objective = config.objective.build(config.model.model, trained.image_shape)
    inputs, _ = _test_inputs(trained)
    count = min(args.limit or len(inputs.test), len(inputs.test))

    def bar(what):
        return tqdm(total=count, desc=what, unit="image", leave=False,
                    disable=True if args.no_progress else None)
    with bar(f"test {objective.label}") as b:
        measures = mean_measures(model, objective, inputs.test_batches(limit=count),
                                 np.random.default_rng(args.seed), progress=b.update)
    with bar("reconstruction error") as b:
        error = reconstruction_error(model, inputs.test_batches(limit=count), progress=b.update)
    log_px = None
    if model.has_prior:
        with bar(f"log p(x), K={args.k}") as b:
            log_px = log_likelihood(model, inputs.test_batches(batch_size=100, limit=count),
                                    np.random.default_rng([args.seed, 1]), k=args.k,
                                    progress=b.update)
    print(f"test images          {count}")
    bits = data.bits_per_dim(log_px, model.x_dim) \
        if inputs.dequantized and log_px is not None else None
    active = active_units(model, inputs.test_batches(limit=count)).count \
        if model.has_prior else None
    _summary({**{f"test_{name}": value for name, value in measures.items()},
              "test_error": error, "error_unit": model.likelihood.error_unit, "log_px": log_px,
              "bits_per_dim": bits, "active_units": active, "latent": model.latent,
              "classes": model.classes,
              "k": args.k, "key": objective.key, "label": objective.label})
    if gaps:
        _gaps(gaps, args, run, model, inputs)


def _gap_settings(args):
    """None without --gaps; with it, {"gaps": N, "gap_steps": ..., "gap_samples": ...,
    "gap_lr": ...}, the flags not given at their defaults.  Refuses --gap-* without
    --gaps, and a --k too small for the gaps' replicates, before any evaluation."""
    from minivae.gaps import REPLICATES
    given = {name: getattr(args, name) for name in GAP_DEFAULTS if hasattr(args, name)}
    if not hasattr(args, "gaps"):
        if given:
            flag = "--" + next(iter(given)).replace("_", "-")
            raise ValueError(f"{flag} sets up the inference gaps; expected it together with "
                             f"--gaps")
        return None
    if args.k < REPLICATES:
        raise ValueError(f"--gaps estimates each bound from {REPLICATES} independent "
                         f"replicates; expected --k of at least {REPLICATES}, got {args.k}")
    return {"gaps": args.gaps, **GAP_DEFAULTS, **given}


def _gaps(settings, args, run, model, inputs):
    """Measure and print the inference gaps of the first N test images; draw gaps.png."""
    from minivae import plots
    from minivae.gaps import measure_gaps
    steps, samples, lr = settings["gap_steps"], settings["gap_samples"], settings["gap_lr"]
    x = np.concatenate(list(inputs.test_batches(limit=settings["gaps"])))
    print(f"inference gaps on {len(x)} test images: {steps} local Adam steps "
          f"(L={samples}, lr {lr:g}), K={args.k} samples for each bound")
    gaps = measure_gaps(model, x, np.random.default_rng([args.seed, 2]), steps, samples, lr,
                        args.k)
    log_px = "log p(x|y)" if model.classes else "log p(x)"   # a conditional model
    for name, (mean, across, mc) in gaps.summary().items():
        spread = f"+- {across:.2f} across images" if len(x) > 1 else "(one image: no spread)"
        print(f"{name.replace('log p(x)', log_px):<21s}{mean:.2f} nats  {spread}, "
              f"+- {mc:.3f} Monte Carlo")
    print(f"{log_px + ' proposal':<21s}q* on {gaps.by_local.sum()} of {len(x)} images, the "
          f"encoder's q on the rest (the larger L_K of the two)")
    path = run.figure("gaps")
    existed = path.exists()
    plots.inference_gaps(gaps, path)
    _wrote(path, existed, "ELBO of each image during its local optimization")


def _wrote(path, existed, what):
    print(f"{'replaced' if existed else 'wrote'} {path}: {what}")


def _explore(args):
    from minivae.activity import active_units
    from minivae.explore import page_data, write_page
    run, trained = _load(args.checkpoint)
    model, config = trained.model, trained.config
    inputs, labels = _test_inputs(trained)
    n = min(args.images, len(inputs.test))
    points = min(max(args.points, n), len(inputs.test))
    x = next(inputs.test_batches(batch_size=points, limit=points))
    activity = active_units(model, inputs.test_batches()) if model.has_prior else None
    data = page_data(model, _describe(config), trained.image_shape, x, inputs.test[:n],
                     _first(labels, points), activity)
    path = Path(getattr(args, "out", None) or run.figure("explorer"))
    existed = path.exists()
    write_page(data, path)
    _wrote(path, existed, f"the latent-space explorer, {n} test images to click and "
                          f"{points} on the plane, "
                          f"{path.stat().st_size / 1e6:.1f} MB; open it in a browser")
    if args.open:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())


def _sample(args):
    from minivae import plots
    run, trained = _load(args.checkpoint)
    classes, digit = trained.model.classes, args.digit
    if digit is not None and not classes:
        raise ValueError(f"--digit needs a conditional model (--model cvae); this run's "
                         f"{trained.config.model.model} is not conditional")
    if digit is not None and digit >= classes:
        raise ValueError(f"--digit must lie in 0..{classes - 1}, got {digit}")
    out = Path(args.out) if args.out else run.path / f"samples_seed{args.seed}.png"
    existed = out.exists()
    plots.samples(trained.model, out, np.random.default_rng(args.seed), n=args.n,
                  image_shape=trained.image_shape, digit=digit)
    given = "" if not classes else f" of digit {digit}" if digit is not None else \
        f", classes 0..{classes - 1} in turn"
    _wrote(out, existed, f"{args.n} samples from the prior{given}")


def _plot(args):
    from minivae import plots
    from minivae.activity import active_units
    run, trained = _load(args.checkpoint)
    model, shape = trained.model, trained.image_shape
    out = Path(getattr(args, "out", None) or run.path)
    out.mkdir(parents=True, exist_ok=True)
    wanted = list(PLOTS) if args.what == "all" else [args.what]
    if args.what == "all":   # leave out what does not apply to this model or run
        wanted = [w for w in wanted
                  if not (w == "manifold" and (model.latent != 2 or not model.has_prior
                                               or model.classes))
                  and not (w in ("samples", "activity") and not model.has_prior)
                  and not (w == "classes" and not model.classes)
                  and not (w == "curves" and not run.metrics.is_file())]
    elif args.what == "manifold" and model.classes:
        raise ValueError("manifold: not drawn for a conditional model, whose decoder also reads "
                         "the label; use --what classes")
    if any(PLOTS[w] for w in wanted):
        inputs, labels = _test_inputs(trained)
    for what in wanted:
        path = out / run.figure(what).name
        existed = path.exists()
        if what == "manifold":
            plots.manifold(model, path, image_shape=shape)
        elif what == "scatter":
            plots.latent_scatter(model, inputs.test[:args.images], _first(labels, args.images),
                                 path)
        elif what == "recon":
            plots.reconstructions(model, inputs.test, path, image_shape=shape, labels=labels)
        elif what == "samples":
            plots.samples(model, path, np.random.default_rng(args.seed), image_shape=shape)
        elif what == "activity":
            plots.latent_activity(active_units(model, inputs.test_batches()), path)
        elif what == "classes":
            plots.class_grid(model, path, np.random.default_rng(args.seed), image_shape=shape)
        else:
            key = trained.config.objective.build(trained.config.model.model, shape).key
            plots.learning_curves({run.path.name: run.read_metrics()}, path, key)
        _wrote(path, existed, what)


def _first(labels, n):
    """The first n labels, or None for a data set without labels."""
    return None if labels is None else labels[:n]


def _probe(args):
    from minivae.datasets import load_dataset
    from minivae.probe import probe
    _, trained = _load(args.checkpoint)
    dataset = load_dataset(trained.config.data.data)
    if dataset.train_labels is None:
        raise ValueError(f"probe: a linear probe predicts the labels; {trained.config.data.data} "
                         f"has none")
    result = probe(trained.model, dataset, np.random.default_rng(args.seed))
    print(f"linear probe on the frozen {result['code_size']}-D codes of "
          f"{len(dataset.train_images)} training images ({result['seconds']:.1f} s)")
    print(f"train accuracy       {100 * result['train_accuracy']:.2f} %")
    print(f"test accuracy        {100 * result['test_accuracy']:.2f} %")


def _check_environment():
    """A usage error for a bad MINIVAE_THREADS, before anything is written."""
    from minivae import threads
    try:
        threads.configured()
    except ValueError as err:
        raise UsageError(err) from None


def main(argv=None):
    """Entry point of the `minivae` console script and `python -m minivae`."""
    from minivae.checkpoint import CheckpointError
    from minivae.data import DataError
    from minivae.reproduce import reproduce
    from minivae.train import TrainingError
    args = parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "sample": _sample,
               "plot": _plot, "probe": _probe, "explore": _explore,
               "reproduce": reproduce}[args.command]
    try:
        _check_environment()
        code = command(args)
    except KeyboardInterrupt:
        return 130
    except (UsageError, DataError) as err:   # as argparse's: the command line asked wrongly
        print(f"minivae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, CheckpointError, TrainingError) as err:
        print(f"minivae {args.command}: error: {err}", file=sys.stderr)
        return 1
    return code or 0
