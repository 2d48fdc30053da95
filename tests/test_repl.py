"""Exploring Jacobians in a REPL (issue 12), taken apart and changed as in SymPy: blocks
and terms by name, explicit matrices, at() as the lowered Jacobian, subs, simplify and
doit, and arithmetic on whole Jacobians and on blocks. How they print and display, and
`gradlab shell`: test_repl_display.py."""

import pytest
import sympy as sp
import torch
from sympy import BlockMatrix

import gradlab
from gradlab import GradlabError
from conftest import entries_at, random_inputs, relative_error

INTERNALS = ("Lambda", "_d", "DiagMatrix", "HadamardProduct", "Eq(")


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
    assert str(lstm.T).startswith("[[W_oᵀ diag(tanh(c') ⊙ o ⊙ (1 - o)) + (W_fᵀ diag(c ⊙ f ⊙ (1 - f)) + ")
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


@pytest.mark.parametrize("size", [0, -1, 2.5, True, sp.Rational(1, 2)])
def test_a_size_is_put_to_a_positive_integer_only(size):
    """J.subs(n, 0) was accepted, silently: blocks of no rows."""
    n = sp.Symbol("n", integer=True, positive=True)
    J = gradlab.cell("lstm").jacobian()
    with pytest.raises(GradlabError, match=r"^subs: the size n is a positive integer"):
        J.subs(n, size)
    assert J.subs(n, 3)["c", "c"].shape == (3, 3)
