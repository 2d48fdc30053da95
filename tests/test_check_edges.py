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


def _drawn(name):
    """(cell, params drawn as gradlab check draws them, the exact Jacobian function)."""
    cell = gradlab.cell(name)
    return cell, cell.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0), \
        cell.jacobian_fn("state")


def _first_sample_for_all(exact):
    """A Jacobian that reads sample 0's state and input for every sample."""
    return lambda p, s, x: exact(p, tuple(t[:1].expand_as(t) for t in s), x[:1].expand_as(x))


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


def test_states_or_params_equal_to_within_rounding_are_inconclusive():
    """The guard against draws that cannot tell two things apart needed bit-equal state
    parts: (h, h + 1e-12) passed a derivation reading (c, h) as (h, c); equal gate
    weights hid gates read swapped."""
    lstm = gradlab.cell("lstm")
    p = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)
    exact = lstm.jacobian_fn("state")
    h = 0.8 * torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    swapped = gradlab.check_jacobian(lambda p, s, x: exact(p, (s[1], s[0]), x), lstm, p,
                                     states=(h, h + 1e-12))
    assert not swapped.ok and swapped.inconclusive
    assert "at these draws h = c at every sample" in str(swapped)
    q = {**p, "W_f": p["W_i"].clone(), "U_f": p["U_i"].clone(), "b_f": p["b_i"].clone()}

    def gates_swapped(p, s, x):
        p = dict(p)
        for a, b in (("W_i", "W_f"), ("U_i", "U_f"), ("b_i", "b_f")):
            p[a], p[b] = p[b], p[a]
        return exact(p, s, x)

    result = gradlab.check_jacobian(gates_swapped, lstm, q)
    assert result.inconclusive and "W_i = W_f; U_i = U_f; b_i = b_f" in str(result)
    assert gradlab.check_jacobian(exact, lstm, p).diagnosis == []      # apart: no doubt


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


def test_gradlab_check_finds_a_size_written_into_the_function(tmp_path, monkeypatch):
    """Checked at one size only, a Jacobian right only at n = 8 (the transpose elsewhere)
    passed `gradlab check` at its defaults."""
    from conftest import invoke
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "def jac(p, state, x):\n"
        "    a = torch.tanh(state[0] @ p['W'].T + x @ p['U'].T + p['b'])\n"
        "    J = (1 - a ** 2)[..., :, None] * p['W']\n"
        "    return J if a.shape[-1] == 8 else J.mT\n"
        "def right(p, state, x):\n"
        "    a = torch.tanh(state[0] @ p['W'].T + x @ p['U'].T + p['b'])\n"
        "    return (1 - a ** 2)[..., :, None] * p['W']\n"
        "three = 3\n")
    monkeypatch.chdir(tmp_path)
    once = invoke("check", "mine.py:jac", "--cell", "rnn_tanh")
    assert once.exit_code == 1
    assert once.output.startswith("differs: max relative error") and \
        "samples at n = 5, m = 5" not in once.output
    assert ("at n = 33, m = 5, B = 33\nIt agrees at n = 8, m = 4, B = 4, but not at these "
            "sizes") in once.output
    right = invoke("check", "mine.py:right", "--cell", "rnn_tanh")
    assert right.exit_code == 0 and right.output == (
        "agrees: max relative error 0 (absolute 0) over 45 samples at n = 8, m = 4, B = 4 "
        "and n = 33, m = 5, B = 33 (and at the first sizes with other draws, and asked again)\n")
    assert invoke("check", "mine.py:three", "--cell", "rnn_tanh").output == (
        "gradlab: error: mine.py: 'three' is not a function (its type: int)\n")


def test_a_coarse_rtol_does_not_make_random_weights_alike():
    """Params within 100 rtol were 'equal': at rtol 0.01 a random W was its own transpose
    and W_i = W_f, so the exact Jacobian was 'inconclusive'."""
    for name in ("lstm", "rnn_tanh"):
        cell = gradlab.cell(name)
        p = cell.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)
        assert gradlab.check_jacobian(cell.jacobian_fn("state"), cell, p, rtol=0.05).ok


def test_a_float32_answer_that_reads_one_sample_for_all_is_named():
    lstm, p, exact = _drawn("lstm")
    p = {k: v.float() for k, v in p.items()}
    assert "Sample(s) 0 agree and 1, 2, 3 do not" in str(
        gradlab.check_jacobian(_first_sample_for_all(exact), lstm, p))


def test_a_float16_answer_is_offered_an_rtol_it_can_pass():
    rnn, p, exact = _drawn("rnn_tanh")
    half = lambda p, s, x: exact(p, s, x).half()        # noqa: E731
    said = str(gradlab.check_jacobian(half, rnn, p))
    assert "or pass rtol=6e-02 (--rtol) to check it at float16's precision" in said
    assert gradlab.check_jacobian(half, rnn, p, rtol=6e-2).ok


def test_gradlab_check_says_where_a_size_written_in_fails_and_notes_once(tmp_path,
                                                                         monkeypatch):
    from conftest import invoke
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "def pre(p, state, x):\n"
        "    return torch.tanh(state[0] @ p['W'].T + x @ p['U'].T)\n"
        "def eye8(p, state, x):\n"
        "    a = pre(p, state, x)\n"
        "    return (1 - a ** 2)[..., :, None] * p['W'] + 0 * torch.eye(8)\n"
        "def nob(p, state, x):\n"
        "    a = pre(p, state, x)\n"
        "    return (1 - a ** 2)[..., :, None] * p['W']\n")
    monkeypatch.chdir(tmp_path)
    failed = invoke("check", "mine.py:eye8", "--cell", "rnn_tanh", "--bias-scale", "0")
    assert failed.exit_code == 2 and failed.output.startswith(
        "gradlab: error: it agrees at n = 8, m = 4, but at a second size, n = 33, m = 5, "
        "B = 33: ")
    noted = invoke("check", "mine.py:nob", "--cell", "rnn_tanh", "--bias-scale", "0")
    assert noted.exit_code == 0 and noted.output.count("Note: it agrees at the params") == 1


def test_at_a_coarse_rtol_a_nearly_symmetric_weight_is_still_alike():
    """Capping 'alike' at 1e-4 let W symmetric to ~1e-3 pass a W^T derivation at rtol
    1e-2; the cap is max(rtol, 1e-4)."""
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=0)
    A = torch.randn(8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p["W"] = (p["W"] + p["W"].T) / 2 + 2e-4 * A
    exact = rnn.jacobian_fn("state")
    result = gradlab.check_jacobian(lambda q, s, x: exact({**q, "W": q["W"].T}, s, x), rnn, p,
                                    rtol=1e-2)
    assert not result.ok and result.inconclusive and "W = Wᵀ" in str(result)


def test_gradlab_check_looks_past_the_first_size_and_batch(tmp_path, monkeypatch):
    """The second size was always smaller (n = 8, then 5) and the batch the same: a
    Jacobian wrong only on units past 8 (rows built in chunks of 8), or only on sequences
    past 4 (a batch handled 4 at a time), was certified 'agrees'."""
    from conftest import invoke
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "def right(p, state, x):\n"
        "    a = torch.tanh(state[0] @ p['W'].T + x @ p['U'].T + p['b'])\n"
        "    return (1 - a ** 2)[..., :, None] * p['W']\n"
        "def units(p, state, x):\n"
        "    J = right(p, state, x)\n"
        "    return torch.cat([J[..., :8, :], J[..., 8:, :].flip(-1)], -2)\n"
        "def sequences(p, state, x):\n"
        "    J = right(p, state, x)\n"
        "    return torch.cat([J[:4], J[4:].mT])\n")
    monkeypatch.chdir(tmp_path)
    for name in ("units", "sequences"):
        result = invoke("check", f"mine.py:{name}", "--cell", "rnn_tanh")
        assert result.exit_code == 1 and "at n = 33, m = 5, B = 33\nIt agrees at n = 8" in \
            result.output, (name, result.output)
    assert invoke("check", "mine.py:right", "--cell", "rnn_tanh").exit_code == 0


def test_scales_that_overflow_are_named_as_the_scales(tmp_path, monkeypatch):
    """--bias-scale 1e308 said 'b_i, b_f, b_g, b_o hold(s) nan or inf': params the user
    never gave; the options they gave are named."""
    from conftest import assert_one_line_error, invoke
    (tmp_path / "mine.py").write_text(
        "import gradlab\nJ = gradlab.cell('lstm').jacobian_fn('state')\n"
        "def good(p, state, x):\n    return J(p, state, x)\n")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke("check", "mine.py:good", "--cell", "lstm", "--bias-scale",
                                 "1e308"),
                          "b_i overflows float64 (beyond 1.8e+308) at weight_scale=1.5, "
                          "bias_scale=1e+308, input_scale=1, gate_bias=0; use smaller values")


def test_terms_hidden_by_a_zero_state_part_name_that_part():
    """A right LSTM Jacobian checked at c = 0 was 'inconclusive' for 'saturated gates, or
    weights or biases of scale 0': the cause was the c the user gave."""
    lstm = gradlab.cell("lstm")
    p = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    h = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    said = str(gradlab.check_jacobian(lstm.jacobian_fn("state"), lstm, p,
                                      states=(h, torch.zeros(4, 8, dtype=torch.float64))))
    assert said.startswith("inconclusive") and "(c is all zero at the states given" in said
    assert "Check at states where c is not all zero" in said


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


def test_a_check_result_copies_and_pickles():
    """copy.deepcopy and pickle of any result raised TypeError: Error.__new__() missing
    'relative' (a float subclass with two arguments)."""
    import copy
    import pickle
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(4, 3, weight_scale=1.5, bias_scale=0.5)
    result = gradlab.check_jacobian(lambda q, s, x: 2 * rnn.jacobian_fn("state")(q, s, x),
                                    rnn, p)
    for again in (copy.deepcopy(result), pickle.loads(pickle.dumps(result))):
        assert str(again) == str(result)
        assert again.max_error.absolute == result.max_error.absolute


def test_a_result_is_true_only_where_it_agrees():
    """`if check_jacobian(...)` was true for every result, a 'differs' included."""
    rnn = gradlab.cell("rnn_tanh")
    p = rnn.init_params(4, 3, weight_scale=1.5, bias_scale=0.5)
    exact = rnn.jacobian_fn("state")
    assert gradlab.check_jacobian(exact, rnn, p)
    assert not gradlab.check_jacobian(lambda q, s, x: 2 * exact(q, s, x), rnn, p)


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


def test_check_reports_its_stages_as_progress():
    """A check of a slow function (or at n = 1500) was silent for its whole run: it now
    reports its stages through gradlab.progress, which prints a line on long work."""
    from gradlab import progress
    cell = gradlab.cell("rnn_tanh")
    heard = []
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        gradlab.check_jacobian(cell.jacobian_fn("state"), cell, cell.init_params(3, 2))
    assert [w for w, *_ in heard] == ["check: the exact Jacobian", "check: your function",
                                      "check: the comparison and its diagnosis"]


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
