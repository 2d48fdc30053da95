"""How `check_jacobian` and `gradlab check` tell a wrong Jacobian, found by a hostile
probe: entries in an exactly zero block, a small wrong factor with its digits, numerator
and denominator layouts, draws that cannot tell a term or a swap apart (inconclusive, not
agreement), a gain named like a bias, whole-Jacobian factors and sample dependence, an
all-zero answer, a row error in one of two terms sharing a weight, the orders tried for a
deep stack, and a user's cell named like a built-in one. Each case was a false pass or a
wrong diagnosis before."""

import sys
import textwrap
import warnings

import pytest
import torch

import gradlab
from gradlab.verification.check import check_jacobian

from conftest import invoke, janet_cell

CELL = gradlab.cell("rnn_tanh")
PARAMS = CELL.init_params(3, 2, seed=0)
EXACT = CELL.jacobian_fn("state")


def run_cli(*args, cwd):
    """`gradlab ...` in a child process: an os._exit that got through would end pytest."""
    import subprocess
    return subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_entries_in_an_exactly_zero_block_fail_however_small():
    """A block whose exact value is zero has no scale to be relative to: 5e-9 there
    passed as an absolute error below rtol; round-off of the whole Jacobian still agrees."""
    cell = gradlab.declare(state="h c", params="W U", source="a test", name="zero_block")(
        lambda s: (gradlab.tanh(s.W @ s.h + s.U @ s.x), 0.5 * s.c + s.h))
    exact, params = cell.jacobian_fn("state"), cell.init_params(3, 2, seed=0)

    def off_by(value):
        def fn(P, s, x):
            J = exact(P, s, x).clone()
            J[:, :3, 3:] += value
            return J
        return fn
    result = check_jacobian(off_by(5e-9), cell, params)
    assert not result.ok and result.block_errors[("h", "c")] == float("inf")
    assert "Block ∂h'/∂c is exactly zero, but yours is not (largest entry 5e-09)" \
        in result.diagnosis[0]
    assert check_jacobian(off_by(1e-17), cell, params).ok            # round-off


def test_a_small_wrong_factor_is_told_with_its_digits():
    """'scaled by 1 instead of 1': the factor 1 + 1e-6 was printed to 6 digits."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=2.0, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")
    for factor, shown in ((1 + 1e-6, "1.000001"), (1 + 1e-7, "1.0000001")):
        result = check_jacobian(lambda P, s, x: exact(P, s, x) * factor, lstm, params)
        assert not result.ok and f"the exact one times {shown}: a factor on every entry" \
            in result.diagnosis[0]


def test_a_numerator_answer_declared_denominator_is_told_so():
    """It read 'it is in numerator layout (rows are inputs)' and 'gradlab uses numerator
    layout': rows of numerator layout are outputs, and that was the user's layout."""
    result = check_jacobian(EXACT, CELL, PARAMS, layout="denominator")
    text = result.diagnosis[0]
    assert text.startswith("You passed layout='denominator', but your Jacobian is in "
                           "numerator layout (rows are outputs")
    assert "--layout numerator" in text
    transposed = check_jacobian(lambda P, s, x: EXACT(P, s, x).mT, CELL, PARAMS)
    assert "denominator layout (rows are inputs)" in transposed.diagnosis[0]


def test_an_input_jacobian_in_the_other_layout_is_diagnosed_not_refused():
    """With m != n an answer in denominator layout, (B, m, n), exited 2 as a wrong shape;
    the square case was already told it is the transpose."""
    params = CELL.init_params(8, 4, seed=0)
    K = CELL.jacobian_fn("input")
    told = check_jacobian(lambda P, s, x: K(P, s, x).mT, CELL, params, wrt="input")
    assert not told.ok and "that of denominator layout" in told.diagnosis[0]
    assert "it is right" in told.diagnosis[0]
    wrong = check_jacobian(lambda P, s, x: 2 * K(P, s, x).mT, CELL, params, wrt="input")
    assert not wrong.ok and "still wrong" in wrong.diagnosis[0]
    assert check_jacobian(lambda P, s, x: K(P, s, x).mT, CELL, params, wrt="input",
                          layout="denominator").ok


def test_draws_that_cannot_tell_are_inconclusive_not_agreement(tmp_path):
    """Weights of scale 0 (or gates saturated by huge weights) make terms vanish at every
    sample: an all-zero Jacobian 'agreed' with rnn_tanh's, and an LSTM derivation with no
    weight term agreed at --weight-scale 1e5. At n = 1 a weight is its own transpose."""
    rnn = gradlab.cell("rnn_tanh")
    zeros = lambda P, s, x: torch.zeros(x.shape[0], s[0].shape[1], s[0].shape[1],  # noqa
                                        dtype=torch.float64)
    result = check_jacobian(zeros, rnn, rnn.init_params(4, 3, weight_scale=0.0, seed=1))
    assert not result.ok and result.inconclusive
    assert str(result).startswith("inconclusive: max relative error 0")
    assert "1 term(s) of the exact Jacobian are within rtol of zero at every sample " \
           "(diag(1 - h'^2) W in ∂h'/∂h)" in result.diagnosis[0]
    exact = rnn.jacobian_fn("state")
    result = check_jacobian(lambda P, s, x: exact(P, s, x).mT, rnn, rnn.init_params(1, 2))
    assert not result.ok and result.inconclusive and "n = 1" in result.diagnosis[0]
    assert check_jacobian(exact, rnn, rnn.init_params(4, 3, weight_scale=1.5, seed=1)).ok
    (tmp_path / "zero.py").write_text(textwrap.dedent("""
        import torch
        def jac(params, state, x):
            return torch.zeros(x.shape[0], state[0].shape[1], state[0].shape[1],
                               dtype=torch.float64)
    """))
    done = run_cli("check", "zero.py:jac", "--cell", "rnn_tanh", "--weight-scale", "0",
                   cwd=tmp_path)
    assert done.returncode == 1 and done.stdout.startswith("inconclusive:"), done.stdout


def test_a_gain_named_like_a_bias_is_not_called_one(tmp_path):
    """'beta' multiplies: zeroing it zeroes the Jacobian, which any zero answer matched,
    and the advice to check at --bias-scale 0 then passed it."""
    (tmp_path / "gain.py").write_text(textwrap.dedent("""
        import torch
        import gradlab

        @gradlab.declare(state="h", params="W U beta", source="test")
        def gain(s):
            return gradlab.tanh(s.beta * (s.W @ s.h + s.U @ s.x))

        def zeros(params, state, x):
            return torch.zeros(x.shape[0], state[0].shape[1], state[0].shape[1],
                               dtype=torch.float64)
    """))
    done = run_cli("check", "gain.py:zeros", "--cell", "gain.py:gain", cwd=tmp_path)
    assert done.returncode == 1 and "biases" not in done.stdout, done.stdout
    assert "is missing" in done.stdout
    done = run_cli("check", "gain.py:zeros", "--cell", "gain.py:gain", "--bias-scale", "0",
                   cwd=tmp_path)
    assert done.returncode == 1 and done.stdout.startswith("inconclusive:"), done.stdout


def test_whole_jacobian_factors_and_sample_dependence_are_named():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")
    doubled = check_jacobian(lambda P, s, x: 2 * exact(P, s, x), lstm, params)
    assert doubled.diagnosis == ["Your whole Jacobian is the exact one doubled: a factor on "
                                 "every entry, not a mistake in one term."]
    first = check_jacobian(lambda P, s, x: exact(P, tuple(t[:1].expand_as(t) for t in s), x),
                           lstm, params)
    assert first.diagnosis[0].startswith("Sample(s) 0 agree and 1, 2, 3 do not")
    assert "the diagonal term diag(f) is off entry by entry" in " ".join(first.diagnosis)


def test_an_all_zero_answer_is_said_to_be_zero():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")
    result = check_jacobian(lambda P, s, x: 0 * exact(P, s, x), lstm, params)
    assert result.diagnosis == ["Your Jacobian is zero throughout: every term is missing."]


def test_draws_that_cannot_tell_a_swap_apart_are_inconclusive():
    """A transposed W passed as 'agrees' where W is symmetric (orthogonal init at n = 2 is
    often a reflection); a state read as (c, h) passed where h = c at every sample."""
    rnn = gradlab.cell("rnn_tanh")

    def transposed(params, state, x):
        a = state[0] @ params["W"].T + x @ params["U"].T + params["b"]
        return (1 - torch.tanh(a) ** 2)[:, :, None] * params["W"].T
    params = rnn.init_params(2, 3, init="orthogonal", bias_scale=0.5, seed=2)
    assert torch.equal(params["W"], params["W"].T)
    result = gradlab.check_jacobian(transposed, rnn, params)
    assert not result.ok and result.inconclusive and "W = Wᵀ" in str(result)
    lstm = gradlab.cell("lstm")
    exact = lstm.jacobian_fn("state")
    params = lstm.init_params(6, 3, weight_scale=1.5, bias_scale=0.5, seed=0)
    h = 0.8 * torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    swapped = gradlab.check_jacobian(lambda p, s, x: exact(p, s[::-1], x), lstm, params,
                                     states=(h,) * 2)
    assert swapped.inconclusive and "h = c at every sample" in str(swapped)
    assert gradlab.check_jacobian(exact, lstm, params, states=(h, -h)).ok


def test_assert_jacobian_fails_when_zero_biases_hide_a_wrong_term():
    """Without b_hn alone (the other biases kept) a derivation is right only where b_hn is
    zero, for no torch GRU with biases: it warned, and passed; it fails. Without every
    bias it is right for a model without biases, as zero biases given say: it warns, and
    passes."""
    gru = gradlab.cell("gru_torch")
    exact = gru.jacobian_fn("state")
    without = lambda p, s, x: exact({**p, "b_hn": torch.zeros_like(p["b_hn"])}, s, x)  # noqa
    with pytest.raises(AssertionError, match="nor is it there the exact Jacobian of a model "
                                             "without them"):
        gradlab.testing.assert_jacobian(without, gru, gru.init_params(8, 4, seed=0))
    free = lambda p, s, x: exact({k: torch.zeros_like(v) if k.startswith("b_") else v  # noqa
                                  for k, v in p.items()}, s, x)
    with pytest.warns(UserWarning, match="right for a model without them only"):
        gradlab.testing.assert_jacobian(free, gru, gru.init_params(8, 4, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradlab.testing.assert_jacobian(exact, gru, gru.init_params(8, 4, seed=0))


def test_a_row_error_in_one_of_two_terms_sharing_a_weight_names_both():
    """JANET's d h'/d h has diag(h ⊙ f ⊙ (1 - f)) W_f and -diag(h~ ⊙ f ⊙ (1 - f)) W_f: a
    slope wrong in the second was blamed on the first, which fits it as well."""
    janet = janet_cell()
    params = janet.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=0)

    def wrong(P, state, x):
        (h,) = state
        f = torch.sigmoid(h @ P["W_f"].T + x @ P["U_f"].T + P["b_f"])
        g = torch.sigmoid(h @ P["W_f"].T + x @ P["U_f"].T + P["b_f"] - 1)   # f's slope, wrong
        ht = torch.tanh(h @ P["W"].T + x @ P["U"].T + P["b"])
        D = torch.diag_embed
        return (D(f) + D(h * f * (1 - f)) @ P["W_f"] - D(ht * g * (1 - g)) @ P["W_f"]
                + D((1 - f) * (1 - ht ** 2)) @ P["W"])
    told = str(gradlab.check_jacobian(wrong, janet, params))
    assert "a term ending in W_f is off row by row" in told and "cannot tell which" in told
    assert "diag(h ⊙ f ⊙ (1 - f)) W_f or -diag(h~ ⊙ f ⊙ (1 - f)) W_f" in told or \
        "diag(h~ ⊙ f ⊙ (1 - f)) W_f or diag(h ⊙ f ⊙ (1 - f)) W_f" in told, told


def test_review_orders_of_a_deep_stack_include_torchs_grouping():
    from gradlab.verification.diagnosis import _orders
    parts = ["h1", "c1", "h2", "c2", "h3", "c3", "h4", "c4"]
    orders = list(_orders(parts))
    assert (0, 2, 4, 6, 1, 3, 5, 7) in orders and len(orders) < 40


def test_a_user_cell_named_like_a_built_in_is_diagnosed_as_its_own(tmp_path, monkeypatch):
    """The gate-order diagnosis looked torch's gates up by the cell's name: a user's
    two-gate cell named lstm crashed it (KeyError: 'W_g', 'internal error', exit 2)."""
    (tmp_path / "mycell.py").write_text(textwrap.dedent('''
        import gradlab
        from gradlab import sigmoid, tanh
        @gradlab.declare(state="h", params="W_i U_i b_i W_f U_f b_f", source="my notes")
        def lstm(s):
            i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
            f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
            return i * tanh(s.h) + f * s.h
        '''))
    (tmp_path / "myfn.py").write_text(textwrap.dedent('''
        import torch
        def jac(p, state, x):
            h, = state
            i = torch.sigmoid(h @ p["W_i"].T + x @ p["U_i"].T + p["b_i"])
            f = torch.sigmoid(h @ p["W_f"].T + x @ p["U_f"].T + p["b_f"])
            D = torch.diag_embed          # the f gate's term diag(h f (1 - f)) W_f left out
            return D(i * (1 - torch.tanh(h) ** 2)) + D(torch.tanh(h) * i * (1 - i)) @ p["W_i"] + D(f)
        '''))
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "myfn.py:jac", "--cell", "mycell.py:lstm")
    assert result.exit_code == 1, result.output
    assert "the term diag(h ⊙ f ⊙ (1 - f)) W_f is missing" in result.output


def test_a_right_jacobian_at_an_rtol_below_rounding_does_not_differ_at_the_redraw():
    """At rtol 2e-16 a right Jacobian (jacrev of the step) differed from gradlab's by its
    last bits where the biases were drawn nonzero, which has none of the main
    comparison's finer references, and was called wrong ("gets a term wrong")."""
    from torch.func import jacrev, vmap
    cell = gradlab.cell("gru")
    step = cell.step_fn()

    def fn(p, state, x):
        one = lambda h, xx: step(p, (h[None],), xx[None])[0][0]     # noqa: E731
        return vmap(jacrev(one))(state[0], x)
    for seed in (3, 9, 13, 14):
        result = gradlab.check_jacobian(fn, cell, cell.init_params(8, 4, seed=seed), rtol=2e-16)
        assert result.ok or result.inconclusive, str(result)
