"""Once a state overflows (inf or nan), every number that reads it is nan in the Python
API, per sequence and per lag, as `rate` and the report already said: before, log norms
and Lyapunov exponents came out -inf ("an exactly zero product", decay infinitely fast)
and loss gradients 0 where gradients in fact exploded (hostile-input review)."""

import math

import numpy as np
import pytest
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


@pytest.mark.parametrize("dtype,scale", [(torch.float64, 1e155), (torch.float32, 1e20),
                                         (torch.float64, 1e-170)])
def test_jacobians_of_huge_or_tiny_weights_keep_finite_norms(dtype, scale):
    """A Jacobian with entries past 1e154 (float32: 1.8e19) overflowed the sum of squares
    of its Frobenius norm at lag 1 (inf, then nan at every later lag, 'norm not finite'),
    though every state was finite; entries below 1e-154 lost their digits to underflow.
    Checked against each P_k formed from the Jacobians divided by the scale."""
    cell = gradlab.cell("rnn_relu")
    params = {k: v.to(dtype) for k, v in cell.init_params(4, 3, seed=2, weight_scale=scale,
                                                          bias_scale=1.0).items()}
    xs = torch.randn(2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    flow = gradlab.gradient_flow(cell, params, xs.to(dtype))
    states = cell.step_fn("torch")
    h = [torch.zeros(2, 4, dtype=torch.float64)]
    p64 = {k: v.double() for k, v in params.items()}
    for t in range(2):                   # (a third step would overflow the state itself)
        h.append(states(p64, (h[-1],), xs[t])[0])
    J = cell.jacobian_fn()(p64, (torch.cat(h[:-1]),), xs.reshape(4, 3)).view(2, 2, 4, 4)
    P = torch.eye(4, dtype=torch.float64).expand(2, 4, 4)
    for k in range(1, 3):
        P = P @ (J[2 - k] / scale)                                 # P_k / scale^k
        want = {"frobenius": torch.linalg.matrix_norm(P).log() + k * math.log(scale),
                "spectral": torch.linalg.matrix_norm(P, 2).log() + k * math.log(scale)}
        for kind, value in want.items():
            got = torch.as_tensor(flow.log_norm(kind)[:, k - 1])
            live = torch.isfinite(value)
            assert torch.equal(torch.isfinite(got), live), (kind, k, got, value)
            rtol = 1e-12 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(got[live], value[live], rtol=rtol, atol=0)


def test_a_product_zero_only_in_floating_point_is_not_called_exactly_zero():
    """Every tanh unit saturated past ~19 rounds 1 - h'^2 to 0 (as torch's autograd does):
    the true log norms are finite (-194, -228 here), so 'product exactly zero' was false;
    the reason now says 'product zero' and the docs say where a zero can come from."""
    rnn = gradlab.cell("rnn_tanh")
    p = {"W": torch.full((1, 1), 100.0, dtype=torch.float64),
         "U": torch.zeros(1, 1, dtype=torch.float64), "b": torch.zeros(1, dtype=torch.float64)}
    xs = torch.zeros(2, 1, 1, dtype=torch.float64)
    flow = gradlab.gradient_flow(rnn, p, xs, state0=torch.full((1, 1), 0.2, dtype=torch.float64))
    assert np.isneginf(flow.log_norm()).all()
    assert flow.why() == gradlab.flow.ZERO == "product zero"
    assert "in floating point" in type(flow).rate.__doc__


@pytest.mark.parametrize("d, tiny, rtol", [(torch.float64, 1e-310, 1e-12),
                                           (torch.float32, 1e-40, 1e-6)])
def test_subnormal_weights_are_measured_not_overflowed(d, tiny, rtol):
    """||J|| below the dtype's smallest normal made the rescale 2^-e overflow to inf:
    frobenius read [-713.8, +inf, +inf] and spectral nan for W = 1e-310 (exactly -713.8
    k), and float32 at 1e-40 read nan."""
    W = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=d) * tiny
    p = {"W": W, "U": torch.zeros(3, 2, dtype=d), "b": torch.zeros(3, dtype=d)}
    flow = gradlab.gradient_flow("rnn_tanh", p, torch.zeros(4, 1, 2, dtype=d))   # J_t = W
    big = W.double() / tiny                        # the same products, 1/tiny^k larger
    for kind, ord in (("spectral", 2), ("frobenius", "fro")):
        want = [float(torch.linalg.matrix_norm(torch.linalg.matrix_power(big, k), ord).log())
                + k * math.log(tiny) for k in range(1, 5)]
        np.testing.assert_allclose(flow.log_norm(kind)[0], want, rtol=rtol)
    assert flow.why() is None


def test_flow_state0_is_a_copy_and_make_inputs_refuses_a_missing_device():
    lstm = gradlab.cell("lstm")
    s0 = (torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64))
    flow = gradlab.gradient_flow(lstm, lstm.init_params(3, 2), torch.zeros(4, 2, 2,
                                 dtype=torch.float64), state0=s0)
    s0[0].fill_(5.0)                   # the caller's tensor changes; the flow's does not
    assert bool((flow.state0[0] == 1).all())
    if not torch.cuda.is_available():
        with pytest.raises(gradlab.GradlabError, match="torch sees no CUDA device"):
            gradlab.flow.make_inputs("gaussian", 3, 2, 2, device="cuda")
    with pytest.raises(gradlab.GradlabError, match="unknown device 'tpu'; valid: cpu, cuda"):
        gradlab.flow.make_inputs("gaussian", 3, 2, 2, device="tpu")
