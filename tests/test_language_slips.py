"""What a hostile probe of the declaration language found: named m-vectors stretched to n
entries by values_fn (wrong numbers, or a crash in `gradlab report`), Python branches (and
max, or a comparison) on symbolic values taken silently, a functools.partial's error lost
in a traceback, numpy's functions named only by numpy, a cell whose parameters are all
scalars unusable in gradient_flow, a reduction of a part named as itself, a part returned
for another, norm's slope at zero, a let named as the new state, and sum's start. How
names print: test_language_slips_names.py."""

import functools
import math

import numpy as np
import pytest
import torch
from torch.func import jacrev

import gradlab
from gradlab import GradlabError, mean, relu, sigmoid, tanh, var

D = torch.float64


def _mvec(s):
    y = s.let("y", tanh(s.U.T @ s.h + s.x))                      # an m-vector
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    return f * s.h + (1 - f) * tanh(s.W @ s.h + s.U @ y)


MVEC = gradlab.declare(state="h", params="W U W_f U_f b_f", gate_bias="b_f", source="test",
                       name="mvec")(_mvec)


@pytest.mark.parametrize("n,m", [(3, 1), (2, 3), (4, 6)])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_a_named_m_vector_keeps_its_m_entries(n, m, backend):
    p = MVEC.init_params(hidden=n, inputs=m, seed=0, bias_scale=0.5)
    gen = torch.Generator().manual_seed(1)
    h, x = torch.randn(2, n, generator=gen, dtype=D), torch.randn(2, m, generator=gen, dtype=D)
    want = torch.tanh(h @ p["U"] + x)
    if backend == "numpy":
        p, h, x = {k: v.numpy() for k, v in p.items()}, h.numpy(), x.numpy()
    got = MVEC.values_fn(backend)(p, (h,), x)
    assert tuple(got["y"].shape) == (2, m) and tuple(got["f"].shape) == (2, n)
    np.testing.assert_allclose(np.asarray(got["y"]), want.numpy(), rtol=1e-14)


def test_a_report_measures_a_cell_with_a_named_m_vector(tmp_path):
    params = MVEC.init_params(hidden=4, inputs=3, seed=0)
    xs = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    flow = gradlab.gradient_flow(MVEC, params, xs)

    def step(h, x):
        y = torch.tanh(params["U"].T @ h + x)
        f = torch.sigmoid(params["W_f"] @ h + params["U_f"] @ x + params["b_f"])
        return f * h + (1 - f) * torch.tanh(params["W"] @ h + params["U"] @ y)

    hs = [torch.zeros(4, dtype=D)]
    for t in range(6):
        hs.append(step(hs[-1], xs[t, 0]))
    P = jacrev(step)(hs[5], xs[5, 0])
    assert math.isclose(flow.log_norm()[0, 0], float(torch.linalg.matrix_norm(P, 2).log()),
                        rel_tol=1e-12)


def _declare(fn, params="W U"):
    return gradlab.declare(state="h", params=params, source="test", name=fn.__name__)(fn)


def test_a_python_branch_on_a_symbolic_value_is_refused():
    def branchy(s):
        a = s.W @ s.h + s.U @ s.x
        return s.g * (tanh(a) if s.g else relu(a))

    def equals(s):
        z = s.let("z", tanh(s.W @ s.h + s.U @ s.x))
        return z if mean(z) == 0 else -z          # was always False: -z, silently

    with pytest.raises(GradlabError, match=r"g is symbolic: Python's if, and, or and not "
                                           r"cannot decide on it"):
        _declare(branchy, {"W": "n n", "U": "n m", "g": "1"})
    with pytest.raises(GradlabError, match=r"μ_z is symbolic"):
        _declare(equals)


@pytest.mark.parametrize("module", ["np", "torch", "math"])
def test_numpy_torch_and_math_functions_point_to_gradlab_s(module):
    f = {"np": np.tanh, "torch": torch.tanh, "math": math.tanh}[module]

    def foreign(s):
        return f(s.W @ s.h + s.U @ s.x)

    with pytest.raises(GradlabError, match=r"cannot take a symbolic value: use gradlab's "
                                           r"\(gradlab.tanh"):
        _declare(foreign)


def test_numpy_scalars_and_unary_plus_still_work():
    def scaled(s):
        return +(np.float64(2) * tanh(s.W @ s.h + s.U @ s.x))

    assert "2.0 diag" in str(_declare(scaled).jacobian())


def test_a_partial_or_callable_declaration_reports_its_own_error():
    def body(s, k):
        return tanh(s.W @ s.x) * k

    with pytest.raises(GradlabError, match=r"^cell 'scaled', equation `return tanh\(s.W @ s.x\) \* k` "
                                           r"\(.*test_language_slips.py:\d+\): cannot multiply W "
                                           r"\(n x n\) by x \(m x 1\)"):
        gradlab.declare(state="h", params="W U", source="t", name="scaled")(
            functools.partial(body, k=2))

    class Step:
        def __call__(self, s):
            return tanh(s.W @ s.x)

    with pytest.raises(GradlabError, match=r"^cell 'obj', equation .*: cannot multiply W"):
        gradlab.declare(state="h", params="W U", source="t", name="obj")(Step())

    def good(s, k):
        return tanh(s.W @ s.h + s.U @ s.x) * k

    cell = gradlab.declare(state="h", params="W U", source="t", name="twice")(
        functools.partial(good, k=2))
    assert str(cell.jacobian()).startswith("∂h'/∂h = 2 diag")


def test_a_cell_of_scalar_parameters_reads_n_from_state0():
    def onlyscalar(s):
        return tanh(s.g * s.h)

    cell = _declare(onlyscalar, {"g": "1"})
    p = cell.init_params(hidden=3, inputs=2, seed=0)
    xs = torch.zeros(4, 2, 2, dtype=D)
    with pytest.raises(GradlabError, match=r"^no parameter of cell 'onlyscalar' has the "
                                           r"state size n: pass state0="):
        gradlab.gradient_flow(cell, p, xs)
    h0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    flow = gradlab.gradient_flow(cell, p, xs, state0=h0)
    h = h0[0]
    for _ in range(4):                               # h_T = tanh(g h_{T-1}), T = 4
        h = torch.tanh(p["g"] * h)
    lag1 = torch.diag(1 - h ** 2) * p["g"]           # dh_T / dh_{T-1}
    assert math.isclose(flow.log_norm()[0, 0], float(torch.linalg.matrix_norm(lag1, 2).log()),
                        rel_tol=1e-12)


def test_a_reduction_takes_a_state_part_input_or_parameter_by_its_own_name():
    """mean(s.h) was refused ('bind it first') though h is named; a matrix is refused
    as one, not as 'mu_W must be a vector'."""
    def reduced(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b) * gradlab.mean(s.h) + var(s.b) * gradlab.norm(s.x)

    cell = _declare(reduced, "W U b")
    shown = str(cell.equations())
    assert "μ_h = 1/n 1ᵀ h" in shown and "‖x‖ = (xᵀ x)^(1/2)" in shown and "σ_b^2" in shown
    p = cell.init_params(hidden=3, inputs=2, seed=0, bias_scale=0.5)
    gen = torch.Generator().manual_seed(2)
    h, x = torch.randn(3, generator=gen, dtype=D), torch.randn(2, generator=gen, dtype=D)

    def step(h, x):                                  # independent: as a user writes it
        b = p["b"]
        return (torch.tanh(p["W"] @ h + p["U"] @ x + b) * h.mean()
                + ((b - b.mean()) ** 2).mean() * torch.linalg.vector_norm(x))

    got = cell.jacobian_fn()(p, (h[None],), x[None])[0]
    torch.testing.assert_close(got, jacrev(step)(h, x), rtol=1e-13, atol=1e-15)
    with pytest.raises(GradlabError, match=r"mean\(\) takes a named vector; W is a matrix "
                                           r"\(n x n\)"):
        def matrix(s):
            return s.h * mean(s.W)
        _declare(matrix, "W U b")


def test_a_state_part_returned_for_another_is_that_part_s_new_value():
    def swapped(s):
        return s.c, s.h + tanh(s.W @ s.h)

    cell = gradlab.declare(state="h c", params="W", source="t", name="swapped")(swapped)
    assert [str(s) for s in cell.lets] == ["h'", "c'"]
    assert "h' = c" in str(cell.equations())


def test_python_s_max_or_a_comparison_points_to_maximum():
    """max(a, b) on symbolic values said only "'>' not supported between instances of
    'Value' and 'Value'"."""
    def biggest(s):
        return max(tanh(s.W @ s.h + s.U @ s.x), s.h)

    with pytest.raises(GradlabError, match=r"a symbolic value has no order \(Python's max, "
                                           r"min, <, > compare\): use gradlab.maximum\(a, b\)"):
        _declare(biggest)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_norm_has_torch_s_slope_at_zero_so_the_zero_state_is_measured(backend):
    """(h^T h)^(-1/2), the slope of ||h||, is inf at h = 0, and its products with h nan:
    ||h|| h and ||h||^2 b, differentiable there with slope 0, gave an all-nan Jacobian at
    gradient_flow's default zero state (its last lag's norms and the rate nan)."""
    def normed(s):
        return (tanh(s.W @ s.h + s.U @ s.x + s.b) + 0.5 * gradlab.norm(s.h) * s.h
                + gradlab.norm(s.h) ** 2 * s.b)

    cell = _declare(normed, "W U b")
    p = cell.init_params(hidden=4, inputs=3, bias_scale=1.0, seed=0)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)

    def step(h, x):
        r = torch.linalg.vector_norm(h)
        return torch.tanh(p["W"] @ h + p["U"] @ x + p["b"]) + 0.5 * r * h + r ** 2 * p["b"]

    h0 = torch.zeros(2, 4, dtype=D)
    args = (p, (h0,), x) if backend == "torch" else (
        {k: v.numpy() for k, v in p.items()}, (h0.numpy(),), x.numpy())
    got = torch.as_tensor(cell.jacobian_fn("state", backend)(*args))
    for b in range(2):
        torch.testing.assert_close(got[b], jacrev(step)(h0[b], x[b]), rtol=1e-13, atol=1e-15)
    xs = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1), dtype=D) * 0.1
    assert np.isfinite(gradlab.gradient_flow(cell, p, xs).log_norm()).all()


def test_a_let_named_as_the_new_state_but_not_returned_says_so():
    """It said only "'h'' is already defined"."""
    def twice(s):
        return 2 * s.let("h'", tanh(s.W @ s.h + s.U @ s.x))

    with pytest.raises(GradlabError, match="a let is named h', the name of the new h, but "
                                           "the declaration returns another value for h"):
        _declare(twice)


@pytest.mark.parametrize("extra", [(5,), ()], ids=["start", "keyword"])
def test_sum_of_a_named_vector_refuses_a_start_it_would_drop(extra):
    """sum(r, 5) and sum(r, start=2) declared h' = tanh(r + Σ_r 1 + b): the 5 and the
    start were dropped without a word (Python's own sum adds them)."""
    kwargs = {} if extra else {"start": 2}

    def started(s):
        r = s.let("r", s.W @ s.h)
        return tanh(r + gradlab.sum(r, *extra, **kwargs) + s.b)
    with pytest.raises(GradlabError, match=r"takes the vector alone, got also (5|start=2)"):
        _declare(started, "W b")
    assert gradlab.sum([1, 2], start=5) == 8 and gradlab.sum([[1]], []) == [1]
