"""What a user's xs and state0 become on the params' dtype, and what the memory for them
is checked against, found by a hostile probe: a finite float64 value cast to float32 inf
(reported as an overflow of the run), nan in state0 (the same), an expanded xs copied
before its memory was checked (a raw allocator error), unsigned integers of 16-64 bits
called "not real numbers", and `gradlab.init_params` pointed at the cell language."""

import numpy as np
import pytest
import torch

import gradlab
import gradlab.flow
from gradlab.errors import GradlabError

LSTM, RNN = gradlab.cell("lstm"), gradlab.cell("rnn_tanh")


@pytest.fixture(scope="module")
def single():
    return LSTM.init_params(4, 3, dtype=torch.float32, seed=0)


@pytest.mark.parametrize("call", ["gradient_flow", "lyapunov"])
def test_a_finite_input_beyond_the_params_dtype_is_refused_naming_it(single, call):
    xs = torch.zeros(5, 2, 3, dtype=torch.float64)
    xs[2, 0, 0] = -1e39
    run = (lambda **kw: gradlab.gradient_flow(LSTM, single, xs, **kw).rate) \
        if call == "gradient_flow" else (lambda **kw: gradlab.lyapunov(LSTM, single, xs, 1, **kw))
    with pytest.raises(GradlabError, match=r"^xs holds 1e\+39, beyond the range of float32 "):
        run()
    state0 = (torch.full((2, 4), 1e39, dtype=torch.float64), torch.zeros(2, 4))
    xs[2, 0, 0] = 0
    with pytest.raises(GradlabError, match=r"^state0\[0\] holds 1e\+39, beyond the range"):
        run(state0=state0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_state0_is_refused_not_reported_as_an_overflow(single, bad):
    state0 = (torch.zeros(2, 4), torch.full((2, 4), bad))
    with pytest.raises(GradlabError, match=r"^state0\[1\] holds nan or inf"):
        gradlab.gradient_flow(LSTM, single, torch.zeros(5, 2, 3), state0=state0)


def test_an_infinite_input_is_still_measured_and_reported(single):
    xs = torch.zeros(5, 2, 3)
    xs[2, 0, 0] = float("inf")               # the user's own inf: not a cast's
    flow = gradlab.gradient_flow(LSTM, single, xs)
    assert flow.why() == "input not finite"


@pytest.mark.parametrize("call", ["gradient_flow", "lyapunov", "run_states"])
def test_an_expanded_input_too_large_to_copy_is_refused_before_the_copy(call):
    params = RNN.init_params(1, 1)
    xs = torch.zeros(1, 1, 1, dtype=torch.float64).expand(25_000_000, 1000, 1)
    fn = {"gradient_flow": lambda: gradlab.gradient_flow(RNN, params, xs),
          "lyapunov": lambda: gradlab.lyapunov(RNN, params, xs, 1),
          "run_states": lambda: gradlab.flow.run_states(RNN, params, xs)}[call]
    with pytest.raises(GradlabError, match=f"^{call} at state size S = 1, T = 25000000 steps, "
                                           "batch B = 1000 .float64. needs about"):
        fn()


@pytest.mark.parametrize("dtype", [d for d in ("uint16", "uint32", "uint64")
                                   if hasattr(torch, d)])
def test_unsigned_integer_inputs_are_real_numbers_too(dtype):
    params = RNN.init_params(3, 2, seed=0)
    ints = torch.arange(8).reshape(4, 1, 2).expand(4, 2, 2) % 3
    expected = gradlab.gradient_flow(RNN, params, ints.double()).log_norm("frobenius")
    given = gradlab.gradient_flow(RNN, params, ints.to(getattr(torch, dtype)))
    assert torch.equal(torch.as_tensor(given.log_norm("frobenius")), torch.as_tensor(expected))
    numpy = gradlab.gradient_flow(RNN, params, ints.numpy().astype(np.uint16))
    assert torch.equal(torch.as_tensor(numpy.log_norm("frobenius")), torch.as_tensor(expected))


def test_a_cells_method_asked_of_gradlab_says_whose_it_is():
    with pytest.raises(AttributeError, match=r"it is a cell's own: "
                                             r"gradlab.cell\('lstm'\).init_params"):
        gradlab.init_params
    with pytest.raises(AttributeError, match=r"the cell language's functions: sigmoid"):
        gradlab.no_such_name


def test_a_forward_run_is_not_refused_for_products_it_never_builds(monkeypatch):
    """The memory check counted B S^2 products for run_states, probe_curve and
    check_lyapunov too, refusing runs that fit (n = 4096: 24 GB asked, 150 MB used)."""
    import gradlab.budget as budget
    asked = []
    real = budget.ensure_fits
    monkeypatch.setattr(budget, "ensure_fits",
                        lambda need, **kw: asked.append((kw["what"], need)) or real(need, **kw))
    params = RNN.init_params(64, 4, seed=0)
    xs = torch.randn(2, 3, 4, dtype=torch.float64)
    asked.clear()
    gradlab.flow.run_states(RNN, params, xs)
    gradlab.gradient_flow(RNN, params, xs)
    (run, forward), (flow, walk) = asked[0], asked[-1]
    assert run.startswith("run_states at") and flow.startswith("gradient_flow at"), asked
    assert forward == 8 * (2 * 3 * 3 * (64 + 4)          # the states and inputs alone,
                           + 2 * 3 * 64)                 # and W x + b hoisted for all T
    assert walk == forward + 8 * 3 * 3 * 64 * 64        # and the (B, S, S) products


def test_hasattr_of_a_dotted_name_is_false():
    assert not hasattr(gradlab, "a.b") and not hasattr(gradlab, "os.path")
