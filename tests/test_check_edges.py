"""Edges of checking a user's Jacobian found by a hostile probe: a function that reuses
its output buffer (a numpy habit), params holding a plain number beside the arrays, and
biases of scale 0 (or states given at 0), at which a derivation that leaves a term out
agrees."""

import numpy as np
import pytest
import torch

import gradlab


def _gru():
    cell = gradlab.cell("gru")
    return cell, cell.init_params(8, 4, seed=0, bias_scale=0.5), cell.jacobian_fn("state")


def test_a_per_sample_function_that_reuses_one_output_buffer_is_judged_right():
    """Each answer was kept as a view of the buffer: every sample read the last one and
    a correct Jacobian was called wrong."""
    cell, params, exact = _gru()
    buffer = np.empty((8, 8))

    def mine(p, state, x):
        if state[0].ndim != 1:
            raise ValueError("one sample at a time")
        buffer[...] = exact(p, tuple(s[None] for s in state), x[None])[0].numpy()
        return buffer
    result = gradlab.check_jacobian(mine, cell, params)
    assert result.ok, result


def test_a_plain_number_among_the_params_reaches_the_function():
    cell, params, exact = _gru()

    def mine(p, state, x):
        assert p["eps"] == 1e-3 and p["name"] == "mine"
        return exact({k: v for k, v in p.items() if k in cell.param_names}, state, x)
    assert gradlab.check_jacobian(mine, cell, {**params, "eps": 1e-3, "name": "mine"}).ok


def _without_b_hn(p, s, x):
    """gru_torch's state Jacobian with b_hn left out of r ⊙ (W_n h + b_hn)."""
    (h,), sig, D = s, torch.sigmoid, torch.diag_embed
    r = sig(x @ p["U_r"].T + p["b_ir"] + h @ p["W_r"].T + p["b_hr"])
    z = sig(x @ p["U_z"].T + p["b_iz"] + h @ p["W_z"].T + p["b_hz"])
    a = h @ p["W_n"].T
    nt = torch.tanh(x @ p["U_n"].T + p["b_in"] + r * a)
    return D((h - nt) * z * (1 - z)) @ p["W_z"] \
        + D((1 - z) * (1 - nt ** 2)) @ (D(a * r * (1 - r)) @ p["W_r"] + D(r) @ p["W_n"]) + D(z)


def test_at_zero_biases_a_derivation_that_leaves_one_out_agrees_with_a_note():
    """At the params given (every bias 0, init_params' default) it is right, as for a
    model without biases; the note says it is wrong once they are not zero."""
    cell = gradlab.cell("gru_torch")
    result = gradlab.check_jacobian(_without_b_hn, cell, cell.init_params(8, 4, seed=0))
    assert result.ok
    assert len(result.diagnosis) == 1 and result.diagnosis[0].startswith(
        "Note: it agrees at the params given, where b_ir, b_iz, b_in, b_hr, b_hz, b_hn are "
        "all zero, but not with them drawn nonzero")
    with_bias = cell.init_params(8, 4, seed=0, bias_scale=0.5)
    assert not gradlab.check_jacobian(_without_b_hn, cell, with_bias).ok


def test_a_right_derivation_at_zero_biases_and_a_closure_get_no_note():
    cell = gradlab.cell("gru_torch")
    params, exact = cell.init_params(8, 4, seed=0), cell.jacobian_fn("state")
    assert gradlab.check_jacobian(exact, cell, params).diagnosis == []
    closure = lambda p, s, x: exact(params, s, x)                  # noqa: E731
    assert gradlab.check_jacobian(closure, cell, params).diagnosis == []


def _pre(p, s, x, with_h=True, with_x=True):
    return (s[0] @ p["W"].T if with_h else 0) + (x @ p["U"].T if with_x else 0) + p["b"]


@pytest.mark.parametrize("left_out, zero", [("h", "h"), ("x", "x")])
def test_zero_states_given_that_hide_a_left_out_term_are_noted(left_out, zero):
    """A pre-activation without W h agrees at h = 0 (without U x at x = 0): it passed
    assert_jacobian silently; it agrees there, with a note, and assert_jacobian warns."""
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)

    def wrong(p, s, x):
        h = torch.tanh(_pre(p, s, x, with_h=left_out != "h", with_x=left_out != "x"))
        return (1 - h ** 2)[..., :, None] * p["W"]

    gen = torch.Generator().manual_seed(5)
    h = torch.zeros(4, 8, dtype=torch.float64) if zero == "h" else \
        torch.randn(4, 8, generator=gen, dtype=torch.float64)
    x = torch.zeros(4, 4, dtype=torch.float64) if zero == "x" else \
        torch.randn(4, 4, generator=gen, dtype=torch.float64)
    result = gradlab.check_jacobian(wrong, rnn, p, states=((h,), x))
    assert result.ok and len(result.diagnosis) == 1
    assert result.diagnosis[0].startswith(f"Note: it agrees at the states given, where {zero} "
                                          "is all zero, but not with it drawn nonzero")
    with pytest.warns(UserWarning, match="it agrees at the states given"):
        gradlab.testing.assert_jacobian(wrong, rnn, p, states=((h,), x))
    right = rnn.jacobian_fn("state")
    assert gradlab.check_jacobian(right, rnn, p, states=((h,), x)).diagnosis == []
