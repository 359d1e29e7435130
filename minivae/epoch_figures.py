"""The figures a run draws as it trains, after every epoch, into its directory.

`epoch_figures(run, epoch)` is the `on_epoch` callback that `minivae train`
passes to `train.train`; each figure is one of `plots`.  The latent GIF
needs the encoder means of every epoch so far, which are kept in the run's
snapshot file between epochs and across a resume.
"""
import numpy as np

from minivae.checkpoint import save_npz_atomically
from minivae.plots import class_grid, codes, latent_animation, reconstructions, samples

SNAPSHOT_IMAGES = 1000  # test images whose latent means the GIF follows


def epoch_figures(run, epoch):
    """What training draws after each epoch, into the run directory: the
    reconstructions of the first test images, samples from the prior (the
    same z every epoch; only for models with a prior), the class grid of a
    conditional model, and the latent GIF so far.

    `run` is a `train.Run`: its model, dir (a RunDir), inputs.test,
    dataset and config are read.  The GIF's per-epoch encoder means are kept
    in the run's snapshot file; snapshots of epochs >= `epoch` (left by an
    interrupted run that is resumed) are replaced.
    """
    model, files, shape = run.model, run.dir, run.dataset.image_shape
    test, labels = run.inputs.test[:SNAPSHOT_IMAGES], run.dataset.test_labels
    labels = None if labels is None else labels[:SNAPSHOT_IMAGES]   # None: no labels
    snapshots = [s for s in _read_snapshots(files.snapshots, (len(test), model.latent))
                 if s[0] < epoch] + [(epoch, codes(model, test, labels))]
    save_npz_atomically(files.snapshots, {"epochs": np.array([e for e, _ in snapshots]),
                                          "mu": np.stack([mu for _, mu in snapshots])})
    reconstructions(model, test[:10], files.figure("recon"), image_shape=shape,
                    labels=labels)
    if model.has_prior:      # a model without one has nothing to sample from
        samples(model, files.figure("samples"), np.random.default_rng([run.config.run.seed, 1]),
                image_shape=shape)
    if model.classes:
        class_grid(model, files.figure("classes"),
                   np.random.default_rng([run.config.run.seed, 2]), image_shape=shape)
    if model.latent >= 2 and len(snapshots) > 1:
        latent_animation(snapshots, labels, files.figure("latent"))


def _read_snapshots(path, shape):
    """[(epoch, mu (n, J))] from a snapshot file; none if it is missing or
    holds means of another shape (the figures are redrawn from here on)."""
    if not path.is_file():
        return []
    try:
        with np.load(path) as f:
            epochs, mu = f["epochs"], f["mu"]
    except (OSError, ValueError, KeyError, EOFError):
        return []
    if mu.ndim != 3 or mu.shape[1:] != shape or len(epochs) != len(mu):
        return []
    return [(int(e), m) for e, m in zip(epochs, mu)]
