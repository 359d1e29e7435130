"""The score-function gradient of the ELBO beside the reparameterized one (section 2.2).

Section 2.2 says why the reparameterization trick is needed.  The usual
Monte Carlo estimator of a gradient of E_q[f(z)] with respect to the
recognition parameters phi is the score-function (likelihood-ratio,
REINFORCE) estimator

    grad_phi E_q[f(z)] = E_q[f(z) grad_phi log q_phi(z)]
                      ~= 1/L sum_l f(z_l) grad_phi log q_phi(z_l),   z_l ~ q_phi(z|x),

which, the paper says, "exhibits very high variance".  Both gradients here
are of the minibatch mean of the ELBO, (1/B) sum_i L(theta, phi; x_i), in
estimator A's form f(z) = log p(x, z) - log q(z|x) (eq. 6), with respect to
phi only (the parameters `model.recognition`), as {name: array}:

    reparameterized_gradient   backprop through z = g_phi(eps, x) (eq. 4, 10):
                               the SGVB gradient the paper trains with
    score_function_gradient    the estimator above, with no baseline, a
                               constant one, or the leave-one-out mean of f
    gradient_moments           the mean and the variance of either one over
                               repeated draws of eps; `mean_variance` is the
                               number to compare
"""
from dataclasses import dataclass

import numpy as np

from minivae.autograd import no_grad
from minivae.objectives import elbo, log_weights, noise
from minivae.ops import concatenate

LEAVE_ONE_OUT = "leave-one-out"


def reparameterized_gradient(model, x, eps):
    """grad_phi of (1/B) sum_i L~A(x_i): x (B, D), eps (L, B, J) -> {name: array}.

    The gradient of estimator A (eq. 6) with z = g_phi(eps, x) (eq. 10, or
    the family's sampler, section 2.4): eps carries the randomness, so the
    gradient reaches phi through z as well as through log q(z|x).
    """
    _check_model_and_eps(model, eps)
    return _recognition_gradient(model, elbo(model, x, eps, "A").mean())


def score_function_gradient(model, x, eps, baseline=None):
    """The score-function estimate of grad_phi of (1/B) sum_i L(x_i):
    x (B, D), eps (L, B, J) -> {name: array}, the gradient of

        surrogate = 1/(L B) sum_{l, i} (f(z_il) - b_il) log q_phi(z_il|x_i)

    with z_il = g_phi(eps_il, x_i), a draw from q(z|x_i), computed without
    a graph (a constant: no gradient path through z), and f(z) =
    log p(x, z) - log q(z|x) also a constant.  f itself depends on phi
    through -log q, and the gradient of E_q[f] is E_q[f grad log q] +
    E_q[grad_phi f]; the second term is -E_q[grad log q] = -grad int q =
    -grad 1 = 0, so it is dropped: in expectation it contributes nothing.
    For the same reason any baseline b that does not depend on z_il leaves
    the estimate unbiased, E_q[b grad log q] = b * 0, while a b near f
    shrinks the weights f - b and with them the variance:

        None             b = 0, the plain estimator of section 2.2
        a number         b, the same for every sample
        "leave-one-out"  b_il = the mean of f over the other L - 1 samples of
                         x_i: independent of z_il, so still unbiased (L >= 2)

    Any family of q(z|x) (`posteriors`) works: only its sampler and
    log_prob are used.
    """
    L, B, J = _check_model_and_eps(model, eps)
    with no_grad():
        f = log_weights(model, x, eps).data            # (L, B), also checks the shapes
    weights = f - _baseline(f, baseline)
    mu, s = model.posterior(x)                         # (B, J) each, in the graph
    mu_L, s_L = (t if L == 1 else concatenate([t] * L) for t in (mu, s))
    with no_grad():
        z = model.q.sample(mu_L, s_L, eps.reshape(L * B, J))   # the z of f, a constant
    log_q = model.q.log_prob(z, mu_L, s_L).reshape(L, B)
    return _recognition_gradient(model, (weights * log_q).mean())


@dataclass(frozen=True)
class GradientMoments:
    """Mean and variance of a gradient estimate over `draws` independent draws of eps.

    `mean[name]` and `variance[name]` have the parameter's shape, float64;
    variance is the unbiased sample variance of each entry over the draws,
    Var_r[g_r] = sum_r (g_r - mean)^2 / (R - 1), so that the standard error
    of an entry of `mean` is sqrt(variance / draws).
    """
    draws: int
    samples: int
    mean: dict
    variance: dict

    @property
    def mean_variance(self):
        """(1/P) sum_p Var_r[g_rp]: the variance of one entry of phi's gradient,
        averaged over all P entries of all the recognition parameters."""
        total = sum(float(v.sum()) for v in self.variance.values())
        return total / sum(v.size for v in self.variance.values())

    def standard_error(self, name):
        """The standard error of `mean[name]`, entry by entry."""
        return np.sqrt(self.variance[name] / self.draws)


def gradient_moments(gradient, model, x, samples, draws, rng):
    """`gradient(model, x, eps)` for `draws` independent eps (samples, B, J)
    drawn from rng: its mean and variance per entry, as `GradientMoments`.

    The moments are kept in float64 by Welford's update (no loss of digits
    when the mean is large next to the spread); the gradients themselves
    are computed in the model's dtype.
    """
    if samples < 1:
        raise ValueError(f"samples (L) must be at least 1, got {samples}")
    if draws < 2:
        raise ValueError(f"draws must be at least 2 for a variance, got {draws}")
    mean, m2 = {}, {}
    for r in range(1, draws + 1):
        for name, g in gradient(model, x, noise(model, samples, x, rng)).items():
            g = g.astype(np.float64)
            delta = g - mean.get(name, 0.0)
            mean[name] = mean.get(name, 0.0) + delta / r
            m2[name] = m2.get(name, 0.0) + delta * (g - mean[name])
    return GradientMoments(draws, samples, mean, {n: v / (draws - 1) for n, v in m2.items()})


def _check_model_and_eps(model, eps):
    """(L, B, J) of eps, after checking that the model has a q(z|x) and L >= 1."""
    if not getattr(model, "has_prior", False):
        raise ValueError(f"{type(model).__name__} has no q(z|x) and p(z); the ELBO's "
                         f"gradient needs a latent-variable model such as the VAE")
    if np.ndim(eps) != 3 or eps.shape[0] < 1:
        raise ValueError(f"eps must have shape (L, B, J) with L >= 1, got shape "
                         f"{np.shape(eps)}")
    return eps.shape


def _baseline(f, baseline):
    """b (L, B) or a scalar, in f's dtype, for the weights f - b of f (L, B)."""
    if baseline is None:
        return f.dtype.type(0)
    if isinstance(baseline, str):
        if baseline != LEAVE_ONE_OUT:
            raise ValueError(f"unknown baseline {baseline!r}; expected None, a number or "
                             f"{LEAVE_ONE_OUT!r}")
        L = len(f)
        if L < 2:
            raise ValueError(f"the leave-one-out baseline needs L >= 2 samples, got L = {L}")
        return (f.sum(axis=0) - f) / f.dtype.type(L - 1)
    if not (np.ndim(baseline) == 0 and np.isfinite(baseline)):
        raise ValueError(f"a constant baseline must be one finite number, got {baseline!r}")
    return f.dtype.type(baseline)


def _recognition_gradient(model, objective):
    """d objective / d phi for a one-element Tensor: {name: array} over
    `model.recognition`, copied; every parameter's .grad is None afterwards."""
    for p in model.params.values():
        p.grad = None
    objective.backward()
    grads = {name: np.zeros_like(model.params[name].data) if model.params[name].grad is None
             else np.array(model.params[name].grad) for name in model.recognition}
    for p in model.params.values():
        p.grad = None
    return grads
