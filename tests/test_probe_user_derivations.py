"""A hostile user's own derivations against gradlab.check_jacobian: mistakes that must
not be told as rounding or certified, and side effects of the function under test."""

import torch

import gradlab


def _drawn(name):
    """(cell, params drawn as gradlab check draws them, the exact Jacobian function)."""
    cell = gradlab.cell(name)
    return cell, cell.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0), \
        cell.jacobian_fn("state")


def test_a_half_precision_answer_with_a_wrong_term_is_not_told_as_rounding():
    """A bfloat16 LSTM Jacobian with ∂c'/∂c scaled by 0.8 (20% off) was told "within what
    that rounding explains: it may be right ... pass rtol=5e-01", an rtol that certifies
    it: bfloat16's 64 eps is 0.5; a right answer computed in bfloat16 is off by ~1 eps."""
    lstm, p, exact = _drawn("lstm")

    def forget_scaled(q, s, x):
        J = exact(q, s, x).clone()
        J[:, 8:, 8:] *= 0.8
        return J.to(torch.bfloat16)

    said = str(gradlab.check_jacobian(forget_scaled, lstm, p))
    assert "may be right" not in said and "rtol=" not in said, said
    assert "Block ∂c'/∂c" in said, said


def test_a_half_precision_answer_without_its_biases_is_not_told_as_rounding():
    """A GRU Jacobian without its biases, 48% off, returned in bfloat16, was told "at
    bfloat16's precision no check can tell a term left out from rounding"."""
    gru, p, exact = _drawn("gru_torch")

    def no_biases(q, s, x):
        zero = {k: (torch.zeros_like(v) if k.startswith("b_") else v) for k, v in q.items()}
        return exact(zero, s, x).to(torch.bfloat16)

    result = gradlab.check_jacobian(no_biases, gru, p)
    assert not result.ok and "rounding" not in str(result), str(result)


def test_a_right_half_precision_answer_is_offered_an_rtol_that_passes_it_only():
    """The rtol offered to a right float16 answer passes it, and not a 3% error."""
    rnn, p, exact = _drawn("rnn_tanh")
    half = lambda q, s, x: exact(q, s, x).half()                        # noqa: E731
    said = str(gradlab.check_jacobian(half, rnn, p))
    assert "it may be right, computed in float16" in said, said
    offered = float(said.split("or pass rtol=")[1].split(" ")[0])
    assert gradlab.check_jacobian(half, rnn, p, rtol=offered).ok
    off = lambda q, s, x: (exact(q, s, x) * 1.03).half()                 # noqa: E731
    assert not gradlab.check_jacobian(off, rnn, p, rtol=offered).ok
    assert "may be right" not in str(gradlab.check_jacobian(off, rnn, p))
