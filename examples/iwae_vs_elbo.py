"""The importance-weighted bound (Burda, Grosse & Salakhutdinov 2016) against
the ELBO, as training objectives and as measurements.

Shows: two VAEs with the same architecture, data and steps, one trained on
the ELBO (L_1), one on the IWAE bound L_k.  Each is then scored on the same
test images by L_1, L_5 and L_50 (the bound rises with k for any model) and
by the importance-sampled log p(x) with K = 1000, which is L_1000.  Burda
et al. found the IWAE-trained model to have the higher log p(x) and the
lower L_1: it gives up some ELBO for likelihood.  The last line says
whether this run agrees.

Run:    PYTHONPATH=. python examples/iwae_vs_elbo.py                    # ~4 min
        PYTHONPATH=. python examples/iwae_vs_elbo.py --epochs 1 --train-images 500
"""
import argparse

import numpy as np

from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import log_likelihood, mean_objective
from minivae.models.vae import VAE
from minivae.objectives import ELBO, IWAE
from minivae.optim import Adam


def trained(objective, images, epochs, seed):
    """A 784-200-50 VAE ascending `objective` by Adam, M = 100."""
    rng = np.random.default_rng(seed)
    model = VAE(x_dim=784, hidden=(200,), latent=50, init="xavier", rng=rng)
    learn = GradientAscent(model, objective, Adam(model.params, lr=1e-3))
    for _ in range(epochs):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--k", type=int, default=5, help="samples of the IWAE bound in training")
    args = parser.parse_args()

    mnist = load_mnist()
    images = mnist.train_images[:args.train_images]
    x = binarize_static(mnist.test_images[:args.test_images], seed=0).astype(np.float32)
    batches = [x[s:s + 100] for s in range(0, len(x), 100)]
    print(f"test images {len(x)}; bounds in nats per image (higher is better)")
    print(f"{'trained on':<14} {'L_1 (ELBO)':>11} {'L_5':>9} {'L_50':>9} {'log p(x)':>9}")
    scores = {}
    for name, objective in (("ELBO", ELBO()), (f"IWAE, k={args.k}", IWAE(args.k))):
        model = trained(objective, images, args.epochs, seed=0)
        bounds = [mean_objective(model, IWAE(k), batches, np.random.default_rng(k))
                  for k in (1, 5, 50)]
        log_px = log_likelihood(model, batches, np.random.default_rng(1), k=1000)
        scores[objective.key] = bounds[0], log_px
        print(f"{name:<14} " + " ".join(f"{b:{w}.2f}" for b, w in zip(bounds, (11, 9, 9)))
              + f" {log_px:9.2f}")
    (elbo_l1, elbo_px), (iwae_l1, iwae_px) = scores["elbo"], scores["iwae"]
    print(f"IWAE minus ELBO training: log p(x) {iwae_px - elbo_px:+.2f} nats, "
          f"L_1 {iwae_l1 - elbo_l1:+.2f} nats")


if __name__ == "__main__":
    main()
