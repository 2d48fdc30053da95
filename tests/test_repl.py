"""Exploring Jacobians in a REPL (issue 12): readable reprs, Jacobians taken apart, rich
display through IPython's formatter, and `gradlab shell`."""

import math
import subprocess
import sys

import pytest
import sympy as sp
import torch
from sympy import BlockMatrix

import gradlab
from gradlab import GradlabError
from gradlab.repl import HOWTO, namespace
from conftest import entries_at, invoke, random_inputs, relative_error

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


def test_explicit_is_a_2x2_sympy_matrix_per_block():
    J = gradlab.cell("lstm").jacobian()
    blocks = J.explicit(n=2)
    assert sorted(blocks) == [(o, w) for o in ("c", "h") for w in ("c", "h")]
    assert all(isinstance(b, sp.MatrixBase) and b.shape == (2, 2) for b in blocks.values())
    f = sp.MatrixSymbol("f", 2, 1)                  # the gate f at n = 2
    assert blocks[("c", "c")] == sp.Matrix([[f[0, 0], 0], [0, f[1, 0]]])
    assert J["c", "c"].explicit(n=3).shape == (3, 3)
    assert gradlab.cell("lstm").jacobian("input")["h", "x"].explicit(n=2, m=3).shape == (2, 3)


@pytest.mark.parametrize("name", ["lstm", "normalized_lstm", "mgu"])
def test_explicit_entries_are_sympys_own(name):
    """explicit writes a product out by multiplying explicit matrices, where SymPy's
    as_explicit evaluates a Sum per entry (66 s for normalized_lstm at n = 4): the
    entries must be the same expressions."""
    from gradlab.symbolic.language import SIZES
    J = gradlab.cell(name).jacobian()
    for key, block in J.explicit(n=2, m=3).items():
        sizes = {SIZES["n"]: 2, SIZES["m"]: 3}
        sympys = sp.Matrix(J[key].expr.xreplace(sizes).as_explicit())
        assert (block - sympys).applyfunc(lambda e: sp.simplify(sp.expand(e))).is_zero_matrix


def test_jacobian_stays_a_block_matrix_with_named_blocks():
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    assert isinstance(J, BlockMatrix) and J.blockshape == (2, 2) and J is lstm.jacobian()
    assert J["c", "c"] == J.blocks[1, 1] == sp.DiagMatrix(lstm.symbol("f"))
    assert J["c'", "c"] == J["c", "c"] and J["c", "c"].kind == "diagonal"
    assert [str(t) for t in J.terms("c", "h")] == [
        "diag(c ⊙ f ⊙ (1 - f)) W_f", "diag(g ⊙ i ⊙ (1 - i)) W_i", "diag(i ⊙ (1 - g^2)) W_g"]
    assert set(J.terms()) == {(o, w) for o in "hc" for w in "hc"}
    with pytest.raises(GradlabError, match="no input 'z'.*valid: h, c"):
        J["h", "z"]
    with pytest.raises(GradlabError, match="two parts"):
        J["h"]


def test_terms_that_share_a_right_factor_are_collected_without_changing_numbers():
    gru = gradlab.cell("gru")
    J = gru.jacobian()
    assert str(J.terms("h", "h")[0]) == "diag((h - h~) ⊙ z ⊙ (1 - z)) W_z"
    assert "diag((h - h~) ⊙ z ⊙ (1 - z)) W_z" in (
        gradlab.cell("gru").jacobian().__str__())
    raw = gru.jacobian_blocks()[0][0]                 # what is lowered: uncollected
    at = {sp.Symbol("n", integer=True, positive=True): 2,
          sp.Symbol("m", integer=True, positive=True): 2}
    diff = (J["h", "h"].expr.xreplace(at).as_explicit() - raw.xreplace(at).as_explicit())
    assert diff.applyfunc(sp.expand).is_zero_matrix


def test_collecting_terms_that_share_a_repeated_factor():
    """a ⊙ h and a ⊙ a share one a, not two: collecting them left nothing of a ⊙ a and
    raised IndexError inside jacobian()."""
    @gradlab.declare(state="h", params="W U b", source="test")
    def selfgate(s):
        a = s.let("a", gradlab.sigmoid(s.W @ s.h + s.U @ s.x + s.b))
        return a * s.h + a * a

    J = selfgate.jacobian()
    assert str(J["h", "h"]) == "diag((h + 2 a) ⊙ a ⊙ (1 - a)) W + diag(a)"
    raw = selfgate.jacobian_blocks()[0][0]
    at = {sp.Symbol("n", integer=True, positive=True): 2,
          sp.Symbol("m", integer=True, positive=True): 2}
    diff = J["h", "h"].expr.xreplace(at).as_explicit() - raw.xreplace(at).as_explicit()
    assert diff.applyfunc(sp.expand).is_zero_matrix


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_at_is_the_lowered_jacobian_and_blocks_slice_it(name):
    cell = gradlab.cell(name)
    params, state, x = random_inputs(cell, 3, 2, 2, seed=5)
    J = cell.jacobian()
    full = cell.jacobian_fn("state")(params, state, x)
    assert relative_error(J.at(params, state, x), full) == 0
    k = len(cell.state_names) - 1
    last = cell.state_names[-1]
    assert relative_error(J[last, last].at(params, state, x), full[:, 3 * k:, 3 * k:]) == 0
    assert relative_error(J.simplify().at(params, state, x), full) == 0
    Jx = cell.jacobian("input")
    assert relative_error(Jx[last, "x"].at(params, state, x),
                          cell.jacobian_fn("input")(params, state, x)[:, 3 * k:]) == 0


def test_subs_and_simplify_work_as_in_sympy():
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    f, i = lstm.symbol("f"), lstm.symbol("i")
    swapped = J.subs(f, i)
    assert isinstance(swapped, BlockMatrix) and str(swapped["c", "c"]) == "diag(i)"
    with pytest.raises(GradlabError, match="at\\(\\) evaluates a cell's own Jacobian"):
        swapped.at(*random_inputs(lstm, 2, 2, 1))
    assert str(J["c", "c"].subs(f, i)) == "diag(i)"
    assert str(J.simplify()["c", "c"]) == "diag(f)"


def test_subs_of_a_whole_jacobian_reads_as_the_derivation_would():
    """Forget gate open (f = 1): ∂c'/∂c is I and the forget-gate term of ∂c'/∂h is gone,
    as J["c", "c"].subs gives it, not diag(1) and diag(c ⊙ 1 ⊙ (1 - 1)) W_f."""
    lstm = gradlab.cell("lstm")
    f = lstm.symbol("f")
    J = lstm.jacobian().subs(f, sp.OneMatrix(*f.shape))
    assert str(J["c", "c"]) == "I" and "W_f" not in str(J["c", "h"])
    assert str(J["h", "c"]) == "diag(o ⊙ (1 - (tanh(c'))^2))"
    assert str(J["c", "h"]) == str(lstm.jacobian()["c", "h"].subs(f, sp.OneMatrix(*f.shape)))
    shut = lstm.jacobian().subs(f, sp.ZeroMatrix(*f.shape))
    assert str(shut["c", "c"]) == "0" and shut["c", "c"].shape == f.shape[:1] * 2


def test_a_subs_that_changes_nothing_keeps_the_numbers():
    J = gradlab.cell("lstm").jacobian()
    f = gradlab.cell("lstm").symbol("f")
    same = J.subs(f, f)
    assert same is J and same.at(*random_inputs(gradlab.cell("lstm"), 3, 2, 1)).shape == \
        (1, 6, 6)


@pytest.mark.parametrize("old", [sp.Symbol("unused"), "another cell's f", "the bias b_f"])
def test_a_subs_of_a_symbol_the_expression_does_not_hold_is_refused(old):
    """SymPy leaves it unchanged, silently: J.subs(b_f, ...) (the biases live inside the
    gate values, not in J) or another cell's symbol read as done."""
    gru, lstm = gradlab.cell("gru"), gradlab.cell("lstm")
    J = (gru if old == "another cell's f" else lstm).jacobian()
    old = {"another cell's f": lstm.symbol("f"),
           "the bias b_f": lstm.symbol("b_f")}.get(old, old)
    new = sp.OneMatrix(*old.shape) if isinstance(old, sp.MatrixSymbol) else 1
    for target in (J, J["h", "h"]):
        with pytest.raises(gradlab.GradlabError, match=f"subs: {old} does not occur in "
                           "this expression .*; its symbols: ") as refused:
            target.subs(old, new)
        assert ", _" not in str(refused.value) and ": _" not in str(refused.value)


def test_a_subs_that_changes_something_may_name_symbols_that_are_not_there():
    """As in SymPy: one dict of values for every block (some blocks lack some of them),
    and pairs applied in order (V exists only after the first)."""
    rnn = gradlab.cell("rnn_tanh")
    n, m = (sp.Symbol(d, integer=True, positive=True) for d in "nm")
    W, U = rnn.symbol("W"), rnn.symbol("U")
    V, X = sp.MatrixSymbol("V", n, n), sp.MatrixSymbol("X", n, n)
    J = rnn.jacobian()
    assert str(J.subs({W: V, U: sp.ZeroMatrix(n, m)})) == "∂h'/∂h = diag(1 - h'^2) V"
    assert str(J.subs([(W, V), (V, X)])) == "∂h'/∂h = diag(1 - h'^2) X"


def test_doit_keeps_every_block_its_shape_and_its_numbers():
    """SymPy's DiagMatrix(ZeroMatrix(n, 1)).doit() is (n, 1): J.doit() after a subs that
    zeroes a gate ended in ValueError from BlockMatrix. A cell's own J.doit() still
    evaluates, to the same numbers."""
    lstm = gradlab.cell("lstm")
    f = lstm.symbol("f")
    shut = lstm.jacobian().subs(f, sp.ZeroMatrix(*f.shape)).doit()
    assert str(shut["c", "c"]) == "0" and shut.shape == lstm.jacobian().shape
    J = lstm.jacobian()
    args = random_inputs(lstm, 3, 2, 1)
    assert torch.equal(J.doit().at(*args), J.at(*args))


def test_as_explicit_at_a_symbolic_size_names_the_ways_to_numbers():
    """SymPy said only "Matrix with symbolic shape cannot be represented explicitly"."""
    J = gradlab.cell("gru").jacobian()
    with pytest.raises(GradlabError, match=r"^as_explicit needs numeric sizes.*J\.explicit\("
                       r"n=2\).*J\.subs\(\{Symbol\('n', integer=True, positive=True\): 2\}\)"):
        J.as_explicit()
    with pytest.raises(GradlabError, match=r"positive=True\): 2, Symbol\('m', integer=True, "
                       r"positive=True\): 1\}\)\.as_explicit\(\) \(SymPy's, slow past "
                       r"n = 4\)$"):
        gradlab.cell("gru").jacobian("input").as_explicit()       # m too, where it is one
    n = sp.Symbol("n", integer=True, positive=True)
    assert J.subs(n, 2).as_explicit().shape == (2, 2)
    # that way has no cap of its own: n = 100000 ran for ever (64 took 42 s)
    with pytest.raises(GradlabError, match=r"^as_explicit would write 100000 x 100000 = "
                       r"10,000,000,000 entries through SymPy \(at most 1,024"):
        J.subs(n, 100000).as_explicit()


def test_simplify_refuses_an_option_sympy_would_ignore():
    """J.simplify(bogus_option=123) returned a Jacobian: SymPy ignores unknown keywords."""
    J = gradlab.cell("rnn_tanh").jacobian()
    with pytest.raises(GradlabError, match="simplify: unknown option 'bogus_option'; SymPy's "
                                           "simplify takes ratio, measure"):
        J.simplify(bogus_option=123)
    assert J.simplify(ratio=2) == J.simplify()


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


def test_substituted_blocks_read_as_a_derivation_would():
    """f = 1 left diag(c ⊙ 1 ⊙ (1 - 1)) W_f and diag(1) after simplify()."""
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    f, W_f = lstm.symbol("f"), lstm.symbol("W_f")
    S = J.subs({f: sp.OneMatrix(*f.shape)}).simplify()
    assert str(S["c", "h"]) == "diag(g ⊙ i ⊙ (1 - i)) W_i + diag(i ⊙ (1 - g^2)) W_g"
    assert str(S["c", "c"]) == "I" and str(S["h", "c"]) == "diag(o ⊙ (1 - (tanh(c'))^2))"
    assert str(J["c", "h"].subs(W_f, sp.ZeroMatrix(*W_f.shape))) == \
        "diag(g ⊙ i ⊙ (1 - i)) W_i + diag(i ⊙ (1 - g^2)) W_g"


def test_an_explicit_matrix_from_a_block_stays_a_sympy_matrix():
    J = gradlab.cell("lstm").jacobian()
    n = sp.Symbol("n", integer=True, positive=True)
    explicit = J["c", "c"].xreplace({n: 2}).as_explicit()
    assert isinstance(explicit, sp.MatrixBase) and sp.Matrix(explicit).shape == (2, 2)
    assert explicit[0, 1] == 0


def _close(a, b):
    return a.shape == b.shape and max(abs(x) for x in (a - b)) < 1e-12


def test_whole_jacobian_arithmetic_is_a_block_matrix_printed_as_derive_does():
    """J.T, J * J, J @ J and J**2 are block matrices of the blocks' products, equal
    entry by entry to the products of J written out, and they print without SymPy's
    internals (J.T printed DiagMatrix(HadamardProduct(...)) and J * J ended in **2)."""
    J = gradlab.cell("gru").jacobian()
    whole = entries_at(J)
    for shown, want in ((J.T, whole.T), (J * J, whole * whole), (J @ J, whole * whole),
                        (J**3, whole**3), (J.T * J, whole.T * whole)):
        assert isinstance(shown, BlockMatrix)
        assert _close(entries_at(shown), want)
        for printed in (str(shown), sp.pretty(shown), sp.latex(shown)):
            assert not any(raw in printed for raw in INTERNALS + ("**", "Hadamard")), printed
    lstm = gradlab.cell("lstm").jacobian()
    assert str(lstm.T).startswith("[[(W_fᵀ diag(c ⊙ f ⊙ (1 - f)) + ")
    assert str(lstm.T).endswith("[diag(o ⊙ (1 - (tanh(c'))^2) ⊙ f), diag(f)]]")
    assert sp.latex(lstm.T).startswith(r"\begin{bmatrix}")


def test_a_block_has_matrix_powers_and_divides_by_numbers():
    J = gradlab.cell("lstm").jacobian()
    block = J["c", "c"]
    assert str(block**2) == "(diag(f))^2" and str(block**-1) == "(diag(f))^(-1)"
    assert str(block / 2) == "1/2 diag(f)"
    assert _close(entries_at(block**2), entries_at(block) ** 2)
    assert _close(entries_at(block / 2), entries_at(block) / 2)
    for bad, words in ((lambda: block**0.5, "whole number"), (lambda: block / block, "number"),
                       (lambda: block / 0, "zero"),
                       (lambda: gradlab.cell("gru").jacobian("input")["h", "x"]**2, "square")):
        with pytest.raises(GradlabError, match=words):
            bad()


def test_a_product_of_jacobians_refuses_part_names_in_one_line():
    """(J**2)["c", "c"] and J.T["h", "c"] ended in SymPy's SympifyError: 'c'."""
    J = gradlab.cell("lstm").jacobian()
    for shown in (J**2, J.T):
        with pytest.raises(GradlabError, match=r"has no named blocks; take blocks from the "
                                               r"Jacobian itself"):
            shown["c", "c"]
    assert str(J["c", "c"]) == "diag(f)"


def test_block_names_read_alike_in_every_view():
    """explicit() refused ("c'", "c") though J["c'", "c"] took it; J.terms("c") gave the
    (c, h) block alone, silently; list(J) said 'J[0]: index a block'."""
    J = gradlab.cell("lstm").jacobian()
    assert J.explicit(n=2)[("c'", "c")] == J.explicit(n=2)[("c", "c")]
    assert list(J.terms("c")) == [("c", "h"), ("c", "c")]
    assert list(J.terms(wrt="c")) == [("h", "c"), ("c", "c")]
    assert [str(t) for t in J.terms("c'")[("c", "c")]] == ["diag(f)"]
    with pytest.raises(TypeError, match=r"not iterated block by block; J.blocks_by_name\(\)"):
        list(J)
    with pytest.raises(GradlabError, match="no output 'z' in this Jacobian; valid: h, c"):
        J.terms("z")


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


def test_subs_of_a_size_and_diff_that_recurses_say_what_to_do():
    """J.subs(Symbol('n'), 3) pointed to cell.symbol('n'), which raises; a cell with a
    parameter named n had its subs refused or not by set order; J.diff(W_f) and
    J['c', 'c'].diff(f) ended in a RecursionError traceback (SymPy's matrix calculus)."""
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    for old in (sp.Symbol("n"), "m"):
        with pytest.raises(GradlabError, match=r"is not the size (n|m) of this expression"):
            J.subs(old, 3)
    size = sp.Symbol("n", integer=True, positive=True)
    assert J.subs(size, 3)["c", "h"].shape == (3, 3)      # the size itself: SymPy's subs

    @gradlab.declare(state="h", params={"W": "n n", "n": "1"}, source="test", name="scaled")
    def scaled(s):
        return gradlab.tanh(s.W @ s.h * s.n)
    assert str(scaled.jacobian().subs(scaled.symbol("n"), 3)) == "∂h'/∂h = 3 diag(1 - h'^2) W"
    with pytest.raises(GradlabError, match=r"take it from the cell: cell.symbol\('n'\)"):
        scaled.jacobian().subs("n", 3)
    for call in (lambda: J.diff(lstm.symbol("W_f")), lambda: J["c", "c"].diff(lstm.symbol("f"))):
        with pytest.raises(GradlabError, match="SymPy recursed without end"):
            call()


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
