"""Edges a hostile probe of the cell language and of what a REPL or notebook shows found."""

import torch

import gradlab


def _probe_cell(c, name):
    @gradlab.declare(state="h", params="W U b", source="probe", name=name)
    def probe(s):
        return (s.W @ s.h + s.U @ s.x + s.b) * c
    return probe


def test_a_float_constant_is_lowered_with_every_digit_it_holds():
    """lambdify printed a Float with 15 digits, so h' = (1/3) v ran as 0.333333333333333 v
    (and 123456789.12345679 as 123456789.123457): the code computed another cell than the
    one declared and printed."""
    for c in (1 / 3, 123456789.12345679, 2 / 3):
        cell = _probe_cell(c, "probe_digits")
        params = cell.init_params(2, 1)
        params = {k: torch.zeros_like(v) if k != "b" else torch.ones_like(v)
                  for k, v in params.items()}
        state, x = (torch.zeros(1, 2, dtype=torch.float64),), torch.zeros(1, 1,
                                                                         dtype=torch.float64)
        for backend in ("torch", "numpy"):
            args = (params, state, x) if backend == "torch" else (
                {k: v.numpy() for k, v in params.items()}, (state[0].numpy(),), x.numpy())
            new = cell.step_fn(backend)(*args)[0]
            assert new.tolist() == [[c, c]], (backend, c, new)


def test_tab_completion_on_a_block_offers_the_sympy_attributes_it_reaches():
    """A block reaches SymPy's shape, T, free_symbols, xreplace through __getattr__, but
    dir() (what a prompt's completer lists) held only Expression's own: b.sh<TAB> gave
    nothing."""
    import rlcompleter
    block = gradlab.cell("lstm").jacobian()["c", "c"]
    assert {"shape", "T", "free_symbols", "xreplace", "terms", "at"} <= set(dir(block))
    assert "expr_free_symbols" not in dir(block)       # SymPy's deprecated one: a warning
    completer = rlcompleter.Completer({"b": block})
    assert completer.complete("b.sha", 0) == "b.shape"
    assert completer.complete("b.xrep", 0) == "b.xreplace("
    term = gradlab.cell("lstm").jacobian().terms("h", "h")[0]
    assert "shape" in dir(term)


def test_equations_too_long_to_print_display_without_raising():
    """cell.equations(), cell.lets and one Equation raised GradlabError from repr and
    _repr_latex_ where an equation is too long to print (IPython showed a traceback),
    though the cell, its Jacobian and its blocks display a one-line note there."""
    import pytest
    from gradlab.errors import GradlabError

    @gradlab.declare(state="h", params="W U b", source="probe")
    def probe_long(s):
        v = s.let("a", s.W @ s.h + s.U @ s.x + s.b)
        for _ in range(24):                     # each level writes v out twice
            v = gradlab.tanh(v) * v
        return v

    def displayed(shown):        # as plain strings: a failure here prints no huge object
        try:
            return repr(shown), shown._repr_latex_() is None
        except GradlabError as err:
            return f"raised: {err}", False

    for shown in (probe_long.equations(), probe_long.lets, probe_long.equations()[-1]):
        printed, no_latex = displayed(shown)
        assert "h' = <expression: " in printed and "too long to print" in printed, printed
        assert no_latex
    assert displayed(probe_long.equations())[0].startswith("a = W h + U x + b\n")
    with pytest.raises(GradlabError, match="too long to print"):
        str(probe_long.equations())             # asked for in so many words: says why not
    lstm = gradlab.cell("lstm")
    assert repr(lstm.equations()) == str(lstm.equations()) == str(lstm.lets)
    assert lstm.equations()[0]._repr_latex_() == (
        r"$\displaystyle i = \sigma\left(W_{i} h + U_{i} x + b_{i}\right)$")
