"""Inputs that ended in a raw error, a misleading one, or a late one (found by a hostile
probe of the Python API): a state of size 0, a tensor on the meta device, the wrong
input width, and a constant whose value (not its numbers) is beyond float64."""

import numpy as np
import pytest
import torch

import gradlab
from gradlab import GradlabError

D = torch.float64
EMPTY = {"W": torch.ones(0, 0, dtype=D), "U": torch.ones(0, 2, dtype=D),
         "b": torch.ones(0, dtype=D)}


def test_a_state_of_size_zero_is_refused():
    """It gave a Flow with S = 0, then a ZeroDivisionError; to_torch made RNNCell(2, 0)."""
    with pytest.raises(GradlabError, match="state of size 0.*at least 1"):
        gradlab.gradient_flow("rnn_tanh", EMPTY, torch.randn(3, 2, 2, dtype=D))
    with pytest.raises(GradlabError, match="hidden size n must be at least 1"):
        gradlab.to_torch("rnn_tanh", EMPTY)


def test_the_wrong_input_width_names_xs():
    """It read "param 'U_i' ... has shape (3, 2), expected (3, 3)", blaming a parameter."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 2, seed=0)
    xs = torch.randn(4, 2, 3, dtype=D)
    for call in (lambda: gradlab.gradient_flow(cell, params, xs),
                 lambda: gradlab.lyapunov(cell, params, xs, 2)):
        with pytest.raises(GradlabError, match=r"xs has shape \(4, 2, 3\): 3 inputs a step"):
            call()
    state = (torch.zeros(2, 3, dtype=D),) * 2
    with pytest.raises(GradlabError, match="x has 3 inputs a step"):
        cell.jacobian().at(params, state, torch.zeros(2, 3, dtype=D))


def test_a_meta_tensor_in_jacobian_at_is_named():
    """It raised torch's RuntimeError 'Tensor on device meta is not on the expected device'."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 2, seed=0)
    state = (torch.zeros(2, 3, dtype=D),) * 2
    with pytest.raises(GradlabError, match="meta device holds no numbers"):
        cell.jacobian().at(params, state, torch.zeros(2, 2, dtype=D, device="meta"))


@pytest.mark.parametrize("constant", ["exp(1000)", "exp(exp(10))"])
def test_a_constant_beyond_float64_is_refused_when_declared(constant):
    """Each number in exp(1000) fits float64, its value does not: it was accepted, then
    refused only when lowered, naming no equation, with numpy's RuntimeWarning."""
    factor = {"exp(1000)": gradlab.exp(1000), "exp(exp(10))": gradlab.exp(gradlab.exp(10))}
    with pytest.raises(GradlabError, match=r"equation for h' holds the constant .*beyond "
                                           r"float64's range"):
        @gradlab.declare(state="h", params="W", source="test")
        def big(s):
            return factor[constant] * s.W @ s.h


def test_a_large_but_finite_constant_is_kept():
    @gradlab.declare(state="h", params="W", source="test")
    def large(s):
        return gradlab.exp(700) * s.W @ s.h
    params = large.init_params(2, 1, seed=0)
    J = large.jacobian().at(params, (torch.ones(1, 2, dtype=D),), torch.zeros(1, 1, dtype=D))
    assert torch.allclose(J[0], torch.exp(torch.tensor(700.0, dtype=D)) * params["W"],
                          rtol=1e-15, atol=0)


@pytest.mark.parametrize("params", [{}, "", [], "  "])
def test_a_cell_without_parameters_is_refused_when_declared(params):
    """It was accepted, then gradient_flow and lyapunov refused its only params, {}."""
    with pytest.raises(GradlabError, match="params= names no parameter"):
        @gradlab.declare(state="h", params=params, source="test")
        def free(s):
            return gradlab.tanh(0.5 * s.h)


def test_a_jacobian_copied_or_pickled_still_evaluates():
    """deepcopy and pickle of J dropped its cell, so J.at then refused, 'changed by subs'."""
    import copy
    import pickle
    cell = gradlab.cell("lstm")
    J = cell.jacobian()
    params = cell.init_params(3, 2, seed=0)
    state, x = (torch.rand(2, 3, dtype=D),) * 2, torch.rand(2, 2, dtype=D)
    for other in (copy.deepcopy(J), pickle.loads(pickle.dumps(J)), copy.copy(J)):
        assert other == J and torch.equal(other.at(params, state, x), J.at(params, state, x))
    assert copy.deepcopy(cell) is cell and pickle.loads(pickle.dumps(cell)) is cell


def test_a_users_cell_is_not_pickled_by_a_reference_that_cannot_load():
    @gradlab.declare(state="h", params="W", source="test")
    def mine(s):
        return gradlab.tanh(s.W @ s.h)
    import pickle
    with pytest.raises(GradlabError, match="cell 'mine' cannot be pickled: .* not bound to a "
                                           "name at the top level of the module"):
        pickle.dumps(mine)


def test_a_cell_declared_at_a_modules_top_level_pickles_by_that_name(tmp_path):
    """As pickle refers to a function: a cell file's cell, and lstm_proj (from_torch of
    proj_size, declared in the catalogue but not registered), load as the same Cell."""
    import pickle
    (tmp_path / "mycells.py").write_text(
        "import gradlab\n"
        "@gradlab.declare(state='h', params='W', source='mine')\n"
        "def janet(s):\n"
        "    return gradlab.tanh(s.W @ s.h)\n")
    mine = gradlab.cell(f"{tmp_path / 'mycells.py'}:janet")
    assert pickle.loads(pickle.dumps(mine)) is mine
    proj, _ = gradlab.from_torch(torch.nn.LSTM(3, 4, proj_size=2).double())
    assert pickle.loads(pickle.dumps(proj)) is proj


def test_one_let_returned_for_two_parts_gets_a_name_for_each():
    """'return a, a' printed '∂a/∂h' on two rows of the Jacobian, and the repr never said
    which let is which part's new value."""
    @gradlab.declare(state="h c", params="W U b", source="test")
    def twin(s):
        a = s.let("a", gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b) + 0.5 * s.c)
        return a, a
    J = twin.jacobian()
    assert J.outs == ("a", "c'")
    assert "new state: h' = a" in repr(twin) and "c' = a" in repr(twin)
    params = twin.init_params(3, 2, seed=0)
    state, x = (torch.rand(2, 3, dtype=D), torch.rand(2, 3, dtype=D)), torch.rand(2, 2, dtype=D)
    new = twin.step_fn()(params, state, x)
    assert torch.equal(new[0], new[1])


@pytest.mark.parametrize("params, let", [("W exp", "a"), ("W", "tanh"), ("W σ", "a"),
                                         ("W diag", "a"), ("W", "log")])
def test_a_name_that_prints_as_a_function_is_refused(params, let):
    """A parameter named exp printed h' = exp tanh(...), which reads as exp applied to tanh;
    a scalar named σ read as the sigmoid."""
    with pytest.raises(GradlabError, match="is how a function prints"):
        @gradlab.declare(state="h", params=params, source="test")
        def clash(s):
            return s.let(let, gradlab.tanh(s.W @ s.h))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identity_dynamics_have_no_decay_not_a_rounding_rate(dtype):
    """W = I (or orthogonal) read rate -5e-19 ('a decay of timescale 1.9e18 steps') or
    +1e-16 ('gradients grow'); a slope within rounding of 0 is 0."""
    from gradlab.flow import NO_DECAY

    @gradlab.declare(state="h", params="W U b", source="test")
    def linear(s):
        return s.W @ s.h + s.U @ s.x + s.b
    n = 7
    gen = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))[0]
    for W in (torch.eye(n, dtype=D), Q):
        params = {"W": W, "U": torch.randn(n, 3, generator=gen, dtype=D),
                  "b": torch.zeros(n, dtype=D)}
        params = {k: v.to(dtype) for k, v in params.items()}
        flow = gradlab.gradient_flow(linear, params, torch.randn(60, 3, 3, generator=gen))
        for kind in ("spectral", "frobenius"):
            assert flow.rate(kind) == 0.0 and flow.why(kind) == NO_DECAY
            assert flow.timescale(kind) == float("inf")
    assert gradlab.gradient_flow(linear, {"W": 0.9 * Q, "U": params["U"].double(),
                                          "b": params["b"].double()},
                                 torch.randn(60, 3, 3, dtype=D)).rate() == pytest.approx(
        np.log(0.9), rel=1e-12)


def test_a_lyapunov_result_prints_as_a_summary():
    """Its repr dumped every row of `running` (T - discard rows)."""
    cell = gradlab.cell("gru")
    result = gradlab.lyapunov(cell, cell.init_params(4, 2, seed=0),
                              torch.randn(500, 3, 2, dtype=D), 2)
    shown = repr(result)
    assert shown.startswith("Lyapunov(mean=[") and "steps=500" in shown and len(shown) < 200


@pytest.mark.parametrize("given, dtype", [(np.float32, torch.float32),
                                          (np.dtype("float64"), torch.float64),
                                          ("float32", torch.float32)])
def test_init_params_takes_a_numpy_dtype_as_its_torch_one(given, dtype):
    """np.float32 was refused: "unsupported dtype <class 'numpy.float32'>; valid: float32,
    float64", naming as valid the very type given."""
    params = gradlab.cell("gru").init_params(3, 2, dtype=given, seed=0)
    assert all(p.dtype == dtype for p in params.values())


@pytest.mark.parametrize("given", [np.float16, np.dtype("int32"), None])
def test_init_params_still_refuses_what_is_not_float32_or_float64(given):
    with pytest.raises(gradlab.GradlabError, match=r"^unsupported dtype .*; valid: float32, "
                                                   r"float64$"):
        gradlab.cell("gru").init_params(3, 2, dtype=given)
