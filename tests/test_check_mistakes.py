"""gradlab as the oracle for other people's derivations, each mistake class named where it
hides: a wrong factor in one term of an LSTM, a weight (or an input weight of the same
shape) used transposed, a slope broadcast along the wrong axis, a block written in another
block's place, the batch last, a forgotten relu slope, and a missing term that vanishes at
some samples. The Jacobians under test are written by hand, then broken on purpose."""

import re

import pytest
import torch

import gradlab

sig, tanh = torch.sigmoid, torch.tanh
D = torch.diag_embed


def lin(v, W):
    return v @ W.T


def test_a_wrong_factor_in_one_term_is_not_pinned_on_its_first_factor():
    """sigma'(i) written as i: the term diag(o ⊙ (1 - tanh(c')^2)) diag(g ⊙ i ⊙ (1 - i)) W_i
    of dh'/dh was blamed on its first factor, diag(o ⊙ (1 - tanh(c')^2)), which is right;
    and the dc'/dh line named another factor. Both now name the term and its factors."""
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=1)

    def wrong(P, state, x):
        h, c = state
        pre = lambda a: lin(h, P[f"W_{a}"]) + lin(x, P[f"U_{a}"]) + P[f"b_{a}"]  # noqa: E731
        i, f, o, g = sig(pre("i")), sig(pre("f")), sig(pre("o")), tanh(pre("g"))
        c2 = f * c + i * g
        dc_dh = (D(c * f * (1 - f)) @ P["W_f"] + D(g * i) @ P["W_i"]      # slope of i: i
                 + D(i * (1 - g ** 2)) @ P["W_g"])
        k = D(o * (1 - tanh(c2) ** 2))
        dh_dh = D(tanh(c2) * o * (1 - o)) @ P["W_o"] + k @ dc_dh
        top = torch.cat([dh_dh, k @ D(f)], -1)
        return torch.cat([top, torch.cat([dc_dh, D(f)], -1)], 1)

    result = gradlab.check_jacobian(wrong, lstm, P)
    assert not result.ok and len(result.diagnosis) == 2, result.diagnosis
    for line in result.diagnosis:
        assert "diag(g ⊙ i ⊙ (1 - i)) W_i is off row by row" in line, line
        assert "diagonal factors" in line and ", 1 - i, is written wrong or missing" in line
    assert "the factor diag(o" not in " ".join(result.diagnosis)


def test_a_weight_used_transposed_is_named():
    """min-char-rnn's backward with Whh where Whh.T belongs, as a Jacobian: diag(1 - h'^2) W^T."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def transposed(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return D(1 - h2 ** 2) @ P["W"].T

    result = gradlab.check_jacobian(transposed, rnn, P)
    assert result.diagnosis == ["Block ∂h'/∂h: in the term diag(1 - h'^2) W, yours has Wᵀ "
                                "where W belongs (a weight transposed)."]


def test_an_input_weight_used_transposed_is_named_where_its_shape_hides_it():
    """At m = n, diag(1 - h'^2) U^T has U's shape: it was "no missing, extra, sign-flipped
    or rescaled term explains the difference"; the LSTM's U_o the same way."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 5, weight_scale=1.5, bias_scale=0.5, seed=3)

    def transposed(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return D(1 - h2 ** 2) @ P["U"].T

    result = gradlab.check_jacobian(transposed, rnn, P, wrt="input")
    assert result.diagnosis == ["Block ∂h'/∂x: in the term diag(1 - h'^2) U, yours has Uᵀ "
                                "where U belongs (a weight transposed)."]

    def columns(P, state, x):             # (1 - h'^2)[:, None, :] * U: U diag(v)
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return P["U"] @ D(1 - h2 ** 2)

    said = " ".join(gradlab.check_jacobian(columns, rnn, P, wrt="input").diagnosis)
    assert "on the other side of the weight, scaling its columns" in said, said
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(4, 4, weight_scale=1.5, bias_scale=0.5, seed=1)
    exact = lstm.jacobian_fn("input")
    o_of = lambda P, s, x: sig(lin(s[0], P["W_o"]) + lin(x, P["U_o"]) + P["b_o"])  # noqa: E731

    def slipped(P, s, x):                 # d h'/d x's term diag(tanh(c') o (1 - o)) U_o
        c2 = lstm.step_fn("torch")(P, s, x)[1]
        o = o_of(P, s, x)
        wrong = D(torch.tanh(c2) * o * (1 - o)) @ (P["U_o"].T - P["U_o"])
        return exact(P, s, x) + torch.cat([wrong, torch.zeros_like(wrong)], 1)

    said = " ".join(gradlab.check_jacobian(slipped, lstm, P, wrt="input").diagnosis)
    assert "yours has U_oᵀ where U_o belongs" in said, said


def test_a_slope_broadcast_along_the_wrong_axis_is_named():
    """(1 - h'^2)[:, None, :] * W scales W's columns: W diag(v) where diag(v) W belongs,
    the numpy slip v * W; it was "no ... term explains the difference"."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def columns(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return (1 - h2 ** 2)[:, None, :] * P["W"]

    result = gradlab.check_jacobian(columns, rnn, P)
    assert result.diagnosis == ["Block ∂h'/∂h: in the term diag(1 - h'^2) W, yours has "
                                "diag(1 - h'^2) on the other side of the weight, scaling its "
                                "columns where it scales rows (a vector broadcast along the "
                                "wrong axis: v * W for v[:, None] * W in numpy)."]


def test_a_block_written_in_another_blocks_place_is_named():
    """∂h'/∂c put where ∂c'/∂h belongs (or two blocks' rows swapped) was "no ... term
    explains the difference": each such block is named as the exact block it is."""
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(4, 3, weight_scale=1.5, bias_scale=0.5, seed=0)
    exact = lstm.jacobian_fn("state")

    def misplaced(P, state, x):
        J = exact(P, state, x).clone()
        J[:, 4:, :4] = J[:, :4, 4:]
        return J

    assert gradlab.check_jacobian(misplaced, lstm, P).diagnosis == [
        "Block ∂c'/∂h: yours is gradlab's ∂h'/∂c, a block written in the wrong place (rows "
        "are the new state's parts, columns the old state's)."]


@pytest.mark.parametrize("n, words", [
    (4, "Your Jacobian has the batch last, (rows, columns, B), read here as (B, rows, columns)"),
    (5, "(5, 5, 4) is (rows, columns, B), the batch last: put it first")])
def test_a_jacobian_with_the_batch_last_is_told_so(n, words):
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(n, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def batch_last(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return (D(1 - h2 ** 2) @ P["W"]).permute(1, 2, 0)

    if n == 4:                               # B = S: the shape cannot tell, the numbers do
        assert words in gradlab.check_jacobian(batch_last, rnn, P).diagnosis[0]
    else:
        with pytest.raises(gradlab.GradlabError, match=re.escape(words)):
            gradlab.check_jacobian(batch_last, rnn, P)


@pytest.mark.parametrize("name", ["rnn_relu", "indrnn"])
def test_a_forgotten_relu_slope_is_named(name):
    """relu's slope θ(a) is 0 or 1: where it is 0 the exact row is zero, so the row-by-row
    ratio that names a forgotten tanh' cannot name it ('no ... term explains')."""
    if name == "indrnn":
        cell = gradlab.declare(state="h", params={"u": "n", "W": "n m", "b": "n"},
                               source="test", name="indrnn")(
            lambda s: gradlab.relu(s.u * s.h + s.W @ s.x + s.b))
        forgot = lambda P, s, x: D(P["u"].expand(x.shape[0], -1))        # noqa: E731
        factor, term = "θ(u ⊙ h + W x + b)", "diag(θ(u ⊙ h + W x + b) ⊙ u)"
    else:
        cell = gradlab.cell(name)
        forgot = lambda P, s, x: P["W"].expand(x.shape[0], -1, -1)       # noqa: E731
        factor, term = "θ(W h + U x + b)", "diag(θ(W h + U x + b)) W"
    params = cell.init_params(8, 3, bias_scale=0.5, seed=0)
    assert gradlab.check_jacobian(forgot, cell, params).diagnosis == [
        f"Block ∂h'/∂h: in the term {term}, yours leaves out the factor {factor} (an "
        "activation's slope?)."]


def test_a_missing_term_that_vanishes_at_some_samples_is_named_alone():
    """At saturated draws the missing term is ~0 in some samples, which then agree: the
    diagnosis named the term and also said 'your function is wrong at some points only
    (... a branch on the state's values ...)', a second, vaguer story for the same slip."""
    cell = gradlab.cell("gru")
    params = cell.init_params(9, 3, weight_scale=30, bias_scale=10, seed=2)

    def no_reset_path(P, state, x):
        (h,) = state
        r = sig(lin(h, P["W_r"]) + lin(x, P["U_r"]) + P["b_r"])
        z = sig(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])
        ht = tanh(lin(r * h, P["W"]) + lin(x, P["U"]) + P["b"])
        return (D(z) + D((h - ht) * z * (1 - z)) @ P["W_z"]
                + D((1 - z) * (1 - ht ** 2)) @ P["W"] @ D(r))
    said = gradlab.check_jacobian(no_reset_path, cell, params).diagnosis
    assert said == ["Block ∂h'/∂h: the term diag((1 - z) ⊙ (1 - h~^2)) W diag(h ⊙ r ⊙ "
                    "(1 - r)) W_r is missing."]
