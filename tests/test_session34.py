"""Regression tests for defects fixed in session 34 (from df769c5)."""

import pytest

import gradlab
from gradlab.errors import GradlabError


@pytest.mark.parametrize("call", [lambda s: gradlab.I(3), lambda s: s.W(s.h),
                                  lambda s: s.h(1)])
def test_calling_a_value_is_one_line_naming_it(call):
    """gradlab.I(3) (numpy's identity), W(h) or s.h(t - 1) was Python's TypeError
    "'Value' object is not callable", naming neither the value nor what to write."""
    def body(s):
        call(s)
        return s.W @ s.h

    with pytest.raises(GradlabError) as err:
        gradlab.declare(state="h", params="W", source="test")(body)
    message = str(err.value)
    assert "\n" not in message and "cannot be called" in message and "W @ h" in message
