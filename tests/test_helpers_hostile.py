"""The second-tier helpers check their arguments as the public calls do.

Found by probing: probe_rate at steps=1 fitted a line through one point and returned half
the lag-1 log norm as a 'rate'; probes=-1 and options=None raised torch's and Python's
errors; timescale_grid took batch='x' to int() and batch=0 silently; lyapunov(module, xs,
None) ran with the default k; theory.mean_field('1') and theory.timescale(None) raised
bare TypeErrors; a cell's state0 given as a nested list of numbers was read as B parts."""

import math

import numpy as np
import pytest
import torch

import gradlab
from gradlab import theory
from gradlab.errors import GradlabError
from gradlab.meanfield import probe_rate, timescale_grid


@pytest.mark.parametrize("kwargs,says", [
    ({"steps": 1}, "steps must be an integer >= 2, got 1"),
    ({"steps": 30, "probes": 0}, "probes must be an integer >= 1, got 0"),
    ({"steps": 30, "probes": -1}, "probes must be an integer >= 1, got -1"),
])
def test_probe_rate_refuses_what_has_no_rate(kwargs, says):
    with pytest.raises(GradlabError, match=says):
        probe_rate("gru", {}, hidden=4, inputs=2, **kwargs)


def test_probe_rate_options_must_be_a_dict():
    with pytest.raises(GradlabError, match="options must be a dict of init_params options"):
        probe_rate("gru", None, hidden=4, inputs=2, steps=30)


def test_probe_rate_at_two_steps_is_a_slope():
    assert math.isfinite(probe_rate("gru", {}, hidden=4, inputs=2, steps=2, probes=2))


@pytest.mark.parametrize("batch", ["x", None, 0, -3, 1.7])
def test_timescale_grid_batch_is_checked(batch):
    with pytest.raises(GradlabError, match=f"batch must be an integer >= 1, got {batch!r}"):
        timescale_grid("lstm", [0.5], [0.0], method="dynamic", units=8, steps=6, batch=batch)


def test_lyapunov_of_a_module_refuses_k_none():
    module = torch.nn.LSTM(3, 4).double()
    xs = torch.randn(6, 2, 3, dtype=torch.float64)
    with pytest.raises(GradlabError, match="k must be a positive integer, got None"):
        gradlab.lyapunov(module, xs, None)
    assert gradlab.lyapunov(module, xs).mean.shape == (8,)            # the default k
    assert gradlab.lyapunov(module, xs, np.int64(3)).mean.shape == (3,)


@pytest.mark.parametrize("call,says", [
    (lambda: theory.mean_field("1"), "weight_scale must be a real number, got '1'"),
    (lambda: theory.mean_field([1]), r"weight_scale must be a real number, got \[1\]"),
    (lambda: theory.mean_field(1.0, input_power=-1), "input_power must be a real number >= 0"),
    (lambda: theory.timescale(None), "rate must be a real number, got None"),
    (lambda: theory.gate_rate("a"), "preactivation must be a real number, got 'a'"),
    (lambda: theory.pascanu_rate(np.eye(2), gamma="2"), "gamma must be a real number"),
])
def test_theory_formulas_name_a_bad_argument(call, says):
    with pytest.raises(GradlabError, match=says):
        call()


def test_theory_formulas_still_take_numpy_numbers_and_infinities():
    assert theory.mean_field(np.float32(1.5)) == theory.mean_field(1.5)
    q, chi = theory.mean_field(math.inf)
    assert q == math.inf and math.isnan(chi)
    assert theory.timescale(np.float64(-0.1)) == pytest.approx(5.0)
    assert theory.timescale(-math.inf) == 0.0


def test_a_cells_state0_as_nested_lists_is_one_part():
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(4, 3, seed=0)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    listed = gradlab.gradient_flow(rnn, params, xs, state0=[[0.1] * 4] * 2).log_norm()
    tensor = gradlab.gradient_flow(rnn, params, xs,
                                   state0=torch.full((2, 4), 0.1, dtype=torch.float64))
    assert (listed == tensor.log_norm()).all()
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(4, 3, seed=0)
    parts = gradlab.gradient_flow(lstm, params, xs, state0=[[[0.1] * 4] * 2,
                                                            [[0.2] * 4] * 2]).log_norm()
    tensors = gradlab.gradient_flow(lstm, params, xs, state0=(
        torch.full((2, 4), 0.1, dtype=torch.float64),
        torch.full((2, 4), 0.2, dtype=torch.float64))).log_norm()
    assert (parts == tensors).all()
