"""AEVB (Algorithm 1): minibatch, sample eps, ascend the ELBO's gradient, repeat.

`train(config, out)` runs the loop on MNIST (or a directory of IDX files),
writes a metrics row and a checkpoint after every epoch, and can resume
from a checkpoint so that the run continues exactly as if never stopped.
"""
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minivae import data, plots
from minivae.checkpoint import (load_checkpoint, restore_params, save_checkpoint,
                                save_npz_atomically)
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.optim import OPTIMIZERS, NonFiniteGradient
from minivae.vae import DECODERS, ESTIMATORS, INITS, VAE
from minivae.kernels import ACTIVATIONS

TEST_BINARIZATION_SEED = 0  # one fixed binarization of the test set, for comparable numbers
DEFAULT_LR = {"adagrad": 0.02, "adam": 1e-3, "sgd": 1e-3}
EVAL_BATCH = 1000
SNAPSHOT_IMAGES = 1000  # test images whose latent means the GIF follows


class TrainingError(RuntimeError):
    """Training cannot go on: the ELBO or a gradient stopped being finite."""


@dataclass
class Config:
    """Everything that defines a run; the defaults are the paper's MNIST setup."""
    latent: int = 20
    hidden: tuple = (500,)
    decoder: str = "bernoulli"
    activation: str = "tanh"
    init: str = "normal"
    estimator: str = "B"
    samples: int = 1
    optimizer: str = "adagrad"
    lr: float = None            # None: DEFAULT_LR of the optimizer
    momentum: float = 0.9       # SGD only
    batch_size: int = 100
    epochs: int = 20
    weight_decay: float = 1.0   # the N(0, I) prior on the parameters
    clip_norm: float = None
    seed: int = 0
    dtype: str = "float32"
    binarize: str = "dynamic"   # Bernoulli decoder: dynamic, static or none
    data: str = None            # None: the embedded MNIST

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if self.data is not None:   # the same directory compares equal from anywhere
            self.data = str(Path(self.data).resolve())
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.optimizer)
        checks = [
            (self.latent >= 1, f"latent must be at least 1, got {self.latent}"),
            (len(self.hidden) >= 1 and min(self.hidden) >= 1,
             f"hidden widths must be positive, got {list(self.hidden)}"),
            (self.decoder in DECODERS, f"decoder must be one of {DECODERS}, got {self.decoder!r}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {tuple(ACTIVATIONS)}, "
                                            f"got {self.activation!r}"),
            (self.init in INITS, f"init must be one of {INITS}, got {self.init!r}"),
            (self.estimator in ESTIMATORS, f"estimator must be A or B, got {self.estimator!r}"),
            (self.samples >= 1, f"samples (L) must be at least 1, got {self.samples}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {tuple(OPTIMIZERS)}, "
                                           f"got {self.optimizer!r}"),
            (self.lr is not None and self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.clip_norm is None or self.clip_norm > 0,
             f"clip norm must be positive, got {self.clip_norm}"),
            (self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, "
                                                   f"got {self.dtype!r}"),
            (self.binarize in ("dynamic", "static", "none"),
             f"binarize must be dynamic, static or none, got {self.binarize!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, d):
        """A Config from a checkpoint's or file's dict; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return cls(**d)


def build_model(config, x_dim, rng):
    """The VAE that `config` describes, for data of dimension x_dim."""
    return VAE(x_dim=x_dim, hidden=config.hidden, latent=config.latent, decoder=config.decoder,
               activation=config.activation, init=config.init, dtype=config.dtype, rng=rng)


class Inputs:
    """Turns uint8 images into the decoder's x, one minibatch at a time.

    Bernoulli decoder: a fresh binarization per minibatch ('dynamic'), one
    fixed binarization ('static'), or data that is already binary ('none').
    Gaussian decoder: intensities in [0, 1].  The test set of a Bernoulli
    model is always binarized once with TEST_BINARIZATION_SEED.
    """

    def __init__(self, config, dataset):
        self.dtype = np.dtype(config.dtype)
        self.dynamic = config.decoder == "bernoulli" and config.binarize == "dynamic"
        self.train = dataset.train_images if self.dynamic else \
            self._fixed(config, dataset.train_images, config.seed, "training")
        self.test = self._fixed(config, dataset.test_images, TEST_BINARIZATION_SEED, "test")

    def _fixed(self, config, images, seed, split):
        if config.decoder == "gaussian":
            return images
        if config.binarize == "none":
            data.validate_binary(images, f"{split} images")
            return images
        # 0/1 uint8 times 255 keeps the one conversion rule: x = pixel / 255
        return data.binarize_static(images, seed) * np.uint8(255)

    def train_batch(self, idx, rng):
        """x for the training images idx: (B, D) in the run's dtype."""
        if self.dynamic:
            return data.binarize_dynamic(self.train[idx], rng, self.dtype)
        return data.intensities(self.train[idx], self.dtype)

    def test_batches(self, batch_size=EVAL_BATCH, limit=None):
        """The test set as x, in batches (a generator, so memory stays small)."""
        test = self.test[:limit]
        return (data.intensities(test[s:s + batch_size], self.dtype)
                for s in range(0, len(test), batch_size))


def _stop_on_interrupt():
    """Make Ctrl-C set a flag that the loop checks between steps (a second one aborts)."""
    requested = []

    def handler(signum, frame):
        requested.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, handler)
    return requested, previous


class Run:
    """A training run's state: model, optimizer, random generator and position.

    `position` says where the run is: the epochs done, the step within the
    current epoch, and running totals.  Together with the current epoch's
    data `order`, it is what a checkpoint stores to resume bit for bit.
    """

    def __init__(self, config, dataset, out):
        self.config, self.dataset, self.out = config, dataset, Path(out)
        self.inputs = Inputs(config, dataset)
        self.n = len(dataset.train_images)
        data.minibatch_indices(np.arange(self.n), config.batch_size)  # fail early on a bad size
        self.rng = np.random.default_rng(config.seed)
        self.model = build_model(config, dataset.dim, self.rng)
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.params, lr=config.lr, clip_norm=config.clip_norm,
            weight_decay=config.weight_decay / self.n,   # the prior's share per datapoint
            **({"momentum": config.momentum} if config.optimizer == "sgd" else {}))
        self.position = {"epoch": 0, "step": 0, "samples_seen": 0, "elbo_sum": 0.0,
                         "epoch_seconds": 0.0, "train_seconds": 0.0}
        self.order = None
        self.checkpoint = self.out / "checkpoint.npz"
        self.snapshots = []   # (epoch, encoder means of the first test images), for the GIF
        self.snapshot_file = self.out / "latent_snapshots.npz"

    def resume(self, path):
        """Continue from the checkpoint at `path`, refusing one from another config."""
        params, optimizer_state, meta, self.order = load_checkpoint(path)
        saved = Config.from_dict(meta["config"])
        if {**asdict(saved), "epochs": None} != {**asdict(self.config), "epochs": None}:
            raise ValueError(f"{path}: was trained with a different config; resume it with "
                             f"the same flags (only --epochs may change)")
        restore_params(self.model, params, path)
        self.optimizer.load_state_dict(optimizer_state)
        self.rng.bit_generator.state = meta["rng"]
        self.position = meta["position"]
        if self.snapshot_file.is_file():
            with np.load(self.snapshot_file) as f:
                self.snapshots = [(int(e), mu) for e, mu in zip(f["epochs"], f["mu"])
                                  if e <= self.position["epoch"]]
        metrics = self.out / "metrics.jsonl"
        if metrics.is_file():   # rows of epochs after the checkpoint will be written again
            rows = [line for line in metrics.read_text().splitlines()
                    if json.loads(line)["epoch"] <= self.position["epoch"]]
            metrics.write_text("".join(row + "\n" for row in rows))

    def save(self):
        """Write the checkpoint atomically (see `checkpoint`)."""
        meta = {"config": asdict(self.config), "position": self.position,
                "rng": self.rng.bit_generator.state, "x_dim": self.dataset.dim,
                "image_shape": list(self.dataset.image_shape)}
        params = {name: t.data for name, t in self.model.named_parameters()}
        save_checkpoint(self.checkpoint, params, self.optimizer.state_dict(), meta, self.order)

    def last_good(self):
        """Where the last good checkpoint is, for error messages."""
        if self.checkpoint.exists():
            return f"the last good checkpoint is {self.checkpoint}"
        return "no checkpoint was written yet"

    def step(self, idx, epoch):
        """One AEVB step (Algorithm 1) on the training images idx; returns the ELBOs (B,)."""
        config, model, optimizer = self.config, self.model, self.optimizer
        x = self.inputs.train_batch(idx, self.rng)
        eps = self.rng.standard_normal((config.samples, len(idx), config.latent), dtype=model.dtype)
        elbo = model.elbo(x, eps, config.estimator)           # (B,), eq. 6 or 7
        loss = -elbo.mean()                                   # eq. 8 divided by N
        if not math.isfinite(loss.item()):
            bad = next((name for name, t in model.named_parameters()
                        if not np.isfinite(t.data).all()), None)
            cause = f"parameter {bad} is not finite" if bad else "all parameters are finite"
            raise TrainingError(f"the ELBO became {loss.item()} at step {optimizer.steps + 1} "
                                f"(epoch {epoch}); {cause}; training stopped, {self.last_good()} "
                                f"(try a smaller --lr)")
        optimizer.zero_grad()
        loss.backward()
        try:
            optimizer.step()
        except NonFiniteGradient as err:
            raise TrainingError(f"{err} (epoch {epoch}); training stopped, "
                                f"{self.last_good()}") from None
        return elbo.data

    def end_epoch(self, epoch, log, figures):
        """Evaluate, write the metrics row, checkpoint, and draw the epoch's figures."""
        config, position = self.config, self.position
        train_elbo = position["elbo_sum"] / self.n
        started = time.perf_counter()
        test_elbo = mean_elbo(self.model, self.inputs.test_batches(),
                              np.random.default_rng([config.seed, epoch]), config.estimator)
        row = {"epoch": epoch, "samples_seen": position["samples_seen"],
               "train_elbo": train_elbo, "test_elbo": test_elbo,
               "epoch_seconds": position["epoch_seconds"],
               "train_seconds": position["train_seconds"] + position["epoch_seconds"],
               "eval_seconds": time.perf_counter() - started}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"epoch {epoch:3d}  train ELBO {train_elbo:9.3f}  test ELBO {test_elbo:9.3f}  "
            f"({row['epoch_seconds']:.1f} s, {self.n / row['epoch_seconds']:.0f} samples/s)")
        self.position = {"epoch": epoch, "step": 0, "samples_seen": position["samples_seen"],
                         "elbo_sum": 0.0, "epoch_seconds": 0.0,
                         "train_seconds": row["train_seconds"]}
        self.order = None
        self.save()
        if figures:
            self.snapshots.append((epoch, plots.encoder_means(
                self.model, self.inputs.test[:SNAPSHOT_IMAGES])))
            save_npz_atomically(self.snapshot_file, {
                "epochs": np.array([e for e, _ in self.snapshots]),
                "mu": np.stack([mu for _, mu in self.snapshots])})
            self.draw_figures()

    def draw_figures(self):
        """Reconstructions, samples (the same z every epoch) and the latent GIF so far."""
        shape, test = self.dataset.image_shape, self.inputs.test
        plots.reconstructions(self.model, test[:10], self.out / "recon.png", image_shape=shape)
        plots.samples(self.model, self.out / "samples.png",
                      np.random.default_rng([self.config.seed, 1]), image_shape=shape)
        if self.model.latent >= 2 and len(self.snapshots) > 1:
            plots.latent_animation(self.snapshots, self.dataset.test_labels[:SNAPSHOT_IMAGES],
                                   self.out / "latent.gif")


def train(config, out, resume=None, progress=True, log=print, figures=True, max_seconds=None,
          k=100):
    """Train a VAE by AEVB; returns a summary dict (test ELBO, log p(x), paths).

    Writes `out/checkpoint.npz` (after every epoch, and on Ctrl-C),
    `out/metrics.jsonl` (one row per epoch), `out/config.json` and, with
    `figures`, recon.png, samples.png and latent.gif after every epoch.
    With `resume` (a checkpoint or run directory), the run continues from
    the saved position bit for bit; `config.epochs` may be raised to go on.
    With `max_seconds`, no epoch starts that would end, at the average pace
    so far, after that much wall time (training, evaluation and figures).
    The final log p(x) uses `k` importance samples.  None of these keyword
    arguments is part of the run's config: a run may resume with others.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    run_started, epochs_run = time.perf_counter(), 0
    run = Run(config, data.load_mnist(config.data), out)
    if resume is not None:
        run.resume(resume)
    elif run.checkpoint.exists():
        raise ValueError(f"{run.out} already holds a run; continue it with --resume "
                         f"{run.out}, or choose another --out")
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    requested, previous_handler = _stop_on_interrupt()

    def stop(epoch):
        run.save()
        log(f"interrupted: saved {run.checkpoint} at epoch {epoch}, step "
            f"{run.position['step']}; continue with --resume {run.out}")
        raise KeyboardInterrupt

    try:
        while run.position["epoch"] < config.epochs:
            epoch, position = run.position["epoch"] + 1, run.position
            if run.order is None:
                run.order = run.rng.permutation(run.n)
            batches = data.minibatch_indices(run.order, config.batch_size)
            bar = tqdm(total=len(batches), initial=position["step"], desc=f"epoch {epoch}",
                       disable=None if progress else True, unit="batch", leave=False)
            started = time.perf_counter() - position["epoch_seconds"]
            for step in range(position["step"], len(batches)):
                elbo = run.step(batches[step], epoch)
                position["step"] = step + 1
                position["samples_seen"] += len(elbo)
                position["elbo_sum"] += float(np.sum(elbo, dtype=np.float64))
                position["epoch_seconds"] = time.perf_counter() - started
                seen = min(position["step"] * config.batch_size, run.n)
                bar.set_postfix(elbo=f"{position['elbo_sum'] / seen:.2f}",
                                samples_per_s=f"{seen / position['epoch_seconds']:.0f}",
                                refresh=False)
                bar.update()
                if requested:
                    bar.close()
                    stop(epoch)
            bar.close()
            run.end_epoch(epoch, log, figures)
            if requested:
                stop(epoch)
            epochs_run += 1
            elapsed = time.perf_counter() - run_started
            if max_seconds is not None and elapsed + elapsed / epochs_run > max_seconds:
                log(f"stopping after epoch {epoch}: another epoch would pass the time "
                    f"budget of {max_seconds:.0f} s")
                break
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    seed, inputs = config.seed, run.inputs
    log_px = log_likelihood(run.model, inputs.test_batches(batch_size=100),
                            np.random.default_rng([seed, 0, k]), k=k)
    test_elbo = mean_elbo(run.model, inputs.test_batches(), np.random.default_rng([seed, 0]),
                          config.estimator)
    return {"test_elbo": test_elbo, "log_px": log_px, "k": k,
            "checkpoint": str(run.checkpoint), "metrics": str(run.out / "metrics.jsonl")}
