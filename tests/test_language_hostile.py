"""The cell language against declarations that looked fine and were not: names Python
reads as other names, constants the backends could not run, names that collide when
layers are numbered, outputs named for another part, and a Jacobian printed inside a
larger expression. Each test failed before its fix (wrong numbers, a false equation, or
a bare Python error)."""

import functools
import re

import numpy as np
import pytest
import sympy
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import GradlabError, declare, log, maximum, relu, sigmoid, softplus, tanh
from conftest import random_inputs, relative_error

TIGHT = 1e-12


def jacobian_by_autograd(cell, params, state, x):
    """d state' / d state by jacrev of the cell's own step (independent of its derivation)."""
    step = cell.step_fn("torch")

    def one(s, xb):
        parts = torch.split(s, s.shape[0] // len(cell.state_names))
        return torch.cat(step(params, tuple(p[None] for p in parts), xb[None]), -1)[0]
    return vmap(jacrev(one))(torch.cat(state, -1), x)


def linear(s):
    return s.W @ s.h + s.U @ s.x + s.b


def test_a_name_python_normalises_to_another_is_its_own_variable():
    # ℎ (U+210E) is h to Python (NFKC): the lowered code overwrote the input h with it
    @declare(state="h", params="W U b", source="a test")
    def planck(s):
        a = s.let("ℎ", tanh(linear(s)))
        return a * s.h
    params, state, x = random_inputs(planck, 4, 3, 3)
    W, U, b = params["W"], params["U"], params["b"]
    h = state[0]
    expected = torch.tanh(h @ W.T + x @ U.T + b) * h
    assert relative_error(planck.step_fn()(params, state, x)[0], expected) < TIGHT
    assert relative_error(planck.jacobian_fn()(params, state, x),
                          jacobian_by_autograd(planck, params, state, x)) < TIGHT


@pytest.mark.parametrize("name", ["a₁", "σ²", "ℎ", "α'"])
def test_names_beyond_ascii_lower_to_code_that_runs(name):
    @declare(state="h", params="W U b", source="a test", name="beyond_ascii")
    def cell(s):
        return tanh(s.let(name, linear(s)))
    params, state, x = random_inputs(cell, 3, 2, 2)
    assert relative_error(cell.jacobian_fn()(params, state, x),
                          jacobian_by_autograd(cell, params, state, x)) < TIGHT


# the last four: LaTeX and text would read them differently (a^{b c}, d^{x}, e^{x}_{})
@pytest.mark.parametrize("name", ["50%", "a&b", "a{", "$a$", "#", "1", "<i>a</i>", "_a", "a^",
                                  "a^b^c", "d__x", "e^x_", "x_"])
def test_a_let_name_with_a_meaning_in_latex_or_markdown_is_refused(name):
    with pytest.raises(GradlabError, match="is not a name"):
        @declare(state="h", params="W U b", source="a test", name="odd_let")
        def cell(s):
            return tanh(s.let(name, linear(s)))


def test_stacked_names_that_number_to_one_are_refused():
    @declare(state="h", params="W U b b1", source="a test")
    def layer(s):
        return tanh(linear(s) + 2 * s.b1)
    assert len(gradlab.stack(layer, 9).param_names) == 36
    with pytest.raises(GradlabError, match="'b1' of layer 1 and 'b' of layer 11 would both "
                                           "be 'b11'"):
        gradlab.stack(layer, 11)


def test_an_output_named_for_another_part_is_refused_and_rows_go_by_state_part():
    with pytest.raises(GradlabError, match="state part 'h' is named c', the name of the new c"):
        @declare(state="h c", params="W U b W_f", source="a test")
        def swapped(s):
            c = s.let("h'", sigmoid(s.W_f @ s.h) * s.c)
            h = s.let("c'", tanh(linear(s)))
            return h, c

    @declare(state="h c", params="W U b W_f", source="a test")
    def renamed(s):
        c = s.let("cnew", sigmoid(s.W_f @ s.h) * s.c)
        return s.let("hnew", tanh(linear(s))), c
    J = renamed.jacobian()
    assert str(J["c", "c"]) == str(J["cnew", "c"]) == "diag(σ(W_f h))"
    assert str(J["h", "h"]) == str(J["h'", "h"]) == "diag(1 - hnew^2) W"
    assert list(J.blocks_by_name()) == [("h", "h"), ("h", "c"), ("c", "h"), ("c", "c")]


def test_a_jacobian_inside_an_expression_prints_as_a_matrix_not_as_equations():
    J = gradlab.cell("lstm").jacobian()
    for expr in (-J, 2 * J, J @ J):
        shown = str(expr)
        assert "∂" not in shown and "\n" not in shown
        assert "diag(f)" in shown
    # -J and 2 J are block matrices of the blocks' negatives and multiples, as J @ J is
    assert all(str(e).startswith("[[") for e in (-J, 2 * J, J @ J))
    assert "-diag(f)" in str(-J) and "2 diag(f)" in str(2 * J)
    assert sympy.latex(2 * J).startswith(r"\begin{bmatrix}")
    assert str(J).startswith("∂h'/∂h = ")             # on its own: the equations, as before


CONSTANTS = {
    "e": lambda s: sympy.exp(1) * tanh(linear(s)),
    "pi": lambda s: sympy.pi * tanh(linear(s)),
    "log 2": lambda s: log(2) * tanh(linear(s)),
    "relu(-1), softplus(0)": lambda s: (relu(-1) + softplus(0) + 1) * tanh(linear(s)),
    "max(v, 0.5)": lambda s: maximum(tanh(linear(s)), 0.5),
    "max(v, scalar)": lambda s: maximum(tanh(linear(s)), s.g),
}


@pytest.mark.parametrize("body", CONSTANTS.values(), ids=CONSTANTS)
def test_constants_lower_to_numbers(body):
    params = {"W": "n n", "U": "n m", "b": "n"}
    if "s.g" in body.__code__.co_names or "g" in body.__code__.co_names:
        params["g"] = "1"
    cell = declare(state="h", params=params, source="a test", name="constants")(body)
    params, state, x = random_inputs(cell, 4, 3, 2)
    assert relative_error(cell.jacobian_fn()(params, state, x),
                          jacobian_by_autograd(cell, params, state, x)) < TIGHT


@pytest.mark.parametrize("factor, shown", [(1e308 * 10, "inf"), (10 ** 400, "1.00E+400"),
                                           (sympy.Float("1e309"), "1.00E+309")])
def test_a_constant_beyond_float64_is_refused_when_declared(factor, shown):
    with pytest.raises(GradlabError) as err:
        declare(state="h", params="W U b", source="a test", name="huge")(
            lambda s: tanh(linear(s)) * factor)
    assert shown in str(err.value)


@pytest.mark.parametrize("factor, message", [
    (sympy.Symbol("q"), "uses 'q', a symbol the cell does not declare"),
    (sympy.Symbol("n"), r"uses 'n', a symbol the cell does not declare \(the hidden size is "
                        r"s.hidden_size\)"),
    (sympy.I, "holds the imaginary unit I: cells are real"),
    (2 + 3 * sympy.I, "holds the imaginary unit I")])
def test_a_symbol_from_outside_the_language_is_refused_when_declared(factor, message):
    """A sympy.Symbol made outside the language built a cell whose Jacobian printed
    'q W' and failed only when lowered; sympy.I printed as 'I W', read as an identity."""
    with pytest.raises(GradlabError, match=f"cell 'stray': the equation for h' {message}"):
        declare(state="h", params="W U b", source="a test", name="stray")(
            lambda s: tanh(linear(s)) * factor)


@pytest.mark.parametrize("source", [3, b"paper", "", "  ", ["a"]])
def test_a_source_that_is_not_text_is_refused(source):
    with pytest.raises(GradlabError, match=r"declare\(source=...\) names the paper"):
        declare(state="h", params="W U b", source=source, name="src")(
            lambda s: tanh(linear(s)))


def test_division_by_what_is_always_zero_is_refused():
    for body in (lambda s: tanh(linear(s)) / (s.h - s.h),
                 lambda s: tanh(linear(s)) * (s.h - s.h) ** -1):
        with pytest.raises(GradlabError, match="zero for every state and input"):
            declare(state="h", params="W U b", source="a test", name="by_zero")(body)


def test_misused_declarations_are_one_error():
    with pytest.raises(GradlabError, match="elementwise|atan is not"):
        gradlab.elementwise(sympy.atan)
    with pytest.raises(GradlabError, match="declare takes its arguments by name"):
        @declare
        def bare(s):
            return tanh(linear(s))
    with pytest.raises(GradlabError, match="decorates a function"):
        declare(state="h", params="W U b", source="a test")(3)
    with pytest.raises(GradlabError, match="has no __name__"):
        declare(state="h", params="W U b", source="a test")(
            functools.partial(lambda s, k: tanh(linear(s)) * k, k=2))
    with pytest.raises(GradlabError, match="'zz', which is not a state part"):
        declare(state="h", params="W U b", source="a test", name="extra_key")(
            lambda s: {"h": tanh(linear(s)), "zz": tanh(linear(s))})


def test_bad_arguments_to_at_and_init_params_are_one_error():
    cell = gradlab.cell("lstm")
    J = cell.jacobian()
    params, state, x = random_inputs(cell, 3, 2, 2)
    for args, needle in [((None, state, x), "params of cell 'lstm' must be a dict"),
                         ((params, state, None), "x of cell 'lstm' must be an array"),
                         ((params, ("a", "b"), x), "state part 'h' of cell 'lstm' must be"),
                         (({**params, "W_i": [[1.0]]}, state, x), "param 'W_i'")]:
        with pytest.raises(GradlabError, match=needle):
            J.at(*args)
    with pytest.raises(GradlabError, match="needs about .* of memory"):
        cell.init_params(10 ** 9, 2)
    with pytest.raises(GradlabError, match="unknown option 'foo'; valid: init"):
        cell.init_params(3, 2, foo=1)
    assert J.explicit(n=np.int64(2))[("c", "c")] == J.explicit(n=sympy.Integer(2))[("c", "c")]


def test_an_exponent_that_is_not_a_number_is_one_error():
    from gradlab import norm
    with pytest.raises(GradlabError, match=r"exponent of h \*\* \.\.\. must be a number .* ‖a‖"):
        declare(state="h", params="W U b", source="a test", name="power")(
            lambda s: tanh(linear(s)) * s.h ** norm(s.let("a", s.W @ s.h)))
    cell = declare(state="h", params="W U b", source="a test", name="power")(
        lambda s: tanh(linear(s)) * s.h ** np.int64(2))
    params, state, x = random_inputs(cell, 3, 2, 2)
    assert relative_error(cell.jacobian_fn()(params, state, x),
                          jacobian_by_autograd(cell, params, state, x)) < TIGHT


def test_a_non_ascii_name_prints_as_latex_pdflatex_reads():
    """A state hα and weights Wα, Uβ printed their letters raw (pdflatex stops at α in
    math mode): each Greek letter is its command, braced apart from the letters after it,
    an accent its command, a script digit a script, any other letter \\text{}."""
    from gradlab.symbolic.unicode_latex import ascii_latex
    cell = declare(state="hα", params={"Wα": "n n", "Uβ": "n m", "bé": "n"},
                   source="a test", name="greek")(
        lambda s: tanh(getattr(s, "Wα") @ getattr(s, "hα") + getattr(s, "Uβ") @ s.x
                       + getattr(s, "bé")))
    shown = cell.latex()
    assert shown.isascii(), shown
    assert r"W{\alpha} h{\alpha}" in shown and r"U{\beta}" in shown and r"b\acute{e}" in shown
    assert ascii_latex("bø") == r"b\text{ø}" and ascii_latex("x₁ω²Γ") == \
        r"x_{1}{\omega}^{2}{\Gamma}" and ascii_latex("hα") == r"h{\alpha}"
    assert ascii_latex("ΑΒ") == "AB"                 # capitals with no command: Latin look
    assert ascii_latex("çå") == r"\text{ç}\text{å}"  # marks with no math accent: kept whole
    assert ascii_latex("ϑϕφε") == r"{\vartheta}{\phi}{\varphi}{\varepsilon}"   # as they look
    # scripts TeX takes: a run of digits is one script, a name's script braced before a
    # subscript or a prime (r_{1}_{t} and r^{2}' are double scripts, refused by TeX)
    scripts = declare(state="h", params="W U b", source="a test", name="scripts")(
        lambda s: s.let("r²'", tanh(s.W @ s.let("r₁_t", tanh(s.W @ s.let(
            "r₁₂", tanh(s.W @ s.h + s.U @ s.x + s.b)))))) * s.h).latex()
    assert r"r_{12} &= " in scripts and r"{r_{1}}_{t} &= " in scripts, scripts
    assert r"{r^{2}}' &= " in scripts, scripts
    with pytest.raises(GradlabError, match=r"'Ab' and 'Αb' would print alike"):
        declare(state="h", params={"Αb": "n n", "Ab": "n n"}, source="a test",
                name="lookalike")(lambda s: tanh(getattr(s, "Αb") @ s.h + s.Ab @ s.h))
    with pytest.raises(GradlabError, match=r"parameter name 'Η' is how a function prints"):
        declare(state="h", params={"Η": "n n"}, source="a test", name="eta")(  # Greek Eta:
            lambda s: tanh(getattr(s, "Η") @ s.h))                           # H, a tie's
    with pytest.raises(GradlabError, match=r"'alpha' and 'α' would print alike"):
        declare(state="h", params={"α": "n n", "alpha": "n n"}, source="a test",
                name="spelled")(lambda s: tanh(getattr(s, "α") @ s.h + s.alpha @ s.h))


def test_a_trailing_tilde_prints_as_a_tilde_in_latex():
    from gradlab.symbolic.printing import latex
    @declare(state="h", params="W U b W_n U_n b_n", source="a test", name="tilde")
    def cell(s):
        a = s.let("n", tanh(linear(s)))
        b = s.let("n~", tanh(s.W_n @ s.h + s.U_n @ s.x + s.b_n))
        return a * b
    shown = cell.latex()
    assert r"\tilde{n}" in shown and "n~" not in shown            # ~ in LaTeX is a space
    assert latex(sympy.MatrixSymbol("n~'", 3, 1)) == r"\tilde{n}'"
    with pytest.raises(GradlabError, match="is not a name"):     # a ~ inside a name
        declare(state="h", params="W U b", source="a test", name="inner")(
            lambda s: tanh(s.let("a~b", linear(s))))


def test_explicit_entries_are_refused_beyond_a_small_size():
    J = gradlab.cell("lstm").jacobian()
    with pytest.raises(GradlabError, match=r"explicit\(n=1000000\): .* 1\.\.12"):
        J.explicit(n=10 ** 6)


def test_arrays_of_another_library_than_the_backend_are_one_error():
    cell = gradlab.cell("lstm")
    params, state, x = random_inputs(cell, 3, 2, 2)
    J = cell.jacobian()
    with pytest.raises(GradlabError, match="are torch arrays for the numpy backend"):
        J.at(params, state, x, backend="numpy")
    with pytest.raises(GradlabError, match="are numpy and torch arrays"):
        J.at(params, tuple(s.numpy() for s in state), x.numpy())
    numpy = J.at({k: v.numpy() for k, v in params.items()}, tuple(s.numpy() for s in state),
                 x.numpy())
    assert relative_error(numpy, J.at(params, state, x)) < TIGHT


def test_reductions_of_a_primed_and_an_unprimed_name_are_two_quantities():
    # mean(a') was named mu_a, as mean(a) is: the second was refused as "already defined"
    # and var(n~) read σ_n^2, the variance of another vector
    @declare(state="h", params="W U b", source="a test", name="primed_means")
    def cell(s):
        a = s.let("a", linear(s))
        a2 = s.let("a'", tanh(a))
        t = s.let("n~", sigmoid(a))
        return tanh(a2 - gradlab.mean(a2) + gradlab.mean(a) + gradlab.var(t) * t)
    shown = str(cell.equations())
    assert "μ_a' = " in shown and "μ_a = " in shown and "σ_n~^2 = " in shown
    assert r"\sigma^{2}_{\tilde{n}}" in str(cell.latex()) and r"\mu_{a'}" in str(cell.latex())
    params, state, x = random_inputs(cell, 5, 3, 2)
    assert relative_error(cell.jacobian_fn()(params, state, x),
                          jacobian_by_autograd(cell, params, state, x)) < TIGHT


def test_names_that_print_or_read_as_something_else_are_refused():
    """A param 'Wᵀ' printed exactly as W's transpose (W.T), a let 'Ι' (Greek iota) as the
    identity and 'hʹ' (U+02B9) as h', and a state part 'ﬁ' was read by Python as s.fi,
    then 'not declared'. Names Python reads otherwise (NFKC) and these lookalikes are
    refused when declared."""
    def body(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)

    for kwargs, says in (({"state": "h", "params": "W Wᵀ U b"}, r"'Wᵀ' is read by Python as "
                          r"'WT' when written s.Wᵀ"),
                         ({"state": "ﬁ", "params": "W U b"}, r"'ﬁ' is read by Python as 'fi'"),
                         ({"state": "h", "params": "W U b Ι"}, r"'Ι' prints as the identity")):
        with pytest.raises(GradlabError, match=says):
            gradlab.declare(source="test", **kwargs)(body)

    for name, says in (("Wᵀ", r"holds 'ᵀ' \(U\+1D40\), which prints as a transpose"),
                       ("І", "prints as the identity"),
                       ("hʹ", r"holds 'ʹ' \(U\+02B9\), which prints as a prime; write a prime "
                              "as '")):
        def named(s, name=name):
            a = s.let(name, s.W @ s.h)
            return gradlab.tanh(a + s.U @ s.x + s.b)
        with pytest.raises(GradlabError, match=says):
            gradlab.declare(state="h", params="W U b", source="test")(named)

    def squared(s):                       # σ², c' and n~ stay names
        a = s.let("σ²", s.W @ s.h)
        return gradlab.tanh(a + s.U @ s.x + s.b)
    gradlab.declare(state="h", params="W U b", source="test")(squared)


def test_numpy_reading_an_equation_is_refused_by_name_and_numpy_scalars_are_numbers():
    """np.dot(W, h) was 'cannot multiply elementwise W (n x n) and h (n x 1)' (numpy made
    it an elementwise product of objects), np.mean(v) 'cannot use np.int64(1)', and a
    numpy integer scalar was refused outright; an unknown activation named none."""
    import numpy as np

    def declared(body):
        return gradlab.declare(state="h", params="W b", source="test", name="odd")(body)
    for body in (lambda s: gradlab.tanh(np.dot(s.W, s.h) + s.b),
                 lambda s: np.mean(s.W @ s.h + s.b) + s.h):
        with pytest.raises(GradlabError, match="numpy cannot read .*: a cell's equations are "
                                               "symbolic; write W @ h for a matrix product"):
            declared(body)
    two = declared(lambda s: gradlab.tanh(s.W @ s.h) * np.int64(2) + s.b)
    assert str(two.equations()[-1]).startswith("h' = 2 tanh(W h)")
    with pytest.raises(AttributeError, match="no attribute 'gelu' \\(the cell language's "
                                             "functions: sigmoid, tanh, relu"):
        gradlab.gelu


@pytest.mark.parametrize("name", ["declared", "lets"])
def test_a_name_the_builder_answers_itself_is_reserved(name):
    """A parameter called `declared` made s.declared the builder's method: the error read
    "cannot use <bound method Builder.declared ...> (method)"."""
    with pytest.raises(gradlab.GradlabError, match=f"parameter name '{name}' is reserved"):
        @gradlab.declare(state="h", params=f"W U {name}", source="t")
        def cell(s):
            return gradlab.tanh(s.W @ s.h + s.U @ s.x + getattr(s, name))


@pytest.mark.parametrize("body, said", [
    (lambda s: sympy.sin(s.h), "SymPy's own functions cannot take a symbolic value"),
    (lambda s: 2 ** s.h, "write gradlab.exp(math.log(2) * h) for 2 ** h")])
def test_a_slip_python_or_sympy_rejects_says_what_to_write(body, said):
    """They ended in SympifyError's and TypeError's own words, with no pointer."""
    with pytest.raises(gradlab.GradlabError, match=re.escape(said)):
        @gradlab.declare(state="h", params="W U b", source="t")
        def cell(s):
            return tanh(s.W @ s.h + s.U @ s.x + s.b) + body(s)


def test_mean_field_names_an_expression_it_cannot_read_in_the_cells_own_notation():
    """It printed SymPy's internals: HadamardPower(W, 2)*h, Lambda(_d, tanh(_d)).(W)*h."""
    @gradlab.declare(state="h", params="W U b", source="t")
    def squared(s):
        return tanh(s.W ** 2 @ s.h + s.U @ s.x + s.b)
    with pytest.raises(gradlab.GradlabError, match=re.escape("cannot read W^∘2 h in cell")):
        gradlab.mean_field(squared, weight_scale=1.0, steps=4)
