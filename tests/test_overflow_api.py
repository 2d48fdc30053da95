"""Once a state overflows (inf or nan), every number that reads it is nan in the Python
API, per sequence and per lag, as `rate` and the report already said: before, log norms
and Lyapunov exponents came out -inf ("an exactly zero product", decay infinitely fast)
and loss gradients 0 where gradients in fact exploded (hostile-input review)."""

import math

import numpy as np
import torch

import gradlab


def test_an_exploding_cell_reads_nan_everywhere():
    rnn = gradlab.cell("rnn_relu")
    p = rnn.init_params(3, 2, seed=0)
    p["W"] *= 1e3
    xs = torch.randn(200, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert np.isnan(gradlab.lyapunov(rnn, p, xs, 2).mean).all()
    flow = gradlab.gradient_flow(rnn, p, xs)
    for kind in ("spectral", "frobenius", "min_singular"):
        assert np.isnan(flow.log_norm(kind)).all()
    assert np.isnan(flow.block_log_norm("h", "h")).all()
    assert np.isnan(flow.loss_grad_norms()["state"]).all()
    assert np.isnan(flow.lyapunov(2)).all()
    assert math.isnan(flow.rate()) and flow.why() == "state overflowed"


def test_only_what_reads_the_overflowed_state_is_nan():
    """Sequence 0 meets an infinite input at step t = 30 of T = 50 (tanh keeps the state
    finite, but J_31 read x_30 = inf: 0 there, exactly, means nothing): its lags 1..19
    read only finite states and inputs and stay, lags 20..50 are nan; sequence 1 is
    untouched, and the loss gradients and exponents follow the same rule."""
    cell = gradlab.cell("rnn_tanh")
    p = cell.init_params(4, 2, seed=1)
    xs = torch.randn(50, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xs[30, 0, 0] = math.inf
    flow = gradlab.gradient_flow(cell, p, xs, blocks=False)
    spectral = flow.log_norm()
    assert np.isfinite(spectral[0, :19]).all() and np.isnan(spectral[0, 19:]).all()
    assert np.isfinite(spectral[1]).all()
    grads = flow.loss_grad_norms(log=True)["state"]                 # column t: lag T - t
    assert np.isnan(grads[0, :31]).all() and np.isfinite(grads[0, 31:]).all()
    assert np.isfinite(grads[1]).all()
    result = gradlab.lyapunov(cell, p, xs, 2)
    assert np.isnan(result.exponents[0]).all() and np.isfinite(result.exponents[1]).all()
    assert np.isnan(result.mean).all()         # the mean over sequences reads sequence 0
    clean = gradlab.gradient_flow(cell, p, xs[:, 1:], blocks=False).log_norm()
    np.testing.assert_allclose(spectral[1], clean[0], rtol=1e-12)
