"""gradlab under torch.set_default_device: it computes where the tensors it is given lie
and draws its random numbers on the CPU, so a non-CPU default device changes nothing (a
probe found raw errors from init_params, make_inputs, lyapunov, check_jacobian and
to_torch). The meta device stands in for a GPU here: any tensor made on it by default,
where a CPU one was meant, fails at once."""

import numpy as np
import pytest
import torch

import gradlab
from gradlab.flow import make_inputs
from gradlab.torch_state import default_device


@pytest.fixture
def meta_default():
    before = default_device()
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(before)


def _job():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, dtype=torch.float64)
    xs = make_inputs("gaussian", 6, 2, 2, seed=1)
    flow = gradlab.gradient_flow(lstm, params, xs, seed=0)
    return {
        "params": torch.cat([p.flatten() for p in params.values()]).numpy(),
        "xs": xs.numpy(),
        "spectral": flow.log_norm(),
        "min_singular": flow.log_norm("min_singular"),
        "block": flow.block_log_norm("c", "h"),
        "loss": flow.loss_grad_norms()["state"],
        "lyapunov": gradlab.lyapunov(lstm, params, xs, 2).exponents,
    }


def test_the_same_numbers_under_a_meta_default_device(meta_default):
    torch.set_default_device("cpu")
    expected = _job()
    torch.set_default_device("meta")
    got = _job()
    assert default_device().type == "meta"       # left as the user set it
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_checks_and_interop_under_a_meta_default_device(meta_default):
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(3, 2, dtype=torch.float64)
    assert all(p.device.type == "cpu" for p in params.values())

    def fn(p, state, x):
        pre = state[0] @ p["W"].T + x @ p["U"].T + p["b"]
        return torch.diag_embed(1 - torch.tanh(pre) ** 2) @ p["W"]

    assert gradlab.check_jacobian(fn, rnn, params).ok
    module = gradlab.to_torch(rnn, params)
    assert next(module.parameters()).device.type == "cpu"
    assert gradlab.stack("lstm", 2).init_params(3, 2)["W_i2"].device.type == "cpu"
