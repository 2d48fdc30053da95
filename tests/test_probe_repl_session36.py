"""Probes of the notebook side (session 36): what a cell, its Jacobian and its blocks
show in LaTeX for names a declaration may give."""

import gradlab
from gradlab import tanh


def _subscripted():
    return gradlab.declare(state="h_a c_2", params="W U", source="t", name="subscripted")(
        lambda s: {"h_a": tanh(s.W @ s.h_a + s.U @ s.x) * s.c_2,
                   "c_2": s.c_2 * tanh(s.W @ s.h_a)})


def test_a_subscripted_state_parts_new_value_carries_its_prime_outside_the_subscript():
    """A state part h_a's new value printed h_{a'} in LaTeX (h with subscript a'), where
    its text is h_a' and a stack's h1' prints h_{1}': the notebook, J's blocks, J.explicit
    and `gradlab derive --latex` showed ∂h_{a'}/∂h_{a}."""
    cell = _subscripted()
    J = cell.jacobian()
    shown = [cell.latex(), J._repr_latex_(), J["h_a", "c_2"]._repr_latex_(),
             J.explicit(1)._repr_latex_(), cell.equations()._repr_latex_()]
    for tex in shown:
        assert "_{a'}" not in tex and "_{2'}" not in tex, tex
    assert r"\frac{\partial h_{a}'}{\partial c_{2}}" in shown[2]
    assert r"h_{a}' &= " in shown[4] and r"c_{2}' &= " in shown[4]
    # as the digit-named parts of a stack print theirs
    assert r"h_{1}'" in gradlab.stack("rnn_tanh", 2).latex()

