"""`check_jacobian` and `gradlab check` against a function under test that misbehaves:
nothing it does can read as "agrees" (exiting 0, a tolerance of 1 or inf, a complex or
non-finite result), and anything that is not an answer (of the wrong kind, for one sample
only, raising or exiting in the user's code) is one line naming it, never a traceback.
How a wrong answer is told, rounding, check_lyapunov: test_check_hostile_*.py."""

import pathlib
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab.errors import GradlabError
from gradlab.verification.check import check_jacobian

from conftest import assert_one_line_error, invoke

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


def test_a_block_named_with_its_prime_is_read():
    """--block "h',h" was refused although J["h'", "h"] reads that block."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0)
    J = lstm.jacobian_fn("state")
    assert check_jacobian(lambda P, s, x: J(P, s, x)[:, :3, :3], lstm, params,
                          block=("h'", "h")).ok


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


def test_a_pair_of_one_dimensional_states_is_named_as_such():
    """states=((h[0],), x[0]) said "2 state part(s) given; cell 'rnn_tanh' has h": the pair
    was read as two state parts, where its arrays lack the batch dimension."""
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(3, 2)
    h, x = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    fn = lambda p, s, x: torch.zeros(x.shape[0], 3, 3, dtype=torch.float64)     # noqa: E731
    with pytest.raises(GradlabError, match=r"states: a pair \(state parts, x\) of 1-D arrays; "
                                           r"each must be \(B, size\)"):
        gradlab.check_jacobian(fn, rnn, params, states=((h[0],), x[0]))
    assert not gradlab.check_jacobian(fn, rnn, params, states=((h,), x)).ok
