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

from minivae import data
from minivae.checkpoint import load_checkpoint, restore_params, save_checkpoint
from minivae.evaluate import log_likelihood, mean_elbo
from minivae.optim import OPTIMIZERS, NonFiniteGradient
from minivae.vae import DECODERS, ESTIMATORS, INITS, VAE
from minivae.kernels import ACTIVATIONS

TEST_BINARIZATION_SEED = 0  # one fixed binarization of the test set, for comparable numbers
DEFAULT_LR = {"adagrad": 0.02, "adam": 1e-3, "sgd": 1e-3}
EVAL_BATCH = 1000


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
    k: int = 100                # importance samples for the final log p(x)

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
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
            (self.k >= 1, f"k must be at least 1, got {self.k}"),
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


def train(config, out, resume=None, progress=True, log=print):
    """Train a VAE by AEVB; returns a summary dict (test ELBO, log p(x), paths).

    Writes `out/checkpoint.npz` (after every epoch, and on Ctrl-C),
    `out/metrics.jsonl` (one row per epoch) and `out/config.json`.  With
    `resume` (a checkpoint or run directory), the run continues from the
    saved position bit for bit; `config.epochs` may be raised to go on.
    """
    out = Path(out)
    dataset = data.load_mnist(config.data)
    inputs = Inputs(config, dataset)
    n = len(dataset.train_images)
    data.minibatch_indices(np.arange(n), config.batch_size)  # fail early on a bad size
    rng = np.random.default_rng(config.seed)
    model = build_model(config, dataset.dim, rng)
    optimizer = OPTIMIZERS[config.optimizer](
        model.params, lr=config.lr, weight_decay=config.weight_decay / n,   # prior scaled 1/N
        clip_norm=config.clip_norm,
        **({"momentum": config.momentum} if config.optimizer == "sgd" else {}))
    position = {"epoch": 0, "step": 0, "samples_seen": 0, "elbo_sum": 0.0,
                "epoch_seconds": 0.0, "train_seconds": 0.0}
    order = None
    if resume is not None:
        params, optimizer_state, meta, order = load_checkpoint(resume)
        saved = Config.from_dict(meta["config"])
        if {**asdict(saved), "epochs": None} != {**asdict(config), "epochs": None}:
            raise ValueError(f"{resume}: was trained with a different config; resume it with "
                             f"the same flags (only --epochs may change)")
        restore_params(model, params, resume)
        optimizer.load_state_dict(optimizer_state)
        rng.bit_generator.state = meta["rng"]
        position = meta["position"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    checkpoint = out / "checkpoint.npz"

    def save(order):
        meta = {"config": asdict(config), "position": position, "rng": rng.bit_generator.state}
        params = {name: t.data for name, t in model.named_parameters()}
        save_checkpoint(checkpoint, params, optimizer.state_dict(), meta, order)

    L, J = config.samples, config.latent
    requested, previous_handler = _stop_on_interrupt()
    try:
        while position["epoch"] < config.epochs:
            epoch = position["epoch"] + 1
            if order is None:
                order = rng.permutation(n)
            batches = data.minibatch_indices(order, config.batch_size)
            bar = tqdm(total=len(batches), initial=position["step"], desc=f"epoch {epoch}",
                       disable=None if progress else True, unit="batch", leave=False)
            started = time.perf_counter() - position["epoch_seconds"]
            for step in range(position["step"], len(batches)):
                idx = batches[step]
                x = inputs.train_batch(idx, rng)
                eps = rng.standard_normal((L, len(idx), J), dtype=model.dtype)
                elbo = model.elbo(x, eps, config.estimator)           # (B,), eq. 6 or 7
                loss = -elbo.mean()                                   # eq. 8 divided by N
                if not math.isfinite(loss.item()):
                    raise TrainingError(_nonfinite_loss(loss.item(), optimizer.steps + 1,
                                                        epoch, model, checkpoint))
                optimizer.zero_grad()
                loss.backward()
                try:
                    optimizer.step()
                except NonFiniteGradient as err:
                    raise TrainingError(f"{err} (epoch {epoch}); training stopped, the last "
                                        f"good checkpoint is {checkpoint}") from None
                position["step"] = step + 1
                position["samples_seen"] += len(idx)
                position["elbo_sum"] += float(np.sum(elbo.data, dtype=np.float64))
                position["epoch_seconds"] = time.perf_counter() - started
                seen = position["step"] * config.batch_size
                bar.set_postfix(elbo=f"{position['elbo_sum'] / min(seen, n):.2f}",
                                samples_per_s=f"{min(seen, n) / position['epoch_seconds']:.0f}",
                                refresh=False)
                bar.update()
                if requested:
                    bar.close()
                    save(order)
                    log(f"interrupted: saved {checkpoint} at epoch {epoch}, step "
                        f"{position['step']}; continue with --resume {out}")
                    raise KeyboardInterrupt
            bar.close()
            train_elbo = position["elbo_sum"] / n
            eval_started = time.perf_counter()
            test_elbo = mean_elbo(model, inputs.test_batches(),
                                  np.random.default_rng([config.seed, epoch]), config.estimator)
            row = {"epoch": epoch, "samples_seen": position["samples_seen"],
                   "train_elbo": train_elbo, "test_elbo": test_elbo,
                   "epoch_seconds": position["epoch_seconds"],
                   "train_seconds": position["train_seconds"] + position["epoch_seconds"],
                   "eval_seconds": time.perf_counter() - eval_started}
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"epoch {epoch:3d}  train ELBO {train_elbo:9.3f}  test ELBO {test_elbo:9.3f}  "
                f"({row['epoch_seconds']:.1f} s, {n / row['epoch_seconds']:.0f} samples/s)")
            position = {"epoch": epoch, "step": 0, "samples_seen": position["samples_seen"],
                        "elbo_sum": 0.0, "epoch_seconds": 0.0, "train_seconds": row["train_seconds"]}
            order = None
            save(order)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    log_px = log_likelihood(model, inputs.test_batches(batch_size=100),
                            np.random.default_rng([config.seed, 0, config.k]), k=config.k)
    test_elbo = mean_elbo(model, inputs.test_batches(), np.random.default_rng([config.seed, 0]),
                          config.estimator)
    return {"test_elbo": test_elbo, "log_px": log_px, "k": config.k,
            "checkpoint": str(checkpoint), "metrics": str(out / "metrics.jsonl")}


def _nonfinite_loss(value, step, epoch, model, checkpoint):
    """One line naming the step and the first parameter that is not finite."""
    bad = next((name for name, t in model.named_parameters()
                if not np.isfinite(t.data).all()), None)
    cause = f"parameter {bad} is not finite" if bad else "all parameters are finite"
    return (f"the ELBO became {value} at step {step} (epoch {epoch}); {cause}; training "
            f"stopped, the last good checkpoint is {checkpoint} (try a smaller --lr)")
