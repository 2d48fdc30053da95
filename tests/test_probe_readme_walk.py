"""Found by walking README.md as a newcomer: each test pins one fix."""

import pytest

import gradlab
from gradlab.symbolic.language import SIZES


def test_explicit_refuses_a_size_other_than_the_one_subs_fixed():
    """J.subs(n, 3) fixes every block at 3 x 3; explicit(n=5) wrote them at 3 x 3 anyway,
    silently, where the user asked for 5."""
    J = gradlab.cell("lstm").jacobian().subs(SIZES["n"], 3)
    assert J.explicit(n=3)[("c", "c")].shape == (3, 3)
    for call in (lambda: J.explicit(n=5), lambda: J["c", "h"].explicit(n=5)):
        with pytest.raises(gradlab.GradlabError, match=r"explicit\(n=5\).*valid: 3"):
            call()
    Ji = gradlab.cell("lstm").jacobian("input").subs(SIZES["m"], 2)
    assert Ji.explicit(n=3)[("c", "x")].shape == (3, 2)         # m: the fixed one
    with pytest.raises(gradlab.GradlabError, match=r"explicit\(m=4\).*valid: 2"):
        Ji.explicit(n=3, m=4)
