"""How many latent dimensions does a VAE use?  Active units and posterior collapse.

Shows: a VAE trained by AEVB, and after every epoch the number of active
units (Burda, Grosse & Salakhutdinov 2016, 5.2): dimension u is active when
A_u = Var_x[mu_u], the variance over the test images of its encoder mean,
exceeds 0.01.  At the end, a table of A_u and of the mean KL(q(z_u|x) || p(z_u))
per dimension (Appendix B, one term at a time): the inactive ones cost ~0 nats
because q(z_u|x) has collapsed onto the prior N(0, 1), and the decoder ignores
them.  activity.png (in --out, default runs/active_units/) draws the same.

Run:    PYTHONPATH=. python examples/active_units.py        # ~20 s on an idle core
        PYTHONPATH=. python examples/active_units.py --epochs 1 --train-images 500
"""
import argparse
from pathlib import Path

import numpy as np

from minivae import plots
from minivae.activity import active_units, collapse_warning
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adagrad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=20000, help="use the first N")
    parser.add_argument("--test-images", type=int, default=None, help="use the first N")
    parser.add_argument("--latent", type=int, default=20, help="J")
    parser.add_argument("--out", type=Path, default=Path("runs/active_units"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist()
    train_images = mnist.train_images[:args.train_images]
    n = len(train_images)
    x_test = binarize_static(mnist.test_images[:args.test_images], seed=0).astype(np.float32)
    test_batches = [x_test[s:s + 1000] for s in range(0, len(x_test), 1000)]

    # the paper's MNIST model and learning rule (section 5), on a subset
    model = VAE(x_dim=784, hidden=(500,), latent=args.latent, rng=rng)
    learn = GradientAscent(model, ELBO(estimator="B", samples=1),
                           Adagrad(model.params, lr=0.02, weight_decay=1.0 / n))
    for epoch in range(1, args.epochs + 1):
        for idx in minibatch_indices(rng.permutation(n), 100):
            learn.step(binarize_dynamic(train_images[idx], rng, np.float32), rng)
        usage = active_units(model, test_batches)
        elbo = mean_elbo(model, test_batches, np.random.default_rng(epoch))
        print(f"epoch {epoch}  test ELBO {elbo:.2f} nats  active units {usage.count} of "
              f"{usage.latent}")

    print(f"\nper dimension, over {usage.images} test images, most active first:")
    print("   u   A_u = Var[mu_u]   mean KL_u (nats)")
    for u in np.argsort(-usage.activity, kind="stable"):
        mark = "" if usage.activity[u] > usage.threshold else "   inactive"
        print(f"  {u:2d}   {usage.activity[u]:15.5f}   {usage.kl[u]:16.3f}{mark}")
    # the KL term of estimator B (eq. 7) is the sum of these J terms
    print(f"sum of KL_u {usage.kl.sum():.2f} nats, of which the active units carry "
          f"{usage.kl[usage.activity > usage.threshold].sum():.2f}")
    warning = collapse_warning(usage)
    if warning:
        print(warning)

    args.out.mkdir(parents=True, exist_ok=True)
    plots.latent_activity(usage, args.out / "activity.png")
    print(f"wrote {args.out / 'activity.png'}")


if __name__ == "__main__":
    main()
