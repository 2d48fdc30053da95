"""Trust at the edges: cell files given to `gradlab verify` that exit, crash, are
interrupted or are misnamed (each one line, exit 2, a Ctrl-C not swallowed), and a verify
that says what it proved: nan counted as a failure and the worst error, a user cell told
its checks are not independent, and the lowered functions gradient_flow runs checked too.
Each test here failed before the fix it names."""

import math
import sys
import textwrap
import uuid

import pytest

import gradlab
from gradlab import declare, tanh
from gradlab.verification import verify
from conftest import assert_one_line_error, invoke


@pytest.fixture
def forget_new_modules():
    """Drop modules a test imported (user cell files) so tests stay independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("gradlab_user_", "trustcells_")):
            del sys.modules[name]


def param_m(s):
    """A parameter named m (it used to be refused as 'declared but used by no equation')
    and a let named n."""
    a = s.let("n", tanh(s.m @ s.h + s.U @ s.x + s.b))
    return a * s.h + a


DECLARED = {  # declared in the tests, so that a refusal fails a test, not the collection
    "xlstm_names": dict(state="h n m", params="W_h W_n W_m U U_n U_m b b_n b_m"),
    "param_m": dict(state="h", params={"m": "n n", "U": "n m", "b": "n"}),
}


def declared(fn):
    return declare(source="a test cell", **DECLARED[fn.__name__])(fn)


# -- 2. cell files that exit, crash or are misnamed -------------------------------------------

GOOD = textwrap.dedent('''
    from gradlab import declare, tanh

    @declare(state="h", params="W U b", source="a test cell")
    def good(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)
''')

BAD_FILES = {   # code, what the error names ({file}: the cell file's name)
    "sys.exit(0)": ("import sys\nsys.exit(0)\n", "called sys.exit(0) at {file}:2"),
    "sys.exit(message)": ("import sys\nsys.exit('bye\\nnow')\n", "called sys.exit("),
    "ZeroDivisionError": ("x = 1 / 0\n", "ZeroDivisionError at {file}:1"),
    "SyntaxError": ("def f(:\n", "SyntaxError at {file}:1"),
    "ImportError inside": ("import trustcells_not_a_module\n", "ModuleNotFoundError at {file}:1"),
    "escaping cell name": (GOOD.replace('source="a test cell")',
                                        'source="t", name="../../ESCAPED")'),
                           "'../../ESCAPED'"),
}


@pytest.mark.usefixtures("forget_new_modules")
@pytest.mark.parametrize("code, needle", BAD_FILES.values(), ids=BAD_FILES)
def test_a_bad_cell_file_is_one_line_exit_2(tmp_path, monkeypatch, code, needle):
    path = tmp_path / "cells" / "bad_cell.py"
    path.parent.mkdir()
    path.write_text(code)
    monkeypatch.chdir(tmp_path / "cells")
    for args in (["verify", "--cells", f"{path}:good"],
                 ["derive", f"{path}:good", "--out", str(tmp_path / "out")]):
        result = invoke(*args)
        assert_one_line_error(result, needle.format(file=path))
        if "ESCAPED" not in needle:   # a refused declaration is its own message
            assert result.stderr.startswith(f"gradlab: error: cannot load {path} ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]   # nothing written


@pytest.mark.usefixtures("forget_new_modules")
@pytest.mark.parametrize("code, needle", [v for k, v in BAD_FILES.items() if "name" not in k],
                         ids=[k for k in BAD_FILES if "name" not in k])
def test_a_bad_cell_module_is_one_line_exit_2(tmp_path, monkeypatch, code, needle):
    module = f"trustcells_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{module}.py"
    path.write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("verify", "--cells", f"{module}:good")
    assert_one_line_error(result, needle.format(file=path))
    assert result.stderr.startswith(f"gradlab: error: cannot import '{module}' ")


@pytest.mark.usefixtures("forget_new_modules")
def test_keyboard_interrupt_in_a_cell_file_is_not_swallowed(tmp_path):
    """A Ctrl-C while a cell file loads is the user's (a `raise KeyboardInterrupt` of the
    file's own, with none pressed, is its failure: tests/test_probe_cell_files.py)."""
    path = tmp_path / "interrupted.py"
    path.write_text("import signal\nsignal.raise_signal(signal.SIGINT)\n")
    with pytest.raises(KeyboardInterrupt):
        gradlab.cell(f"{path}:good")


@pytest.mark.usefixtures("forget_new_modules")
@pytest.mark.parametrize("spec", [":good", "good.py:", "good.py:good:x", "a.py:b:c",
                                  "good.py:not a name", "not a module:good", "pkg.:good"])
def test_malformed_cell_specs_are_one_line_exit_2(tmp_path, monkeypatch, spec):
    (tmp_path / "good.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    assert gradlab.cell("good.py:good").name == "good"
    where = spec.rpartition(":")[0]
    assert_one_line_error(invoke("verify", "--cells", spec),
                          f"{where!r} is neither a .py file nor a module name"
                          if where in ("not a module", "pkg.") else
                          "is not path/to/file.py:NAME or package.module:NAME")


def test_verify_with_an_empty_cells_option_checks_nothing_and_says_so():
    assert_one_line_error(invoke("verify", "--cells", ""), "names no cell")


# -- 3. an honest verify -----------------------------------------------------------------------

NAN_CELL = textwrap.dedent('''
    from gradlab import declare, sqrt

    @declare(state="h", params="W U b", source="a test cell")
    def rooty(s):
        """sqrt of a pre-activation: nan wherever it is negative."""
        return sqrt(s.W @ s.h + s.U @ s.x + s.b)
''')


def test_nan_counts_as_a_failure_and_as_the_worst_error():
    Check, summarize, worst_error = verify.Check, verify.summarize, verify.worst_error
    ok = Check("c", "J state", "oracle", 3.34e-16, 1e-10, True)
    bad = Check("c", "J state", "jacrev(lowered step)", math.nan, 1e-10)
    inf = Check("c", "J state", "numpy backend", math.inf, 1e-10)
    assert ok.passed and not bad.passed and not inf.passed and not bad.finite
    assert math.isnan(worst_error([ok, bad])) and math.isnan(worst_error([bad, ok]))
    summary = summarize([ok, bad, ok, inf])
    assert (summary.passed, summary.failed, summary.nonfinite) == (2, 2, 2)
    assert str(summary) == ("2 passed, 2 failed (c); worst relative error nan "
                            "(2 non-finite results)")
    assert str(summarize([ok])) == "1 passed, 0 failed; worst relative error 3.34e-16"


@pytest.mark.usefixtures("forget_new_modules")
def test_verify_reports_nan_as_a_failure(tmp_path):
    path = tmp_path / "rooty.py"
    path.write_text(NAN_CELL)
    result = invoke("verify", "--cells", f"rnn_tanh,{path}:rooty")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.stdout.strip().splitlines()[-1]
    assert "failed (rooty); worst relative error nan (" in last and "non-finite" in last, last
    assert "FAIL (non-finite)" in result.stdout


def test_a_user_cell_is_told_its_checks_are_not_independent():
    cell = declared(param_m)
    checks = verify.verify_cell(cell)
    assert checks and all(c.passed and not c.independent for c in checks)
    note = verify.independence_note(cell, checks)
    assert "no hand-written oracle" in note and "param_m" in note
    builtin = verify.verify_cell("lstm")
    assert any(c.independent for c in builtin)
    assert {c.reference.split(" (")[0] for c in builtin if c.independent} == {
        "oracle", "torch.nn.LSTMCell"}
    assert verify.independence_note("lstm", builtin) is None


@pytest.mark.usefixtures("forget_new_modules")
def test_verify_prints_the_note_under_the_user_cells_table(tmp_path):
    path = tmp_path / "good.py"
    path.write_text(GOOD)
    result = invoke("verify", "--cells", f"{path}:good,rnn_tanh")
    assert result.exit_code == 0, result.output
    good, rnn = result.stdout.split("\nrnn_tanh  (cpu, float64)")
    assert "note: no hand-written oracle for good" in good
    assert "no hand-written oracle" not in rnn


@pytest.mark.parametrize("what", ["jacobian_state_blocks", "step_hoisted"])
def test_verify_checks_the_lowered_functions_gradient_flow_runs(monkeypatch, what):
    """verify compared jacobian_state and step with their references, but gradient_flow
    (and so bench and report) runs jacobian_state_blocks and step_hoisted, lowered apart:
    either one wrong passed verify ('22 passed, 0 failed')."""
    from gradlab.lowering import lower

    @declare(state="h", params="W U b", source="test", name=f"faulty_{what}")
    def faulty(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)
    bind = lower.bind

    def wrong(cell, name, backend, **kw):
        fn = bind(cell, name, backend, **kw)
        if cell is not faulty or name != what:
            return fn
        return lambda *args: [[None if b is None else 1.5 * b for b in row] for row in fn(*args)]
    monkeypatch.setattr(lower, "bind", wrong)
    summary = verify.summarize(verify.verify_cell(faulty, sizes=[(3, 2)]))
    assert summary.failed == 1 and summary.failing == (f"faulty_{what}",)
    assert str(summary).startswith(f"6 passed, 1 failed (faulty_{what}); worst")
