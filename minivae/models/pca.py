"""Principal component analysis as a model beside the autoencoders (Bishop 19.1.1).

The code of x is its projection on the top M principal directions,
z = (x - mean) W with W (D, M) orthonormal, and the reconstruction is
y = z W^T + mean.  Its parameters are not learned by gradients: they are
the mean and the leading singular vectors of the data's scatter matrix
(numpy's SVD), fitted by `algorithms.FitPCA` in one pass over the data.
"""
import numpy as np

from minivae.autograd import Tensor, checked_dtype
from minivae.likelihoods import LIKELIHOODS


class PCA:
    """The top-`latent` principal subspace of x (D-dimensional intensities)."""
    has_prior = False
    classes = 0               # unconditional: x is the pixels alone
    options = ("latent",)
    default_decoder = "squared"

    def __init__(self, x_dim=784, latent=20, dtype=np.float32, rng=None):
        if not 1 <= latent <= x_dim:
            raise ValueError(f"PCA: latent must be between 1 and x_dim={x_dim}, got {latent}")
        self.x_dim, self.latent = x_dim, latent
        self.dtype = checked_dtype(dtype, "PCA")
        self.likelihood = LIKELIHOODS["squared"]
        self.params = {"pca.mean": Tensor(np.zeros(x_dim, self.dtype)),
                       "pca.components": Tensor(np.zeros((x_dim, latent), self.dtype))}
        self.variances = np.zeros(latent)   # eigenvalues of the covariance, largest first

    def named_parameters(self):
        """('pca.mean', (D,)) and ('pca.components', (D, M))."""
        return list(self.params.items())

    def fit(self, mean, covariance):
        """Set the mean (D,) and the top-M eigenvectors of `covariance` (D, D), by SVD."""
        u, s, _ = np.linalg.svd(covariance, hermitian=True)
        top = u[:, :self.latent]
        top = top * np.sign(top[np.abs(top).argmax(axis=0), range(self.latent)])  # fixed signs
        self.params["pca.mean"].data = mean.astype(self.dtype)
        self.params["pca.components"].data = np.ascontiguousarray(top, dtype=self.dtype)
        self.variances = s[:self.latent]

    def code(self, x):
        """z = (x - mean) W: x (B, D) -> (B, M) Tensor."""
        x = x.data if isinstance(x, Tensor) else np.asarray(x, self.dtype)
        return Tensor((x - self.params["pca.mean"].data) @ self.params["pca.components"].data)

    def decode(self, z):
        """The reconstruction's one head, (y,) with y = z W^T + mean, (B, D)."""
        z = z.data if isinstance(z, Tensor) else np.asarray(z, self.dtype)
        W = self.params["pca.components"].data
        return (Tensor(z @ W.T + self.params["pca.mean"].data),)

    def reconstruction(self, x):
        """The one head (y,) for x's own projection: decode(code(x)), (B, D)."""
        return self.decode(self.code(x))

    def decode_mean(self, z):
        """y = z W^T + mean, (B, M) -> (B, D)."""
        return self.decode(z)[0]
