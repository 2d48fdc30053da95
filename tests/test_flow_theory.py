"""gradlab.flow against theory: the vanilla RNN's Frobenius rate against mean-field chi
(derivations/theory.md §2, by Gauss-Hermite quadrature), the top Lyapunov exponent as the
long-lag rate of the spectral norm, and gradlab.lyapunov's exponents, mean, standard error
and running estimates against an independent QR loop written out here."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import flow as F
from gradlab.verification.oracles import ORACLES
from conftest import flat_step

pytestmark = pytest.mark.usefixtures("strict_numpy")


def params_for(cell, n, m, seed=0, **options):
    options = {"weight_scale": 1.3, "bias_scale": 0.4, **options}
    return cell.init_params(n, m, seed=seed, **options)


# --- theory ---------------------------------------------------------------------------------

def mean_field_chi(sw, sv, sb, R, points=100):
    """derivations/theory.md §2 by probabilists' Gauss-Hermite quadrature (E over z ~ N(0,1))."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / math.sqrt(2 * math.pi)
    q = 1.0
    for _ in range(1000):
        q = sw ** 2 * float(w @ np.tanh(math.sqrt(q) * z) ** 2) + sv ** 2 * R + sb ** 2
    return sw ** 2 * float(w @ (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2)


def test_vanilla_rate_matches_mean_field_chi():
    """rnn_tanh at n = 600 driven by i.i.d. Gaussian inputs: the Frobenius norm falls by
    (1/2) ln chi per step. Tolerance: (1/n) ||P_k||_F^2 fluctuates around chi^k by
    O(1/sqrt(n)) per step, and the fit over 20 lags averages 3 sequences; at n = 600 the
    per-step slope is within a few 1e-3 of theory (seen: ~2e-3), so 0.02 (a few percent of
    the rate) leaves room without hiding a wrong formula (sw = 1.3 vs 1.2 shifts the
    prediction by 0.06)."""
    cell = gradlab.cell("rnn_tanh")
    n, m, B, T = 600, 50, 3, 45
    sw, sv, sb = 1.3, 1.0, 0.3
    params = cell.init_params(n, m, weight_scale=sw, input_scale=sv, bias_scale=sb, seed=7)
    xs = F.make_inputs("gaussian", T, B, m, seed=8)               # R = E x^2 = 1
    flow = gradlab.gradient_flow(cell, params, xs, norms=("frobenius",), blocks=False)
    chi = mean_field_chi(sw, sv, sb, R=1.0)
    # lags 1..20 span steps 25..45, after the state variance has settled on q*
    assert flow.rate("frobenius", stop=20) == pytest.approx(0.5 * math.log(chi), abs=0.02)


def test_top_lyapunov_exponent_is_the_long_lag_rate():
    """Benettin's QR exponent and the slope of log ||P_k||_2 measure the same growth rate
    of the same products; over 1,500 steps they agree to O(1/T) (the slope's intercept
    and the start vector's overlap, both O(1) in the log, spread over T steps)."""
    cell = gradlab.cell("rnn_tanh")
    n, m, B, T = 12, 4, 2, 1500
    params = cell.init_params(n, m, weight_scale=1.6, seed=9)
    xs = F.make_inputs("gaussian", T, B, m, seed=10)
    flow = gradlab.gradient_flow(cell, params, xs)
    exponents = F.lyapunov(cell, params, xs, k=3)
    assert exponents.shape == (3,) and exponents[0] == exponents.max()
    assert flow.rate(start=100) == pytest.approx(exponents[0], abs=0.01)
    # one Benettin column is ||P_T q|| / ||q|| <= ||P_T||_2: a bound, up to round-off
    assert exponents[0] * T <= flow.mean_log_norm()[-1] + 1e-8

def benettin(name, params, xs, k, *, discard=0, seed=0, per_step=False):
    """Top-k Lyapunov exponents (k,) written out here: the oracle's states from s_0 = 0,
    each step's Jacobian by jacrev, Q R = J_t Q by torch.linalg.qr, the mean over steps
    after `discard` of log |R_ii|, then over sequences. Q_0 is drawn as gradlab documents
    it (a seeded torch.Generator's randn(B, S, k), orthonormalised), so the two agree to
    round-off rather than to O(1/T). per_step: the log |R_ii| of every step after
    `discard` instead, (T - discard, B, k)."""
    cell, step = gradlab.cell(name), ORACLES[name]
    T, B, _ = xs.shape
    n = params[cell.param_names[0]].shape[0]
    S = n * len(cell.state_names)
    flat = flat_step(step, params, n)
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64))[0]
    s, logs = torch.zeros(B, S, dtype=torch.float64), []
    for t in range(T):
        J = vmap(jacrev(flat))(s, xs[t])                          # J_{t+1} at s_t
        s = vmap(flat)(s, xs[t])
        Q, R = torch.linalg.qr(J @ Q)
        if t >= discard:
            logs.append(torch.diagonal(R, dim1=-2, dim2=-1).abs().log())
    logs = torch.stack(logs)
    return logs.numpy() if per_step else logs.mean(0).mean(0).numpy()


@pytest.mark.parametrize("name, discard", [("rnn_tanh", 0), ("lstm", 7)])
def test_lyapunov_matches_an_independent_qr_loop(name, discard):
    cell = gradlab.cell(name)
    params = params_for(cell, 5, 3, seed=13)
    xs = F.make_inputs("gaussian", 40, 2, 3, seed=14)
    want = benettin(name, params, xs, 3, discard=discard)
    flow = gradlab.gradient_flow(cell, params, xs)
    assert np.allclose(F.lyapunov(cell, params, xs, k=3, discard=discard), want,
                       rtol=0, atol=1e-12)
    assert np.allclose(flow.lyapunov(k=3, discard=discard), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, B, discard", [("gru", 3, 0), ("lstm", 2, 6)])
def test_lyapunov_result_matches_an_independent_qr_loop(name, B, discard):
    """gradlab.lyapunov's per-sequence exponents, mean, standard error and running
    estimate, each against the jacrev + torch.linalg.qr loop's own numbers."""
    cell = gradlab.cell(name)
    params = params_for(cell, 5, 3, seed=15)
    xs = F.make_inputs("gaussian", 30, B, 3, seed=16)
    logs = benettin(name, params, xs, 4, discard=discard, seed=2, per_step=True)  # (T', B, k)
    got = gradlab.lyapunov(cell, params, xs, 4, discard=discard, seed=2)
    steps = 30 - discard
    per = logs.mean(0)
    assert got.exponents.shape == (B, 4) and got.steps == steps and got.discard == discard
    assert np.allclose(got.exponents, per, rtol=0, atol=1e-12)
    assert np.allclose(got.mean, per.mean(0), rtol=0, atol=1e-12)
    assert np.allclose(got.stderr, per.std(0, ddof=1) / math.sqrt(B), rtol=0, atol=1e-12)
    running = (np.cumsum(logs, 0) / np.arange(1, steps + 1)[:, None, None]).mean(1)
    assert got.running.shape == (steps, 4)
    assert np.allclose(got.running, running, rtol=0, atol=1e-12)
    assert np.allclose(got.running[-1], got.mean, rtol=0, atol=1e-14)
    assert np.array_equal(F.lyapunov(cell, params, xs, 4, discard=discard, seed=2), got.mean)


def test_lyapunov_of_one_sequence_has_no_standard_error():
    cell = gradlab.cell("rnn_tanh")
    got = gradlab.lyapunov(cell, params_for(cell, 4, 2), F.make_inputs("gaussian", 8, 1, 2), 9)
    assert got.exponents.shape == (1, 4) and np.isnan(got.stderr).all()   # k capped at S
    with pytest.raises(gradlab.GradlabError, match="discard must be"):
        gradlab.lyapunov(cell, params_for(cell, 4, 2), F.make_inputs("gaussian", 8, 1, 2),
                         discard=8)
