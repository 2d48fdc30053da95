"""Regressions fixed in session 36, each reproduced before its fix."""

import pytest

import gradlab


@pytest.mark.parametrize("call", [lambda: gradlab.I(3), lambda: gradlab.I(n=4)])
def test_the_identity_is_not_a_function_of_its_size(call):
    # I(3) was "TypeError: 'Value' object is not callable", from Python, not gradlab
    with pytest.raises(gradlab.GradlabError, match=r"^I is a value of the cell language, "
                       r"not a function: it takes no arguments \(I is the n x n identity"):
        call()


def test_a_value_called_in_a_declaration_is_one_line():
    with pytest.raises(gradlab.GradlabError, match=r"^cell 'cell', equation `.*`"
                       r" \(.*test_session36.py:\d+\): W is a value of the cell language, not a "
                       r"function: it takes no arguments$") as err:
        @gradlab.declare(state="h", params="W U b", source="test")
        def cell(s):
            return gradlab.tanh(s.W(s.h) + s.U @ s.x + s.b)
    assert "\n" not in str(err.value)
