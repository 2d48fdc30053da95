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


def test_gradlab_init_defaults_are_critical_inits():
    """The init command writes its defaults again (its --help must not import torch to
    read them from critical_init): they must stay the library's, option by option."""
    import inspect

    from gradlab.commands.learning import init_
    from gradlab.meanfield.critical import critical_init
    library = inspect.signature(critical_init).parameters
    shared = [p for p in init_.params if p.name in library
              and library[p.name].default is not inspect.Parameter.empty]
    assert {p.name for p in shared} >= {"hidden", "inputs", "measurements", "seed",
                                        "weight_scale", "gate_bias"}
    for p in shared:
        assert p.default == library[p.name].default, p.name
