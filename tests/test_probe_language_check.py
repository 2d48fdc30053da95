"""Edges a hostile probe of users' own cells and derivation checks found."""

import pytest
import sympy as sp

import gradlab
from gradlab.errors import GradlabError
from gradlab.symbolic import activations


def test_prose_is_one_line_and_a_backslash_does_not_undo_its_escapes(tmp_path):
    """A source with a newline split the index's table row (and the next run's index
    dropped the page), and \\[ or \\$ turned the escapes of [ and $ back into a link or an
    equation."""
    from gradlab.documents.derivation import kept_rows, write_all
    from gradlab.symbolic.words import prose
    assert prose("a\n| b |\n\\[x](y) \\$z$") == "a \\| b \\| \\\\\\[x](y) \\\\\\$z\\$"

    @gradlab.declare(state="h", params="W U b", source="Me\n| [`x`](x.md) | h | y |")
    def probe_lined(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)

    write_all(tmp_path / "d", [probe_lined])
    rows = [r for r in (tmp_path / "d" / "README.md").read_text().splitlines()
            if "probe_lined" in r]
    assert len(rows) == 1 and rows[0].endswith("| h \\| y \\| |")
    assert kept_rows(tmp_path / "d", {}) == rows        # the next run keeps its row


def test_an_activation_key_the_lowered_code_uses_is_refused():
    """Registering sp.sqrt (key "sqrt") was accepted, and every cell's lowered code, the
    built-ins' too, then failed with a TypeError from the backend's namespace."""
    before = dict(activations.TABLE)
    with pytest.raises(GradlabError, match="'sqrt' is a name the lowered code uses"):
        activations.activation("mysqrt", sp.sqrt, text="sqrt({})", latex=r"\sqrt{{{}}}",
                               numpy=activations.call("sqrt"), torch=activations.call("sqrt"))
    kw = type("lambda", (sp.Function,), {})
    with pytest.raises(GradlabError, match="not a keyword"):
        activations.activation("kw", kw, text="k({})", latex="k({})",
                               numpy=activations.call("abs"), torch=activations.call("abs"))
    assert activations.TABLE == before


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_backend_names_are_the_namespaces_own(name):
    from gradlab.lowering.backends import LOADERS
    # a namespace built now (the cached ones keep activations another test registered and
    # took out of the table again)
    own = set(vars(LOADERS[name]())) - set(activations.TABLE)
    assert own == set(activations.BACKEND_NAMES)


def autograd_of(cell):
    """The Jacobian of a one-part cell's own step, by torch autograd (right by definition)."""
    import torch
    step = cell.step_fn()

    def jacobian(p, state, x):
        one = lambda h, u: step(p, (h[None],), u[None])[0][0]      # noqa: E731
        return torch.func.vmap(torch.func.jacrev(one))(state[0], x)
    return jacobian


def test_check_refuses_a_cell_whose_own_activation_has_a_wrong_derivative():
    """An activation registered with a SymPy derivative that is not its implementation's
    made check_jacobian certify a derivation with that wrong derivative and call the true
    Jacobian (torch autograd of the step) wrong."""
    class probe_cube(sp.Function):
        def fdiff(self, argindex=1):
            return 2 * self.args[0] ** 2            # not 3 a^2

    try:
        activations.activation("probe_cube", probe_cube, text="cube({})", latex="cube({})",
                               numpy=lambda np: lambda a: a ** 3,
                               torch=lambda torch: lambda a: a ** 3)
        cube = gradlab.elementwise(probe_cube)

        @gradlab.declare(state="h", params="W U b", source="t")
        def probe_cubic(s):
            return cube(s.W @ s.h + s.U @ s.x + s.b)

        params = probe_cubic.init_params(5, 3)
        for fn in (autograd_of(probe_cubic), probe_cubic.jacobian_fn()):
            with pytest.raises(GradlabError, match="probe_cube registered with a derivative"):
                gradlab.check_jacobian(fn, probe_cubic, params)

        class probe_cube_right(sp.Function):
            def fdiff(self, argindex=1):
                return 3 * self.args[0] ** 2

        activations.activation("probe_cube_right", probe_cube_right, text="cube3({})",
                               latex="cube3({})", numpy=lambda np: lambda a: a ** 3,
                               torch=lambda torch: lambda a: a ** 3)
        right = gradlab.elementwise(probe_cube_right)

        @gradlab.declare(state="h", params="W U b", source="t")
        def probe_cubic_right(s):
            return right(s.W @ s.h + s.U @ s.x + s.b)

        assert gradlab.check_jacobian(autograd_of(probe_cubic_right), probe_cubic_right,
                                      probe_cubic_right.init_params(5, 3)).ok
    finally:                        # (the table is the session's: leave it as found)
        for key in ("probe_cube", "probe_cube_right"):
            activations.TABLE.pop(key, None)


def test_check_of_a_deeply_nested_cell_takes_the_terms_apart_quickly():
    """Taking a block apart into its terms ran SymPy's expand, which multiplied out the
    scalar slope of nested activations too: a dozen tanh's made check_jacobian (and
    gradlab check) run for minutes, at 2^12 terms of one term of the block."""
    import functools

    from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

    from gradlab.lowering.terms import block_terms

    def nested(depth):
        @gradlab.declare(state="h", params="W U b", source="t", name=f"probe_deep{depth}")
        def cell(s):
            return functools.reduce(lambda a, _: gradlab.tanh(a), range(depth),
                                    s.W @ s.h + s.U @ s.x + s.b)
        return cell

    # the terms keep every activation of the block whole (expand multiplied out their
    # bodies, already at depth 3); a structural check, not a timed one
    block = nested(3).jacobian_blocks()[0][0]
    applied = block.atoms(ElementwiseApplyFunction)
    assert all(t.atoms(ElementwiseApplyFunction) <= applied for t in block_terms(block))
    probe_deep = nested(14)
    params = probe_deep.init_params(4, 3, weight_scale=1.5)
    exact = probe_deep.jacobian_fn()
    assert gradlab.check_jacobian(exact, probe_deep, params).ok
    wrong = gradlab.check_jacobian(lambda p, s, x: exact(p, s, x).transpose(1, 2),
                                   probe_deep, params)
    assert not wrong.ok and "transpose" in str(wrong), str(wrong)
