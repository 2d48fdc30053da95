"""Found by walking README.md as a newcomer: each test pins one fix."""

import pytest

import gradlab
from gradlab.symbolic.language import SIZES


def test_explicit_refuses_a_size_other_than_the_one_subs_fixed():
    """J.subs(n, 3) fixes every block at 3 x 3; explicit(n=5) wrote them at 3 x 3 anyway,
    silently, where the user asked for 5."""
    J = gradlab.cell("lstm").jacobian().subs(SIZES["n"], 3)
    assert J.explicit(n=3)[("c", "c")].shape == (3, 3)
    assert J.explicit()[("c", "c")].shape == (3, 3)             # the fixed size, by default
    assert gradlab.cell("lstm").jacobian().explicit()[("c", "c")].shape == (2, 2)
    for call in (lambda: J.explicit(n=5), lambda: J["c", "h"].explicit(n=5)):
        with pytest.raises(gradlab.GradlabError, match=r"explicit\(n=5\).*valid: 3"):
            call()
    Ji = gradlab.cell("lstm").jacobian("input").subs(SIZES["m"], 2)
    assert Ji.explicit(n=3)[("c", "x")].shape == (3, 2)         # m: the fixed one
    with pytest.raises(gradlab.GradlabError, match=r"explicit\(m=4\).*valid: 2"):
        Ji.explicit(n=3, m=4)


def test_subs_of_the_size_is_as_the_readme_says():
    """README ("In Python"): a plain Symbol("n") is refused, and putting 3 for the size
    Symbol("n", integer=True, positive=True) fixes every block at it. (It said the sizes
    were not substituted.)"""
    import sympy as sp
    J = gradlab.cell("lstm").jacobian()
    K = J.subs(sp.Symbol("n", integer=True, positive=True), 3)
    assert K.shape == (6, 6) and K["c", "h"].shape == (3, 3)
    with pytest.raises(gradlab.GradlabError, match=r"not the size n"):
        J.subs(sp.Symbol("n"), 3)
