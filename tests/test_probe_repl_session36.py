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



def _documented(doc):
    def fn(s):
        return tanh(s.W @ s.h + s.U @ s.x)
    fn.__doc__ = doc
    return gradlab.declare(state="h", params="W U", source="t", name="documented")(fn)


def test_a_docstring_cannot_open_a_block_in_the_notebook_or_the_derivation_page():
    """A docstring starting ``` opened a code fence that turned the rest of the derivation
    page (and the notebook's display of the cell) into code, equations included; one
    starting #, - or 1. made a heading or a list of it."""
    from gradlab.documents.derivation import markdown
    for doc, opener in (("``` an unclosed fence", "```"), ("~~~ tilde fence", "~~~"),
                        ("# A heading", "#"), ("- a list", "-"), ("1. numbered", "1."),
                        ("=== rule", "="), ("* starred", "*")):
        cell = _documented(doc)
        for page in (markdown(cell), cell._repr_markdown_()):
            line = next(ln for ln in page.splitlines() if doc.split()[-1] in ln)
            assert not line.startswith(opener), (doc, line)
            assert "$$" in page.split(line, 1)[1]          # the equations still follow


def test_a_cell_without_a_docstring_has_no_empty_paragraph_on_its_page():
    """A cell declared without a docstring had an empty doc paragraph on its derivation
    page: three blank lines between its title and its source."""
    from gradlab.documents.derivation import markdown
    page = markdown(_documented(None))
    assert "\n\n\n" not in page
    assert page.startswith("# `documented`\n\nSource: t.\n")
