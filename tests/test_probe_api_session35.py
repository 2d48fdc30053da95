"""Edges of the public numeric API found by probing in session 35 (gradient_flow, Flow,
lyapunov, check_jacobian): a bad input is a one-line GradlabError naming it, and no
ambient torch setting turns an answer into a silently wrong number."""

import numpy as np
import torch

import gradlab

LSTM = gradlab.cell("lstm")


def _setup():
    params = LSTM.init_params(4, 3, seed=0, dtype=torch.float32)
    xs = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1))
    return params, xs


def test_autocast_around_a_call_does_not_lower_its_precision():
    """Under the caller's torch.autocast("cpu", dtype=bfloat16) (a mixed-precision
    training loop measuring its model), gradient_flow, a Flow's lazy walk, lyapunov and
    check_jacobian ran their matrix products in bfloat16: a rate off in the 3rd digit,
    and check_jacobian called gradlab's own exact Jacobian wrong. They compute in the
    params' dtype, whatever autocast the caller has on (and leave it on after)."""
    params, xs = _setup()
    flow = gradlab.gradient_flow(LSTM, params, xs)
    rate, spectral = flow.rate(), flow.log_norm()
    exponents = gradlab.lyapunov(LSTM, params, xs, 2).mean
    lazy = gradlab.gradient_flow(LSTM, params, xs)           # made outside, walked inside
    exact = LSTM.jacobian_fn("state")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gradlab.gradient_flow(LSTM, params, xs)
        assert inside.rate() == rate and np.array_equal(inside.log_norm(), spectral)
        assert lazy.rate() == rate
        assert np.array_equal(gradlab.lyapunov(LSTM, params, xs, 2).mean, exponents)
        assert gradlab.check_jacobian(lambda p, s, x: exact(p, s, x), LSTM, params).ok
        # the caller's autocast, still on (is_autocast_enabled("cpu"): torch >= 2.4 only)
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
