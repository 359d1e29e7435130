"""AEVB (Algorithm 1): minibatch, sample eps, ascend the bound's gradient, repeat.

    theta, phi <- initialize parameters
    repeat
        X^M <- random minibatch of M datapoints
        eps <- random samples from p(eps)
        g <- grad L~^M(theta, phi; X^M, eps)      (eq. 8)
        theta, phi <- update(theta, phi, g)
    until convergence

`train(config, out)` runs that loop (`train_epochs`) on MNIST or a
directory of IDX files.  After every epoch it evaluates the test ELBO,
writes a checkpoint and then the metrics row, and calls `on_epoch` (the
figures, for the command line); it can resume from a checkpoint so that
the run continues exactly as if never stopped.
"""
import signal
import time
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from minivae import data, threads
from minivae.activity import active_units, collapse_warning
from minivae.algorithms import NonFiniteObjective
from minivae.checkpoint import save_checkpoint
from minivae.config import Config
from minivae.datasets import load_dataset
from minivae.evaluate import log_likelihood, mean_measures, reconstruction_error
from minivae.runs import RunDir


class TrainingError(RuntimeError):
    """Training cannot go on: the objective or a gradient stopped being finite."""


class Run:
    """A training run's state: model, learning rule, random generator, position.

    `position` says where the run is: the epochs done, the step within the
    current epoch, and running totals; only `advance` and `end_epoch`
    change it.  With the current epoch's data `order`, the metrics `rows`
    and the generator's state, it is what a checkpoint stores to resume bit
    for bit.  `trained` (from `RunDir.load`) continues a saved run.
    """

    def __init__(self, config, dataset, run_dir, trained=None):
        self.config, self.dataset, self.dir = config, dataset, run_dir
        self.n = len(dataset.train_images)
        data.minibatch_indices(np.arange(self.n), config.data.batch_size)  # fail early
        self.rng = np.random.default_rng(config.run.seed)
        self.model = trained.model if trained else \
            config.model.build(dataset.dim, config.run.dtype, self.rng)
        self.inputs = data.Inputs(dataset, self.model.likelihood.pixels, config.data.binarize,
                                  config.run.seed, config.run.dtype, config.data.intensities,
                                  self.model.classes)
        self.algorithm = config.learning_rule(self.model, self.n, dataset.image_shape)
        self.position = {"epoch": 0, "step": 0, "samples_seen": 0, "sums": {},
                         "epoch_seconds": 0.0, "train_seconds": 0.0}
        self.order, self.rows = None, []
        if trained:
            self._continue(trained)

    def _continue(self, trained):
        where = self.dir.checkpoint
        if trained.x_dim != self.dataset.dim:
            raise ValueError(f"{where}: the model has {trained.x_dim} inputs, the data "
                             f"{self.dataset.dim}")
        try:
            self.algorithm.load_state_dict(trained.optimizer_state)
        except ValueError as err:
            raise ValueError(f"{where}: {err}; the resumed run would not be the saved one") \
                from None
        order = trained.order
        if order is not None and not (order.dtype.kind in "iu" and order.shape == (self.n,)
                                      and np.array_equal(np.sort(order), np.arange(self.n))):
            raise ValueError(f"{where}: its data order is not a permutation of the "
                             f"{self.n} training images")
        steps = len(data.minibatch_indices(np.arange(self.n), self.config.data.batch_size))
        if trained.position["step"] > steps or (trained.position["step"] and order is None):
            raise ValueError(f"{where}: position step {trained.position['step']} does not fit "
                             f"an epoch of {steps} steps")
        self.rng.bit_generator.state = trained.rng_state
        self.position, self.order = dict(trained.position), order
        self.rows = [r for r in trained.rows if r["epoch"] <= self.position["epoch"]]

    def save(self):
        """Write the checkpoint atomically, then the metrics it covers (see `checkpoint`).
        Parameters that are not finite are never saved: TrainingError instead."""
        bad = next((name for name, t in self.model.named_parameters()
                    if not np.isfinite(t.data).all()), None)
        if bad:
            p = self.position   # at an epoch's end, or within the next one (Ctrl-C)
            raise TrainingError(f"parameter {bad} became non-finite in epoch "
                                f"{p['epoch'] + (p['step'] > 0)} and was not saved; "
                                f"{self.last_good()} ({self._hint()})")
        meta = {"config": self.config.as_dict(), "position": self.position,
                "rng": self.rng.bit_generator.state, "x_dim": self.dataset.dim,
                "image_shape": list(self.dataset.image_shape), "metrics": self.rows}
        params = {name: t.data for name, t in self.model.named_parameters()}
        save_checkpoint(self.dir.checkpoint, params, self.algorithm.state_dict(), meta,
                        self.order)
        self.dir.write_metrics(self.rows)

    def last_good(self):
        """Where the last good checkpoint is, for error messages."""
        if self.dir.checkpoint.exists():
            return f"the last good checkpoint is {self.dir.checkpoint}"
        return "no checkpoint was written yet"

    @property
    def objective(self):
        """What the next step ascends (with a KL warm-up, its beta moves)."""
        return self.algorithm.objective

    def step(self, idx):
        """One step of the learning rule (Algorithm 1's, by default) on the training
        images idx; returns what it reports per datapoint, {name: (B,) array}."""
        x = self.inputs.train_batch(idx, self.rng)
        try:
            return self.algorithm.step(x, self.rng, rows=idx)
        except NonFiniteObjective as err:
            raise TrainingError(f"{err.what} at step {err.step} (epoch "
                                f"{self.position['epoch'] + 1}); {err.cause}; training stopped, "
                                f"{self.last_good()} ({self._hint()})") from None

    def _hint(self):
        """What to change, given the settings that most likely diverged."""
        o = self.config.optimizer
        if o.optimizer == "sgd" and o.momentum >= 1:
            return (f"SGD's momentum must stay below 1 for the velocity not to grow without "
                    f"bound, it is {o.momentum:g}: try --momentum 0.9")
        return f"try a smaller --lr than {o.lr:g}"

    def advance(self, reports, seconds):
        """Count a step that ended `seconds` into the epoch, with the reported
        values {name: (B,) array} added to the epoch's running sums."""
        p = self.position
        p["step"] += 1
        p["samples_seen"] += len(next(iter(reports.values())))
        for name, values in reports.items():
            p["sums"][name] = p["sums"].get(name, 0.0) + float(np.sum(values, dtype=np.float64))
        p["epoch_seconds"] = seconds

    def test_measures(self, rng):
        """The mean on the test set of what the training objective reports,
        {name: float} (an ELBO with L = 1; the IWAE bound with its k)."""
        objective = self.objective
        if hasattr(objective, "estimator"):
            objective = replace(objective, samples=1)
        return mean_measures(self.model, objective, self.inputs.test_batches(), rng)

    def end_epoch(self, epoch, log):
        """End the learning rule's epoch, evaluate, checkpoint, then write the
        metrics row the checkpoint covers."""
        self.algorithm.end_epoch()
        config, p, objective = self.config, self.position, self.objective
        train = {name: total / self.n for name, total in p["sums"].items()}
        started = time.perf_counter()
        test = self.test_measures(np.random.default_rng([config.run.seed, epoch]))
        before = self.rows[-1]["samples_seen"] if self.rows else 0
        tracked = {}
        if config.run.track_log_px and (epoch == config.run.epochs
                                        or passes_track_point(before, p["samples_seen"])):
            tracked = self.log_px_scores(epoch)
        row = {"epoch": epoch, "samples_seen": p["samples_seen"],
               **{f"train_{name}": value for name, value in train.items()},
               **{f"test_{name}": value for name, value in test.items()},
               **({"beta": objective.beta} if hasattr(objective, "beta") else {}), **tracked,
               "epoch_seconds": p["epoch_seconds"],
               "train_seconds": p["train_seconds"] + p["epoch_seconds"],
               "eval_seconds": time.perf_counter() - started}
        self.rows.append(row)
        self.position = {"epoch": epoch, "step": 0, "samples_seen": p["samples_seen"],
                         "sums": {}, "epoch_seconds": 0.0,
                         "train_seconds": row["train_seconds"]}
        self.order = None
        self.save()
        key, label = objective.key, objective.label
        also = ""   # the true ELBO beside another objective, so numbers stay comparable
        if key != "elbo" and "elbo" in test:
            also = f"  (ELBO train {train['elbo']:9.3f}  test {test['elbo']:9.3f})"
        if tracked:
            also += (f"  log p(x) train {tracked['train_log_px']:9.3f}  test "
                     f"{tracked['test_log_px']:9.3f}")
        log(f"epoch {epoch:3d}  train {label} {train[key]:9.3f}  test {label} {test[key]:9.3f}"
            f"{also}  ({row['epoch_seconds']:.1f} s, {self.n / row['epoch_seconds']:.0f} "
            f"samples/s)")

    def log_px_scores(self, epoch):
        """{'train_log_px', 'test_log_px'}: the importance-sampled log p(x) (K =
        --track-log-px) of the first --track-images training and test images,
        the same x at every epoch, with the encoder q(z|x) as the proposal."""
        r, inputs = self.config.run, self.inputs
        rng = np.random.default_rng([r.seed, epoch, r.track_log_px])
        return {f"{split}_log_px": log_likelihood(self.model, batches(batch_size=100,
                                                                      limit=r.track_images),
                                                  rng, k=r.track_log_px)
                for split, batches in (("train", inputs.train_batches),
                                       ("test", inputs.test_batches))}


def passes_track_point(before, after):
    """Whether a point of {1, 2, 5} x 10^k lies in (before, after]: the counts of
    samples evaluated at which --track-log-px scores log p(x), three a decade,
    evenly spread on the log axis of the paper's Figure 3."""
    decade = 1
    while decade <= after:
        if any(before < m * decade <= after for m in (1, 2, 5)):
            return True
        decade *= 10
    return False


def _stop_on_interrupt():
    """Make Ctrl-C set a flag that the loop checks between steps (a second one aborts)."""
    requested = []

    def handler(signum, frame):
        requested.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, handler)
    return requested, previous


def train_epochs(run, progress, log, on_epoch, max_seconds):
    """Algorithm 1 until config.run.epochs are done, Ctrl-C, or the time budget."""
    config, started_run, epochs_run = run.config, time.perf_counter(), 0
    requested, previous_handler = _stop_on_interrupt()

    def stop(epoch):
        run.save()
        log(f"interrupted: saved {run.dir.checkpoint} at epoch {epoch}, step "
            f"{run.position['step']}; continue with --resume {run.dir.path}")
        raise KeyboardInterrupt

    try:
        while run.position["epoch"] < config.run.epochs:
            epoch = run.position["epoch"] + 1
            if run.order is None:
                run.order = run.rng.permutation(run.n)
            batches = data.minibatch_indices(run.order, config.data.batch_size)   # X^M
            bar = tqdm(total=len(batches), initial=run.position["step"], desc=f"epoch {epoch}",
                       disable=None if progress else True, unit="batch", leave=False)
            started = time.perf_counter() - run.position["epoch_seconds"]
            for step in range(run.position["step"], len(batches)):
                run.advance(run.step(batches[step]), time.perf_counter() - started)
                threads.tick()   # matmuls on one core or two, as other processes allow
                p, seen = run.position, min((step + 1) * config.data.batch_size, run.n)
                means = {name: f"{total / seen:.2f}" for name, total in p["sums"].items()}
                bar.set_postfix(**means, samples_per_s=f"{seen / p['epoch_seconds']:.0f}",
                                refresh=False)
                bar.update()
                if requested:
                    bar.close()
                    stop(epoch)
            bar.close()
            run.end_epoch(epoch, log)
            if on_epoch is not None:
                on_epoch(run, epoch)
            if requested:
                stop(epoch)
            epochs_run += 1
            elapsed = time.perf_counter() - started_run
            if max_seconds is not None and elapsed + elapsed / epochs_run > max_seconds:
                log(f"stopping after epoch {epoch}: another epoch would pass the time "
                    f"budget of {max_seconds:.0f} s")
                break
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def train(config, out, resume=None, progress=True, log=print, on_epoch=None, max_seconds=None,
          k=100):
    """Train a model; returns a summary dict: test_<name> for everything the
    objective reports (`test_elbo` for a VAE; `test_objective` and `test_elbo`
    with beta), the reconstruction error `test_error`, and for models with a
    prior log p(x) (`log_px`, with `bits_per_dim` on dequantized data) and the
    count of `active_units` among `latent`; and the paths.  Fewer than half
    of the latent dimensions active is logged as a warning line.

    `config` is a Config; when resuming it may instead be a dict of the
    fields the user gave (field -> value): the rest come from the run.

    Writes `out/checkpoint.npz` (after every epoch, and on Ctrl-C), then
    `out/metrics.jsonl` (one row per epoch the checkpoint covers), and
    `out/config.json`; calls `on_epoch(run, epoch)` after each epoch's
    checkpoint (the command line draws its figures there).  With `resume`
    (a checkpoint or run directory), the run continues from the saved
    position bit for bit; `config.run.epochs` may be raised to go on.  With
    `max_seconds`, no epoch starts that would end, at the average pace so
    far, after that much wall time (training, evaluation and figures).  The
    final log p(x) uses `k` importance samples.  None of these keyword
    arguments is part of the run's config: a run may resume with others.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    run_dir = RunDir(out)
    trained = None
    if resume is not None:
        trained = RunDir.of(resume).load()
        given = config.flat() if isinstance(config, Config) else config
        config = trained.config.resumed_with(given)   # refuses any other difference
    elif run_dir.checkpoint.exists():
        raise ValueError(f"{run_dir.path} already holds a run; continue it with --resume "
                         f"{run_dir.path}, or choose another --out")
    dataset = load_dataset(config.data.data)
    if config.data.train_size is not None:
        dataset = dataset.first_training_images(config.data.train_size)
    run = Run(config, dataset, run_dir, trained)
    scored = min(run.n, len(dataset.test_images))
    if config.run.track_log_px and config.run.track_images > scored:
        log(f"note: --track-images {config.run.track_images} is more than the data holds: "
            f"log p(x) is tracked on {min(run.n, config.run.track_images)} training and "
            f"{min(len(dataset.test_images), config.run.track_images)} test images")
    run_dir.remove_leftovers()
    run_dir.write_config(config)
    run_dir.write_metrics(run.rows)
    train_epochs(run, progress, log, on_epoch, max_seconds)
    seed, inputs, model = config.run.seed, run.inputs, run.model
    result = {}
    try:
        if model.has_prior:
            result["log_px"] = log_likelihood(model, inputs.test_batches(batch_size=100),
                                              np.random.default_rng([seed, 0, k]), k=k)
            if inputs.dequantized:
                result["bits_per_dim"] = data.bits_per_dim(result["log_px"], model.x_dim)
            usage = active_units(model, inputs.test_batches())
            result.update(active_units=usage.count, latent=model.latent)
            warning = collapse_warning(usage, run=run_dir.path)
            if warning:
                log(warning)
        result.update({f"test_{name}": value for name, value in
                       run.test_measures(np.random.default_rng([seed, 0])).items()})
        result["test_error"] = reconstruction_error(model, inputs.test_batches())
    except KeyboardInterrupt:
        log(f"interrupted during the final evaluation: training is complete and saved in "
            f"{run_dir.checkpoint} (epoch {run.position['epoch']}); the final test ELBO and "
            f"log p(x) were skipped; get them with: minivae evaluate {run_dir.path} --k {k}")
        raise
    return {**result, "k": k, "label": run.objective.label, "key": run.objective.key,
            "classes": model.classes,
            "error_unit": model.likelihood.error_unit,
            "checkpoint": str(run_dir.checkpoint), "metrics": str(run_dir.metrics)}
