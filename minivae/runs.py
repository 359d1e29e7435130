"""The run directory: the one module that knows its files and how to read them.

    checkpoint.npz         parameters, optimizer state, position, random state
    metrics.jsonl          one JSON row per finished epoch
    config.json            the run's config, for people to read
    latent_snapshots.npz   encoder means of the first test images after each epoch
    *.png, latent.gif      figures (names in FIGURES)

`RunDir.of(path)` accepts a run directory or a checkpoint file inside one.
`RunDir.load()` reads and checks a whole checkpoint, metadata included, and
rebuilds the trained model: evaluate, sample, plot and resume all use it.
"""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minivae.checkpoint import (CheckpointError, load_checkpoint, restore_params,
                                write_atomically)
from minivae.config import Config

CHECKPOINT, METRICS, CONFIG = "checkpoint.npz", "metrics.jsonl", "config.json"
SNAPSHOTS = "latent_snapshots.npz"
FIGURES = {"manifold": "manifold.png", "scatter": "latent_scatter.png", "recon": "recon.png",
           "samples": "samples.png", "curves": "curves.png", "latent": "latent.gif",
           "activity": "activity.png", "classes": "classes.png", "gaps": "gaps.png",
           "explorer": "explorer.html"}
# what a checkpoint's position holds: counts (int >= 0), seconds (float >= 0), and
# "sums", the running sums over the epoch so far of what the objective reports
# (name -> any finite float; the first checkpoints held one, "elbo_sum")
POSITION = {"epoch": int, "step": int, "samples_seen": int, "epoch_seconds": float,
            "train_seconds": float}


@dataclass
class Trained:
    """A checkpoint, read and checked: the model with its parameters restored,
    the run's config, the optimizer's saved state, the position in training,
    the random generator's state, the current epoch's data order (or None),
    x_dim, the images' (h, w), and the metrics rows of the epochs it covers."""
    model: object
    config: Config
    optimizer_state: dict
    position: dict
    rng_state: dict
    order: object
    x_dim: int
    image_shape: tuple
    rows: list


class RunDir:
    """The files of one run, under `path`."""

    def __init__(self, path, checkpoint=None):
        self.path = Path(path)
        self.checkpoint = Path(checkpoint) if checkpoint else self.path / CHECKPOINT
        self.metrics = self.path / METRICS
        self.config_file = self.path / CONFIG
        self.snapshots = self.path / SNAPSHOTS

    @classmethod
    def of(cls, path):
        """The run of a run directory, or of a checkpoint file (its directory)."""
        path = Path(path)
        if path.is_dir():
            return cls(path)
        return cls(path.parent, checkpoint=path)

    def figure(self, name):
        """The path of figure `name` (a key of FIGURES) in this run."""
        return self.path / FIGURES[name]

    def write_config(self, config):
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(self.config_file, (json.dumps(config.as_dict(), indent=2) + "\n").encode())

    # ------------------------------------------------------------ metrics

    def write_metrics(self, rows):
        """metrics.jsonl holds exactly `rows`, one JSON line each (written atomically)."""
        write_atomically(self.metrics, "".join(json.dumps(row) + "\n" for row in rows).encode())

    def read_metrics(self):
        """The rows of metrics.jsonl as dicts, in epoch order; a row repeated for
        the same epoch keeps its last copy."""
        rows = {}
        with open(self.metrics) as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{self.metrics}:{number}: not a JSON metrics row "
                                         f"({err})") from None
                    if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                        raise ValueError(f"{self.metrics}:{number}: a metrics row needs an "
                                         f"integer 'epoch'")
                    rows[row["epoch"]] = row
        return [rows[epoch] for epoch in sorted(rows)]

    def remove_leftovers(self):
        """Delete temporary files that an interrupted atomic write of this run's own
        files left behind (`.checkpoint.npz.<random>.tmp` and the like), nothing else."""
        if not self.path.is_dir():
            return []
        names = "|".join(re.escape(name) for name in (self.checkpoint.name, METRICS, CONFIG,
                                                       SNAPSHOTS))
        pattern = re.compile(rf"^\.({names})\.[A-Za-z0-9_]{{8}}\.tmp$")
        removed = [p for p in self.path.iterdir() if pattern.match(p.name) and p.is_file()]
        for p in removed:
            p.unlink()
        return removed

    # ------------------------------------------------------------ checkpoint

    def load(self):
        """The trained model and everything saved with it, as `Trained`.

        Every part of the checkpoint is checked here, so that a damaged or
        foreign file is a CheckpointError naming what is wrong, never a
        traceback or a model that computes nonsense.
        """
        where = self.checkpoint
        params, optimizer_state, meta, order = load_checkpoint(where)
        for key in ("config", "position", "rng", "x_dim", "image_shape"):
            if key not in meta:
                raise CheckpointError(f"{where}: the metadata has no '{key}' entry")
        try:
            config = Config.from_dict(meta["config"])
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{where}: its config is not valid ({err})") from None
        x_dim, shape = meta["x_dim"], meta["image_shape"]
        if not (isinstance(x_dim, int) and x_dim >= 1 and isinstance(shape, list)
                and len(shape) == 2 and all(isinstance(s, int) and s >= 1 for s in shape)
                and math.prod(shape) == x_dim):
            raise CheckpointError(f"{where}: x_dim {x_dim!r} and image_shape {shape!r} do not "
                                  f"describe images of h x w = x_dim pixels")
        key = config.objective.build(config.model.model, tuple(shape)).key
        position = _checked_position(meta["position"], key, where)
        rng_state = _checked_rng_state(meta["rng"], where)
        rows = meta.get("metrics")
        if rows is None:   # checkpoints before rows were saved in them: the file's rows
            rows = self.read_metrics() if self.metrics.is_file() else []
        if not (isinstance(rows, list) and all(isinstance(r, dict) and isinstance(
                r.get("epoch"), int) for r in rows)):
            raise CheckpointError(f"{where}: 'metrics' is not a list of rows with an epoch")
        rows = [r for r in rows if r["epoch"] <= position["epoch"]]
        model = config.model.build(x_dim, config.run.dtype, np.random.default_rng(0))
        restore_params(model, params, where)
        return Trained(model, config, optimizer_state, position, rng_state, order, x_dim,
                       tuple(shape), rows)


def _checked_position(position, objective_key, where):
    """The position, checked; an old checkpoint's one "elbo_sum" becomes the
    sum of the objective (`objective_key`)."""
    if not isinstance(position, dict):
        raise CheckpointError(f"{where}: 'position' is not a record")
    for key, kind in POSITION.items():
        value = position.get(key)
        if not _is_number(value) or (kind is int and not isinstance(value, int)) \
                or value < 0:
            raise CheckpointError(f"{where}: position '{key}' must be a finite "
                                  f"{kind.__name__} >= 0, got {value!r}")
    sums = position.get("sums", {objective_key: position.get("elbo_sum")})
    if not (isinstance(sums, dict) and all(isinstance(k, str) and _is_number(v)
                                           for k, v in sums.items())):
        raise CheckpointError(f"{where}: position 'sums' must map names to finite numbers, "
                              f"got {sums!r}")
    return {**{key: kind(position[key]) for key, kind in POSITION.items()},
            "sums": {k: float(v) for k, v in sums.items()}}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _checked_rng_state(state, where):
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{where}: 'rng' is not a random generator state ({err})") from None
    return state
