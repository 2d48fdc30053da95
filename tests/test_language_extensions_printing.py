"""How the cell language's extensions (issue 12) print and lower: constants kept as written,
transpose and identity (a vector's transpose refused), sum and norm in text and LaTeX,
numbers in vector sums and scalar factors as one reads them, scalar products juxtaposed
and negative powers as fractions, a transposed product and a matrix power as products,
and the all-ones matrix as an outer product."""

import pytest
import sympy as sp
import torch

import gradlab
from gradlab import GradlabError, declare, tanh


def test_a_constant_is_kept_as_written():
    @declare(state="h", params="W U b", source="t")
    def ln2(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b) * 0.6931471805599453

    assert "0.6931471805599453" in str(ln2.equations()[0]) and "log(2)" not in str(ln2)


def _refusal(fn):
    with pytest.raises(GradlabError) as err:
        declare(state="h", params="W U b", source="t", name="bad")(fn)
    return str(err.value)


def test_transpose_of_a_vector_is_refused_and_identity_reads_I():
    msg = _refusal(lambda s: tanh(s.W @ s.h + s.U @ s.x + s.b) + s.h.T @ s.h)
    assert "h.T" in msg and "column vectors" in msg, msg
    assert str(gradlab.I) == "I"


def test_reductions_print_as_written_in_text_and_latex():
    """LaTeX printed norm(r) as the italic product 'norm_{r}' and sum(r) as 'sum_{r}'; the
    text mixed '‖r‖**2' with '^', wrote '^-1/2' and took diag of a scalar."""
    import gradlab
    from gradlab.symbolic.printing import latex, text

    @gradlab.declare(state="h", params="W U b", source="test")
    def reduced(s):
        r = s.let("r", s.W @ s.h + s.U @ s.x + s.b)
        return r / gradlab.norm(r) + gradlab.sum(r) * s.h
    J = reduced.jacobian()
    printed, typeset = str(J), J._repr_latex_()
    assert "**" not in printed and "^-" not in printed and "diag(1/2" not in printed
    assert "‖r‖^2" in printed and "(rᵀ r)^(-1/2)" in printed
    assert r"\left\lVert r \right\rVert" in typeset and r"\Sigma_{r}" in typeset
    assert "norm_" not in typeset and "sum_" not in typeset
    lets = {text(k): latex(k) for k in reduced.lets}
    assert lets["‖r‖"] == r"\left\lVert r \right\rVert" and lets["Σ_r"] == r"\Sigma_{r}"


def test_numbers_in_vector_sums_and_scalar_factors_print_as_one_reads_them():
    """a + 2 printed 'a + 2 1' (read 21), and ‖a‖'s derivative '2 a 1/2 (aᵀ a)^(-1/2)'."""
    @gradlab.declare(state="h", params="W U b", source="test")
    def shifted(s):
        a = s.let("a", s.W @ s.h + s.U @ s.x + s.b)
        return gradlab.tanh(a + 2) * (3 - s.h) + a * gradlab.norm(a)

    assert "h' = tanh(a + 2) ⊙ (3 - h) + ‖a‖ a" in str(shifted.equations())
    J = str(shifted.jacobian())
    assert "a (aᵀ a)^(-1/2) aᵀ W" in J and " 1/2" not in J and "2 1" not in J


def test_scalar_products_are_juxtaposed_and_negative_powers_are_fractions():
    """The normalized LSTM's Jacobian printed '1/(n*(σ_r^2 + 1)^(3/2))', the only '*' in
    a notation where a product is juxtaposition; 1/‖r‖^2 printed as ‖r‖^(-2)."""
    printed = str(gradlab.cell("normalized_lstm").jacobian())
    assert "1/(n (σ_r^2 + 1)^(3/2))" in printed and "*" not in printed


def test_a_transposed_product_is_a_product_not_an_elementwise_power():
    """(W @ W).T became SymPy's matrix power (Wᵀ)^2, which the lowering printed as ** (W ⊙
    W, transposed): the step and the Jacobian were both wrong, the same way, so verify
    passed."""
    torch.manual_seed(0)
    W, U = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    h, x = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)

    @gradlab.declare(state="h", params="W U", source="test")
    def squared(s):
        return (s.W @ s.W + s.W).T @ gradlab.tanh(s.h) + s.U @ s.x

    def by_hand(hh, xx):
        return torch.tanh(hh) @ (W @ W + W) + xx @ U.T
    params = {"W": W, "U": U}
    assert "(Wᵀ Wᵀ + Wᵀ) tanh(h)" in str(squared.equations())
    assert torch.allclose(squared.step_fn()(params, (h,), x)[0], by_hand(h, x), rtol=1e-13)
    jac = torch.func.vmap(torch.func.jacrev(lambda a, b: by_hand(a[None], b[None])[0]))(h, x)
    assert torch.allclose(squared.jacobian().at(params, (h,), x), jac, rtol=1e-13)


def test_a_matrix_power_reaching_the_lowering_is_a_product():
    from gradlab.lowering.codeprinter import ArrayPrinter
    W = sp.MatrixSymbol("W", 3, 3)
    printed = ArrayPrinter({W: "W"}).doprint(sp.MatPow(W, 3))
    assert printed == "xp.matmul(W, xp.matmul(W, W))"
    with pytest.raises(gradlab.GradlabError, match="cannot lower the matrix power"):
        ArrayPrinter({W: "W"}).doprint(sp.MatPow(W, -1))


def test_the_all_ones_matrix_prints_as_an_outer_product():
    """(I + 1) h printed '(1 + I) h', read as 2 h; it is (I + 1 1ᵀ) h."""
    @gradlab.declare(state="h", params="W U", source="test")
    def ones(s):
        return (s.I + 1) @ s.h + s.W @ s.h + s.U @ s.x
    assert "(1 1ᵀ + I) h" in str(ones.equations())
    assert r"\mathbf{1} \mathbf{1}^{T}" in ones.jacobian()._repr_latex_()
