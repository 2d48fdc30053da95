"""check_jacobian at params whose values hide a term: a gain of all ones (torch's
LayerNorm default), a scalar at 1, an identity or zero weight matrix. A derivation
right only there was certified (a probe: a layer-norm RNN's Jacobian without its gain g,
checked at g = 1; an antisymmetric RNN's with gamma^2 for gamma, at gamma = 1)."""

import torch

import gradlab
from gradlab import mean, sqrt, tanh, var


@gradlab.declare(state="h", params={"W": "n n", "U": "n m", "b": "n", "g": "n", "eps": "1"},
                 source="a test: layer-norm RNN", name="ln_rnn_units")
def ln_rnn(s):
    """h' = tanh(g (a - mean a) / sqrt(var a + eps) + b), a = W h + U x."""
    a = s.let("a", s.W @ s.h + s.U @ s.x)
    z = s.let("z", (a - mean(a)) / sqrt(var(a) + s.eps))
    return tanh(s.g * z + s.b)


@gradlab.declare(state="h", params={"W": "n n", "V": "n m", "b": "n", "gamma": "1"},
                 source="a test: antisymmetric RNN", name="antisym_units")
def antisym(s):
    """h' = h + 0.1 tanh((W - W^T - gamma I) h + V x + b)."""
    return s.h + 0.1 * tanh((s.W - s.W.T - s.gamma * s.I) @ s.h + s.V @ s.x + s.b)


def ln_fn(with_gain):
    def fn(p, state, x):
        step = lambda h, x: torch.tanh(                                    # noqa: E731
            (p["g"] if with_gain else 1.0) * _normed(h @ p["W"].T + x @ p["U"].T, p["eps"])
            + p["b"])
        return torch.func.vmap(torch.func.jacrev(step))(state[0], x)
    return fn


def _normed(a, eps):
    mu = a.mean(-1, keepdim=True)
    return (a - mu) / torch.sqrt(((a - mu) ** 2).mean(-1, keepdim=True) + eps)


def antisym_fn(power):
    def fn(p, state, x):
        h = state[0]
        A = p["W"] - p["W"].T - p["gamma"] ** power * torch.eye(h.shape[-1], dtype=h.dtype)
        t = torch.tanh(h @ (p["W"] - p["W"].T - p["gamma"] * torch.eye(h.shape[-1],
                                                                         dtype=h.dtype)).T
                       + x @ p["V"].T + p["b"])
        return torch.eye(h.shape[-1], dtype=h.dtype) + 0.1 * (1 - t * t)[..., None] * A
    return fn


def _ln_params(gain):
    params = dict(ln_rnn.init_params(4, 3, seed=2, bias_scale=0.5))
    params["g"] = torch.full((4,), gain, dtype=torch.float64)
    params["eps"] = torch.tensor([1e-5], dtype=torch.float64)
    return params


def test_a_layer_norm_derivation_without_its_gain_is_not_certified_at_gain_one():
    for gain in (1.0, 1.7):
        assert gradlab.check_jacobian(ln_fn(True), ln_rnn, _ln_params(gain)).ok
    wrong = gradlab.check_jacobian(ln_fn(False), ln_rnn, _ln_params(1.0))
    assert not wrong.ok and wrong.inconclusive
    assert "where g is all ones" in str(wrong) and "leaves it out" in str(wrong)
    assert not gradlab.check_jacobian(ln_fn(False), ln_rnn, _ln_params(1.7)).ok


def test_a_square_where_the_value_belongs_differs_at_one():
    params = dict(antisym.init_params(5, 3, seed=0, bias_scale=0.5))
    params["gamma"] = torch.tensor([1.0], dtype=torch.float64)
    assert gradlab.check_jacobian(antisym_fn(1), antisym, params).ok
    wrong = gradlab.check_jacobian(antisym_fn(2), antisym, params)
    assert not wrong.ok and not wrong.inconclusive                    # differs
    assert "where gamma is 1" in str(wrong) and wrong.max_error.relative > 1e-3


def test_zero_and_identity_weights_certify_nothing_they_hide():
    rnn = gradlab.cell("rnn_tanh")

    def derivation(transpose):                  # W^T where W belongs: I or 0 hides it
        def fn(p, state, x):
            t = torch.tanh(state[0] @ p["W"].T + x @ p["U"].T + p["b"])
            return (1 - t * t)[..., None] * (p["W"].T if transpose else p["W"])
        return fn

    for W in (torch.eye(4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)):
        params = dict(rnn.init_params(4, 3, seed=0, bias_scale=0.5), W=W)
        right = gradlab.check_jacobian(derivation(False), rnn, params)
        assert right.ok or right.inconclusive
        wrong = gradlab.check_jacobian(derivation(True), rnn, params)
        assert not wrong.ok, str(wrong)
