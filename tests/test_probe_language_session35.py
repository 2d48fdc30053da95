"""Edges session 35's hostile probe of the cell language found."""

import pytest

import gradlab
from gradlab import GradlabError, tanh, var


def test_a_scripted_name_never_prints_as_a_power_of_another_name():
    """A let a^2 beside a parameter a printed h' = a^2 a^2 (the let times a's square, two
    quantities written alike), and var(h) beside a parameter sigma_h printed its variance
    σ_h^2 as that parameter's square; either order is refused, as are names that print
    alike."""
    def power_after(s):
        return s.let("a^2", tanh(s.W @ s.h)) * s.a ** 2

    def power_before(s):
        q = s.let("a^2", tanh(s.W @ s.h))
        return q + s.let("a", 3 * s.h) ** 2

    def variance(s):
        return tanh(s.W @ s.h) * s.sigma_h ** 2 + var(s.h)

    for fn, params in ((power_after, {"a": "1", "W": "n n"}), (power_before, {"W": "n n"}),
                       (variance, {"sigma_h": "1", "W": "n n"})):
        with pytest.raises(GradlabError, match="print as (a|its) power") as err:
            gradlab.declare(state="h", params=params, source="probe", name="powers")(fn)
        assert "\n" not in str(err.value)

    @gradlab.declare(state="h", params={"a": "1", "W": "n n"}, source="probe")
    def apart(s):       # a scripted name of its own base is a name as before
        return s.let("b^2", tanh(s.W @ s.h)) * s.a ** 2 + var(s.h)
    assert "a^2 b^2" in repr(apart)


def test_a_fraction_is_an_exact_constant_and_other_objects_are_refused_in_one_line():
    """h ** Fraction(1, 2) was taken and 0.5 * ... too, but Fraction(1, 3) * ... was
    refused ('cannot use Fraction(1, 3)'); and an object the language cannot use was shown
    by its repr, which for a cell is its equations, line by line (tanh(lstm) in the
    shell printed seven lines), naming nothing the language takes."""
    import fractions

    import torch

    @gradlab.declare(state="h", params="W U", source="probe")
    def third(s):
        return tanh(s.W @ s.h + s.U @ s.x) * fractions.Fraction(1, 3)

    params = third.init_params(3, 2)
    state, x = (torch.randn(2, 3, dtype=torch.float64),), torch.randn(2, 2, dtype=torch.float64)
    want = torch.tanh(state[0] @ params["W"].T + x @ params["U"].T) / 3
    assert torch.allclose(third.step_fn()(params, state, x)[0], want, rtol=1e-15, atol=0)
    with pytest.raises(GradlabError, match=r"\(Cell\) in a cell equation; it takes") as err:
        tanh(gradlab.cell("lstm"))
    assert "\n" not in str(err.value)


def test_a_new_state_that_is_not_an_expression_of_the_cell_is_named_by_its_type():
    """A declaration returning a numpy array failed deep in SymPy ('Symbol' object cannot
    be interpreted as an integer), and one returning the string 'h' was told 'got h', as
    if it were the state part h."""
    import numpy as np
    for value, kind in ((np.zeros(3), "ndarray"), ("h", "str"), (None, "NoneType")):
        with pytest.raises(GradlabError, match=rf"must be an n-vector .*\({kind}\)$"):
            gradlab.declare(state="h", params="W", source="probe", name="odd")(
                lambda s: value)
