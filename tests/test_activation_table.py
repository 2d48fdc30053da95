"""The activation table at its edges: a name taken twice, an entry added after cells were
lowered, numpy's sigmoid far out on the negative side, and a comparison of two symbolic
values that Python would decide on its own."""

import numpy as np
import pytest
import sympy as sp
import torch

import gradlab
from gradlab import GradlabError, log, sigmoid, tanh
from gradlab.symbolic import activations


def test_an_activation_named_as_a_builtin_is_refused_not_swapped_in():
    """A hard sigmoid whose SymPy function was named 'sigmoid' replaced the built-in entry:
    every LSTM then lowered to it (0.035 from nn.LSTMCell), without a word."""
    hard = activations._function("sigmoid", lambda x: sp.S.Zero)
    with pytest.raises(GradlabError, match="an activation 'sigmoid' is registered already"):
        activations.activation("hard_sigmoid", hard, text="hσ({})", latex="h({})",
                               numpy=lambda np: lambda a: np.clip(0.2 * a + 0.5, 0, 1),
                               torch=lambda t: lambda a: t.clamp(0.2 * a + 0.5, 0, 1))
    other = activations._function("my_tanh", lambda x: 1 - sp.tanh(x) ** 2)
    with pytest.raises(GradlabError, match="the language name 'tanh' is taken"):
        activations.activation("tanh", other, text="t({})", latex="t({})",
                               numpy=activations.call("tanh"), torch=activations.call("tanh"))
    assert activations.TABLE["sigmoid"].function is activations.sigmoid
    lstm = gradlab.cell("lstm")
    p = lstm.init_params(4, 3, bias_scale=0.5, seed=0)
    h, c, x = (torch.randn(2, k, dtype=torch.float64) for k in (4, 4, 3))
    ref = gradlab.to_torch(lstm, p)
    with torch.no_grad():
        assert torch.allclose(lstm.step_fn()(p, (h, c), x)[0], ref(x, (h, c))[0], atol=1e-14)


def test_an_activation_registered_after_a_cell_was_lowered_reaches_the_backends():
    """The backends were built once: a cell using atan, registered after any step had run,
    failed in its step with "'SimpleNamespace' object has no attribute 'atan'"."""
    rnn = gradlab.cell("rnn_tanh")
    p0 = rnn.init_params(3, 2, seed=0)
    rnn.step_fn()(p0, (torch.zeros(1, 3, dtype=torch.float64),),
                  torch.zeros(1, 2, dtype=torch.float64))
    rnn.step_fn("numpy")({k: v.numpy() for k, v in p0.items()}, (np.zeros((1, 3)),),
                         np.zeros((1, 2)))
    activations.activation("arctan_test", sp.atan, text="atan({})",
                           latex=r"\arctan\left({}\right)", numpy=activations.call("arctan"),
                           torch=activations.call("atan"))
    try:
        atan = gradlab.elementwise(sp.atan)

        @gradlab.declare(state="h", params="W U b", source="test")
        def atan_rnn(s):
            return atan(s.W @ s.h + s.U @ s.x + s.b)

        p = atan_rnn.init_params(3, 2, seed=1)
        h, x = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
        want = torch.atan(h @ p["W"].T + x @ p["U"].T + p["b"])
        assert torch.allclose(atan_rnn.step_fn()(p, (h,), x)[0], want, atol=1e-15)
        pn = {k: v.numpy() for k, v in p.items()}
        assert np.allclose(atan_rnn.step_fn("numpy")(pn, (h.numpy(),), x.numpy())[0],
                           want.numpy(), atol=1e-15)
    finally:
        del activations.TABLE["atan"]


def test_numpys_sigmoid_keeps_its_digits_far_below_zero():
    """0.5 (1 + tanh(a / 2)) cancels for a < 0: 1.7e-4 off at a = -30, 0 below -37, and
    log(sigmoid(a)) -inf there, where the torch backend is exact."""
    @gradlab.declare(state="h", params="b", source="test")
    def log_sigmoid(s):
        return log(sigmoid(s.h)) + s.b

    a = np.array([[-5.0, -20.0, -30.0, -38.0, -50.0, -700.0, 0.0, 30.0, 800.0]])
    exact = -np.logaddexp(0.0, -a)
    got = log_sigmoid.step_fn("numpy")({"b": np.zeros(a.shape[1])}, (a,), np.zeros((1, 1)))[0]
    # (log of σ(30) = 1 - 9e-14 keeps only its absolute accuracy, as in any backend)
    assert np.all(np.abs(got - exact) <= 1e-15 * np.abs(exact) + 2.3e-16)
    J = log_sigmoid.jacobian_fn("state", "numpy")({"b": np.zeros(a.shape[1])}, (a,),
                                                  np.zeros((1, 1)))
    slope = np.diagonal(J[0])                          # d log σ(a) / da = 1 - σ(a)
    assert np.all(np.isfinite(slope))
    left = a[0] <= 0                                   # (right of 0, 1 - σ cancels anyway)
    assert np.allclose(slope[left], 1 / (1 + np.exp(a[0][left])), rtol=1e-15, atol=0)


def test_two_symbolic_values_compared_are_refused():
    """`a == s.h` was always False (each s.h a new object), so `if a == s.h:` took a
    branch silently; comparing with a number was refused already."""
    with pytest.raises(GradlabError, match="is symbolic: Python's if"):
        @gradlab.declare(state="h", params="W U b", source="test")
        def branching(s):
            a = tanh(s.W @ s.h + s.U @ s.x + s.b)
            return a if a == s.h else s.h
    with pytest.raises(GradlabError, match="is symbolic"):
        @gradlab.declare(state="h", params="W U b", source="test")
        def unequal(s):
            a = tanh(s.W @ s.h + s.U @ s.x + s.b)
            return a if a != s.h else s.h


def test_a_cell_file_imported_twice_registers_its_activation_again():
    """A check file importing the cell file that --cell names runs it twice: the second
    registration of the same activation was refused."""
    def register():
        f = activations._function("hardtanh_twice", lambda x: sp.S.Zero)
        return activations.activation(
            "hardtanh_twice", f, text="ht({})", latex=r"\mathrm{ht}\left({}\right)",
            numpy=lambda np: lambda a: np.clip(a, -1, 1),
            torch=lambda t: lambda a: t.clamp(a, -1, 1))
    try:
        first, second = register(), register()
        assert first is not second and activations.TABLE["hardtanh_twice"].function is second
        with pytest.raises(GradlabError, match=r"'maximum' is registered already \(max\(u, v\)\)"):
            activations.activation("mymax", activations._function("maximum", lambda a, b: (a, b),
                                                                   nargs=2),
                                   text="max({}, {})", latex="M", numpy=None, torch=None)
    finally:
        del activations.TABLE["hardtanh_twice"]


def test_explicit_entries_with_numbers_put_in_are_numbers():
    """J.explicit(n) of rnn_relu kept gradlab's θ after numbers were put in: evalf left
    0.3*step(0.69), float() said 'Cannot convert complex to float', lambdify NameError."""
    from sympy.matrices.expressions.matexpr import MatrixElement

    @gradlab.declare(state="h", params="W U b", source="test")
    def clipped(s):
        return gradlab.minimum(gradlab.maximum(s.W @ s.h + s.U @ s.x + s.b, -1.0), 1.0)

    for cell in (gradlab.cell("rnn_relu"), clipped):
        entry = next(iter(cell.jacobian().explicit(n=1, m=1).values()))[0, 0]
        number = entry.xreplace({a: sp.Float(0.3) for a in entry.atoms(MatrixElement)})
        assert float(number) == pytest.approx(0.3, abs=1e-15)       # W = 0.3, unit active
        assert float(sp.lambdify([], number)()) == pytest.approx(0.3, abs=1e-15)
    assert activations.step(sp.Float(-0.5)) == 0 and activations.heaviside(0) == sp.S.Half
    assert activations.above(2, 2) == sp.S.Half and activations.relu(sp.Float(-1.0)) == 0
    x = sp.Symbol("x")
    assert activations.step(x).func is activations.step           # symbols stay symbolic


def test_ties_between_an_integer_and_a_float_split_the_gradient():
    """0 and 0.0 compare unequal in SymPy: H(0.0) and a max's tie at (0, 0.0) gave 0,
    no gradient to either argument, where the backends give 1/2 each."""
    from sympy.matrices.expressions.matexpr import MatrixElement
    assert activations.heaviside(sp.Float(0.0)) == sp.S.Half
    assert activations.above(0, sp.Float(0.0)) == activations.above(sp.Float(0.0), 0) == \
        sp.S.Half

    @gradlab.declare(state="h", params="W U", source="test")
    def floor_at_zero(s):
        return gradlab.maximum(s.W @ s.h + s.U @ s.x, 0)

    entry = floor_at_zero.jacobian().explicit(n=1, m=1)[("h", "h")][0, 0]
    values = {a: (sp.Integer(1) if a.parent.name == "W" else sp.Float(0.0))
              for a in entry.atoms(MatrixElement)}
    assert float(entry.xreplace(values)) == 0.5           # as J.at gives at the tie


def test_an_activation_that_cannot_run_is_refused_when_registered():
    """A registration whose implementation does not exist (numpy.cube) was taken, and every
    cell's lowered Jacobian then failed with a raw AttributeError; one whose text had no
    {} gave a function of no arguments."""
    import sympy

    import numpy  # noqa: F401  (imported: its implementation is tried at once)
    cube = sympy.Function("cube_probe")
    bad = [dict(text="cube({})", latex="c({})", numpy=activations.call("cube"),
                torch=activations.call("cube")),
           dict(text="cube", latex="c", numpy=activations.call("tanh"),
                torch=activations.call("tanh")),
           dict(text="cube({})", latex="c({}, {})", numpy=activations.call("tanh"),
                torch=activations.call("tanh")),
           dict(text="cube({})", latex="c({})", numpy=3, torch=activations.call("tanh")),
           dict(text="cube({})", latex="c({})", numpy=lambda np: 3,
                torch=activations.call("tanh"))]
    for kw in bad:
        with pytest.raises(GradlabError, match="activation 'cube_probe'") as err:
            activations.activation(None, cube, **kw)
        assert "\n" not in str(err.value)
        assert "cube_probe" not in activations.TABLE
    lstm = gradlab.cell("lstm")                       # every cell still lowers and runs
    assert lstm.step_fn("torch") is not None


def test_an_implementation_that_fails_when_built_is_named(monkeypatch):
    from gradlab.symbolic.activations import Activation, implementations
    monkeypatch.setitem(activations.TABLE, "late_probe", Activation(
        "late_probe", None, text="late({})", latex="late({})",
        numpy=lambda np: np.no_such_thing, torch=lambda t: t.tanh))
    with pytest.raises(GradlabError, match="activation 'late_probe' has no numpy "
                                           "implementation: its numpy= failed with "
                                           "AttributeError"):
        implementations("numpy", __import__("numpy"))
