"""Edges of checking a user's Jacobian found by a hostile probe, in how a difference is
told: a uniform error, an answer rounded to float32, float16, bfloat16 or float8 (and the
rtol offered for it), a batch answered with one matrix or with one sample's Jacobian for
all, errors at some samples only, blocks transposed in place or placed transposed, a
block whose terms the draws cannot tell apart, and the worst entries shown with the
digits that show the difference."""

import pytest
import torch

import gradlab


def _drawn(name):
    """(cell, params drawn as gradlab check draws them, the exact Jacobian function)."""
    cell = gradlab.cell(name)
    return cell, cell.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0), \
        cell.jacobian_fn("state")


def _first_sample_for_all(exact):
    """A Jacobian that reads sample 0's state and input for every sample."""
    return lambda p, s, x: exact(p, tuple(t[:1].expand_as(t) for t in s), x[:1].expand_as(x))


def test_a_uniform_error_is_not_blamed_on_sample_dependence():
    """Samples of small entries were within rtol of the whole Jacobian's scale under a
    uniform 3e-8 error and 'agreed', beside the right diagnosis (scaled by 1.00000003)."""
    rnn, p, exact = _drawn("rnn_tanh")
    result = str(gradlab.check_jacobian(lambda p, s, x: exact(p, s, x) * (1 + 3e-8), rnn, p))
    assert "scaled by 1.00000003" in result and "depends on which sample" not in result

    assert "Sample(s) 0 agree and 1, 2, 3 do not" in str(
        gradlab.check_jacobian(_first_sample_for_all(exact), rnn, p))


def test_a_float8_answer_is_not_offered_an_rtol_that_is_refused():
    rnn, p, exact = _drawn("rnn_tanh")
    said = str(gradlab.check_jacobian(
        lambda p, s, x: exact(p, s, x).to(torch.float8_e4m3fn), rnn, p))
    assert "rtol=" not in said and "no check can tell a term left out from rounding" in said
    halved = str(gradlab.check_jacobian(lambda p, s, x: exact(p, s, x).float(), rnn, p,
                                        rtol=1e-9))
    assert "or pass rtol=8e-06 (--rtol) to check it at float32's precision" in halved


def test_a_batch_answered_with_one_matrix_is_inconclusive():
    rnn, p, exact = _drawn("rnn_tanh")

    def folds(p, s, x):
        if x.ndim == 2:
            return exact(p, s, x).mean(0)
        return exact(p, tuple(t[None] for t in s), x[None])[0]

    # it agreed, with a note: the batch's mean (or sample 0's answer for all) is no
    # Jacobian of a batch, and no per-sample check can tell it from right
    result = gradlab.check_jacobian(folds, rnn, p)
    assert not result.ok and result.inconclusive
    assert "Given a batch of 4, your function returned one 8 x 8 matrix" in result.diagnosis[-1]
    assert str(result).startswith("inconclusive")
    assert gradlab.check_jacobian(exact, rnn, p).diagnosis == []
    assert gradlab.check_jacobian(folds, rnn, p, batch=1).ok    # one sample: it is right
    from gradlab.testing import assert_jacobian
    with pytest.raises(AssertionError, match="Given a batch of 4"):
        assert_jacobian(folds, rnn, p)


def test_a_float32_answer_that_reads_one_sample_for_all_is_named():
    lstm, p, exact = _drawn("lstm")
    p = {k: v.float() for k, v in p.items()}
    assert "Sample(s) 0 agree and 1, 2, 3 do not" in str(
        gradlab.check_jacobian(_first_sample_for_all(exact), lstm, p))


def test_a_float16_answer_is_offered_an_rtol_it_can_pass():
    rnn, p, exact = _drawn("rnn_tanh")
    half = lambda p, s, x: exact(p, s, x).half()        # noqa: E731
    said = str(gradlab.check_jacobian(half, rnn, p))
    # (what float16 rounding explains here, 8 eps: its 64 eps, 6e-02, passed a 3% error)
    assert "or pass rtol=8e-03 (--rtol) to check it at float16's precision" in said
    assert gradlab.check_jacobian(half, rnn, p, rtol=8e-3).ok


def test_errors_at_some_samples_are_told_from_a_borrowed_sample():
    """A derivation wrong only where units saturate was told 'your function depends on
    which sample it is given (one sample's state used for all ...)'; that is said only
    where each wrong answer is another sample's exact Jacobian."""
    from gradlab.verification.diagnosis import by_sample
    exact = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    some = exact.clone()
    some[2:] += 0.5
    said = by_sample(some, exact, 1e-8)[0]
    assert said.startswith("Sample(s) 0, 1 agree and 2, 3 do not: your function is wrong at "
                           "some points only")
    borrowed = exact[:1].expand(4, 3, 3)
    assert "each wrong one is another sample's exact Jacobian" in by_sample(
        borrowed, exact, 1e-8)[0]


@pytest.mark.parametrize("axes, said", [
    ((2, 4), "Each of your blocks is transposed in place"),
    ((1, 3), "Your blocks are each right but placed transposed")])
def test_blocks_placed_or_transposed_are_named(axes, said):
    """An LSTM Jacobian with each 2 x 2 block transposed in place, or with dh'/dc and
    dc'/dh exchanged, got only 'no missing, extra, sign-flipped or rescaled term explains
    the difference'."""
    lstm = gradlab.cell("lstm")
    p = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")

    def moved(q, s, x):
        J = exact(q, s, x)
        return J.reshape(-1, 2, 8, 2, 8).transpose(*axes).reshape(J.shape)
    assert said in str(gradlab.check_jacobian(moved, lstm, p))


def test_a_block_whose_terms_the_draws_cannot_tell_apart_names_no_coefficient():
    """A stack's ∂h2'/∂x has 49 terms; 4 sequences at n = 3, m = 3 give 36 entries, and
    any difference fits them: a transposed U_z1 was told as 49 terms "scaled by" factors
    from -43.9 to 31.6. Now the block says its terms cannot be told apart there, and more
    sequences name the slip."""
    from torch.func import jacrev, vmap
    cell = gradlab.stack("peephole_lstm", 2)
    step, exact = cell.step_fn("torch"), cell.jacobian_fn("input")
    params = cell.init_params(3, 3, seed=0, weight_scale=1.5, bias_scale=0.5)

    def by_bias(P, s, x, b):                 # d state'/d b: the factor before U_z1
        def one(bias, s1, x1):
            Q = dict(P)
            Q[b] = bias
            return torch.cat([o[0] for o in step(Q, tuple(t[None] for t in s1), x1[None])])
        return vmap(jacrev(one), in_dims=(None, 0, 0))(P[b], s, x)

    def transposed(P, s, x):
        return exact(P, s, x) + by_bias(P, s, x, "b_z1") @ (P["U_z1"].T - P["U_z1"])

    said = " ".join(gradlab.check_jacobian(transposed, cell, params, wrt="input").diagnosis)
    assert "scaled by" not in said, said
    assert "Its 49 terms are not independent over these draws' 36 entries" in said, said
    more = " ".join(gradlab.check_jacobian(transposed, cell, params, wrt="input",
                                           batch=16).diagnosis)
    assert "scaled by" not in more and "yours has U_z1ᵀ where U_z1 belongs" in more, more


def test_a_float32_answer_without_its_biases_is_named_as_such():
    """Vogt et al.'s gru_jac (bias-free path, float32 output) on a model with biases:
    'no term explains the difference' at the default rtol, where matching the mistake to
    the answer's own float32 rounding names it."""
    gru = gradlab.cell("gru_torch")
    p = gru.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)
    exact = gru.jacobian_fn("state")

    def no_biases_float32(q, s, x):
        zero = {k: (torch.zeros_like(v) if k.startswith("b_") else v) for k, v in q.items()}
        return exact(zero, s, x).float()

    result = gradlab.check_jacobian(no_biases_float32, gru, p)
    assert not result.ok and "the exact one with the biases" in result.diagnosis[0]


def test_a_bfloat16_answer_with_a_wrong_block_is_not_called_a_factor_on_every_entry():
    """Matching mistakes at the answer's rounding took bfloat16's 64 eps, 0.5: a halved
    block read as 'the exact one times 0.965, a factor on every entry'."""
    lstm, p, exact = _drawn("lstm")

    def halved(q, s, x):
        J = exact(q, s, x).clone()
        J[:, :8, :8] *= 0.5
        return J.to(torch.bfloat16)

    said = " ".join(gradlab.check_jacobian(halved, lstm, p).diagnosis)
    assert "a factor on every entry" not in said


def test_the_worst_entries_shown_are_the_ones_that_differ():
    """One entry off by 1e-6 was shown beside two entries that agree to the last digit,
    printed as equal ("yours -0.1546..., exact -0.1546...")."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(8, 4, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = cell.jacobian_fn("state")

    def mine(p, state, x):
        J = exact(p, state, x).clone()
        J[0, 3, 5] += 1e-6
        return J
    result = gradlab.check_jacobian(mine, cell, params)
    said = " ".join(result.diagnosis)
    assert not result.ok and "Worst entry [sample 0, 3, 5] yours " in said
    assert said.count("yours") == 1


def test_a_slope_off_by_a_millionth_is_told_with_the_digits_that_show_it():
    """diag(f) + 1e-6 I was told as "yours is it times 1 to 1, not 1"."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(8, 4, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = cell.jacobian_fn("state")

    def mine(p, state, x):
        J = exact(p, state, x).clone()
        J[:, 8:, 8:] += 1e-6 * torch.eye(8, dtype=J.dtype)
        return J
    result = gradlab.check_jacobian(mine, cell, params)
    said = " ".join(result.diagnosis)
    assert not result.ok and "times 1 to 1," not in said and "times 1.0000" in said, said
