"""Edges of checking a user's Jacobian found by a hostile probe, in what a check is given
and what its draws can tell: a function that reuses its output buffer (a numpy habit),
params holding a plain number beside the arrays, biases of scale 0 (or states given at 0),
at which a derivation that leaves a term out agrees, states or weights alike to within
rounding, a size written into the function (`gradlab check` looks past the first size and
batch), a result that copies, pickles and is true only where it agrees, and a check's
stages told as progress. How a difference is told: test_check_edges_diagnosis.py."""

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


def test_at_zero_biases_a_derivation_that_leaves_one_out_differs():
    """At the params given (every bias 0, init_params' default) it is right, as for a
    model without biases, but it is wrong once they are not zero: it differs (it was
    certified, with a note, which a test suite's `assert result.ok` never reads), at the
    error found with them drawn, and the note says where it agrees."""
    cell = gradlab.cell("gru_torch")
    result = gradlab.check_jacobian(_without_b_hn, cell, cell.init_params(8, 4, seed=0))
    assert not result.ok and not result.inconclusive and result.max_error > 1e-3
    assert str(result).startswith(f"differs: max relative error {result.max_error:.3g}")
    assert len(result.diagnosis) == 1 and result.diagnosis[0].startswith(
        "It agrees at the params given, where b_ir, b_iz, b_in, b_hr, b_hz, b_hn are "
        "all zero, but not with them drawn nonzero")
    assert result.worst_block == ("h", "h") and result.block_errors[("h", "h")] > 1e-3
    with_bias = cell.init_params(8, 4, seed=0, bias_scale=0.5)
    assert not gradlab.check_jacobian(_without_b_hn, cell, with_bias).ok



def test_a_bias_read_wrongly_is_not_certified_at_zero_biases():
    """2 b + 0.1 b^2 for b is right at b = 0 and for no model with biases: certified, with
    a note a test suite's `assert result.ok` never reads; it differs."""
    lstm = gradlab.cell("lstm")
    exact = lstm.jacobian_fn("state")

    def doubled(p, s, x):
        return exact({k: 2 * v + 0.1 * v ** 2 if k.startswith("b_") else v
                      for k, v in p.items()}, s, x)
    result = gradlab.check_jacobian(doubled, lstm, lstm.init_params(6, 3, weight_scale=1.5))
    assert not result and not result.inconclusive and result.max_error > 1e-2
    assert "nor is it there the exact Jacobian of a model without them" in str(result)

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
    assert_jacobian silently, then with a warning; it differs, with a note saying it
    agrees at the states given, and assert_jacobian fails."""
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
    assert not result.ok and not result.inconclusive and len(result.diagnosis) == 1
    assert result.diagnosis[0].startswith(f"It agrees at the states given, where {zero} "
                                          "is all zero, but not with it drawn nonzero")
    with pytest.raises(AssertionError, match="It agrees at the states given"):
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
        "agrees: max relative error 0 (absolute 0) over 49 samples at n = 8, m = 4, B = 4 "
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
    assert noted.exit_code == 0 and noted.output.count("It agrees at the params given") == 1


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


def test_a_function_that_fails_where_zero_values_are_drawn_nonzero_does_not_agree():
    """Asked again with the zero biases (or a zero state part) drawn nonzero, a function
    that raised there, or answered nan, was left as it agreed: a derivation that holds
    only at zero biases (and says so by refusing others) passed. It is inconclusive, with
    a note, and assert_jacobian fails."""
    cell = gradlab.cell("gru_torch")
    params, exact = cell.init_params(8, 4, seed=0), cell.jacobian_fn("state")

    def only_at_zero_biases(p, s, x):
        if any(bool(v.any()) for v in p.values() if v.ndim == 1):
            raise ValueError("this derivation assumes zero biases")
        return exact(p, s, x)

    rnn = gradlab.cell("rnn_tanh")
    right = rnn.jacobian_fn("state")

    def only_at_zero_h(p, s, x):
        return right(p, s, x) if not bool(s[0].any()) else torch.full((4, 8, 8), np.nan,
                                                                      dtype=torch.float64)

    result = gradlab.check_jacobian(only_at_zero_biases, cell, params)
    assert not result.ok and result.inconclusive, str(result)
    assert "asked again with them drawn nonzero (N(0, 0.25) each entry) it failed" in \
        result.diagnosis[0] and "the terms they carry are unchecked" in result.diagnosis[0]
    with pytest.raises(AssertionError, match="the terms they carry are unchecked"):
        gradlab.testing.assert_jacobian(only_at_zero_biases, cell, params)
    p = rnn.init_params(8, 4, weight_scale=1.5, seed=0, bias_scale=0.5)
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    at_zero_h = ((torch.zeros(4, 8, dtype=torch.float64),), x)
    result = gradlab.check_jacobian(only_at_zero_h, rnn, p, states=at_zero_h)
    assert not result.ok and result.inconclusive, str(result)
    assert result.diagnosis[0].startswith("It agrees at the states given, where h is all "
                                          "zero, but asked again with it drawn nonzero")
    assert gradlab.check_jacobian(right, rnn, p, states=at_zero_h).ok      # a right one
