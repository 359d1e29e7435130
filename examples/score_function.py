"""The score-function gradient of the ELBO against the reparameterized one (section 2.2).

Shows: how high the "very high variance" of section 2.2 is.  The gradient of
the ELBO (estimator A's f(z) = log p(x, z) - log q(z|x)) with respect to the
encoder's parameters phi, on one fixed minibatch of test images, estimated
again and again with fresh eps by backprop through z = mu + sigma * eps
(eq. 10, SGVB), by the score function (1/L) sum_l f(z_l) grad log q(z_l|x),
and by the same with the leave-one-out baseline.  All three have the same
mean (tests/test_score_function.py checks it); the table gives the variance
of one gradient entry over the draws, averaged over phi's entries, against L,
and its ratio to the reparameterized one.  variance.png (in --out) plots it.

Run:    PYTHONPATH=. python examples/score_function.py                       # ~1 min
        PYTHONPATH=. python examples/score_function.py --run runs/mnist      # a trained run
        PYTHONPATH=. python examples/score_function.py --epochs 1 --train-images 500 \\
            --draws 5 --samples 1 3 --batch-size 20 --out /tmp/score_function
"""
import argparse
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minivae.algorithms import GradientAscent
from minivae.data import Inputs, binarize_dynamic, binarize_static, load_mnist, minibatch_indices
from minivae.evaluate import mean_elbo
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adagrad
from minivae.runs import RunDir
from minivae.score_function import (LEAVE_ONE_OUT, gradient_moments, reparameterized_gradient,
                                    score_function_gradient)


def leave_one_out(model, x, eps):
    """The score-function gradient with the leave-one-out baseline (L >= 2)."""
    return score_function_gradient(model, x, eps, LEAVE_ONE_OUT)


# name: (gradient, the least L it takes)
ESTIMATORS = {"reparameterized": (reparameterized_gradient, 1),
              "score function": (score_function_gradient, 1),
              "score function, leave-one-out baseline": (leave_one_out, 2)}


def models_and_x(args, rng):
    """(at initialization, trained) and the fixed minibatch x: from --run, or the
    paper's 784-500-20 VAE trained here by Adagrad (section 5) for --epochs."""
    if args.run:
        trained = RunDir.of(args.run).load()
        c = trained.config
        inputs = Inputs(load_mnist(c.data.data), trained.model.likelihood.pixels,
                        c.data.binarize, c.run.seed, c.run.dtype, c.data.intensities,
                        trained.model.classes)
        fresh = c.model.build(trained.x_dim, c.run.dtype, rng)
        return fresh, trained.model, next(inputs.test_batches(args.batch_size)), "the run"
    mnist = load_mnist()
    images = mnist.train_images[:args.train_images]
    fresh, model = (VAE(x_dim=784, hidden=(500,), latent=20, rng=np.random.default_rng(args.seed))
                    for _ in range(2))
    learn = GradientAscent(model, ELBO("B"),
                           Adagrad(model.params, lr=0.02, weight_decay=1.0 / len(images)))
    for _ in range(args.epochs):
        for idx in minibatch_indices(rng.permutation(len(images)), 100):
            learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)
    x = binarize_static(mnist.test_images[:args.batch_size], seed=0).astype(model.dtype)
    return fresh, model, x, f"{args.epochs} epoch(s) of training"


def variance_table(model, x, args, rng):
    """{estimator: {L: per-entry variance}}, printed as a table as it is measured."""
    print(f"  ELBO of the minibatch {mean_elbo(model, [x], rng, 'A'):.2f} nats per image")
    print(f"  {'L':>5} {'reparameterized':>16} {'score function':>15} {'ratio':>10} "
          f"{'leave-one-out':>14} {'ratio':>10}")
    table = {name: {} for name in ESTIMATORS}
    for L in args.samples:
        for name, (gradient, least) in ESTIMATORS.items():
            if L >= least:
                table[name][L] = gradient_moments(gradient, model, x, L, args.draws,
                                                  rng).mean_variance
        rp, sf, loo = (table[name].get(L) for name in ESTIMATORS)
        loo_columns = (f"{'-':>14} {'-':>10}" if loo is None
                       else f"{loo:14.3e} {loo / rp:10.3e}")
        print(f"  {L:5d} {rp:16.3e} {sf:15.3e} {sf / rp:10.3e} {loo_columns}")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run directory instead of training here")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs without --run")
    parser.add_argument("--train-images", type=int, default=None, help="use the first N")
    parser.add_argument("--batch-size", type=int, default=100, help="size of the fixed minibatch")
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 10, 100], help="values of L")
    parser.add_argument("--draws", type=int, default=50, help="draws of eps per estimate")
    parser.add_argument("--out", type=Path, default=Path("runs/score_function"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    fresh, trained, x, how = models_and_x(args, rng)
    print(f"variance of one entry of d ELBO / d phi over {args.draws} draws of eps, "
          f"mean over phi's entries; {len(x)} test images; ratio: to the reparameterized one")
    fig = Figure(figsize=(10, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, model, style in (("at initialization", fresh, "--"), (f"after {how}", trained, "-")):
        print(label)
        for (name, by_L), color in zip(variance_table(model, x, args, rng).items(), "brk"):
            ax.loglog(list(by_L), list(by_L.values()), style, color=color, marker="o",
                      label=f"{name},\n{label}")
    ax.set(xlabel="samples per datapoint L", ylabel="mean per-entry variance of the gradient",
           title="Gradient of the ELBO w.r.t. the encoder's parameters phi")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), labelspacing=1.0,
              handlelength=4)   # long enough to show dashed (initialization) from solid
    fig.subplots_adjust(left=0.08, right=0.68)
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "variance.png")
    print(f"wrote {args.out / 'variance.png'}")


if __name__ == "__main__":
    main()
