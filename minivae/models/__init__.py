"""The models minivae trains, by name.

Every model follows the contract written out in `models.base`; training,
evaluation, figures and checkpoints use nothing else of a model.  Each
class names the config fields it takes (`options`) and its default
likelihood (`default_decoder`).  The VAE of Kingma & Welling (2013) comes
first, then the autoencoders of Bishop's Deep Learning ch. 19.1 and PCA,
then the conditional VAE of 19.2.
"""
from minivae.models.autoencoder import Autoencoder, LinearAutoencoder, MaskedAutoencoder
from minivae.models.cvae import ConditionalVAE
from minivae.models.pca import PCA
from minivae.models.vae import VAE

MODELS = {"vae": VAE, "ae": Autoencoder, "linear-ae": LinearAutoencoder,
          "sparse-ae": Autoencoder, "denoising-ae": Autoencoder, "masked-ae": MaskedAutoencoder,
          "pca": PCA, "cvae": ConditionalVAE}
SUMMARIES = {
    "vae": "variational autoencoder (Kingma & Welling 2013), trained by AEVB",
    "ae": "deterministic autoencoder, deep with --hidden (Bishop 19.1, 19.1.2)",
    "linear-ae": "linear autoencoder, no hidden layer: learns PCA's subspace (19.1.1)",
    "sparse-ae": "autoencoder with an L1 penalty --sparsity on the code (19.1.3)",
    "denoising-ae": "autoencoder that reconstructs x from a corrupted copy (19.1.4)",
    "masked-ae": "autoencoder that reconstructs masked patches (19.1.5)",
    "pca": "principal component analysis by SVD, fitted in one pass (19.1.1)",
    "cvae": "conditional VAE: encoder and decoder read the one-hot label y (19.2)",
}
