"""Check the VAE's gradients against finite differences, for both SGVB estimators.

Shows: a tiny float64 VAE, its loss -ELBO (estimator A, eq. 6, and B, eq. 7)
as a function of every parameter with x and eps held fixed, and for a few
parameter elements the analytic gradient (from backward) beside the central
difference (L(theta + h) - L(theta - h)) / 2h.  Then minivae.gradcheck
checks every element of every parameter; the script exits with status 1
if any disagrees.

Run:    PYTHONPATH=. python examples/gradient_check.py            # ~5 s
        PYTHONPATH=. python examples/gradient_check.py --rows 2 --seed 1
"""
import argparse
import sys

import numpy as np

from minivae.autograd import Tensor, no_grad
from minivae.gradcheck import GradcheckError, gradcheck
from minivae.models.vae import VAE
from minivae.objectives import elbo

H = 1e-6   # finite-difference step; float64 leaves ~10 significant digits in the quotient


def vae_loss(model, x, eps, estimator):
    """The loss as a function of the parameters: f(*params) = -mean ELBO at fixed x, eps."""
    names = list(model.params)

    def loss(*params):
        # the VAE reads its weights from model.params: pointing it at `params`
        # makes the loss a function of exactly the tensors being checked
        model.params = dict(zip(names, params))
        return -elbo(model, x, eps, estimator).mean()
    return names, loss


def central_difference(loss, values, k, index):
    """(f(theta + h e_i) - f(theta - h e_i)) / 2h for element `index` of parameter k."""
    def f(shift):
        shifted = [v.copy() for v in values]
        shifted[k][index] += shift
        with no_grad():
            return loss(*[Tensor(v) for v in shifted]).item()
    return (f(H) - f(-H)) / (2 * H)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3, help="printed elements per estimator")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    # Xavier init gives gradients of order 0.1-1; the paper's N(0, 0.01^2) would make
    # most of them so small that any error would hide under atol.
    model = VAE(x_dim=6, hidden=(5,), latent=3, init="xavier", dtype=np.float64, rng=rng)
    x = rng.integers(0, 2, size=(4, 6)).astype(np.float64)        # a minibatch of 4 binary x
    eps = rng.standard_normal((2, 4, 3))                           # L = 2 samples each

    failed = False
    for estimator in ("A", "B"):
        names, loss = vae_loss(model, x, eps, estimator)
        values = [model.params[name].data.copy() for name in names]
        params = [Tensor(v, requires_grad=True) for v in values]
        loss(*params).backward()

        print(f"estimator {estimator}: loss = -ELBO = {loss(*params).item():.6f}")
        print(f"  {'parameter':<22} {'index':<8} {'analytic':>13} {'finite diff':>13} "
              f"{'difference':>11}")
        for k in rng.choice(len(names), size=args.rows, replace=False):
            index = tuple(int(i) for i in rng.integers(0, values[k].shape))
            analytic = params[k].grad[index]
            numeric = central_difference(loss, values, k, index)
            print(f"  {names[k]:<22} {str(index):<8} {analytic:13.8f} {numeric:13.8f} "
                  f"{abs(analytic - numeric):11.2e}")
        try:
            worst = gradcheck(loss, values)   # every element of every parameter
            print(f"  gradcheck passed: all {sum(v.size for v in values)} elements, largest "
                  f"difference {worst:.2e}\n")
        except GradcheckError as err:
            print(f"  gradcheck FAILED: {err}\n")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
