"""How `check_jacobian` tells rounding from a mistake, found by a hostile probe: a float32
answer (and the default rtol of 1e-8, read as 1e-5 for float32), float32 rounding that is
not a wrong term, a small missing term that is not rounding, and units saturated so far
that gradlab's own reference loses digits: an accurate or exact answer there is judged by
a finer reference or called inconclusive, never wrong, and one that rounds as gradlab
does is not certified."""

import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab.verification.check import check_jacobian

CELL = gradlab.cell("rnn_tanh")
EXACT = CELL.jacobian_fn("state")


def test_a_float32_answer_is_told_as_rounding_not_as_a_wrong_factor():
    """The exact Jacobian cast to float32 was diagnosed 'scaled by 1.000000016 instead of 1
    (a wrong constant factor)', and an int64 one 'the term ... is missing'."""
    params = CELL.init_params(8, 4, seed=0)
    result = check_jacobian(lambda P, s, x: EXACT(P, s, x).float(), CELL, params)
    assert not result.ok and "returned float32 numbers" in result.diagnosis[0]
    assert "wrong constant factor" not in " ".join(result.diagnosis)
    assert check_jacobian(lambda P, s, x: EXACT(P, s, x).float(), CELL, params, rtol=1e-5).ok
    wrong = check_jacobian(lambda P, s, x: (2 * EXACT(P, s, x)).float(), CELL, params)
    assert "appears twice" in " ".join(wrong.diagnosis)            # a real error still named
    whole = check_jacobian(lambda P, s, x: EXACT(P, s, x).round().long(), CELL, params)
    assert not whole.ok and "returned int64 numbers" in whole.diagnosis[0]


def test_the_default_rtol_is_the_documented_1e_8_and_float32_reads_it_as_1e_5():
    import inspect
    default = inspect.signature(gradlab.check_jacobian).parameters["rtol"].default
    assert default == 1e-8 and repr(default) == "1e-08"
    cell = gradlab.cell("gru")
    params = cell.init_params(5, 3, seed=0, dtype=torch.float32)
    exact = cell.jacobian_fn("state", "torch")

    def rounded(p, state, x):                    # off by what float32 rounding leaves
        return exact(p, state, x) * (1 + 3e-7)
    assert gradlab.check_jacobian(rounded, cell, params).ok
    assert not gradlab.check_jacobian(rounded, cell, params, rtol=1e-8).ok


def test_float32_rounding_is_said_to_be_rounding_not_a_wrong_term():
    """A right GRU Jacobian computed in float32 and returned as float64 was told as five
    terms 'scaled by 0.9999999889 (a wrong constant factor)'."""
    gru = gradlab.cell("gru")
    exact = gru.jacobian_fn("state")
    params = gru.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)

    def in_float32(p, state, x):
        return exact({k: v.float() for k, v in p.items()}, tuple(s.float() for s in state),
                     x.float()).double()
    result = check_jacobian(in_float32, gru, params)
    assert not result.ok and "what float32 rounding leaves" in str(result)
    assert "every entry is a float32 number" in str(result)
    assert "constant factor" not in str(result)

    def differences(p, state, x):                 # float64 throughout: finite differences
        step = gru.step_fn()
        h, eps = state[0], 1e-6
        base = step(p, (h,), x)[0]
        return torch.stack([(step(p, (h + eps * torch.eye(8, dtype=h.dtype)[j],), x)[0]
                             - base) / eps for j in range(8)], -1)
    told = str(check_jacobian(differences, gru, params))
    assert "finite differences leave errors of this size" in told
    assert "every entry is a float32 number" not in told and "rtol=1e-5" not in told

    def one_sample(p, state, x):                  # one sample off by 1e-7: a mistake
        out = exact(p, state, x).clone()
        out[1] *= 1 + 1e-7
        return out
    told = str(check_jacobian(one_sample, gru, params))
    assert "Sample(s) 0, 2, 3 agree and 1 do not" in told
    assert "rounding" not in told and "times 1 to 1" not in told


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="needs a longdouble wider than float64 (x86)")
def test_an_accurate_jacobian_at_saturated_units_is_judged_by_a_finer_reference():
    """With every unit saturated (b = 14), gradlab's 1 - h'^2 keeps ~4 digits: an fn that
    computes sech^2 accurately was told 'a wrong constant factor 1.000000053'."""
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(6, 3, weight_scale=0.5, seed=0)
    params["b"] = torch.full((6,), 14.0, dtype=torch.float64)

    def accurate(p, state, x, factor=1.0):
        a = state[0] @ p["W"].T + x @ p["U"].T + p["b"]
        return (1 / torch.cosh(a) ** 2)[:, :, None] * p["W"] * factor
    result = gradlab.check_jacobian(accurate, rnn, params)
    assert result.ok and "evaluation in extended precision" in str(result)
    wrong = gradlab.check_jacobian(lambda p, s, x: accurate(p, s, x, 1.01), rnn, params)
    assert not wrong.ok and "scaled by 1.01 instead of 1" in str(wrong)


def test_review_small_missing_term_is_named_not_called_rounding():
    """A missing W_f term, small at a saturated forget gate, was told as float32 rounding
    with advice to loosen rtol, under which it passed."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(6, 3, weight_scale=1.5, bias_scale=0.5, seed=0)
    params["b_f"] = params["b_f"] + 17.0
    exact = lstm.jacobian_fn("state")
    without = lambda p, s, x: exact({**p, "W_f": torch.zeros_like(p["W_f"])}, s, x)  # noqa
    told = str(check_jacobian(without, lstm, params))
    assert "rounding" not in told and "W_f is missing" in told


def test_review_assert_jacobian_does_not_warn_on_a_correct_answer():
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(6, 3, weight_scale=0.5, seed=0)
    params["b"] = torch.full((6,), 14.0, dtype=torch.float64)

    def accurate(p, state, x):
        a = state[0] @ p["W"].T + x @ p["U"].T + p["b"]
        return (1 / torch.cosh(a) ** 2)[:, :, None] * p["W"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradlab.testing.assert_jacobian(accurate, rnn, params)


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="longdouble is float64 here: no extended reference to doubt")
def test_an_exact_jacobian_at_saturated_units_is_never_called_wrong():
    """At biases of 16 every 1 - h'^2 loses ~14 digits in float64 and ~10 in longdouble;
    the exact sech^2(a) W was called 'differs 9.8e-08', blamed on float32, against an
    extended reference that was itself that far off. It is inconclusive; a wrong
    derivation still differs."""
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(8, 4, weight_scale=0.1, bias_scale=0.0, seed=0)
    p["b"] = torch.full((8,), 16.0, dtype=torch.float64)

    def pre(p, s, x):
        return s[0] @ p["W"].T + x @ p["U"].T + p["b"]

    def sech2(p, s, x):
        return (1 / torch.cosh(pre(p, s, x)) ** 2)[..., :, None] * p["W"]

    result = check_jacobian(sech2, rnn, p)
    assert not result.ok and result.inconclusive
    assert str(result).startswith("inconclusive: ") and "float32" not in str(result)
    assert "may itself be off by up to" in str(result)
    twice = check_jacobian(lambda p, s, x: 2 * sech2(p, s, x), rnn, p)
    assert str(twice).startswith("differs: ") and not twice.inconclusive


def test_a_right_float32_jacobian_at_saturated_units_is_inconclusive_not_wrong():
    """float32 params, every tanh unit at pre-activation ~5: torch's own jacrev and the hand
    form diag(1 - t^2) W were rejected ('off row by row ... an activation's slope?'), as
    1 - t^2 in float32 loses digits there; at W = 100 randn they were called 'scaled by
    0.99993' or 'another sample's exact Jacobian'."""
    from torch.func import jacrev, vmap
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, dtype=torch.float32)
    p["b"], p["W"], p["U"] = p["b"] * 0 + 5.0, p["W"] * 0.1, p["U"] * 0.1

    def own(P, s, x):
        return vmap(jacrev(lambda h, u: torch.tanh(P["W"] @ h + P["U"] @ u + P["b"])))(s[0], x)
    result = check_jacobian(own, rnn, p)
    assert not result.ok and result.inconclusive and "float32 cannot tell" in str(result)
    wrong = check_jacobian(lambda P, s, x: own(P, s, x) * 1.01, rnn, p)
    assert not wrong.ok and not wrong.inconclusive and "1.01" in str(wrong)
    calm = rnn.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, dtype=torch.float32)
    assert check_jacobian(own, rnn, calm).ok


def test_at_saturated_float64_units_an_answer_that_rounds_as_gradlab_does_is_not_certified():
    """b = 16, every tanh unit saturated: 1 - tanh^2 in float64 keeps ~3 digits. The hand
    form, rounding as gradlab's own float64 evaluation does, 'agreed' with error 0, while
    the more accurate sech^2 form was inconclusive. Both are judged against the extended
    evaluation now: neither is certified, a wrong one still differs."""
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    p["b"], p["W"], p["U"] = p["b"] * 0 + 16.0, p["W"] * 0.1, p["U"] * 0.1

    def pre(P, s, x):
        return x @ P["U"].T + s[0] @ P["W"].T + P["b"]
    hand = lambda P, s, x: (1 - torch.tanh(pre(P, s, x)) ** 2)[:, :, None] * P["W"]  # noqa
    sech = lambda P, s, x: (1 / torch.cosh(pre(P, s, x)) ** 2)[:, :, None] * P["W"]  # noqa
    for fn in (hand, sech):
        result = check_jacobian(fn, rnn, p)
        assert not result.ok and result.inconclusive, str(result)
    wrong = check_jacobian(lambda P, s, x: sech(P, s, x) * 1.01, rnn, p)
    assert not wrong.ok and not wrong.inconclusive
