"""SGD, Adagrad and Adam against their update rules written out by hand.

Each optimizer reads `.grad` of each Tensor and changes `.data` in place.
Gradients are set by hand here (read-only, as `backward` leaves them), so
every expected value below is a formula, not a call into minivae.
"""
import numpy as np
import pytest

from minivae.autograd import Tensor
from minivae.optim import SGD, Adagrad, Adam, NonFiniteGradient

THETA0 = np.array([0.5, -1.5, 2.0])
G1 = np.array([0.3, -0.2, 1.0])
G2 = np.array([-0.1, 0.4, 0.5])

OPTIMIZERS = [
    pytest.param(SGD, {"lr": 0.1}, id="sgd"),
    pytest.param(SGD, {"lr": 0.1, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(Adagrad, {"lr": 0.05}, id="adagrad"),
    pytest.param(Adam, {"lr": 0.01}, id="adam"),
]


def read_only(g):
    g = np.array(g)
    g.flags.writeable = False
    return g


def parameter(values=THETA0, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


def steps(optimizer, param, grads):
    for g in grads:
        param.grad = read_only(np.asarray(g, dtype=param.dtype))
        optimizer.step()
    return param.data.copy()


# ---------------------------------------------------------------- update rules

def test_sgd_takes_two_plain_gradient_steps():
    p = parameter()
    theta = steps(SGD({"w": p}, lr=0.1), p, [G1, G2])
    np.testing.assert_allclose(theta, THETA0 - 0.1 * G1 - 0.1 * G2, rtol=1e-15)


def test_sgd_with_momentum_accumulates_a_velocity():
    p = parameter()
    theta = steps(SGD({"w": p}, lr=0.1, momentum=0.9), p, [G1, G2])
    v1 = G1
    v2 = 0.9 * v1 + G2
    np.testing.assert_allclose(theta, THETA0 - 0.1 * v1 - 0.1 * v2, rtol=1e-15)


def test_adagrad_divides_by_the_root_of_the_summed_squared_gradients():
    p = parameter()
    theta = steps(Adagrad({"w": p}, lr=0.05, eps=1e-8), p, [G1, G2])
    G = G1 ** 2
    theta1 = THETA0 - 0.05 * G1 / (np.sqrt(G) + 1e-8)
    G = G + G2 ** 2
    theta2 = theta1 - 0.05 * G2 / (np.sqrt(G) + 1e-8)
    np.testing.assert_allclose(theta, theta2, rtol=1e-14)


def test_adam_uses_bias_corrected_first_and_second_moments():
    p = parameter()
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    theta = steps(Adam({"w": p}, lr=lr, beta1=b1, beta2=b2, eps=eps), p, [G1, G2])
    m1, v1 = (1 - b1) * G1, (1 - b2) * G1 ** 2
    theta1 = THETA0 - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * G2, b2 * v1 + (1 - b2) * G2 ** 2
    theta2 = theta1 - lr * (m2 / (1 - b1 ** 2)) / (np.sqrt(v2 / (1 - b2 ** 2)) + eps)
    np.testing.assert_allclose(theta, theta2, rtol=1e-14)


@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_step_counts_steps_and_leaves_the_gradient_untouched(cls, kwargs):
    p = parameter()
    optimizer = cls({"w": p}, **kwargs)
    steps(optimizer, p, [G1, G2])
    assert optimizer.steps == 2
    np.testing.assert_array_equal(p.grad, G2)


@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_a_parameter_without_gradient_is_left_unchanged(cls, kwargs):
    p, q = parameter(), parameter([1.0, 2.0])
    optimizer = cls({"w": p, "unused": q}, **kwargs)
    steps(optimizer, p, [G1])
    np.testing.assert_array_equal(q.data, [1.0, 2.0])


def test_zero_grad_forgets_every_gradient():
    p, q = parameter(), parameter()
    p.grad, q.grad = read_only(G1), read_only(G2)
    optimizer = SGD({"p": p, "q": q}, lr=0.1)
    optimizer.zero_grad()
    assert p.grad is None and q.grad is None


# ---------------------------------------------------------------- weight decay and clipping

@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_weight_decay_adds_weight_decay_times_theta_to_the_gradient(cls, kwargs):
    decayed, plain = parameter(), parameter()
    with_decay = cls({"w": decayed}, weight_decay=0.3, **kwargs)
    without = cls({"w": plain}, **kwargs)
    for g in (G1, G2):
        decayed.grad = read_only(g)
        plain.grad = read_only(g + 0.3 * plain.data)   # theta before this step
        with_decay.step()
        without.step()
    np.testing.assert_allclose(decayed.data, plain.data, rtol=1e-14)


def test_weight_decay_of_sgd_by_hand():
    p = parameter()
    theta = steps(SGD({"w": p}, lr=0.1, weight_decay=0.3), p, [G1])
    np.testing.assert_allclose(theta, THETA0 - 0.1 * (G1 + 0.3 * THETA0), rtol=1e-15)


def test_clip_norm_scales_all_gradients_together_down_to_clip_norm():
    a, b = parameter([1.0]), parameter([1.0, 1.0])
    optimizer = SGD({"a": a, "b": b}, lr=1.0, clip_norm=1.0)
    a.grad, b.grad = read_only([3.0]), read_only([0.0, 4.0])   # global norm 5
    norm = optimizer.step()
    assert norm == pytest.approx(5.0)                    # the norm before clipping
    # one common factor 1/5, not a per-parameter clip (that would move a by 1)
    np.testing.assert_allclose(a.data, [1.0 - 3.0 / 5.0], rtol=1e-15)
    np.testing.assert_allclose(b.data, [1.0, 1.0 - 4.0 / 5.0], rtol=1e-15)
    step = np.concatenate([1.0 - a.data, 1.0 - b.data])
    assert np.linalg.norm(step) == pytest.approx(1.0)


def test_clip_norm_leaves_gradients_below_it_alone():
    a, b = parameter([1.0]), parameter([1.0, 1.0])
    optimizer = SGD({"a": a, "b": b}, lr=1.0, clip_norm=10.0)
    a.grad, b.grad = read_only([0.3]), read_only([0.0, 0.4])
    assert optimizer.step() == pytest.approx(0.5)
    np.testing.assert_array_equal(a.data, [1.0 - 0.3])
    np.testing.assert_array_equal(b.data, [1.0, 1.0 - 0.4])


def test_clip_norm_clips_the_loss_gradient_before_weight_decay_is_added():
    # As documented in minivae.optim: the loss gradients are clipped, then
    # weight_decay * theta is added, so the prior's pull is never clipped away.
    p = parameter([2.0])
    optimizer = SGD({"w": p}, lr=1.0, weight_decay=0.5, clip_norm=1.0)
    p.grad = read_only([4.0])
    assert optimizer.step() == pytest.approx(4.0)        # the loss gradient's norm
    np.testing.assert_allclose(p.data, [2.0 - (4.0 / 4.0 + 0.5 * 2.0)], rtol=1e-15)


def test_a_finite_float32_gradient_too_large_to_square_is_clipped_not_rejected():
    # |g| = 1e20 is finite in float32, but g^2 = 1e40 is not: the norm must not
    # be taken in float32, or clipping cannot do its job on exactly such a gradient.
    p = parameter([1.0, 2.0], dtype=np.float32)
    optimizer = SGD({"w": p}, lr=0.1, clip_norm=1.0)
    p.grad = read_only(np.array([1e20, 0.0], np.float32))
    optimizer.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1, 2.0], rtol=1e-6)


# ---------------------------------------------------------------- non-finite gradients

@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_gradient_raises_naming_the_parameter_and_changes_nothing(cls, kwargs, bad):
    good, broken = parameter(), parameter([1.0, 2.0])
    optimizer = cls({"encoder.mu.W": good, "decoder.logits.b": broken}, **kwargs)
    steps_taken = steps(optimizer, good, [G1])   # one good step, so there is state to keep
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v)
              for k, v in optimizer.state_dict().items()}
    good.grad, broken.grad = read_only(G2), read_only([0.5, bad])
    with pytest.raises(NonFiniteGradient, match=r"decoder\.logits\.b"):
        optimizer.step()
    np.testing.assert_array_equal(good.data, steps_taken)
    np.testing.assert_array_equal(broken.data, [1.0, 2.0])
    after = optimizer.state_dict()
    assert after.keys() == before.keys() and after["steps"] == before["steps"] == 1
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_non_finite_gradient_is_a_floating_point_error():
    assert issubclass(NonFiniteGradient, FloatingPointError)


# ---------------------------------------------------------------- state

@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_state_dict_round_trip_continues_identically(cls, kwargs):
    p = parameter()
    original = cls({"w": p}, **kwargs)
    steps(original, p, [G1, G2])
    state = original.state_dict()
    q = parameter(p.data)
    restored = cls({"w": q}, **kwargs)
    restored.load_state_dict(state)
    assert restored.steps == 2
    more = [G2, -G1, 0.5 * G1]
    np.testing.assert_array_equal(steps(original, p, more), steps(restored, q, more))


@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_state_dict_is_a_snapshot_not_a_view(cls, kwargs):
    p = parameter()
    optimizer = cls({"w": p}, **kwargs)
    steps(optimizer, p, [G1])
    state = optimizer.state_dict()
    frozen = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    steps(optimizer, p, [G2])
    for key in frozen:
        np.testing.assert_array_equal(state[key], frozen[key])


# ---------------------------------------------------------------- arguments and dtypes

@pytest.mark.parametrize("kwargs, word", [
    ({"lr": 0.0}, "learning rate"), ({"lr": -0.1}, "learning rate"),
    ({"lr": np.nan}, "learning rate"),
    ({"lr": 0.1, "weight_decay": -1.0}, "weight decay"),
    ({"lr": 0.1, "weight_decay": np.nan}, "weight decay"),
    ({"lr": 0.1, "clip_norm": 0.0}, "clip norm"), ({"lr": 0.1, "clip_norm": -2.0}, "clip norm"),
    ({"lr": 0.1, "clip_norm": np.nan}, "clip norm"),
])
@pytest.mark.parametrize("cls", [SGD, Adagrad, Adam])
def test_bad_hyperparameters_raise_value_error(cls, kwargs, word):
    with pytest.raises(ValueError, match=word):
        cls({"w": parameter()}, **kwargs)


@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_float32_parameters_and_state_stay_float32(cls, kwargs):
    p = parameter(dtype=np.float32)
    optimizer = cls({"w": p}, weight_decay=0.1, clip_norm=0.5, **kwargs)
    steps(optimizer, p, [G1, G2, G1])
    assert p.data.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in optimizer.state_dict().items() if k != "steps")
