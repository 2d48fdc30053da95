"""Reports and flows of torch stacks whose state or input gradlab widens: a projected
LSTM's h is padded with zeros (which made every product singular in the report: cond = inf,
zeros in the single-step spectrum, a diluted state RMS), and a direction of a bidirectional
stack reads the other direction's states beside its input (counted as input before)."""

import json
import re

import numpy as np
import pytest
import torch

import gradlab
from gradlab.errors import derived_seed
from gradlab.flow.inputs import make_inputs
from gradlab.flow.module import TorchStep
from gradlab.interop import direction_inputs
from gradlab.reports.publish import jsonable

from conftest import assert_ok, invoke


def test_a_projected_lstm_report_measures_torch_state_not_the_padding(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2)
    torch.save(module.state_dict(), tmp_path / "proj.pt")
    assert_ok(invoke("report", "--model", tmp_path / "proj.pt", "--arch",
                     "lstm:hidden=4,inputs=3,layers=2,proj=2", "--steps", "6", "--batch", "2",
                     "--out", tmp_path / "out"))
    entry = json.loads((tmp_path / "out" / "data.json").read_text())["cells"]["lstm (trained)"]
    xs = make_inputs("gaussian", 6, 2, 3, seed=derived_seed(0, 1))
    own = gradlab.gradient_flow(TorchStep(module.double()), xs, norms=("spectral",
                                                                       "min_singular"))
    cond = np.median(own.log_condition(3)) / np.log(10)
    assert np.isclose(entry["summary"]["log10_condition_mid"], cond, rtol=1e-8)
    spectrum = np.asarray(entry["spectrum"], dtype=float)
    assert len(spectrum) == 2 * (2 + 4) and (spectrum > 0).all()     # layers x (p + n)
    states = own.states[0]                                           # torch's own state
    rms = np.median(states.pow(2).mean(-1).sqrt().numpy(), axis=1)
    assert entry["drift"]["rms"] == jsonable(rms)          # as data.json writes it: 9 digits


def test_a_bidirectional_stack_counts_only_its_own_input_as_input():
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).double()
    xs = torch.randn(6, 2, 3, dtype=torch.float64)
    flow = gradlab.gradient_flow(module, xs)
    assert tuple(flow.xs.shape) == (6, 2, 7) and flow.input_width == 3
    got = flow.loss_grad_norms(log=True)["input"]
    cell, params = gradlab.from_torch(module, direction="forward")
    wide = direction_inputs(module, xs, "forward").clone().requires_grad_()
    state = tuple(torch.zeros(2, 4, dtype=torch.float64) for _ in cell.state_names)
    for t in range(6):
        state = cell.step_fn("torch")(params, state, wide[t])
    loss = (torch.cat(state, -1) * flow.loss_vector()).sum()
    grad, = torch.autograd.grad(loss, wide)
    want = grad[..., :3].norm(dim=-1).log().T.numpy()                # (B, T)
    assert np.allclose(got, want, rtol=1e-12, atol=0)
    assert gradlab.gradient_flow(torch.nn.GRU(3, 4).double(), xs).input_width is None


def test_lyapunov_of_a_module_takes_k_as_any_integer():
    """np.int64(3) was read as xs: 'a torch module carries its own weights'."""
    module = torch.nn.GRUCell(3, 4).double()
    xs = torch.randn(20, 2, 3, dtype=torch.float64)
    want = gradlab.lyapunov(module, xs, 3).mean
    assert np.array_equal(gradlab.lyapunov(module, xs, np.int64(3)).mean, want)
    with pytest.raises(gradlab.GradlabError, match=r"^k must be a positive integer"):
        gradlab.lyapunov(module, xs, torch.tensor(3))      # named as k, not taken for xs


def test_a_projected_lstm_takes_its_initial_state_as_torch_holds_it():
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 6, proj_size=2).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    flow = gradlab.gradient_flow(module, xs, state0=(h0, c0))
    out, _ = module(xs, (h0[None], c0[None]))
    assert torch.allclose(flow.states[0][1:, :, :2], out, rtol=1e-12, atol=0)
    assert (flow.states[0][:, :, 2:] == 0).all()
    by_hand = gradlab.gradient_flow(module, xs, state0=(torch.cat([h0, 0 * c0[:, :4]], 1), c0))
    assert np.array_equal(flow.log_norm(), by_hand.log_norm())
    for bad, needle in [((torch.zeros(2, 3), c0), "state0 part 'h' has shape (2, 3)"),
                        ((h0, torch.zeros(2, 5)), "state0 part 'c' has shape (2, 5)")]:
        with pytest.raises(gradlab.GradlabError, match=re.escape(
                needle + "; this LSTM(proj_size=2) takes h as (B, 2), c as (B, 6)")):
            gradlab.gradient_flow(module, xs, state0=bad)


def test_a_mis_sized_state_part_is_the_one_named():
    cell = gradlab.cell("lstm")
    params = cell.init_params(6, 3, seed=0)
    xs = torch.zeros(4, 2, 3, dtype=torch.float64)
    with pytest.raises(gradlab.GradlabError,
                       match=re.escape("state part 'h' has shape (2, 2), expected (B, n) = (2, 6)")):
        gradlab.gradient_flow(cell, params, xs, state0=(torch.zeros(2, 2), torch.zeros(2, 6)))


def test_lyapunov_of_a_projected_lstm_as_cell_and_params_is_minus_inf_past_its_state():
    """from_torch's (cell, params) of an LSTM with proj_size 2 < hidden 4 gave 8 finite
    exponents, the last two QR's round-off (-71.6, -73.1) where the padded entries make
    every J_t singular: exactly -inf. The module's own call stops at its 6."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, proj_size=2).double()
    xs = torch.randn(400, 2, 3, dtype=torch.float64)
    cell, params = gradlab.from_torch(module)
    mean = gradlab.lyapunov(cell, params, xs, 8).mean
    assert np.isneginf(mean[6:]).all() and np.isfinite(mean[:6]).all()
    assert np.array_equal(gradlab.gradient_flow(cell, params, xs).lyapunov(8), mean)
    own = gradlab.lyapunov(module, xs, 8).mean                 # Q_0 off the padding
    assert own.shape == (6,) and np.abs(own - mean[:6]).max() < 0.05


def test_check_lyapunov_takes_round_off_where_exact_zeros_make_an_exponent_minus_inf():
    """A plain QR loop (as published code is written) reports QR's round-off where a dead
    ReLU unit makes J_t Q lose rank; gradlab's exact exponent there is -inf. Both agree."""
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=2.0)
    xs = torch.randn(600, 2, 4, dtype=torch.float64)

    def plain(p, x, k):
        h = torch.zeros(x.shape[1], 8, dtype=torch.float64)
        Q = torch.linalg.qr(torch.randn(x.shape[1], 8, k, dtype=torch.float64))[0]
        total = torch.zeros(x.shape[1], k, dtype=torch.float64)
        for t in range(x.shape[0]):
            a = h @ p["W"].T + x[t] @ p["U"].T + p["b"]
            h = torch.relu(a)
            A = (a > 0).double()[:, :, None] * p["W"] @ Q
            Q, R = torch.linalg.qr(A)
            # QR's round-off where a column is lost: about eps times its norm (torch 2.13's
            # QR reports it; 2.4.1's an exact 0 here, so it is written in, whichever runs)
            lost = torch.finfo(torch.float64).eps * torch.linalg.vector_norm(A, dim=-2)
            total += torch.maximum(R.diagonal(dim1=-2, dim2=-1).abs(), lost).log()
        return total / x.shape[0]
    rounded = plain(params, xs, 8)[0, 2].item()      # sequence 0 (1 is -inf throughout)
    assert np.isfinite(rounded)                     # round-off, where the exact is -inf
    assert np.isneginf(gradlab.lyapunov(relu, params, xs, 8).exponents[0, 2])
    assert gradlab.testing.check_lyapunov(plain, relu, params, xs, 8).ok
