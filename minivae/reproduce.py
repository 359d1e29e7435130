"""`minivae reproduce FIGURE`: the paper's experiments (section 5), redrawn.

Each figure is a grid of configurations; each configuration is one
`minivae train` run in its own directory under --out, with the paper's
settings: tanh MLPs, N(0, 0.01^2) init, Adagrad (step size 0.02, of the
paper's {0.01, 0.02, 0.1}), M = 100, L = 1, the N(0, I) weight prior.

    fig2   MNIST, 500 hidden units, latent 3, 5, 10, 20, 200; AEVB and wake-sleep;
           the lower bound against the training samples evaluated (Figure 2)
    frey   the same on Frey Face: 200 hidden units, latent 2, 5, 10, 20, a
           gaussian decoder with sigmoid-squashed means (Figure 2, right)
    fig3   MNIST, 100 hidden units, latent 3; AEVB, wake-sleep and Monte Carlo
           EM on N = 1,000 and 50,000 training points; the marginal likelihood
           (Figure 3)
    fig4   the learned 2-D manifolds of AEVB on MNIST and Frey Face (Figure 4)

A run trains for ceil(budget / N) epochs, N its training images.  A run
whose checkpoint is at that epoch is skipped, an unfinished one resumed
(`--resume DIR --epochs E`), so a larger budget continues the runs.  The
runs go --jobs at a time as subprocesses, each logging to train.log in its
directory; then the figure is drawn from their metrics.jsonl.
"""
import fnmatch
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from minivae.applies import UsageError

PAPER_LR = 0.02     # the Adagrad step size, one of the paper's {0.01, 0.02, 0.1} (section 5)
# Frey Face's decoder (section 5, Appendix C.2): gaussian, its means squashed by a
# sigmoid into the pixels' [0, 1]
FREY_DECODER = {"decoder": "gaussian", "decoder_mean": "sigmoid"}
TRACK_K = 100       # importance samples of the log p(x) tracked for Figure 3
# flags of each `minivae train` invocation: no progress bar, no per-epoch figures (a
# GIF of every epoch grows without bound over a long run), and K = 1 for the final
# log p(x), which no figure draws (K = 100 cost 37 s a run; `minivae evaluate` has it)
INVOCATION = ("--no-progress", "--no-figures", "--k", "1")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")
LOG = "train.log"


@dataclass(frozen=True)
class Configuration:
    """One curve of a figure: its run directory's `name`, the `panel` it is
    drawn in (`paper_figures.panel_name`), its `algorithm` (aevb, wake-sleep,
    mcem), its `data` ('mnist' or 'frey') and its train `flags` (config field
    -> value) besides --data, --epochs and the paper's step size."""
    name: str
    panel: str
    algorithm: str
    data: str
    flags: dict


@dataclass(frozen=True)
class FigureSpec:
    """A figure: what it shows (for --help), the drawing's title, its default
    budget of training samples evaluated a curve, how long that default
    takes on this 2-core machine with --jobs 2, the paper's budget, and the stem of
    the PNG it draws into --out."""
    summary: str
    title: str
    budget: int
    measured: str
    paper: str
    stem: str


FIGURES = {
    "fig2": FigureSpec("MNIST, 500 hidden units, latent 3, 5, 10, 20, 200; AEVB and "
                       "wake-sleep; the lower bound (Figure 2)",
                       "Figure 2, MNIST: the lower bound", 300_000,
                       "took 2.7 min here for its 10 runs",
                       "up to 2.5e8", "figure2"),
    "frey": FigureSpec("Frey Face (--frey), 200 hidden units, latent 2, 5, 10, 20; AEVB and "
                       "wake-sleep; the lower bound (Figure 2)",
                       "Figure 2, Frey Face: the lower bound", 200_000,
                       "took 39 s here for its 8 runs, on random faces of the real "
                       "file's size",
                       "up to 1e8", "figure2-frey"),
    "fig3": FigureSpec("MNIST, 100 hidden units, latent 3, N = 1,000 and 50,000; AEVB, "
                       "wake-sleep and MCEM; the marginal likelihood (Figure 3)",
                       f"Figure 3, MNIST: the marginal likelihood\n(minivae: importance-"
                       f"sampled, K={TRACK_K}; the paper: its own estimate)", 500_000,
                       "took 2.6 min here for its 6 runs", "up to 6.8e7", "figure3"),
    "fig4": FigureSpec("the 2-D manifolds AEVB learned on MNIST (500 hidden units) and, "
                       "with --frey, Frey Face (200) (Figure 4)", "", 1_200_000,
                       "took 1 min here, with --frey too (Frey Face's run, 37 s, goes "
                       "beside MNIST's)", "not stated", "figure4"),
}


def grid(figure, frey=False):
    """The configurations of `figure` (a key of FIGURES), in drawing order; fig4
    has a Frey Face run only when `frey` is true."""
    from minivae.paper_figures import panel_name
    if figure == "fig2":
        return [_curve(f"latent{j}-{a}", panel_name("MNIST", j), a, "mnist", latent=j,
                       hidden=(500,)) for j in (3, 5, 10, 20, 200)
                for a in ("aevb", "wake-sleep")]
    if figure == "frey":
        return [_curve(f"latent{j}-{a}", panel_name("Frey", j), a, "frey", latent=j,
                       hidden=(200,), **FREY_DECODER) for j in (2, 5, 10, 20)
                for a in ("aevb", "wake-sleep")]
    if figure == "fig3":   # one fixed binarization: MCEM's chains each target a fixed p(z|x_i)
        return [_curve(f"n{n}-{a}", panel_name(n_train=n), a, "mnist", latent=3, hidden=(100,),
                       train_size=n, track_log_px=TRACK_K, binarize="static")
                for n in (1000, 50000)
                for a in ("aevb", "wake-sleep", "mcem")]
    return [_curve("mnist-latent2", "MNIST", "aevb", "mnist", latent=2, hidden=(500,))] + \
        ([_curve("frey-latent2", "Frey Face", "aevb", "frey", latent=2, hidden=(200,),
                 **FREY_DECODER)] if frey else [])


def _curve(name, panel, algorithm, data, **flags):
    # aevb is train's default algorithm: its commands name only what differs
    algorithm_flag = {} if algorithm == "aevb" else {"algorithm": algorithm}
    return Configuration(name, panel, algorithm, data, {**algorithm_flag, **flags})


@dataclass
class Target:
    """A configuration's run under --out: its directory, its train flags (config
    field -> value), the epochs that the budget asks for and the training
    images its data holds."""
    configuration: Configuration
    path: Path
    flags: dict
    epochs: int
    images: int


@dataclass
class Planned(Target):
    """A Target and what is to be done: its `state` ('new', 'resume', 'done' or
    'conflict'), the epochs its checkpoint holds (`done`; None: unreadable),
    the train arguments, and why a conflicting run cannot go on."""
    state: str = "new"
    done: int = 0
    arguments: list = ()
    reason: str = ""


def targets(configurations, out, budget, data_of, hidden=None):
    """The Target of each configuration: its run directory is out/<name>; it
    trains for ceil(budget / N) epochs, N = its --train-size or its data's
    training images.  `data_of` maps 'mnist'/'frey' to the data field (None:
    the embedded MNIST); `hidden` replaces every run's hidden widths."""
    counts, found = {}, []
    for c in configurations:
        flags = {**c.flags, **({"hidden": tuple(hidden)} if hidden else {}),
                 **({"data": data_of[c.data]} if data_of[c.data] else {}), "lr": PAPER_LR}
        if c.data not in counts:
            counts[c.data] = _training_images(data_of[c.data])
        n = flags.get("train_size", counts[c.data])
        found.append(Target(c, Path(out) / c.name, flags, math.ceil(budget / n), counts[c.data]))
    return found


def plan(target):
    """What the run of `target` needs, as Planned: 'new' without a checkpoint
    (train it with all its flags), 'done' when its checkpoint holds the
    budget's epochs, 'conflict' when it was trained with other flags, else
    'resume' (`--resume DIR --epochs E`, which also lets train report an
    unreadable checkpoint in the run's log)."""
    from minivae.checkpoint import CheckpointError
    from minivae.runs import RunDir
    run, epochs = RunDir(target.path), target.epochs
    if not run.checkpoint.exists():
        return Planned(**vars(target), arguments=["--out", str(run.path), *_tokens(
            {**target.flags, "epochs": epochs})])
    resume = ["--resume", str(run.path), "--epochs", str(epochs)]
    try:
        trained = run.load()
    except CheckpointError:
        return Planned(**vars(target), state="resume", done=None, arguments=resume)
    done = trained.position["epoch"]
    try:
        # data named even when None (the embedded MNIST), so that a run trained
        # on another directory is a conflict, not resumed on this one
        trained.config.resumed_with({"data": None, **target.flags, "epochs": epochs})
    except ValueError as err:
        return Planned(**vars(target), state="conflict", done=done, reason=str(err))
    if done >= epochs:   # a checkpoint within epoch done + 1 holds `done` epochs too
        return Planned(**vars(target), state="done", done=done)
    return Planned(**vars(target), state="resume", done=done, arguments=resume)


def _training_images(data):
    """How many training images the data field `data` names (`datasets`), as train reads them."""
    from minivae.datasets import load_dataset
    return len(load_dataset(data).train_images)


def _tokens(flags):
    """Train flags {field: value} as command-line tokens, e.g. ['--latent', '20']."""
    tokens = []
    for name, value in flags.items():
        values = value if isinstance(value, tuple) else (value,)
        tokens += [f"--{name.replace('_', '-')}",
                   *(f"{v:g}" if isinstance(v, float) else str(v) for v in values)]
    return tokens


def command(planned):
    """The `minivae train ...` line of a planned run, quoted for a shell."""
    return shlex.join(["minivae", "train", *planned.arguments, *INVOCATION])


def run_all(todo, jobs):
    """Run the planned trainings `todo`, `jobs` at a time, as subprocesses of this
    Python (`python -m minivae train`), each appending its output to train.log
    in its run directory; print one line as each ends.  Returns the names of
    the runs that failed, each reported on stderr in one line with its log."""
    package_root = str(Path(__file__).resolve().parent.parent)   # children run this minivae
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**{var: threads for var in THREAD_VARS}, **os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")]))}

    def train(p):
        p.path.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(p.path / LOG, "a") as f:
            f.write(f"$ {command(p)}\n")
            f.flush()
            code = subprocess.run([sys.executable, "-m", "minivae", "train", *p.arguments,
                                   *INVOCATION], stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env).returncode
        return code, time.perf_counter() - started

    failed = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(train, p): p for p in todo}
        try:
            for count, future in enumerate(as_completed(futures), 1):
                p, (code, seconds) = futures[future], future.result()
                if code == 0:
                    print(f"[{count}/{len(todo)}] {p.configuration.name}: trained to "
                          f"epoch {p.epochs} ({seconds:.0f} s)")
                else:
                    failed.append(p.configuration.name)
                    print(f"minivae reproduce: {p.configuration.name} failed (exit {code}): "
                          f"{_last_line(p.path / LOG)}; log: {p.path / LOG}", file=sys.stderr)
        except KeyboardInterrupt:   # the runs got Ctrl-C too: they save, then stop
            pool.shutdown(cancel_futures=True)
            raise
    return failed


def _last_line(path):
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def draw(figure, runs, out, budget):
    """Draw `figure` into `out` from the metrics rows of its `runs` (Targets, the
    whole grid) up to each one's budgeted epoch (fig4: each run's manifold,
    `plots.manifold`); returns the paths written.  Runs without metrics are
    left out."""
    from minivae.runs import RunDir
    spec, drawn = FIGURES[figure], [t for t in runs if RunDir(t.path).metrics.is_file()]
    if not drawn:
        raise ValueError(f"no run under {out} has metrics to draw yet")
    if figure == "fig4":
        from minivae.plots import manifold
        paths = []
        for t in drawn:
            trained = RunDir(t.path).load()
            paths.append(Path(out) / f"{spec.stem}-{t.configuration.name.split('-')[0]}.png")
            manifold(trained.model, paths[-1], image_shape=trained.image_shape)
        return paths
    from minivae.paper_figures import curves, paper_points
    panels = {}
    for t in runs:                     # every panel of the grid, in order, even if empty
        rows = panels.setdefault(t.configuration.panel, {})
        if t in drawn:
            rows[t.configuration.algorithm] = [r for r in RunDir(t.path).read_metrics()
                                               if r["epoch"] <= t.epochs]
    key, ylabel = ("log_px", "marginal log-likelihood (nats)") if figure == "fig3" else \
        ("elbo", "lower bound per datapoint (nats)")
    title = (f"{spec.title}\nminivae (lines): {budget:,} samples evaluated a curve; "
             f"the paper (markers): {spec.paper}")
    path = Path(out) / f"{spec.stem}.png"
    curves(panels, paper_points("figure3" if figure == "fig3" else "figure2"), key, ylabel,
           title, path)
    return [path]


def reproduce(args):
    """The `minivae reproduce` command on parsed `args` (see `arguments`);
    returns the exit code: 1 if a run failed or conflicts, else 0."""
    spec = FIGURES[args.figure]
    budget = args.budget or spec.budget
    _check(args)
    frey = str(Path(args.frey).resolve()) if args.frey else None
    out = Path(args.out or Path("reproduce") / args.figure)
    data = str(Path(args.data).resolve()) if args.data else None
    runs = targets(grid(args.figure, frey=bool(frey)), out, budget,
                   {"mnist": data, "frey": f"frey:{frey}"}, args.hidden)
    selected = _selected(runs, args.only)
    short = next((t for t in selected if t.flags.get("train_size", 0) > t.images), None)
    if short:   # before anything runs, not once per failing run
        raise UsageError(f"{short.configuration.name} trains on {short.flags['train_size']:,} "
                         f"images, but the data has {short.images:,} training images")
    planned = [plan(t) for t in selected]
    note = print if not args.print_commands else (lambda line: print(line, file=sys.stderr))
    note(f"minivae reproduce {args.figure}: {len(planned)} runs under {out}, a budget of "
         f"{budget:,} samples evaluated a curve (the default {spec.budget:,} "
         f"{spec.measured}, with --jobs 2 on 2 cores; the paper: {spec.paper})")
    bad = [p for p in planned if p.state == "conflict"]
    for p in bad:
        print(f"minivae reproduce: {p.configuration.name}: {p.path} holds another run: "
              f"{p.reason}", file=sys.stderr)
    for p in planned:
        if p.state == "done":
            note(f"{p.configuration.name}: skipped, finished (epoch {p.done} of {p.epochs})")
    todo = [p for p in planned if p.state in ("new", "resume")]
    if args.print_commands:
        for p in todo:
            print(command(p))
        return 1 if bad else 0
    failed = []
    if not args.plot_only and todo:
        for p in todo:
            doing = f"training {p.epochs} epochs" if p.state == "new" else \
                f"resuming at epoch {p.done} of {p.epochs}" if p.done is not None else \
                f"resuming its unreadable checkpoint to epoch {p.epochs}"
            print(f"{p.configuration.name}: {doing}, log {p.path / LOG}")
        print(f"{len(todo)} runs, {args.jobs} at a time")
        failed = run_all(todo, args.jobs)
    for path in draw(args.figure, runs, out, budget):
        print(f"wrote {path}")
    return 1 if bad or failed else 0


def _check(args):
    """One-line UsageErrors (exit 2) for flags that do not fit the figure."""
    if args.print_commands and args.plot_only:
        raise UsageError("--print-commands runs nothing and --plot-only draws: give one")
    if args.figure == "frey" and not args.frey:
        raise UsageError("frey needs --frey PATH, the Frey Face file frey_rawface.mat")
    if args.frey and args.figure not in ("frey", "fig4"):
        raise UsageError(f"--frey applies to frey and fig4, not to {args.figure}")
    if args.frey and not Path(args.frey).is_file():
        raise UsageError(f"--frey {args.frey}: no such file")
    if args.data and args.figure == "frey":
        raise UsageError("--data replaces MNIST; frey reads --frey")


def _selected(runs, patterns):
    """The Targets whose names match one of `patterns` (all of them without any)."""
    if not patterns:
        return runs
    chosen = [t for t in runs
              if any(fnmatch.fnmatchcase(t.configuration.name, pattern) for pattern in patterns)]
    if not chosen:
        raise UsageError(f"--only {' '.join(patterns)} matches none of "
                         f"{', '.join(t.configuration.name for t in runs)}")
    return chosen
