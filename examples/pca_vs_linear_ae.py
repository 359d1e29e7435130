"""PCA and the linear autoencoder find the same subspace (Bishop, Deep Learning, 19.1.1).

Shows: on MNIST intensities, with M = 16 dimensions,
  - PCA by the SVD of the training set's covariance, in one pass (FitPCA);
  - a linear autoencoder z = x W_e + b_e, y = z W_d + b_d, trained by Adam on
    the sum-of-squares error of eq. 19.1 from a random start.
After every epoch it prints both test reconstruction errors (sum of squares
per image) and the principal angles between PCA's subspace and the span of
the rows of the decoder's W_d: they shrink towards 0 as the autoencoder
approaches the optimum that PCA reaches in closed form.  The autoencoder's
W_d is not PCA's basis (any invertible mix of it does as well), so
components.png shows PCA's directions above an orthonormal basis of the rows
of W_d, rotated within their span to align with PCA's (orthogonal Procrustes);
error_curve.png shows the autoencoder's test error approaching PCA's.  Both
are written to --out, default runs/pca_vs_linear_ae/.

Run:    PYTHONPATH=. python examples/pca_vs_linear_ae.py    # ~15 s on two idle cores
        PYTHONPATH=. python examples/pca_vs_linear_ae.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minivae.algorithms import FitPCA, GradientAscent
from minivae.data import intensities, load_mnist, minibatch_indices
from minivae.evaluate import reconstruction_error
from minivae.models.autoencoder import LinearAutoencoder
from minivae.models.pca import PCA
from minivae.objectives import Reconstruction
from minivae.optim import Adam
from minivae.plots import image_grid


def orthonormal_rows(W):
    """An orthonormal basis (D, M) of the span of the rows of W (M, D), by SVD."""
    return np.linalg.svd(W.astype(np.float64), full_matrices=False)[2].T


def principal_angles(a, b):
    """The M angles in degrees between the spans of orthonormal a (D, M) and b (D, M)."""
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=16, help="M")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--out", type=Path, default=Path("runs/pca_vs_linear_ae"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n, M = len(train_images), args.latent
    test_batches = [intensities(mnist.test_images[s:s + 1000], np.float32)
                    for s in range(0, len(mnist.test_images), 1000)]

    pca = PCA(x_dim=784, latent=M)
    fit = FitPCA(pca, Reconstruction())
    for idx in minibatch_indices(np.arange(n), 100):        # one pass: sums of x and x x^T
        fit.step(intensities(train_images[idx], np.float32), rng)
    fit.end_epoch()                                         # mean, covariance, SVD
    pca_basis = pca.params["pca.components"].data.astype(np.float64)          # (D, M)
    pca_error = reconstruction_error(pca, test_batches)

    model = LinearAutoencoder(x_dim=784, latent=M, decoder="squared", rng=rng)
    learn = GradientAscent(model, Reconstruction(), Adam(model.params, lr=1e-3))
    errors = []
    for epoch in range(1, args.epochs + 1):
        # constant, then falling over the second half: minibatch noise would
        # otherwise keep the subspace a few degrees from the optimum
        learn.optimizer.lr = 1e-3 * min(1.0, 2.0 * (1 - (epoch - 1) / args.epochs))
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(intensities(train_images[idx], np.float32), rng)
        errors.append(reconstruction_error(model, test_batches))
        ae_basis = orthonormal_rows(model.params["decoder.mean.W"].data)
        angles = principal_angles(pca_basis, ae_basis)
        print(f"epoch {epoch}  test error: linear AE {errors[-1]:.3f}, PCA {pca_error:.3f} "
              f"(sum of squares per image);  principal angles: median {np.median(angles):.2f}, "
              f"largest {angles.max():.2f} degrees")

    # Procrustes: the rotation R of the AE's basis closest to PCA's, min ||ae R - pca||
    u, _, vt = np.linalg.svd(ae_basis.T @ pca_basis)
    aligned = ae_basis @ (u @ vt)
    fig = Figure(figsize=(12, 2.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = [image_grid(basis.T.reshape(M, 28, 28), cols=M) for basis in (pca_basis, aligned)]
    limit = np.abs(rows).max()
    ax.imshow(np.vstack(rows), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks([])
    ax.set_yticks([14, 42], ["PCA", "linear AE"])
    ax.set_title(f"PCA's {M} principal directions, and the rows of the linear AE's decoder "
                 f"W_d, orthonormalized and rotated to align with them")
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "components.png")

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(1, args.epochs + 1), errors, "o-", label="linear autoencoder (Adam)")
    ax.axhline(pca_error, color="C1", ls="--", label="PCA (SVD, one pass)")
    ax.set(xlabel="epoch", ylabel="test sum of squares per image",
           title=f"Reconstruction error with M = {M}")
    ax.legend()
    fig.savefig(args.out / "error_curve.png")
    for name in ("components.png", "error_curve.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
