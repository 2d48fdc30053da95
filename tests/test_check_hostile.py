"""`check_jacobian`, `check_lyapunov` and `gradlab check` against a function under test
that misbehaves: nothing it does can read as "agrees" (exiting 0, a tolerance of 1 or
inf, a complex or non-finite result), and anything that is not an answer is one line
naming it, never a traceback. Each case was a false pass or a raw error before."""

import pathlib
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab import check_lyapunov
from gradlab.errors import GradlabError
from gradlab.verification.check import check_jacobian

from conftest import assert_one_line_error, invoke, janet_cell

CELL = gradlab.cell("rnn_tanh")
PARAMS = CELL.init_params(3, 2, seed=0)
EXACT = CELL.jacobian_fn("state")


def zeros(P, s, x):
    return torch.zeros(x.shape[0], 3, 3, dtype=torch.float64)


def only_batches(P, s, x):
    if s[0].ndim == 1:
        raise RuntimeError("I only do batches")
    return EXACT(P, s, x)[0]


@pytest.mark.parametrize("fn, kw, needle", [
    (lambda P, s, x: sys.exit(0), {}, "called sys.exit(0)"),
    (lambda P, s, x: sys.exit(), {}, "called sys.exit(None)"),
    (zeros, {"rtol": 1}, "rtol must be a number in (0, 1), got 1"),
    (zeros, {"rtol": float("inf")}, "rtol must be"),
    (zeros, {"rtol": -1.0}, "rtol must be"),
    (lambda P, s, x: EXACT(P, s, x) + 100j, {}, "complex128"),
    (lambda P, s, x: None, {}, "returned NoneType"),
    (lambda P, s, x: "abc", {}, "returned str"),
    (lambda P, s, x: [[1.0, 2.0], [3.0]], {}, "ragged list"),
    (only_batches, {}, f"test_check_hostile.py:{only_batches.__code__.co_firstlineno + 2} "
                       "in only_batches: I only do batches"),
    (EXACT, {"seed": 1.5}, "seed must be an integer"),
    (EXACT, {"states": ([0.1, 0.2, 0.3],)}, "states: h must be a (B, size) tensor"),
    (EXACT, {"states": (torch.zeros(2, 3), torch.zeros(2, 3))}, "2 state part(s) given"),
])
def test_check_jacobian_refuses_what_is_not_an_answer(fn, kw, needle):
    with pytest.raises(GradlabError) as err:
        check_jacobian(fn, CELL, PARAMS, **kw)
    assert needle in str(err.value)


@pytest.mark.parametrize("answer", [lambda J: J + 100j, lambda J: None, lambda J: "abc"])
def test_an_answer_that_is_not_real_numbers_is_named_alone(answer):
    """A batched answer of complex numbers (or None) is wrong as it stands: it is not a
    function written for one sample, so it is not called again per sample, and the message
    ends at what was wrong (it went on: 'called one sample at a time, ... IndexError')."""
    with pytest.raises(GradlabError) as err:
        check_jacobian(lambda P, s, x: answer(EXACT(P, s, x)), CELL, PARAMS)
    assert "one sample" not in str(err.value) and "expected" in str(err.value)


def test_non_finite_params_or_results_never_agree():
    bad = {k: v * float("nan") for k, v in PARAMS.items()}
    with pytest.raises(GradlabError, match="hold.*nan or inf"):
        check_jacobian(EXACT, CELL, bad)
    result = check_jacobian(lambda P, s, x: EXACT(P, s, x) * float("nan"), CELL, PARAMS)
    assert not result.ok and "nan or inf" in result.diagnosis[0]
    lstm = gradlab.cell("lstm").init_params(3, 2, seed=0)
    with pytest.raises(GradlabError, match=r"params hold none of the parameters of cell "
                       r"'rnn_tanh' \(W, U, b\); got W_i"):
        check_jacobian(EXACT, CELL, lstm)


def test_a_function_that_mutates_params_does_not_change_the_diagnosis():
    def mutates(P, s, x):
        J = EXACT(P, s, x)
        P["W"].mul_(-1e4)
        return 2 * J
    before = {k: v.clone() for k, v in PARAMS.items()}
    result = check_jacobian(mutates, CELL, PARAMS)
    assert all(torch.equal(PARAMS[k], before[k]) for k in PARAMS)
    assert not result.ok and "appears twice" in " ".join(result.diagnosis)
    assert check_jacobian(EXACT, CELL, PARAMS, states=(np.full((2, 3), 0.1),)).ok


def test_check_lyapunov_tolerance_and_answers():
    gru = gradlab.cell("gru")
    p = gru.init_params(3, 2, seed=0)
    xs = torch.randn(1200, 2, 2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    mine = lambda P, xs, k: gradlab.lyapunov(gru, P, xs, k).exponents        # noqa: E731
    for atol in (float("inf"), -1, 0, float("nan"), "a"):
        with pytest.raises(GradlabError, match="atol must be a positive finite number"):
            check_lyapunov(lambda P, xs, k: np.zeros(k), gru, p, xs, 2, atol=atol)
    with pytest.raises(GradlabError, match="called sys.exit"):
        check_lyapunov(lambda P, xs, k: sys.exit(0), gru, p, xs, 2)
    with pytest.raises(GradlabError, match="returned str"):
        check_lyapunov(lambda P, xs, k: "ab", gru, p, xs, 2)
    assert not check_lyapunov(lambda P, xs, k: np.full(k, np.nan), gru, p, xs, 2).ok
    assert check_lyapunov(mine, gru, p, xs, 5).ok                # k capped at S = 3, as ours
    rnn = gradlab.cell("rnn_tanh")
    zero = {k: torch.zeros_like(v) for k, v in rnn.init_params(3, 2, seed=0).items()}
    exact = lambda P, xs, k: gradlab.lyapunov(rnn, P, xs, k).exponents       # noqa: E731
    result = check_lyapunov(exact, rnn, zero, xs, 2)             # every exponent -inf
    assert result.ok and np.all(result.exact == -np.inf)
    assert not check_lyapunov(lambda P, xs, k: np.zeros(k), rnn, zero, xs, 2).ok


def test_cli_check_exit_and_tolerance(tmp_path):
    src = tmp_path / "mine.py"
    src.write_text(textwrap.dedent("""
        import sys, torch
        def exits(params, state, x):
            sys.exit(0)
        def zeros(params, state, x):
            return torch.zeros(x.shape[0], 3, 3, dtype=torch.float64)
        def nan(params, state, x):
            return torch.full((x.shape[0], 3, 3), float("nan"), dtype=torch.float64)
    """))
    common = ("--cell", "rnn_tanh", "--hidden", "3", "--inputs", "2", "--batch", "2")
    assert_one_line_error(invoke("check", f"{src}:exits", *common), "called sys.exit(0)")
    assert_one_line_error(invoke("check", f"{src}:zeros", *common, "--rtol", "1"),
                          "Invalid value for '--rtol': '1' is not below 1")
    assert_one_line_error(invoke("check", f"{src}:zeros", *common, "--rtol", "0"),
                          "Invalid value for '--rtol': '0' is not above 0")
    result = invoke("check", f"{src}:nan", *common)
    assert result.exit_code == 1 and "nan or inf" in result.stdout
    assert "MKL" not in result.output and "Traceback" not in result.output


def test_numpy_numbers_and_other_base_exceptions():
    assert check_jacobian(EXACT, CELL, PARAMS, rtol=np.float32(1e-6), batch=np.int64(2),
                          seed=np.int64(3)).ok

    def generator_exit(P, s, x):
        raise GeneratorExit("stop")
    with pytest.raises(GradlabError, match="raised GeneratorExit at .* in generator_exit: stop"):
        check_jacobian(generator_exit, CELL, PARAMS)


def test_check_lyapunov_refuses_runs_too_short_to_judge_and_checks_each_row():
    """At T = 20 gradlab's own estimate moves by 0.09 with the start vector: zeros, or
    the exact exponents times 1.1, passed as 'agrees'. Per-sequence rows off by +-1 with
    the right mean passed too, and a function writing into params was judged on its
    own edit."""
    gru = gradlab.cell("gru_torch")
    p = gru.init_params(4, 3, weight_scale=1.5, seed=2)
    mine = lambda P, xs, k: gradlab.lyapunov(gru, P, xs, k).exponents        # noqa: E731
    gen = torch.Generator().manual_seed(5)
    short = torch.randn(20, 2, 3, dtype=torch.float64, generator=gen)
    for wrong in (lambda P, xs, k: np.zeros(k), lambda P, xs, k: 1.1 * mine(P, xs, k)):
        with pytest.raises(GradlabError, match="too short to check"):
            check_lyapunov(wrong, gru, p, short, 2)
    assert not check_lyapunov(lambda P, xs, k: np.zeros(k), gru, p, short, 2, atol=0.01).ok
    xs = torch.randn(1200, 2, 3, dtype=torch.float64, generator=gen)
    assert check_lyapunov(mine, gru, p, xs, 2).ok
    shifted = lambda P, xs, k: mine(P, xs, k) + np.array([[1.0], [-1.0]])   # noqa: E731
    result = check_lyapunov(shifted, gru, p, xs, 2)
    # both rows are off by 1: which one is named first depends on rounding (torch 2.4
    # named sequence 1, 2.13 sequence 0)
    assert not result.ok and re.search(r"sequence [01] is 1 from", result.diagnosis[0])

    def writes(P, xs, k):
        P["W_hh"].mul_(0.0) if "W_hh" in P else next(iter(P.values())).mul_(0.0)
        xs.mul_(0.0)
        return mine(P, xs, k)
    before = {k: v.clone() for k, v in p.items()}
    assert not check_lyapunov(writes, gru, p, xs, 2).ok
    assert all(torch.equal(p[k], before[k]) for k in p)


@pytest.mark.parametrize("block", [3, "hh", ("h",), ("h", "h", "h")])
def test_a_block_that_is_not_a_pair_is_refused_in_one_line(block):
    """block=3 raised a bare TypeError ('int' object is not iterable)."""
    with pytest.raises(GradlabError, match="block") as err:
        check_jacobian(EXACT, CELL, PARAMS, block=block)
    assert "\n" not in str(err.value) and repr(block) in str(err.value)


def test_a_batch_too_large_for_memory_is_refused_before_allocating():
    """batch=10**9 went to torch's allocator (64 GB) and came back as its RuntimeError;
    the CLI checked memory first, the API did not."""
    with pytest.raises(GradlabError, match="memory"):
        check_jacobian(EXACT, CELL, PARAMS, batch=10**12)


def test_a_sparse_answer_is_judged_and_a_meta_one_named():
    """A sparse tensor (the right numbers) and a meta tensor (no numbers) both ended in
    "internal error ... please report it"."""
    assert check_jacobian(lambda P, s, x: EXACT(P, s, x).to_sparse(), CELL, PARAMS).ok
    meta = lambda P, s, x: torch.empty(x.shape[0], 3, 3, device="meta")  # noqa: E731
    with pytest.raises(GradlabError, match="meta device"):
        check_jacobian(meta, CELL, PARAMS)


def per_sample_only(P, s, x):
    """A Jacobian written for one sample: W @ h fails on a (B, n) batch."""
    W, U, b = P["W"], P["U"], P["b"]
    h = torch.tanh(W @ s[0] + U @ x + b)
    return torch.diag(1 - h ** 2) @ W


def scales_columns_on_a_batch(P, s, x):
    """Right for one sample, but (1 - h'^2)[:, None] broadcasts along the wrong axis of a
    (B, n) batch: the rows of W scaled for one sample, its columns for a batch."""
    W, U, b = P["W"], P["U"], P["b"]
    h = torch.tanh(s[0] @ W.T + x @ U.T + b)
    return (1 - h ** 2)[..., None] * W if h.ndim == 1 else (1 - h ** 2)[:, None, :] * W


@pytest.mark.parametrize("batch", [4, 1])
def test_a_function_written_for_one_sample_is_called_one_sample_at_a_time(batch):
    result = check_jacobian(per_sample_only, CELL, PARAMS, batch=batch)
    assert result.ok and result.checked == batch and result.max_error < 1e-14


def test_a_function_right_per_sample_but_wrong_on_a_batch_is_told_so():
    result = check_jacobian(scales_columns_on_a_batch, CELL, PARAMS, batch=4)
    assert not result.ok
    assert result.diagnosis[0].startswith("Your Jacobian is right one sample at a time")
    assert "B = 4" in result.diagnosis[0] and "broadcast" in result.diagnosis[0]


def test_a_batch_error_and_a_per_sample_error_are_both_named():
    def fails(P, s, x):
        raise ValueError(f"no, ndim {s[0].ndim}")
    with pytest.raises(GradlabError) as err:
        check_jacobian(fails, CELL, PARAMS, batch=3)
    message = str(err.value)
    at = rf"at \S*{pathlib.Path(__file__).name}:{fails.__code__.co_firstlineno + 1} in fails"
    assert re.search(rf"ValueError {at}: no, ndim 2 \(on a batch of 3\)", message), message
    assert re.search(rf"one sample at a time, the function under test raised ValueError {at}: "
                     "no, ndim 1", message), message


def test_one_matrix_for_a_batch_says_so_when_one_sample_at_a_time_fails():
    """A batch answered with one (n, n) matrix was told only as the per-sample call's
    error (diag(): Got 0D), never that the batched call returned (n, n)."""
    def first_only(P, s, x):
        h = torch.tanh(s[0] @ P["W"].T + x @ P["U"].T + P["b"])
        return torch.diag(1 - h[0] ** 2) @ P["W"]
    with pytest.raises(GradlabError, match=r"^the function under test returned shape \(3, 3\) "
                       r"for a batch of 4 \(expected \(4, 3, 3\)\); called one sample at a "
                       r"time, the function under test raised RuntimeError"):
        check_jacobian(first_only, CELL, PARAMS, batch=4)


def test_an_error_raised_with_the_working_folder_gone_is_still_one_line(tmp_path,
                                                                         monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(GradlabError, match="raised LinAlgError at .* in <lambda>: Singular"):
        check_jacobian(lambda P, s, x: np.linalg.inv(np.zeros((3, 3))), CELL, PARAMS)


def test_an_error_in_the_users_code_says_which_line_of_it_raised(tmp_path, monkeypatch):
    """Where the function's own line raised, not torch's or gradlab's: the line that
    called torch.matmul, with the shapes torch names."""
    (tmp_path / "mine_lines.py").write_text(
        "import torch\n\n\ndef wrong(params, state, x):\n"
        "    return torch.zeros(3, 4) @ torch.zeros(5, 6)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from mine_lines import wrong
    with pytest.raises(GradlabError, match=r"^the function under test raised RuntimeError at "
                       r"mine_lines\.py:5 in wrong: mat1 and mat2 shapes cannot be multiplied"):
        check_jacobian(wrong, CELL, PARAMS, batch=2)


def run_cli(*args, cwd):
    """`gradlab ...` in a child process: an os._exit that got through would end pytest."""
    import subprocess
    return subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_os_exit_in_code_under_test_is_an_error_not_a_pass(tmp_path):
    (tmp_path / "fn_exits.py").write_text(textwrap.dedent("""
        import os
        def jac(params, state, x):
            print("agrees: max relative error 0 (absolute 0) over 4 samples")
            os._exit(0)
    """))
    (tmp_path / "module_exits.py").write_text("import posix\nposix._exit(0)\n")
    common = ("--cell", "rnn_tanh", "--hidden", "3", "--inputs", "2")
    done = run_cli("check", "fn_exits.py:jac", *common, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""                  # what the function prints goes to stderr
    assert done.stderr.strip().splitlines() == [
        "agrees: max relative error 0 (absolute 0) over 4 samples",
        "gradlab: error: the function under test called os._exit(0)"]
    done = run_cli("check", "module_exits.py:jac", *common, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "it called os._exit(0) at " in done.stderr and "module_exits.py:2" in done.stderr
    import os
    import posix
    assert os._exit is posix._exit and type(os._exit).__name__ == "builtin_function_or_method"
    with pytest.raises(GradlabError, match=r"called os._exit\(3\)"):
        check_jacobian(lambda P, s, x: os._exit(3), CELL, PARAMS)
    assert os._exit is posix._exit and type(os._exit).__name__ == "builtin_function_or_method"


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


def test_check_lyapunov_refuses_more_exponents_than_the_state_has():
    """Asked for 7 of a 6-dimensional state's exponents, an answer of 7 had its seventh
    (here 123) cut off unchecked, and passed."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=2.0, bias_scale=0.5)
    xs = torch.randn(200, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def seven(P, x, k):
        right = torch.as_tensor(gradlab.lyapunov(lstm, P, x, 6).mean, dtype=torch.float64)
        return torch.cat([right, torch.tensor([123.0], dtype=torch.float64)])
    with pytest.raises(GradlabError, match=r"returned 7 exponents, but a state of size 6 "
                                           r"has only 6; expected \(6,\) or \(B, 6\)"):
        check_lyapunov(seven, lstm, params, xs, 7)


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


def test_a_block_named_with_its_prime_is_read():
    """--block "h',h" was refused although J["h'", "h"] reads that block."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0)
    J = lstm.jacobian_fn("state")
    assert check_jacobian(lambda P, s, x: J(P, s, x)[:, :3, :3], lstm, params,
                          block=("h'", "h")).ok


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


def test_answers_torch_or_numpy_cannot_hold_plainly_are_read_or_refused():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")
    longdouble = lambda P, s, x: exact(P, s, x).numpy().astype(np.longdouble)  # noqa: E731
    assert check_jacobian(longdouble, lstm, params).ok
    nested = lambda P, s, x: torch.nested.as_nested_tensor(list(exact(P, s, x)))  # noqa
    with pytest.raises(GradlabError, match="returned a nested tensor; expected one array"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # torch: nested tensors are a prototype
        check_jacobian(nested, lstm, params)
    grads = {k: v.clone().requires_grad_() for k, v in params.items()}
    assert check_jacobian(lambda P, s, x: exact(P, s, x).detach(), lstm, grads).ok
    h, c = (torch.randn(2, 3, dtype=torch.float64) for _ in range(2))
    listed = check_jacobian(exact, lstm, params, states=[h.tolist(), c.tolist()])
    assert listed.ok and listed.checked == 2


def test_an_all_zero_answer_is_said_to_be_zero():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=1.5, bias_scale=0.5)
    exact = lstm.jacobian_fn("state")
    result = check_jacobian(lambda P, s, x: 0 * exact(P, s, x), lstm, params)
    assert result.diagnosis == ["Your Jacobian is zero throughout: every term is missing."]


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


def test_a_cell_undefined_at_the_drawn_states_is_refused_not_blamed_on_fn():
    @gradlab.declare(state="h", params="W U", source="test")
    def rooted(s):
        return gradlab.sqrt(s.h) + s.W @ s.h + s.U @ s.x
    params = rooted.init_params(5, 3, weight_scale=1.5)
    exact = rooted.jacobian_fn("state")
    with pytest.raises(GradlabError, match="holds 55 entries that are nan or inf at the drawn "
                                           "states.*pass states= where the cell is defined"):
        gradlab.check_jacobian(exact, rooted, params)
    h = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    assert gradlab.check_jacobian(exact, rooted, params, states=(h,)).ok


def test_an_answer_whose_conversion_raises_anything_is_one_line():
    class Lazy:
        def __array__(self, dtype=None, copy=None):
            raise ZeroDivisionError("materialising")
    rnn = gradlab.cell("rnn_tanh")
    with pytest.raises(GradlabError, match="cannot be read as an array of real numbers: "
                                           "ZeroDivisionError: materialising"):
        gradlab.check_jacobian(lambda p, s, x: Lazy(), rnn, rnn.init_params(4, 2))


def test_assert_jacobian_warns_when_zero_biases_hide_a_wrong_term():
    gru = gradlab.cell("gru_torch")
    exact = gru.jacobian_fn("state")
    without = lambda p, s, x: exact({**p, "b_hn": torch.zeros_like(p["b_hn"])}, s, x)  # noqa
    with pytest.warns(UserWarning, match="not with them drawn nonzero"):
        gradlab.testing.assert_jacobian(without, gru, gru.init_params(8, 4, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradlab.testing.assert_jacobian(exact, gru, gru.init_params(8, 4, seed=0))


def test_a_deep_stack_is_checked_without_multiplying_out_its_cross_layer_blocks():
    """check_jacobian multiplied out every block of a stack (~4^L terms: 362 s at five
    LSTM layers) and tried all 10! orders of its state parts when fn was wrong."""
    from gradlab.lowering.lower import MAX_TERMS, block_terms, term_count
    cell, params = gradlab.from_torch(torch.nn.LSTM(4, 3, num_layers=4).double())
    blocks = [b for row in cell.jacobian_blocks("state") for b in row]
    counts = [term_count(b) for b in blocks]
    assert max(counts) == 256 > MAX_TERMS and min(c for c in counts if c) <= 4
    deep = blocks[counts.index(256)]
    assert block_terms(deep) == (deep,)                     # kept whole
    one = gradlab.cell("lstm").jacobian_blocks("state")[0][0]
    assert len(block_terms(one)) == term_count(one) == 4
    cell, params = gradlab.from_torch(torch.nn.LSTM(4, 3, num_layers=3).double())
    exact = cell.jacobian_fn("state")
    order = list(reversed(range(6)))                        # c3, h3, ..., h1: read backwards
    idx = torch.cat([torch.arange(k * 3, (k + 1) * 3) for k in order])

    def reordered(p, s, x):
        return exact(p, tuple(s), x)[:, idx][:, :, idx]
    result = gradlab.check_jacobian(reordered, cell, params, batch=2)
    assert not result.ok and "Your state parts are in the order (c3, h3, c2" in str(result)


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


def test_check_lyapunov_refuses_exponents_smaller_than_it_resolves():
    """Near the edge (exponents ~ -1e-3) a 0.1 floor on their size let zeros and a log10
    answer 'agree' at T = 3000."""
    torch.manual_seed(1)
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(8, 4, seed=0, gate_bias=8, weight_scale=0.3)
    xs = torch.randn(3000, 2, 4, dtype=torch.float64)
    zeros = lambda p, x, k: torch.zeros(x.shape[1], k, dtype=torch.float64)  # noqa: E731
    with pytest.raises(gradlab.GradlabError, match="xs is too short to check exponents"):
        check_lyapunov(zeros, lstm, params, xs, 4)


def test_check_lyapunov_passes_gradlab_where_a_relu_unit_dies_at_some_steps():
    """Whether an exponent comes out -inf or -8.39 depends on the start vector where ReLU
    units die at some steps: gradlab's own seed 2 failed its check, with the headline
    'max |difference| 0'."""
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=2.0)
    xs = torch.randn(600, 2, 4, dtype=torch.float64)
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k, seed=2).exponents  # noqa: E731
    assert check_lyapunov(own, relu, params, xs, 8).ok
    shift = np.array([[0.5] + [0.0] * 7, [0.0] * 8])         # sequence 0 is finite
    result = check_lyapunov(lambda p, x, k: own(p, x, k) + shift, relu, params, xs, 8)
    assert not result.ok and 0.49 < float(result.max_error) < 0.51     # not "0"


def test_check_lyapunov_refuses_a_trajectory_that_overflows():
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=4.0)
    xs = torch.randn(1000, 1, 4, dtype=torch.float64)
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k).exponents         # noqa: E731
    with pytest.raises(GradlabError, match="the state overflows"):
        check_lyapunov(own, relu, params, xs, 3)


def test_assert_lyapunov_warns_when_a_mistake_would_agree_too():
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=2.0)
    xs = torch.randn(600, 2, 4, dtype=torch.float64)[:, :1]
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k, seed=2).exponents  # noqa: E731
    # an atol that the reverse-time variant meets too (its distance here is 0.33, yours
    # 0.026): with the measured default the margin depends on the machine's rounding
    with pytest.warns(UserWarning) as caught:     # (an atol that wide hides more: said too)
        gradlab.testing.assert_lyapunov(own, relu, params, xs, 8, atol=1.0)
    assert any("cannot tell the exact exponents from" in str(w.message) for w in caught)


def test_check_lyapunov_names_a_wrong_row_count_whatever_the_values():
    """(B', k) with B' != B was named only when the mean happened to agree."""
    gru = gradlab.cell("gru")
    params = gru.init_params(4, 2, seed=0, weight_scale=1.5)
    xs = torch.randn(500, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    two = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).exponents[:2] + 5    # noqa: E731
    with pytest.raises(GradlabError, match=re.escape("returned 2 rows; xs holds 3 sequences "
                                                     "(expected (2,) or (3, 2))")):
        check_lyapunov(two, gru, params, xs, 2)
    flipped = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).exponents.T     # noqa: E731
    with pytest.raises(GradlabError, match=re.escape("(expected (2,) or (3, 2); yours is "
                                                     "its transpose)")):
        check_lyapunov(flipped, gru, params, xs, 2)


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


def test_review_orders_of_a_deep_stack_include_torchs_grouping():
    from gradlab.verification.diagnosis import _orders
    parts = ["h1", "c1", "h2", "c2", "h3", "c3", "h4", "c4"]
    orders = list(_orders(parts))
    assert (0, 2, 4, 6, 1, 3, 5, 7) in orders and len(orders) < 40


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


def test_check_lyapunov_does_not_name_a_mistake_it_cannot_tell_from_none():
    """A correct Benettin loop shifted by 0.01 was told 'Your exponents match the
    transposed Jacobian (reverse time)', on inputs where the exact exponents and the
    reverse-time ones are themselves within the tolerance of each other."""
    torch.manual_seed(0)
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(300, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    own = lambda P, x, k: gradlab.lyapunov(lstm, P, x, k).mean   # noqa: E731
    result = check_lyapunov(lambda P, x, k: own(P, x, k) - 0.017, lstm, params, xs, 4)
    assert not result.ok and "reverse" not in str(result).split("lie near")[0]
    assert "cannot be told" in str(result)


def test_check_lyapunov_refuses_a_mean_that_a_zero_product_hides():
    """Two of four sequences hit a step with every ReLU unit dead: the mean exact exponents
    were -inf, and a function returning -inf (or anything log2 / summed of a mean) 'agreed'
    with max |difference| 0."""
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(500, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"a mean hides what is to check.*\(4, 2\)"):
        check_lyapunov(lambda P, x, k: np.full(k, -np.inf), relu, params, xs, 2)
    rows = lambda P, x, k: gradlab.lyapunov(relu, P, x, k).exponents   # noqa: E731
    assert check_lyapunov(rows, relu, params, xs, 2).ok


def test_check_lyapunov_refuses_per_sequence_rows_too_short_to_judge():
    """Rows per sequence at T = 100 were checked with a tolerance (0.19) larger than the
    exponents themselves (-0.15): a log2 mistake passed."""
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(100, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    log2 = lambda P, x, k: gradlab.lyapunov(relu, P, x, k).exponents / np.log(2)  # noqa: E731
    try:
        result = check_lyapunov(log2, relu, params, xs, 2)
    except GradlabError as err:
        assert "too short" in str(err)
    else:
        assert not result.ok


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


def test_check_lyapunov_says_when_sequences_or_exponents_cannot_be_told_apart():
    """Rows rolled between sequences, one sequence's row for all, and one sequence's
    exponents given as the mean printed a bare "agrees" (3 and 4 of 9 runs at B = 4,
    T = 300): the sequences' exponents lay within the tolerance of each other. And at
    B = k a mean over the wrong axis passed where two exponents lay within it."""
    gru = gradlab.cell("gru")
    params = gru.init_params(5, 3, weight_scale=2.0, bias_scale=0.3, seed=2)
    xs = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(12),
                     dtype=torch.float64)
    rows = torch.as_tensor(gradlab.lyapunov(gru, params, xs, 3).exponents)
    # (T = 300 is too short for the default tolerance to judge the top exponent, 0.17, to
    # 5 %: given as wide as it once was, rows rolled or one row for all fail row by row,
    # and one sequence's row given as the mean agrees only with the blind spot said)
    for wrong, fails in ((rows.roll(1, 0), True), (rows[:1].expand(4, 3).clone(), True),
                         (rows[0], False)):
        result = check_lyapunov(lambda p, x, k, w=wrong: w, gru, params, xs, 3, atol=0.02)
        said = " ".join(result.diagnosis)
        if fails:
            assert not result.ok and "The mean over sequences agrees, but sequence" in said
        else:
            assert result.ok and "one sequence's own exponents lie within" in said, said
    with pytest.raises(gradlab.GradlabError, match="xs is too short to check exponents"):
        check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3)
    right = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=0.02)
    assert right.ok and "rows given for the wrong sequence, or one row for all" in \
        " ".join(right.diagnosis)
    wide = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=5.0)
    assert "two of the exact exponents are only" in " ".join(wide.diagnosis)
    distinct = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=1e-9)
    assert not any("lie within" in d or "only" in d for d in distinct.diagnosis)
    # a row is held to its own tolerance, wider than the mean's: rows rolled passed
    # silently where the closest sequences were 0.030 apart, the mean's tolerance 0.0247
    params = gru.init_params(5, 3, weight_scale=2.0, bias_scale=0.3, seed=8)
    xs = torch.randn(800, 4, 3, generator=torch.Generator().manual_seed(108),
                     dtype=torch.float64)
    rows = torch.as_tensor(gradlab.lyapunov(gru, params, xs, 3).exponents)
    rolled = check_lyapunov(lambda p, x, k: rows.roll(1, 0), gru, params, xs, 3)
    assert not rolled.ok or "one sequence's own exponents lie within" in " ".join(
        rolled.diagnosis), rolled.diagnosis


def test_check_lyapunov_names_exponents_out_of_order():
    """An exact permutation of the right exponents was "match no combination of ..."."""
    gru = gradlab.cell("gru")
    params = gru.init_params(4, 2, seed=0, weight_scale=1.5)
    xs = torch.randn(800, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixed = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).mean[::-1].copy()   # noqa: E731
    result = check_lyapunov(mixed, gru, params, xs, 3)
    assert not result.ok and len(result.diagnosis) == 1, result.diagnosis
    assert result.diagnosis[0].startswith("Your exponents are the exact ones out of order")


def test_check_lyapunov_names_the_cell_part_alone():
    """Only the first state part (h) was tried alone: a QR loop over the LSTM's c block,
    diag(f), matched "no combination"."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(5, 3, seed=0, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(600, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jacobian = lstm.jacobian_fn("state")

    def c_alone(p, x, k):
        h, c = gradlab.flow.run_states(lstm, p, x)
        Q = torch.linalg.qr(torch.randn(x.shape[1], 5, k, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(1)))[0]
        total = 0
        for t in range(x.shape[0]):
            Q, R = torch.linalg.qr(jacobian(p, (h[t], c[t]), x[t])[:, 5:, 5:] @ Q)
            total = total + R.diagonal(dim1=-2, dim2=-1).abs().log()
        return (total / x.shape[0]).mean(0)

    result = check_lyapunov(c_alone, lstm, params, xs, 3)
    assert not result.ok and result.diagnosis[0].startswith(
        "Your exponents match the state part c alone"), result.diagnosis
