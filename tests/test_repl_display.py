"""Exploring Jacobians in a REPL (issue 12), as they are shown: readable reprs in a plain
python, SymPy's printers (text, pretty, LaTeX, MathML) writing what `gradlab derive`
writes, rich display through IPython's formatter, the docstrings' examples, and
`gradlab shell`."""

import functools
import math
import subprocess
import sys

import pytest
import sympy as sp
import torch

import gradlab
from gradlab.repl import HOWTO, namespace
from conftest import invoke

INTERNALS = ("Lambda", "_d", "DiagMatrix", "HadamardProduct", "Eq(")


def _plain(code):
    """What a plain `python` prompt prints for the last expression of `code`."""
    done = subprocess.run([sys.executable, "-c", f"import gradlab\nprint(repr({code}))"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_lstm_prints_in_derives_notation_in_a_plain_python():
    jac = _plain('gradlab.cell("lstm").jacobian()')
    eqs = _plain('gradlab.cell("lstm").equations()')
    for shown in (jac, eqs, _plain('gradlab.cell("lstm")')):
        assert not any(bad in shown for bad in INTERNALS), shown
    assert "∂c'/∂c = diag(f)" in jac and "⊙" in jac and "σ" in eqs
    assert "c' = f ⊙ c + i ⊙ g" in eqs and "h' = o ⊙ tanh(c')" in eqs
    assert _plain('gradlab.cell("lstm").jacobian()["c", "c"]').strip() == "diag(f)"


def _formats(obj):
    from IPython.core.formatters import DisplayFormatter
    data, _ = DisplayFormatter().format(obj)
    return data


@pytest.mark.parametrize("what", ["cell", "equations", "jacobian", "block"])
def test_rich_display_through_ipython(what):
    lstm = gradlab.cell("lstm")
    obj = {"cell": lstm, "equations": lstm.equations(), "jacobian": lstm.jacobian(),
           "block": lstm.jacobian()["c", "c"]}[what]
    data = _formats(obj)
    assert not any(bad in data["text/plain"] for bad in INTERNALS), data["text/plain"]
    latex = data["text/latex"]
    assert latex.startswith("$$") and latex.rstrip().endswith("$$")
    assert "Lambda" not in latex and r"\odot" in latex or what == "block"
    if what == "block":
        assert data["text/plain"] == "diag(f)" and r"\operatorname{diag}\left(f\right)" in latex
    if what == "cell":
        assert "text/markdown" in data and "**lstm**" in data["text/markdown"]
        # Jupyter prefers the Markdown: it shows the Jacobian as the LaTeX does
        assert data["text/markdown"].endswith(latex) and r"\partial c'" in latex


def test_the_shell_namespace_has_gradlab_torch_and_every_cell():
    ns = namespace()
    assert ns["gradlab"] is gradlab and ns["torch"] is torch
    for name in gradlab.cells():
        assert ns[name] is gradlab.cell(name)
    assert "abs" not in ns and ns["maximum"] is gradlab.maximum
    assert len(HOWTO.splitlines()) == 5


def test_the_howto_lines_run_as_printed():
    """Its 'J.at(p, state, x)' raised NameError: state and x were never defined."""
    ns = namespace()
    lines = [line.strip() for line in HOWTO.splitlines()[1:4]]
    code = "\n".join(line.replace("; help(gradlab.Jacobian)", "") for line in lines)
    exec(code.replace("print(lstm); ", ""), ns)                       # noqa: S102
    assert ns["J"].at(ns["p"], ns["s"], torch.rand(2, 3, dtype=torch.float64)).shape == (2, 8, 8)


@pytest.mark.parametrize("plain", [True, False], ids=["code.interact", "ipython"])
def test_gradlab_shell_runs_what_it_is_fed(plain):
    args = ["shell", "--plain"] if plain else ["shell"]
    done = subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           *args], input='print(lstm.jacobian()["c", "c"])\nprint(gru)\nexit()\n',
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(HOWTO)
    assert "diag(f)" in done.stdout and "h' = z ⊙ h + (1 - z) ⊙ h~" in done.stdout


@pytest.mark.parametrize("plain", [True, False], ids=["code.interact", "ipython"])
def test_gradlab_shell_ends_where_piped_commands_end(plain):
    """Commands piped in without exit(): the shell ends at their end, asking nothing
    (IPython asked "Do you really want to exit ([y]/n)?" of a pipe)."""
    args = ["shell", "--plain"] if plain else ["shell"]
    done = subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           *args], input="print(6 * 7)\n", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "42" in done.stdout and "exit" not in done.stdout + done.stderr


def test_shell_is_a_cli_command():
    result = invoke("shell", "--help")
    assert result.exit_code == 0 and "--plain" in result.output


def test_shell_without_a_standard_input_is_one_line():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "import sys; from gradlab.cli import main; "
                           "sys.argv = ['gradlab', 'shell', '--plain']; main()"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: __import__("os").close(0))
    assert done.returncode == 2 and "internal error" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "standard input" in done.stderr


def test_sympy_printers_show_blocks_and_jacobians_as_derive_does():
    J = gradlab.cell("lstm").jacobian()
    block = J["c", "h"]
    assert sp.sstr(block) == str(block) and sp.latex(block) == block.latex()
    for shown in (sp.pretty(J), sp.pretty(block), sp.pretty(gradlab.cell("lstm").equations()[0]),
                  str(block.T), str(-block), str(2 * block), str(block + block),
                  str(J["h", "c"] @ block), str(block.doit())):
        assert not any(raw in shown for raw in ("DiagMatrix", "Lambda", "Hadamard", "_d")), shown
    assert sp.pretty(J).splitlines()[1].startswith("∂h'/∂c = ")     # left-aligned lines
    assert str(block.T).startswith("W_fᵀ diag(c ⊙ f ⊙ (1 - f))")
    assert (2 * block).expr == 2 * block.expr and (-block).expr == -block.expr


def test_each_side_of_an_update_equation_prints_as_derive_does():
    first, last = gradlab.cell("lstm").equations()[0], gradlab.cell("lstm").equations()[-1]
    assert str(first.rhs) == "σ(W_i h + U_i x + b_i)"       # was Lambda(_d, sigmoid(_d)).(...)
    assert str(last.lhs) == "h'" and str(last.rhs) == "o ⊙ tanh(c')"
    assert first.rhs == first.args[1] and sp.sympify(first.rhs) == first.args[1]
    assert {str(s) for s in first.rhs.free_symbols} == {"W_i", "h", "U_i", "x", "b_i"}


@pytest.mark.parametrize("name", gradlab.cells())
def test_a_cells_jacobian_prints_the_lines_derive_prints(name):
    """One line a block, each as `gradlab derive` writes it: the LSTM's ∂h'/∂h reads
    "... ∂c'/∂h", not ∂c'/∂h written out again inside it. (Where derive names the
    Jacobian of a quantity that is not a state part, ∂r/∂s, J writes it out.)"""
    from gradlab.documents.derivation import terminal
    cell = gradlab.cell(name)
    lines = [line.strip() for line in terminal(name).splitlines() if "∂" in line]
    intermediate = {line.split(" = ")[0] for line in lines if line.split("/")[0][1:]
                    .rstrip("'") not in cell.state_names}
    derived = [line for line in lines if line.split(" = ")[0] not in intermediate]
    printed = (str(cell.jacobian()) + "\n" + str(cell.jacobian("input"))).splitlines()
    assert len(printed) == len(derived)
    for mine, theirs in zip(printed, derived):
        if not any(q in theirs for q in intermediate):
            assert mine == theirs
        else:
            assert mine.split(" = ")[0] == theirs.split(" = ")[0]


def test_a_changed_jacobian_still_names_a_block_it_reuses():
    """After simplify (a new object) the cell's sums are still written by name where one
    block holds another; J["h", "h"] alone is written out in full (no name dangles)."""
    J = gradlab.cell("lstm").jacobian().simplify()
    hh = str(J).splitlines()[0]
    assert hh.startswith("∂h'/∂h = ") and hh.endswith("∂c'/∂h")
    assert "∂" not in str(J["h", "h"]) and "W_f" in str(J["h", "h"])


def test_a_cells_named_quantities_print_as_derive_writes_them():
    """cell.lets is a dict {symbol: expression}; at the prompt it reads as `derive` does,
    not as SymPy's Lambda(_d, sigmoid(_d)).(...)."""
    lets = gradlab.cell("gru").lets
    assert isinstance(lets, dict) and [str(s) for s in lets][-1] == "h'"
    assert repr(lets).splitlines() == [str(e) for e in gradlab.cell("gru").equations()]
    assert "Lambda" not in repr(lets) and "_d" not in repr(lets)
    assert r"\tilde{h} &=" in lets._repr_latex_()


def test_names_with_superscripts_and_small_floats_print_so_they_render():
    @gradlab.declare(state="h", params="W U b", source="test")
    def sq(s):
        v = s.let("s_r^2", gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b))
        return 0.5 * v + s.h

    block = sq.jacobian()["h", "h"]
    assert "(s_r^2)^2" in str(block)
    assert r"\left(s^{2}_{r}\right)^{2}" in block.latex()       # not s^{2}_{r}^{2}

    @gradlab.declare(state="h", params="W U b", source="test")
    def ln(s):
        a = s.let("a", s.W @ s.h + s.U @ s.x + s.b)
        return gradlab.tanh(a / gradlab.sqrt(gradlab.var(a) + 1e-5))

    shown = ln.equations().latex()
    assert "10^{-5}" in shown and "1e-05" not in shown
    assert "1e-05" in str(ln)                                        # text keeps e-notation


def test_check_results_display_as_they_print():
    from IPython.lib.pretty import pretty
    gru = gradlab.cell("gru")
    params = gru.init_params(3, 2, seed=0)
    result = gradlab.check_jacobian(lambda P, s, x: torch.zeros(x.shape[0], 2, 3,
                                                                dtype=torch.float64),
                                    gru, params, wrt="input")
    assert pretty(result) == str(result)
    assert str(result).startswith("differs: no error to measure over 4 samples\n")
    assert math.isnan(result.max_error)


def test_explicit_blocks_show_in_gradlab_s_notation_in_a_notebook():
    """J.explicit(2) was a plain dict: a notebook printed it with SymPy's LaTeX, where
    n~ is n followed by a TeX space. Its blocks now read as the derivation does."""
    cell = gradlab.declare(state="h", params="W U", source="t", name="tilded")(
        lambda s: s.let("n~", gradlab.tanh(s.W @ s.h + s.U @ s.x)) * s.h)
    shown = cell.jacobian().explicit(2)._repr_latex_()
    assert shown.startswith("$$\\begin{aligned}\n\\frac{\\partial h'}{\\partial h} &= ")
    assert r"{\tilde{n}}_{1,0}" in shown and "n~" not in shown
    assert cell.jacobian().terms()._repr_latex_() is None      # lists of terms: no LaTeX


@pytest.mark.parametrize("name", ["gru", "lstm_noaf", "peephole_lstm", "mgu"])
def test_a_cells_latex_shows_the_blocks_its_jacobian_shows(name):
    """cell.latex() (a notebook's display of a cell) printed the blocks uncollected: the
    GRU's diag(h z (1-z)) W_z + ... - diag(h~ z (1-z)) W_z where J and `gradlab derive`
    show diag((h - h~) z (1-z)) W_z."""
    from gradlab.symbolic.printing import latex
    cell = gradlab.cell(name)
    shown = cell._repr_latex_()
    for wrt in ("state", "input"):
        for block in cell.jacobian(wrt).blocks:
            assert latex(block) in shown


def test_a_stacks_tilde_names_print_as_the_single_cells_do():
    """A GRU prints h~, its stack printed htilde1 (in LaTeX h̃₁); a let named tilde alone
    stays a word."""
    shown = str(gradlab.stack("gru", 2).equations())
    assert "h~1 = tanh(W1 (r1 ⊙ h1)" in shown and "htilde" not in shown
    assert "(h2 - h~2) ⊙ z2" in str(gradlab.stack("gru", 2).jacobian())

    @gradlab.declare(state="h", params="W b", source="test", name="worded")
    def worded(s):
        return s.let("tilde", gradlab.tanh(s.W @ s.h + s.b))
    assert "tilde = tanh(W h + b)" in str(worded.equations())


def test_the_examples_in_docstrings_run_as_written():
    """`pytest --doctest-modules gradlab` found gradlab undefined in the Jacobian module's
    example, and its Matrix printed on one line where SymPy prints three."""
    import doctest
    import importlib
    import pkgutil
    tried = 0
    for info in pkgutil.walk_packages(gradlab.__path__, "gradlab."):
        if info.name.endswith("__main__"):
            continue
        result = doctest.testmod(importlib.import_module(info.name), report=False)
        assert result.failed == 0, info.name
        tried += result.attempted
    assert tried >= 4


def test_sympys_mathml_printer_reads_blocks_and_equations():
    """sympy.mathml(J["c", "h"]) ended in AttributeError: 'str' object has no attribute
    'toxml' (the wrapper reached SymPy's fallback printer as a string)."""
    lstm = gradlab.cell("lstm")
    for obj in (lstm.jacobian()["c", "h"], lstm.equations()[0]):
        assert sp.mathml(obj).startswith("<apply>")
        assert sp.mathml(obj, printer="presentation").startswith("<mrow>")


@pytest.mark.parametrize("plain", [True, False], ids=["code.interact", "ipython"])
def test_piped_commands_that_fail_end_the_shell_with_status_1(plain, tmp_path):
    """A failed assert piped in printed its traceback and ended 0: a script checking a
    Jacobian this way passed. The current folder's modules import, as at Python's own
    prompt (`from base import ...` failed)."""
    (tmp_path / "base.py").write_text("def f():\n    return 7\n")
    args = ["shell", "--plain"] if plain else ["shell"]
    run = functools.partial(subprocess.run, [sys.executable, "-c", "from gradlab.cli import "
                            "main; main()", *args], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    done = run(input="from base import f\nprint(f() * 6)\n")
    assert done.returncode == 0 and "42" in done.stdout, done.stdout + done.stderr
    done = run(input="assert 1 == 2\nprint('went on')\n")
    assert done.returncode == 1 and "AssertionError" in done.stderr, done.stderr
    assert "went on" in done.stdout                    # (each line runs, as before)
