"""Session 36's probe of the theory against the papers and an independent computation:
the vanilla tanh RNN's mean field (Poole et al. 2016; Schoenholz et al. 2017; Chen et al.
2018) against scipy's adaptive quadrature and root finding, Pascanu et al.'s bound against
hand-made Jacobian products (torch.func.jacrev), the gated cells' exact ln sigma(a) rate,
critical_init's timescale measured again by hand, and the edges a probe found (a finite
bias scale whose square overflows read rate -inf; a timescale of 1e308 raised
OverflowError; a meta tensor raised NotImplementedError)."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

import gradlab
from gradlab import GradlabError, theory
from gradlab.errors import derived_seed
from gradlab.flow import make_inputs


def _expect(f, q):
    """E[f(sqrt(q) z)], z ~ N(0, 1), by scipy's adaptive quadrature in z (split where the
    integrand's spike of width 1/sqrt(q) ends)."""
    s = math.sqrt(q)
    g = lambda z: 2 * f(s * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa
    b = min(40.0, 40.0 / s)
    with warnings.catch_warnings():          # epsrel 1e-13 is past what quad promises
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        v = integrate.quad(g, 0, b, limit=500, epsabs=0, epsrel=1e-13)[0]
        if b < 40:
            v += integrate.quad(g, b, 40, limit=500, epsabs=0, epsrel=1e-13)[0]
    return v


def _tanh2(u):
    return math.tanh(u) ** 2


def _sech4(u):
    return 1 / math.cosh(u) ** 4 if abs(u) < 150 else 0.0


def _reference(sw, sv, sb, R):
    """(q*, chi) of q = sw^2 E[tanh^2] + sv^2 R + sb^2, chi = sw^2 E[sech^4], by brentq."""
    drive, sw2 = sv * sv * R + sb * sb, sw * sw
    if sw2 == 0 or (drive == 0 and sw2 <= 1):
        q = drive
    else:
        q = optimize.brentq(lambda q: sw2 * _expect(_tanh2, q) + drive - q,
                            drive if drive > 0 else 1e-4, sw2 + drive, xtol=1e-15, rtol=1e-14)
    return q, sw2 * (_expect(_sech4, q) if q > 0 else 1.0)


@pytest.mark.parametrize("sw", [0.0, 1e-3, 0.3, 0.9, 1.1, 1.5, 2.0, 5.0, 30.0, 1e3])
def test_fixed_point_and_chi_agree_with_adaptive_quadrature(sw):
    for sv, sb, R in [(0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (0.1, 0.05, 0.5), (3.0, 5.0, 1.0),
                      (0.0, 1e3, 1.0), (1.0, 1.0, 2.0)]:
        q, chi = _reference(sw, sv, sb, R)
        got_q, got_chi = theory.mean_field(sw, input_scale=sv, bias_scale=sb, input_power=R)
        assert got_q == pytest.approx(q, rel=1e-11, abs=1e-300), (sw, sv, sb, R)
        assert got_chi == pytest.approx(chi, rel=1e-11, abs=1e-300), (sw, sv, sb, R)
        rate = theory.mean_field_rate(sw, input_scale=sv, bias_scale=sb, input_power=R)
        if chi > 0:
            assert rate == pytest.approx(0.5 * math.log(chi), rel=1e-11, abs=1e-13)
            if chi < 1:
                assert theory.timescale(rate) == pytest.approx(-1 / math.log(chi), rel=1e-10)
        else:
            assert rate == -math.inf


def test_the_edge_of_chaos_is_weight_scale_one_without_drive():
    assert theory.mean_field(1.0, input_scale=0.0) == (0.0, 1.0)
    assert theory.mean_field_rate(1.0, input_scale=0.0) == 0.0
    assert theory.timescale(theory.mean_field_rate(1.0, input_scale=0.0)) == math.inf
    assert theory.mean_field_rate(1.0 - 1e-9, input_scale=0.0) == pytest.approx(
        math.log(1 - 1e-9), rel=1e-6)                               # chi = sw^2 at q* = 0
    # just above 1 the phase is chaotic (Poole et al.): with s = sw^2, eps = (s - 1) / s,
    # q* = eps / 2 + 17 eps^2 / 24 and chi = s (1 - 2 q* + 7 q*^2) = 1 + s eps^2 / 3 > 1
    for sw in (1.001, 1.01):
        s = sw * sw
        eps = (s - 1) / s
        assert theory.mean_field_rate(sw, input_scale=0.0) == pytest.approx(
            s * eps * eps / 6, rel=3 * eps)
    # small drive at sw = 1: q* = sqrt(d / 2) (1 + (17/12) sqrt(d / 2)), from the series
    q0 = math.sqrt(0.5e-12)
    assert theory.mean_field(1.0, input_scale=1e-6)[0] == pytest.approx(
        q0 + 17 / 12 * q0 * q0, rel=1e-12)


def _products(step, xs, h0):
    """log spectral and Frobenius norms of P_k = d h_T / d h_{T-k}, k = 1..T, by hand."""
    h, jacobians = h0, []
    for x in xs:
        jacobians.append(torch.func.jacrev(step)(h, x))
        h = step(h, x)
    P, spectral, frobenius = torch.eye(len(h0), dtype=torch.float64), [], []
    for J in reversed(jacobians):
        P = P @ J
        spectral.append(math.log(torch.linalg.matrix_norm(P, 2)))
        frobenius.append(math.log(torch.linalg.matrix_norm(P, "fro")))
    return np.array(spectral), np.array(frobenius)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.5])
def test_measured_decay_never_exceeds_pascanus_bound(scale):
    c, n, m, T = gradlab.cell("rnn_tanh"), 6, 3, 30
    p = c.init_params(n, m, seed=1, weight_scale=scale, bias_scale=0.3)
    xs = torch.randn(T, 2, m, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    flow = gradlab.gradient_flow(c, p, xs)
    W, U, b = p["W"], p["U"], p["b"]
    bound = theory.pascanu_rate(W, theory.VANILLA_GAMMA["rnn_tanh"])
    assert bound == pytest.approx(math.log(torch.linalg.matrix_norm(W, 2)), rel=1e-14)
    assert theory.pascanu_rate(W.numpy(), 0.5) == pytest.approx(bound + math.log(0.5))
    lags = np.arange(1, T + 1)
    for i in range(2):
        spectral, frobenius = _products(lambda h, x: torch.tanh(W @ h + U @ x + b), xs[:, i],
                                        torch.zeros(n, dtype=torch.float64))
        np.testing.assert_allclose(flow.log_norm("spectral")[i], spectral, rtol=0, atol=1e-12)
        np.testing.assert_allclose(flow.log_norm("frobenius")[i], frobenius, rtol=0,
                                   atol=1e-12)
        assert (flow.log_norm("spectral")[i] <= lags * bound + 1e-12).all()


@pytest.mark.parametrize("cell,block", [("lstm", ("c", "c")), ("gru", None)])
@pytest.mark.parametrize("a", [-3.0, 0.0, 2.0, 5.0])
def test_a_constant_gate_decays_at_ln_sigma_exactly(cell, block, a):
    exact = theory.gate_rate(a)
    assert exact == pytest.approx(math.log(1 / (1 + math.exp(-a))), rel=1e-15)
    for method in ("annealed", "dynamic"):
        mf = gradlab.mean_field(cell, weight_scale=0.0, input_scale=0.0, bias_scale=0.0,
                                gate_bias=a, method=method, units=64, steps=20)
        assert mf.rate == pytest.approx(exact, rel=1e-12)
    c = gradlab.cell(cell)
    p = c.init_params(5, 3, seed=0, weight_scale=0.0, input_scale=0.0, bias_scale=0.0,
                      gate_bias=a)
    flow = gradlab.gradient_flow(c, p, torch.randn(25, 2, 3, dtype=torch.float64))
    L = flow.block_log_norm(*block, "spectral") if block else flow.log_norm("spectral")
    np.testing.assert_allclose(L, np.arange(1, 26) * exact + 0 * L, rtol=0, atol=1e-12)


def test_critical_init_timescale_measured_again_by_hand():
    n, m, target = 32, 4, 8.0
    found = gradlab.critical_init("rnn_tanh", target, hidden=n, inputs=m, measurements=6)
    assert found.knob == "weight_scale" and found.steps == 100
    p = gradlab.cell("rnn_tanh").init_params(n, m, seed=0, **found)
    W, U, b = p["W"], p["U"], p["b"]
    xs = make_inputs("gaussian", found.steps, 1, m, dtype=torch.float64,
                     seed=derived_seed(0, 1))[:, 0]
    _, frobenius = _products(lambda h, x: torch.tanh(W @ h + U @ x + b), xs,
                             torch.zeros(n, dtype=torch.float64))
    start, stop = found.steps // 4, found.steps - 10
    slope = np.polyfit(np.arange(start, stop + 1), frobenius[start - 1:stop], 1)[0]
    assert found.measured_timescale == pytest.approx(-0.5 / slope, rel=1e-10)
    assert found.reached == (abs(found.measured_timescale / target - 1) <= found.tolerance)
    assert found.converged == (found.reached and
                               abs(found.fresh_timescale / target - 1) <= found.tolerance)
    assert found.theory_timescale == pytest.approx(theory.timescale(theory.mean_field_rate(
        found["weight_scale"], bias_scale=0.1, input_scale=1.0)), rel=1e-12)


@pytest.mark.parametrize("target", [1e308, 1.7976931348623157e308])
def test_a_timescale_near_floats_top_is_refused_in_one_line(target):
    with pytest.raises(GradlabError, match="longer than a measurement") as err:
        gradlab.critical_init("rnn_tanh", target, hidden=8, inputs=2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["bias_scale", "input_scale"])
def test_a_finite_drive_whose_square_overflows_is_nan_not_an_exact_zero(key):
    q, chi = theory.mean_field(1.5, **{key: 1e200})
    assert q == math.inf and math.isnan(chi)
    assert math.isnan(theory.mean_field_rate(1.5, **{key: 1e200}))
    assert math.isnan(theory.mean_field(1.5, input_scale=1e200, bias_scale=1e200)[1])
    # below the overflow the rate is finite: 1/2 ln(sw^2 E[sech^4]) ~ ln(1.5 / 1e150) ...
    assert -200 < theory.mean_field_rate(1.5, **{key: 1e150}) < -150
    # ... an infinite drive keeps its limit, and a zero weight scale its exact zero
    assert theory.mean_field_rate(1.5, **{key: math.inf}) == -math.inf
    assert theory.mean_field(0.0, **{key: 1e200}) == (math.inf, 0.0)


def test_pascanu_rate_refuses_a_meta_tensor_in_one_line():
    with pytest.raises(GradlabError, match="pascanu_rate: W is no array"):
        theory.pascanu_rate(torch.ones(2, 2, device="meta"))
