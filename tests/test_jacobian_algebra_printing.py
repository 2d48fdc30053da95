"""Whole-Jacobian algebra beyond products: J**-1, J + J, 2 * J, J - J, -J, J / 2 print in
derive's notation (block matrices of the blocks' sums and multiples; an inverse as
[[A, B], [C, D]]^(-1), the convention of a block's b**-1), equal entry by entry to the
same arithmetic on J written out; what has no meaning (the inverse of a non-square block
matrix, J + 2, sums of differently split matrices) is refused in one line.

Before: J**-1 printed [[...]]**(-1), J + J and 2 * J printed 2*[[...]] (2⋅[[...]] pretty),
-J printed -[[...]], and J**-1 of an input Jacobian (2n x m) was accepted."""

import re

import pytest
import sympy as sp
import torch
from sympy import BlockMatrix

import gradlab
from conftest import entries_at
from gradlab import GradlabError

RAW = ("**", "*[[", "⋅", "Lambda", "_d", "DiagMatrix", "HadamardProduct", "Inverse(",
       "MatMul(", "MatAdd(")


def _close(a, b):
    return a.shape == b.shape and max(abs(x) for x in (a - b)) < 1e-9


def _printed(shown):
    """Every way a user sees `shown`: str, repr, SymPy's pretty and LaTeX, the notebook's."""
    return {"str": str(shown), "repr": repr(shown), "pretty": sp.pretty(shown),
            "latex": sp.latex(shown), "notebook": shown._repr_latex_()}


def _in_derive_notation(shown):
    for how, printed in _printed(shown).items():
        assert not any(raw in printed for raw in RAW), (how, printed)
    assert str(shown) == repr(shown) == sp.pretty(shown, wrap_line=False)
    assert shown._repr_latex_() == f"$${sp.latex(shown)}$$"


@pytest.fixture(scope="module")
def lstm():
    return gradlab.cell("lstm").jacobian()


@pytest.fixture(scope="module")
def rnn():
    return gradlab.cell("rnn_tanh").jacobian()


def test_inverse_prints_as_a_block_matrix_to_the_minus_one(lstm, rnn):
    assert str(rnn**-1) == "[[diag(1 - h'^2) W]]^(-1)"
    assert sp.latex(rnn**-1) == (r"\left(\begin{bmatrix}\operatorname{diag}\left(\mathbf{1}"
                                 r" - h'^{2}\right) W\end{bmatrix}\right)^{-1}")
    assert str(rnn**-2) == "[[diag(1 - h'^2) W]]^(-2)"
    for J in (lstm, rnn):
        for shown in (J**-1, J**-2, J.I, J.inverse(), (J @ J)**-1, J.T**-1):
            _in_derive_notation(shown)
        # the Jacobian inside prints as a block matrix, not as its "∂h'/∂h = ..." lines
        rows, cols = J.blockshape
        plain = "[" + ", ".join("[" + ", ".join(str(J[i, j]) for j in range(cols)) + "]"
                                for i in range(rows)) + "]"
        assert str(J**-1) == f"{plain}^(-1)" and "∂" not in str(J**-1)
        assert str(J.I) == str(J.inverse()) == str(J**-1)


def test_inverse_is_the_inverse_of_j_written_out(lstm):
    whole = entries_at(lstm)
    assert _close(entries_at(lstm**-1), whole.inv())
    assert _close(entries_at(lstm**-2), whole.inv() ** 2)
    assert _close(entries_at(lstm.inverse()), whole.inv())
    assert _close(entries_at(lstm**-1 @ lstm), sp.eye(4)) and str(lstm**-1 @ lstm) == "I"


def test_sums_and_multiples_are_block_matrices_of_the_blocks(lstm, rnn):
    assert str(rnn + rnn) == str(2 * rnn) == str(rnn * 2) == "[[2 diag(1 - h'^2) W]]"
    assert str(-rnn) == "[[-diag(1 - h'^2) W]]"
    assert str(rnn - rnn) == "[[0]]" and str(lstm - lstm) == "[[0, 0], [0, 0]]"
    assert str(rnn / 2) == "[[1/2 diag(1 - h'^2) W]]"
    assert str(sp.Symbol("x") * rnn) == "[[x diag(1 - h'^2) W]]"
    assert sp.latex(rnn + rnn) == (r"\begin{bmatrix}2 \operatorname{diag}\left(\mathbf{1}"
                                   r" - h'^{2}\right) W\end{bmatrix}")
    assert str(-lstm).startswith("[[- diag(o ⊙ (1 - (tanh(c'))^2)) (")
    assert str(-lstm).endswith("-diag(f)]]")
    for shown in (lstm + lstm, 2 * lstm, lstm * 2, -lstm, lstm - lstm, lstm / 2, lstm + lstm.T,
                  lstm @ lstm - lstm, 0.5 * lstm, sp.Rational(1, 3) * lstm):
        assert isinstance(shown, BlockMatrix) and shown.blockshape == (2, 2)
        _in_derive_notation(shown)


def test_sums_and_multiples_equal_the_arithmetic_on_j_written_out(lstm):
    whole = entries_at(lstm)
    x = sp.Symbol("x")
    for shown, want in ((lstm + lstm, 2 * whole), (2 * lstm, 2 * whole), (-lstm, -whole),
                        (lstm - lstm, 0 * whole), (lstm / 2, whole / 2),
                        (lstm + lstm.T, whole + whole.T), (lstm @ lstm - lstm, whole**2 - whole),
                        ((x * lstm).subs(x, 3), 3 * whole)):
        assert _close(entries_at(shown), want)


def test_a_sum_or_multiple_has_no_named_blocks(lstm):
    for shown in (lstm + lstm, 2 * lstm, -lstm):
        with pytest.raises(GradlabError, match=r"\[\('c', 'c'\)\]: this block matrix \(a "
                                               r"transpose, product, sum or multiple"):
            shown["c", "c"]


def test_a_sum_with_a_plain_matrix_prints_in_derive_notation(rnn):
    n = sp.Symbol("n", integer=True, positive=True)
    shown = rnn + sp.Identity(n)
    assert str(shown) == "I + [[diag(1 - h'^2) W]]"
    assert str(rnn * sp.MatrixSymbol("V", n, n)) == "[[diag(1 - h'^2) W]] V"


def test_the_notebook_and_ipython_show_the_same(lstm):
    pretty = pytest.importorskip("IPython.lib.pretty").pretty
    for shown in (lstm**-1, lstm + lstm, -lstm, 2 * lstm):
        assert pretty(shown) == str(shown)
        assert shown._repr_latex_().startswith("$$") and "\\cdot" not in shown._repr_latex_()


@pytest.mark.parametrize("bad,words", [
    (lambda J, K: K**-1, r"J\*\*-1: this block matrix is 2n x m in 2 x 1 blocks; only a "
                         r"square one"),
    (lambda J, K: K.inverse(), r"J.inverse\(\): this block matrix is 2n x m"),
    (lambda J, K: K.I, r"J\*\*-1: this block matrix is 2n x m"),
    (lambda J, K: K**2, r"J\*\*2: .* has powers"),
    (lambda J, K: K**0, r"J\*\*0: .* has powers"),
    (lambda J, K: J**0.5, r"J\*\*0.5: a block matrix's power is a whole number"),
    (lambda J, K: J**sp.Rational(1, 2), r"J\*\*1/2: a block matrix's power is a whole number"),
    (lambda J, K: J + K, r"2n x 2n in 2 x 2 blocks \+ 2n x m in 2 x 1 blocks"),
    (lambda J, K: J - K, r"2n x 2n in 2 x 2 blocks - 2n x m in 2 x 1 blocks"),
    (lambda J, K: J + 2, r"J \+ 2: a block matrix adds or subtracts a matrix of its shape, "
                         r"not a number"),
    (lambda J, K: 2 - J, r"2 - J: .* not a number"),
    (lambda J, K: J / J, r"divides by a number, not by Jacobian"),
    (lambda J, K: J / 0, r"divided by zero"),
    (lambda J, K: 1 / J, r"1 / J: a block matrix has no reciprocal; its inverse is J\*\*-1"),
    (lambda J, K: K @ J, r"2n x m in 2 x 1 blocks @ 2n x 2n in 2 x 2 blocks: the blocks do "
                         r"not chain"),
    (lambda J, K: J * J["c", "c"], r"2n x 2n \* n x n: the sizes do not chain"),
    (lambda J, K: J * "x", r"J \* 'x': a block matrix multiplies numbers and matrices only"),
    (lambda J, K: True * J, r"True \* J"),
])
def test_what_has_no_meaning_is_refused_in_one_line(lstm, bad, words):
    inputs = gradlab.cell("lstm").jacobian("input")
    with pytest.raises(GradlabError, match=words) as err:
        bad(lstm, inputs)
    assert "\n" not in str(err.value)


def test_an_input_jacobian_keeps_what_it_has(rnn):
    """J.T @ J of an input Jacobian (m x m) is square: it has powers and an inverse."""
    K = gradlab.cell("rnn_tanh").jacobian("input")
    gram = K.T @ K
    assert str(gram**-1) == "[[Uᵀ (diag(1 - h'^2))^2 U]]^(-1)"
    _in_derive_notation(gram**-1)
    assert str(K + K) == "[[2 diag(1 - h'^2) U]]"


def test_a_single_block_checks_its_arithmetic_as_a_whole_jacobian_does():
    """J["c", "c"] + Ji["c", "x"] (n x n plus n x m) and Ji["c", "x"] @ J["c", "c"] were
    accepted; A + 1 and A * 'a' raised SymPy's TypeError."""
    lstm = gradlab.cell("lstm")
    J, Ji = lstm.jacobian(), lstm.jacobian("input")
    A, B, C = J["c", "c"], Ji["c", "x"], J["h", "c"]
    assert str(A - C) == "diag(f) - diag(o ⊙ (1 - (tanh(c'))^2) ⊙ f)"
    assert str(2 * A) == str(A * 2) == "2 diag(f)"
    assert (A @ B).shape == B.shape
    for bad, message in [
            (lambda: A + B, "a block of shape n x n cannot be added to one of shape n x m"),
            (lambda: B @ A, "n x m @ n x n: the sizes do not chain"),
            (lambda: A @ 2, "a block multiplies (@) a matrix (another block, a weight), "
                            "not int; scale it with * instead"),
            (lambda: A + 1, "a block adds to a matrix of its shape"),
            (lambda: 1 - A, "a block adds to a matrix of its shape"),
            (lambda: A * "a", "a block scales by a number, not by str"),
            (lambda: A * C, "a block * a matrix is ambiguous here")]:
        with pytest.raises(GradlabError, match="^" + re.escape(message)):
            bad()


def test_subs_replaces_a_matrix_by_one_of_its_shape_and_refuses_in_one_line():
    """J.subs(W_f, a 2 x 2 Matrix) raised SymPy's multi-line ValueError; J.subs(f, W_f) (a
    vector by a matrix) was accepted and printed diag(W_f)."""
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    W_f, f = lstm.symbol("W_f"), lstm.symbol("f")
    n = sp.Symbol("n", integer=True, positive=True)
    for args, message in [((W_f, sp.Matrix([[1, 2], [3, 4]])), "subs: W_f is n x n"),
                          ((f, W_f), "subs: f is n x 1; it is replaced by a matrix of that "
                                     "shape, not W_f (n x n)"),
                          (({W_f: f},), "subs: W_f is n x n"),
                          ((n, -1), "subs: the size n is a positive integer (every "
                                    "block's shape is written in it), not -1")]:
        with pytest.raises(GradlabError, match="^" + re.escape(message)):
            J.subs(*args)
        with pytest.raises(GradlabError, match="^subs: "):
            J["c", "h"].subs(*args)
    assert "W_f" not in str(J.subs(W_f, sp.ZeroMatrix(n, n))["c", "h"])


def test_subs_by_a_name_or_a_lookalike_symbol_is_refused_not_ignored():
    """J.subs("f", 0) and a MatrixSymbol('f', Symbol('n'), 1) of the user's own returned
    the expression unchanged (SymPy matches neither), so a substitution silently did
    nothing; the second was also refused as 'f is n x 1 ... not 0 (n x 1)'."""
    import sympy as sp
    lstm = gradlab.cell("lstm")
    J, n = lstm.jacobian(), sp.Symbol("n")
    for old in ("f", sp.MatrixSymbol("f", n, 1)):
        for expr in (J, J["c", "h"]):
            with pytest.raises(GradlabError, match=r"not a symbol of this expression .* "
                                                   r"cell.symbol\('f'\)"):
                expr.subs(old, sp.ZeroMatrix(n, 1))
    f = lstm.symbol("f")
    assert "W_f" not in str(J["c", "h"].subs(f, sp.ZeroMatrix(*f.shape)))


def test_a_combination_of_jacobians_refuses_at_in_one_line():
    """J.T.at(...) raised AttributeError: 'Blocks' object has no attribute 'at'."""
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    for combined in (J.T, J @ J, 2 * J):
        with pytest.raises(GradlabError, match=r"has no lowered numbers of its own: take "
                                               r"J.at\(...\) and combine those"):
            combined.at({}, (), None)
