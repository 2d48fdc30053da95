"""Session 37: the test suite under torch 2.4.1 (README: any torch >= 2.4 works). Each test
here failed under the torch version named in it before its fix and passes under 2.4.1 and
2.13."""

import numpy as np
import pytest
import torch

import gradlab
from gradlab.flow import make_inputs
from gradlab.torch_state import default_device


def _rnn_jacobian(p, state, x):
    pre = state[0] @ p["W"].T + x @ p["U"].T + p["b"]
    return torch.diag_embed(1 - torch.tanh(pre) ** 2) @ p["W"]


def _job():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, dtype=torch.float64)
    xs = make_inputs("gaussian", 6, 2, 2, seed=1)
    flow = gradlab.gradient_flow(lstm, params, xs, seed=0)
    rnn = gradlab.cell("rnn_tanh")
    rnn_params = rnn.init_params(3, 2, seed=0, dtype=torch.float64)
    report = gradlab.check_jacobian(_rnn_jacobian, rnn, rnn_params)
    return {"spectral": flow.log_norm(), "block": flow.block_log_norm("c", "h"),
            "lyapunov": gradlab.lyapunov(lstm, params, xs, 2).exponents,
            "check": report.ok}


@pytest.mark.parametrize("reset_first", [False, True])
def test_a_with_torch_device_block_is_the_default_device_under_torch_2_4(reset_first):
    """torch 2.4's get_default_device sees only set_default_device, not an open
    `with torch.device("meta")` block (it said "cpu" there), so gradlab did not move its
    work back to the CPU and check_jacobian raised torch's RuntimeError 'Tensor on device
    meta is not on the expected device cpu!'. The numbers are now those made outside the
    block, and the block's device is the default device gradlab sees."""
    expected = _job()
    if reset_first:                              # 2.4: the context left None afterwards
        torch.set_default_device("cpu")
        torch.set_default_device(None)
    with torch.device("meta"):
        assert default_device().type == "meta"
        got = _job()
        assert torch.empty(1).device.type == "meta"          # the block still in force
    assert default_device().type == "cpu"
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)

