"""gradlab.lyapunov against an independent Benettin loop (torch.func.jacrev of the cell's
step, torch.linalg.qr) on the same trajectory and start vectors, and gradlab.flow.lyapunov
(`lyapunov_mean`) called as gradlab.lyapunov is."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
import gradlab.flow


def _reference(cell, params, xs, k, discard):
    """(exponents (B, k), running (T - discard, k), mean log |det J_t| (B,)) from zero
    states and gradlab's documented Q_0: Generator().manual_seed(0).randn(B, S, k)."""
    T, B = xs.shape[:2]
    parts, step = len(cell.state_names), cell.step_fn("torch")

    def flat(s, x):
        new = step(params, tuple(p[None] for p in s.chunk(parts)), x[None])
        return torch.cat([p[0] for p in new])

    S = parts * next(v for v in params.values() if v.ndim == 2).shape[0]
    Q = torch.linalg.qr(torch.randn(B, S, k, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64))[0]
    s, logs, dets = torch.zeros(B, S, dtype=torch.float64), [], []
    for t in range(T):
        J = vmap(jacrev(flat))(s, xs[t])
        Q, R = torch.linalg.qr(J @ Q)
        logs.append(R.diagonal(dim1=-2, dim2=-1).abs().log())
        dets.append(torch.linalg.slogdet(J)[1])
        s = vmap(flat)(s, xs[t])
    logs = torch.stack(logs)[discard:]
    running = logs.cumsum(0).mean(1) / torch.arange(1, T - discard + 1)[:, None]
    return logs.mean(0).numpy(), running.numpy(), torch.stack(dets)[discard:].mean(0).numpy()


@pytest.mark.parametrize("name", ["lstm", "gru_torch"])
def test_exponents_match_an_independent_qr_loop(name):
    cell = gradlab.cell(name)
    params = cell.init_params(4, 2, seed=1, weight_scale=1.5)
    xs = torch.randn(30, 3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    S = 4 * len(cell.state_names)
    got = gradlab.lyapunov(cell, params, xs, S, discard=5)
    exponents, running, logdet = _reference(cell, params, xs, S, 5)
    np.testing.assert_allclose(got.exponents, exponents, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.running, running, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.exponents.sum(1), logdet, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.stderr, exponents.std(0, ddof=1) / math.sqrt(3),
                               rtol=0, atol=1e-10)


def test_flow_lyapunov_takes_a_module_as_gradlab_lyapunov_does():
    """gradlab.flow.lyapunov(module, xs[, k]) failed with a TypeError (xs missing)."""
    module = torch.nn.GRU(2, 3).double()
    xs = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_array_equal(gradlab.flow.lyapunov(module, xs, 2),
                                  gradlab.lyapunov(module, xs, 2).mean)
    np.testing.assert_array_equal(gradlab.flow.lyapunov(module, xs),
                                  gradlab.lyapunov(module, xs).mean)


def test_flow_lyapunov_refuses_a_misspelt_option_in_one_line():
    """A misspelt option was Python's TypeError, not a GradlabError."""
    cell = gradlab.cell("gru")
    params = cell.init_params(3, 2)
    xs = torch.zeros(4, 1, 2, dtype=torch.float64)
    with pytest.raises(gradlab.GradlabError, match="unexpected keyword argument 'discrad'"):
        gradlab.flow.lyapunov(cell, params, xs, 2, discrad=1)


def test_flow_lyapunov_draws_q0_with_the_flows_seed():
    """Flow.lyapunov took seed=0 whatever seed gradient_flow was given, so
    gradient_flow(..., seed=5).lyapunov(k) was not gradlab.lyapunov(..., seed=5).mean."""
    import gradlab
    params = gradlab.cell("gru").init_params(5, 3, seed=1, dtype=torch.float64)
    xs = torch.randn(6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    flow = gradlab.gradient_flow("gru", params, xs, seed=5)
    five = gradlab.lyapunov("gru", params, xs, 3, seed=5).mean
    zero = gradlab.lyapunov("gru", params, xs, 3, seed=0).mean
    assert np.abs(five - zero).max() > 1e-6          # at T = 6, Q_0 shows
    assert np.array_equal(flow.lyapunov(3), five)
    assert np.array_equal(flow.lyapunov(3, seed=0), zero)


def test_lyapunov_with_jacobian_entries_near_the_float64_max():
    """J_t Q overflowed where J_t's entries neared 1.8e308 (weights ~1e308), and R held
    inf and nan: exponents inf and nan for a finite trajectory. With J = W c at T = 1 (every
    ReLU on), the exponents are those of W plus ln c."""
    import gradlab
    params = gradlab.cell("rnn_relu").init_params(8, 3, seed=0, dtype=torch.float64)
    params["b"] = params["b"].abs() + 1                       # every unit on: J = W
    xs = torch.randn(1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = torch.rand(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 1
    big = gradlab.lyapunov("rnn_relu", dict(params, W=W * 2.0 ** 1022), xs, 2).exponents
    small = gradlab.lyapunov("rnn_relu", dict(params, W=W), xs, 2).exponents
    assert np.isfinite(big).all(), big
    np.testing.assert_allclose(big - 1022 * math.log(2), small, rtol=0, atol=1e-12)
