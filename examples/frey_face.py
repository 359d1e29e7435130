"""The paper's Frey Face model with a 2-D latent space, and its learned manifold (Figure 4b).

Shows: a 560-200-2 VAE (200 hidden units, as section 5 chose for this small
data set) whose decoder is Gaussian with means squashed into (0, 1) by a
sigmoid, the paper's Frey Face decoder, trained on 1,765 of the 1,965 faces
(`frey.split`, seed 0) for a short while, then
  - manifold.png: E[x|z] = sigmoid(a(z)) decoded on a 20 x 20 grid of z at
    the N(0, 1) quantiles: pose turns along one axis, expression along the other.
The paper used Adagrad; Adam gets to a readable manifold in fewer steps.

frey_rawface.mat is not shipped: get it from Sam Roweis's data page,
https://cs.nyu.edu/~roweis/data.html.

Run:    PYTHONPATH=. python examples/frey_face.py frey_rawface.mat   # ~1 min; runs/frey_face/
        PYTHONPATH=. python examples/frey_face.py FILE --epochs 1 --hidden 20 --out /tmp/ff
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.algorithms import GradientAscent
from minivae.data import DataError, intensities, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.frey import IMAGE_SHAPE, load_frey
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="frey_rawface.mat")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/frey_face"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        faces = load_frey(args.path)
    except DataError as err:
        print(f"frey_face.py: error: {err}", file=sys.stderr)
        sys.exit(2)

    rng = np.random.default_rng(args.seed)
    n = len(faces.train_images)
    x_test = intensities(faces.test_images, np.float32)           # pixel / 255, (200, 560)
    model = VAE(x_dim=faces.dim, hidden=(args.hidden,), latent=2, decoder="gaussian",
                decoder_mean="sigmoid", rng=rng)
    learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=1e-3, weight_decay=1.0 / n))
    for epoch in range(1, args.epochs + 1):        # AEVB, Algorithm 1, with estimator B
        for idx in minibatch_indices(rng.permutation(n), args.batch_size):
            learn.step(intensities(faces.train_images[idx], np.float32), rng)
        if epoch % 10 == 0 or epoch == args.epochs:
            test_elbo = mean_elbo(model, [x_test], np.random.default_rng(epoch))
            print(f"epoch {epoch}  test ELBO {test_elbo:.2f} nats per face")

    args.out.mkdir(parents=True, exist_ok=True)
    plots.manifold(model, args.out / "manifold.png", n=20, grid="normal", image_shape=IMAGE_SHAPE)
    print(f"wrote {args.out / 'manifold.png'}")


if __name__ == "__main__":
    main()
