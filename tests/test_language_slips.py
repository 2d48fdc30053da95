"""What a hostile probe of the declaration language found: named m-vectors stretched to n
entries by values_fn (wrong numbers, or a crash in `gradlab report`), Python branches on
symbolic values taken silently, a functools.partial's error lost in a traceback, numpy's
functions named only by numpy, var of a let named r^2, and a cell whose parameters are
all scalars unusable in gradient_flow."""

import functools
import math
import re

import numpy as np
import pytest
import torch
from torch.func import jacrev

import gradlab
from gradlab import GradlabError, mean, relu, sigmoid, tanh, var

D = torch.float64


def _mvec(s):
    y = s.let("y", tanh(s.U.T @ s.h + s.x))                      # an m-vector
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    return f * s.h + (1 - f) * tanh(s.W @ s.h + s.U @ y)


MVEC = gradlab.declare(state="h", params="W U W_f U_f b_f", gate_bias="b_f", source="test",
                       name="mvec")(_mvec)


@pytest.mark.parametrize("n,m", [(3, 1), (2, 3), (4, 6)])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_a_named_m_vector_keeps_its_m_entries(n, m, backend):
    p = MVEC.init_params(hidden=n, inputs=m, seed=0, bias_scale=0.5)
    gen = torch.Generator().manual_seed(1)
    h, x = torch.randn(2, n, generator=gen, dtype=D), torch.randn(2, m, generator=gen, dtype=D)
    want = torch.tanh(h @ p["U"] + x)
    if backend == "numpy":
        p, h, x = {k: v.numpy() for k, v in p.items()}, h.numpy(), x.numpy()
    got = MVEC.values_fn(backend)(p, (h,), x)
    assert tuple(got["y"].shape) == (2, m) and tuple(got["f"].shape) == (2, n)
    np.testing.assert_allclose(np.asarray(got["y"]), want.numpy(), rtol=1e-14)


def test_a_report_measures_a_cell_with_a_named_m_vector(tmp_path):
    params = MVEC.init_params(hidden=4, inputs=3, seed=0)
    xs = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    flow = gradlab.gradient_flow(MVEC, params, xs)

    def step(h, x):
        y = torch.tanh(params["U"].T @ h + x)
        f = torch.sigmoid(params["W_f"] @ h + params["U_f"] @ x + params["b_f"])
        return f * h + (1 - f) * torch.tanh(params["W"] @ h + params["U"] @ y)

    hs = [torch.zeros(4, dtype=D)]
    for t in range(6):
        hs.append(step(hs[-1], xs[t, 0]))
    P = jacrev(step)(hs[5], xs[5, 0])
    assert math.isclose(flow.log_norm()[0, 0], float(torch.linalg.matrix_norm(P, 2).log()),
                        rel_tol=1e-12)


def _declare(fn, params="W U"):
    return gradlab.declare(state="h", params=params, source="test", name=fn.__name__)(fn)


def test_a_python_branch_on_a_symbolic_value_is_refused():
    def branchy(s):
        a = s.W @ s.h + s.U @ s.x
        return s.g * (tanh(a) if s.g else relu(a))

    def equals(s):
        z = s.let("z", tanh(s.W @ s.h + s.U @ s.x))
        return z if mean(z) == 0 else -z          # was always False: -z, silently

    with pytest.raises(GradlabError, match=r"g is symbolic: Python's if, and, or and not "
                                           r"cannot decide on it"):
        _declare(branchy, {"W": "n n", "U": "n m", "g": "1"})
    with pytest.raises(GradlabError, match=r"μ_z is symbolic"):
        _declare(equals)


@pytest.mark.parametrize("module", ["np", "torch", "math"])
def test_numpy_torch_and_math_functions_point_to_gradlab_s(module):
    f = {"np": np.tanh, "torch": torch.tanh, "math": math.tanh}[module]

    def foreign(s):
        return f(s.W @ s.h + s.U @ s.x)

    with pytest.raises(GradlabError, match=r"cannot take a symbolic value: use gradlab's "
                                           r"\(gradlab.tanh"):
        _declare(foreign)


def test_numpy_scalars_and_unary_plus_still_work():
    def scaled(s):
        return +(np.float64(2) * tanh(s.W @ s.h + s.U @ s.x))

    assert "2.0 diag" in str(_declare(scaled).jacobian())


def test_a_partial_or_callable_declaration_reports_its_own_error():
    def body(s, k):
        return tanh(s.W @ s.x) * k

    with pytest.raises(GradlabError, match=r"^cell 'scaled', equation `return tanh\(s.W @ s.x\) \* k` "
                                           r"\(.*test_language_slips.py:\d+\): cannot multiply W "
                                           r"\(n x n\) by x \(m x 1\)"):
        gradlab.declare(state="h", params="W U", source="t", name="scaled")(
            functools.partial(body, k=2))

    class Step:
        def __call__(self, s):
            return tanh(s.W @ s.x)

    with pytest.raises(GradlabError, match=r"^cell 'obj', equation .*: cannot multiply W"):
        gradlab.declare(state="h", params="W U", source="t", name="obj")(Step())

    def good(s, k):
        return tanh(s.W @ s.h + s.U @ s.x) * k

    cell = gradlab.declare(state="h", params="W U", source="t", name="twice")(
        functools.partial(good, k=2))
    assert str(cell.jacobian()).startswith("∂h'/∂h = 2 diag")


def test_var_of_a_let_named_with_a_power_spells_it_out():
    def v2(s):
        r = s.let("r^2", tanh(s.W @ s.h + s.U @ s.x))
        return r * var(r) + mean(r)

    shown = str(_declare(v2).jacobian())
    assert "σ_rpow2^2" in shown and "μ_rpow2" in shown


def test_a_cell_of_scalar_parameters_reads_n_from_state0():
    def onlyscalar(s):
        return tanh(s.g * s.h)

    cell = _declare(onlyscalar, {"g": "1"})
    p = cell.init_params(hidden=3, inputs=2, seed=0)
    xs = torch.zeros(4, 2, 2, dtype=D)
    with pytest.raises(GradlabError, match=r"^no parameter of cell 'onlyscalar' has the "
                                           r"state size n: pass state0="):
        gradlab.gradient_flow(cell, p, xs)
    h0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    flow = gradlab.gradient_flow(cell, p, xs, state0=h0)
    h = h0[0]
    for _ in range(4):                               # h_T = tanh(g h_{T-1}), T = 4
        h = torch.tanh(p["g"] * h)
    lag1 = torch.diag(1 - h ** 2) * p["g"]           # dh_T / dh_{T-1}
    assert math.isclose(flow.log_norm()[0, 0], float(torch.linalg.matrix_norm(lag1, 2).log()),
                        rel_tol=1e-12)


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


@pytest.mark.parametrize("name", ["σ²", "a'_b", "r^2", "xⁿ"])
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


def test_a_reduction_takes_a_state_part_input_or_parameter_by_its_own_name():
    """mean(s.h) was refused ('bind it first') though h is named; a matrix is refused
    as one, not as 'mu_W must be a vector'."""
    def reduced(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b) * gradlab.mean(s.h) + var(s.b) * gradlab.norm(s.x)

    cell = _declare(reduced, "W U b")
    shown = str(cell.equations())
    assert "μ_h = 1/n 1ᵀ h" in shown and "‖x‖ = (xᵀ x)^(1/2)" in shown and "σ_b^2" in shown
    p = cell.init_params(hidden=3, inputs=2, seed=0, bias_scale=0.5)
    gen = torch.Generator().manual_seed(2)
    h, x = torch.randn(3, generator=gen, dtype=D), torch.randn(2, generator=gen, dtype=D)

    def step(h, x):                                  # independent: as a user writes it
        b = p["b"]
        return (torch.tanh(p["W"] @ h + p["U"] @ x + b) * h.mean()
                + ((b - b.mean()) ** 2).mean() * torch.linalg.vector_norm(x))

    got = cell.jacobian_fn()(p, (h[None],), x[None])[0]
    torch.testing.assert_close(got, jacrev(step)(h, x), rtol=1e-13, atol=1e-15)
    with pytest.raises(GradlabError, match=r"mean\(\) takes a named vector; W is a matrix "
                                           r"\(n x n\)"):
        def matrix(s):
            return s.h * mean(s.W)
        _declare(matrix, "W U b")


def test_a_state_part_returned_for_another_is_that_part_s_new_value():
    def swapped(s):
        return s.c, s.h + tanh(s.W @ s.h)

    cell = gradlab.declare(state="h c", params="W", source="t", name="swapped")(swapped)
    assert [str(s) for s in cell.lets] == ["h'", "c'"]
    assert "h' = c" in str(cell.equations())


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


def test_python_s_max_or_a_comparison_points_to_maximum():
    """max(a, b) on symbolic values said only "'>' not supported between instances of
    'Value' and 'Value'"."""
    def biggest(s):
        return max(tanh(s.W @ s.h + s.U @ s.x), s.h)

    with pytest.raises(GradlabError, match=r"a symbolic value has no order \(Python's max, "
                                           r"min, <, > compare\): use gradlab.maximum\(a, b\)"):
        _declare(biggest)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_norm_has_torch_s_slope_at_zero_so_the_zero_state_is_measured(backend):
    """(h^T h)^(-1/2), the slope of ||h||, is inf at h = 0, and its products with h nan:
    ||h|| h and ||h||^2 b, differentiable there with slope 0, gave an all-nan Jacobian at
    gradient_flow's default zero state (its last lag's norms and the rate nan)."""
    def normed(s):
        return (tanh(s.W @ s.h + s.U @ s.x + s.b) + 0.5 * gradlab.norm(s.h) * s.h
                + gradlab.norm(s.h) ** 2 * s.b)

    cell = _declare(normed, "W U b")
    p = cell.init_params(hidden=4, inputs=3, bias_scale=1.0, seed=0)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)

    def step(h, x):
        r = torch.linalg.vector_norm(h)
        return torch.tanh(p["W"] @ h + p["U"] @ x + p["b"]) + 0.5 * r * h + r ** 2 * p["b"]

    h0 = torch.zeros(2, 4, dtype=D)
    args = (p, (h0,), x) if backend == "torch" else (
        {k: v.numpy() for k, v in p.items()}, (h0.numpy(),), x.numpy())
    got = torch.as_tensor(cell.jacobian_fn("state", backend)(*args))
    for b in range(2):
        torch.testing.assert_close(got[b], jacrev(step)(h0[b], x[b]), rtol=1e-13, atol=1e-15)
    xs = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1), dtype=D) * 0.1
    assert np.isfinite(gradlab.gradient_flow(cell, p, xs).log_norm()).all()


def test_a_let_named_as_the_new_state_but_not_returned_says_so():
    """It said only "'h'' is already defined"."""
    def twice(s):
        return 2 * s.let("h'", tanh(s.W @ s.h + s.U @ s.x))

    with pytest.raises(GradlabError, match="a let is named h', the name of the new h, but "
                                           "the declaration returns another value for h"):
        _declare(twice)


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


@pytest.mark.parametrize("extra", [(5,), ()], ids=["start", "keyword"])
def test_sum_of_a_named_vector_refuses_a_start_it_would_drop(extra):
    """sum(r, 5) and sum(r, start=2) declared h' = tanh(r + Σ_r 1 + b): the 5 and the
    start were dropped without a word (Python's own sum adds them)."""
    kwargs = {} if extra else {"start": 2}

    def started(s):
        r = s.let("r", s.W @ s.h)
        return tanh(r + gradlab.sum(r, *extra, **kwargs) + s.b)
    with pytest.raises(GradlabError, match=r"takes the vector alone, got also (5|start=2)"):
        _declare(started, "W b")
    assert gradlab.sum([1, 2], start=5) == 8 and gradlab.sum([[1]], []) == [1]
