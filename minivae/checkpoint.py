"""Checkpoints: one .npz holding everything needed to resume a run exactly.

Arrays: `param/<name>` for each model parameter, `optim/<key>` for the
optimizer's state, `order` for the current epoch's data order.  Scalars
and the configuration travel as one JSON string under `meta`: the run's
config, position (epoch, step), counters, and the random generator's state.
Files are written to a temporary name and renamed, so a crash never leaves
a half-written checkpoint in place of the last good one.
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minivae-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


def save_checkpoint(path, params, optimizer_state, meta, order=None):
    """Write params (name -> array), optimizer state (key -> array or number),
    `meta` (JSON-serializable dict) and the epoch's `order` atomically to path."""
    path = Path(path)
    arrays = {f"param/{name}": np.asarray(a) for name, a in params.items()}
    numbers = {}
    for key, value in optimizer_state.items():
        if isinstance(value, np.ndarray):
            arrays[f"optim/{key}"] = value
        else:
            numbers[key] = value.item() if isinstance(value, np.generic) else value
    if order is not None:
        arrays["order"] = np.asarray(order)
    meta = {**meta, "format": FORMAT, "optimizer_numbers": numbers}
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz_atomically(path, arrays)


def save_npz_atomically(path, arrays):
    """np.savez to a temporary file beside `path`, then rename it over `path`."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path, content):
    """Write `content` (bytes, or a function that writes to a binary file) to a
    temporary file `.<name>.<random>.tmp` beside `path`, flush it to disk, then
    rename it over `path`: readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)   # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path):
    """Read a checkpoint file: (params, optimizer_state, meta, order or None).

    This checks the file's format; what the metadata must hold is checked by
    `runs.RunDir.load`, and optimizer state by the optimizer that takes it."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: holds a single array, not a minivae checkpoint")
        with f:
            arrays = {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: has no valid 'meta' record; not a minivae checkpoint")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(meta.get("optimizer_numbers"), dict):
        raise CheckpointError(f"{path}: has no optimizer record; the checkpoint is damaged")
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    optimizer_state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    optimizer_state.update(meta.pop("optimizer_numbers"))
    return params, optimizer_state, meta, arrays.get("order")


def restore_params(model, params, where):
    """Copy saved arrays into the model's parameters, checking names, shapes,
    dtypes and that every value is finite; nothing changes unless all pass."""
    expected = {name: t.shape for name, t in model.named_parameters()}
    found = {name: a.shape for name, a in params.items()}
    if expected.keys() != found.keys():
        missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
        raise CheckpointError(f"{where}: parameters do not match the model: missing {missing}, "
                              f"unexpected {extra}")
    for name, shape in expected.items():   # check everything before changing anything
        if found[name] != shape:
            raise CheckpointError(f"{where}: parameter {name} has shape {found[name]}, "
                                  f"the model expects {shape}")
        if params[name].dtype != model.dtype:
            raise CheckpointError(f"{where}: parameter {name} is {params[name].dtype}, "
                                  f"the model is {model.dtype}")
        if not np.isfinite(params[name]).all():
            raise CheckpointError(f"{where}: parameter {name} is not finite (NaN or Inf); "
                                  f"the checkpoint cannot be used")
    for name in expected:
        model.params[name].data = np.array(params[name], order="C")  # a C-ordered copy
