"""What a hostile probe of the declaration language found in how names print: a name that
prints as a derivative's function, a parameter, let or reduction's name that prints as
something else, two names that typeset alike or render as one glyph, powers and
reductions of a scripted name as one superscript, a stack's subscripts, var of a let
named r^2, and the display hooks of a cell too long to print, which never raise."""

import re

import pytest
import torch

import gradlab
from gradlab import GradlabError, mean, relu, tanh, var


def _declare(fn, params="W U"):
    return gradlab.declare(state="h", params=params, source="test", name=fn.__name__)(fn)


def test_var_of_a_let_named_with_a_power_spells_it_out():
    def v2(s):
        r = s.let("r^2", tanh(s.W @ s.h + s.U @ s.x))
        return r * var(r) + mean(r)

    shown = str(_declare(v2).jacobian())
    assert "σ_rpow2^2" in shown and "μ_rpow2" in shown


@pytest.mark.parametrize("name", ["θ", "theta", "H"])
def test_a_name_that_prints_as_a_derivative_s_function_is_refused(name):
    """relu' prints θ(v) (LaTeX \\theta) and a tie H(v): a parameter θ read 'θ diag(θ(W h +
    U x)) W', its own symbol and the step function alike."""
    def scaled(s):
        return getattr(s, name) * relu(s.W @ s.h + s.U @ s.x)

    with pytest.raises(GradlabError, match=rf"parameter name '{name}' is how a function "
                                           r"prints"):
        gradlab.declare(state="h", params={"W": "n n", "U": "n m", name: "1"}, source="t",
                        name="scaled")(scaled)


def test_display_hooks_of_a_cell_too_long_to_print_never_raise():
    """IPython swallows an exception from _repr_latex_ and shows nothing (or the
    traceback, for repr): each hook gives a short line or None, the repr says why."""
    def deep(s):
        e = s.h
        for _ in range(18):
            e = e + tanh(s.W @ e + s.U @ s.x + s.b)
        return e

    cell = _declare(deep, "W U b")
    J = cell.jacobian()
    assert cell._repr_latex_() is None and cell._repr_markdown_() is None
    assert J._repr_latex_() is None
    assert "equations not shown: an expression nested" in repr(cell)
    assert repr(J).startswith("<Jacobian d(h')/d(h): an expression nested")
    with pytest.raises(GradlabError, match="too long to print"):
        str(J)                                     # asked for in so many words: says why
    # a block and its terms too (their hooks raised "too long to print")
    block = J["h", "h"]
    assert repr(block).startswith("<expression: an expression nested")
    assert block._repr_latex_() is None and repr(block.terms()).startswith("[")
    with pytest.raises(GradlabError, match="too long to print"):
        str(block)


@pytest.mark.parametrize("name", ["σ²", "a'_b", "r^2", "qⁿ"])
def test_a_power_of_a_scripted_name_is_one_superscript_in_latex(name):
    """'σ²^{2}' and "a'_{b}^{2}" are double superscripts, which TeX and KaTeX refuse."""
    def squared(s):
        return s.let(name, tanh(s.W @ s.h + s.U @ s.x + s.b)) * s.h

    latex = _declare(squared, "W U b").jacobian()._repr_latex_()
    assert r"\right)^{2}" in latex
    for bad in ("²^{", "ⁿ^{", "'_{b}^{", "^{2}^{"):
        assert bad not in latex


def test_reduction_letters_replace_only_a_name_s_start():
    def named(s):
        return s.let("emu_x", tanh(s.W @ s.h + s.U @ s.x + s.b)) * s.h

    shown = repr(_declare(named, "W U b"))
    assert "emu_x = tanh" in shown and "eμ_x" not in shown


def test_a_stack_s_new_states_carry_the_subscripts_of_its_old_ones():
    """A 2-layer LSTM showed c_{1} beside c1' (read as two symbols); mu_a' stays
    \\mu_{a'}, the mean of a'."""
    cell, _ = gradlab.from_torch(torch.nn.LSTM(4, 4, num_layers=2))
    latex = cell.jacobian()["h2", "c1"]._repr_latex_()
    assert r"\partial h_{2}'" in latex and r"c_{2}'" in latex and "c2'" not in latex


@pytest.mark.parametrize("name, shown", [("hprime", r"\mathit{hprime}"),
                                         ("xnorm", r"\mathit{xnorm}"),
                                         ("rabs", r"\mathit{rabs}"),
                                         ("hbar", r"\bar{h}"), ("ctilde", r"\tilde{c}")])
def test_a_let_never_reads_in_latex_as_the_new_state_a_norm_or_a_constant(name, shown):
    """SymPy's LaTeX printed a let hprime as h' (beside the new state h'), xnorm as
    ‖x‖ (the norm of the input), rabs as |r| and hbar as Planck's ħ."""
    def named(s):
        return s.let(name, tanh(s.W @ s.h + s.U @ s.x + s.b)) * s.h

    latex = _declare(named, "W U b").jacobian()._repr_latex_()
    assert shown in latex
    for misread in ("{h}'", r"\left\|", r"\left|", r"\hbar"):
        assert misread not in latex


@pytest.mark.parametrize("name, reads", [("norm_r", "norm(r), printed ‖r‖"),
                                         ("sum_q", "sum(q), printed Σ_q")])
def test_a_name_a_reduction_gives_is_refused_to_the_user(name, reads):
    """A let norm_r = tanh(...) printed as ‖r‖ = tanh(...); the reductions keep their
    names (norm(r) is still norm_r) and a state part or parameter may not take them."""
    def named(s):
        return s.let(name, tanh(s.W @ s.h + s.U @ s.x + s.b)) * s.h

    with pytest.raises(GradlabError, match=rf"let name '{name}' is the name gradlab gives "
                                           rf"{re.escape(reads)}; choose another"):
        _declare(named, "W U b")
    with pytest.raises(GradlabError, match=rf"parameter name '{name}' is the name gradlab"):
        gradlab.declare(state="h", params={"W": "n n", name: "n"}, source="t",
                        name="c")(lambda s: s.W @ s.h)

    def reduced(s):
        r = s.let(name[-1], tanh(s.W @ s.h + s.U @ s.x + s.b))
        return (gradlab.norm(r) if name.startswith("norm") else gradlab.sum(r)) * s.h

    assert name in {str(let) for let in _declare(reduced, "W U b").lets}


def test_two_names_that_typeset_alike_are_refused():
    """h1 and h_1 both printed h_{1}: 'h' = h_{1} ⊙ h_{1}' hid which was which."""
    def two(s):
        return s.let("h1", tanh(s.W @ s.h)) * s.let("h_1", tanh(s.U @ s.x))

    with pytest.raises(GradlabError, match=r"'h_1' and 'h1' would print alike \(\$h_\{1\}\$ "
                                           r"in the derivation's LaTeX\); rename one"):
        _declare(two)
    with pytest.raises(GradlabError, match=r"^cell 'parts': 'h_1' and 'h1' would print alike"):
        gradlab.declare(state="h1 h_1", params="W", source="t", name="parts")(
            lambda s: (tanh(s.W @ s.h1), s.h_1 + s.h1))


@pytest.mark.parametrize("name, said", [
    ("r^2'", "has a prime or ~ after its ^"), ("x^2~", "has a prime or ~ after its ^"),
    ("W^T", "reads as a transpose in LaTeX")])
def test_a_let_name_that_breaks_or_misreads_latex_is_refused(name, said):
    """r^2' is r^{2}' (a double superscript TeX and KaTeX refuse); W^T read as Wᵀ."""
    def named(s):
        return s.let(name, tanh(s.W @ s.h + s.U @ s.x + s.b)) * s.h

    with pytest.raises(GradlabError, match=re.escape(f"let name {name!r} {said}")):
        _declare(named, "W U b")


@pytest.mark.parametrize("name, said", [("sigma", "is how a function prints"),
                                        ("W__T", "has '__' or a final '_'"),
                                        ("h_", "has '__' or a final '_'")])
def test_a_parameter_name_that_prints_as_something_else_is_refused(name, said):
    """sigma printed as the sigmoid's σ; W__T as W^T; h_ as h."""
    with pytest.raises(GradlabError, match=re.escape(f"parameter name {name!r} {said}")):
        gradlab.declare(state="h", params={"W": "n n", name: "1"}, source="t",
                        name="c")(lambda s: s.W @ s.h)


def test_a_reduction_of_a_scripted_let_is_one_superscript_in_latex():
    """norm(q^2) printed q^{2}^{T} q^{2}: a transpose of a scripted name is parenthesised."""
    def normed(s):
        q = s.let("q^2", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return q * gradlab.norm(q)

    latex = _declare(normed, "W U b")._repr_latex_()
    assert r"\left(q^{2}\right)^{T} q^{2}" in latex and "}^{T}" not in latex.replace(
        r"\right)^{T}", "")


def test_a_let_that_prints_as_a_reduction_s_name_is_refused():
    """A let μ_a beside mean(a) printed μ_a = 2 a and μ_a = 1/n 1ᵀ a (scalars escaped the
    check, which compared matrix names only)."""
    def twins(s):
        a = s.let("a", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return s.let("μ_a", 2 * a) * mean(a)

    with pytest.raises(GradlabError, match=r"'mu_a' and 'μ_a' would print alike \(\$\\mu_\{a\}\$ "
                                           r"in the derivation's LaTeX\); rename one"):
        _declare(twins, "W U b")


def test_norm_and_sum_of_a_scripted_let_print_its_name():
    """norm(q^2) printed ‖qpow_2‖ (its name spelled out for var's sake) and q^2ᵀ."""
    def normed(s):
        q = s.let("q^2", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return q * gradlab.norm(q) + gradlab.sum(q) * s.h

    cell = _declare(normed, "W U b")
    shown, latex = str(cell.equations()), cell._repr_latex_()
    assert "‖q^2‖ = ((q^2)ᵀ q^2)^(1/2)" in shown and "Σ_q^2 = 1ᵀ q^2" in shown
    assert r"\left\lVert q^{2} \right\rVert" in latex and r"\Sigma_{q^{2}}" in latex
    assert "pow" not in shown + latex


@pytest.mark.parametrize("a, b", [("alpha", "α"), ("n~", "ñ"), ("ell", "ℓ"), ("Gamma", "Γ")])
def test_names_that_render_as_one_glyph_are_refused(a, b):
    """alpha and α were both accepted and both render as α: the LaTeX of h' = alpha ⊙ α
    showed α ⊙ α. The clash check compared LaTeX source (\\alpha against α)."""
    def both(s):
        first = s.let(a, tanh(s.W @ s.h + s.U @ s.x + s.b))
        return first * s.let(b, tanh(s.W @ s.h))
    with pytest.raises(GradlabError, match=r"would print alike"):
        _declare(both, "W U b")


def test_a_reduction_whose_name_is_taken_says_which_reduction_took_it():
    """mean(r) of a vector named apow2, beside mean of a^2 (both mu_apow2), said only
    "'mu_apow2' is already defined", a name the user never wrote."""
    from gradlab import mean, tanh

    def spelled_alike(s):
        return mean(s.let("a^2", tanh(s.W @ s.h))) * mean(s.let("apow2", s.h)) * s.h + s.U @ s.x

    def let_first(s):
        s.let("mu_a", s.h)
        return mean(s.let("a", s.W @ s.h)) * s.h + s.U @ s.x

    for body, why in ((spelled_alike, "mean(apow2) names its value 'mu_apow2'"),
                      (let_first, "mean(a) names its value 'mu_a'")):
        with pytest.raises(gradlab.GradlabError, match=re.escape(why)) as err:
            gradlab.declare(state="h", params="W U", source="a test", name="alike")(body)
        assert "\n" not in str(err.value) and "rename" in str(err.value)
