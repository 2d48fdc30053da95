"""gradlab.theory (and sweep.critical_weight_scale) against independent computations.

The mean-field integrals are recomputed here with scipy.integrate.quad (adaptive, with
break points at the width 1/sqrt(q) of the integrand's spike), which shares nothing with
gradlab's Gauss-Hermite / trapezoid quadrature. scipy is not a gradlab dependency; it is in
the `test` extra (pip install -e '.[test]').
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from gradlab import theory
from gradlab.reports.sweep import critical_weight_scale

SQRT2PI = math.sqrt(2 * math.pi)
SWITCH = 4.0      # theory._expect changes quadrature at q = 4 (documented in its docstring)


def _sech(u):
    """sech u without overflow (math.cosh overflows beyond |u| ~ 710)."""
    e = math.exp(-abs(u))
    return 2 * e / (1 + e * e)


def expect(f, q):
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature (accurate to ~1e-13)."""
    if q == 0:
        return f(0.0)
    s = math.sqrt(q)
    width = 1 / s
    points = sorted({0.0} | {sign * c * width for sign in (-1, 1) for c in (1, 4, 16)
                             if c * width < 12})
    value, _ = integrate.quad(lambda z: f(s * z) * math.exp(-0.5 * z * z) / SQRT2PI,
                              -12.0, 12.0, points=points, limit=2000, epsabs=1e-16,
                              epsrel=1e-13)
    return value


def sech2(u):
    return _sech(u) ** 2


def sech4(u):
    return _sech(u) ** 4


def reference(sw, q, sv=1.0, sb=0.0):
    """(right-hand side of the fixed-point equation at q, chi at q), independently."""
    rhs = sw ** 2 * (1.0 - expect(sech2, q)) + sv ** 2 + sb ** 2   # tanh^2 = 1 - sech^2
    return rhs, sw ** 2 * expect(sech4, q)


# (sw, sv, sb): ordered and chaotic, with and without input and bias; sw = 5, 10, 20 put q*
# far above 4 (the trapezoid branch); 2.1432 puts q* at 3.9 and 2.2025 at 4.1, either side
# of the switch between the two quadratures.
POINTS = [(0.5, 1.0, 0.0), (1.0, 1.0, 0.0), (1.2, 0.5, 0.5), (1.0, 0.0, 0.3),
          (2.1431793102032537, 1.0, 0.0), (2.202506985733119, 1.0, 0.0), (3.0, 0.5, 0.2),
          (5.0, 1.0, 0.0), (10.0, 1.0, 0.0), (10.0, 0.0, 0.0), (20.0, 1.0, 1.0)]


@pytest.mark.parametrize("sw,sv,sb", POINTS)
def test_fixed_point_and_chi_agree_with_independent_quadrature(sw, sv, sb):
    """q* solves q = sw^2 E[tanh^2(sqrt(q) z)] + sv^2 R + sb^2 and chi = sw^2 E[tanh'^2],
    both to 1e-6 relative: these are deterministic integrals, not estimates.

    Regression test. The bug as first found:
    for q* a little below 4 (sw = 2.1432, q* = 3.9) the 100-point
    Gauss-Hermite rule theory._expect uses up to q = 4 is off by 2.6e-4 relative in chi
    (and q* by 4.7e-6); the rule's error on E[sech^4] grows from 8e-10 at q = 1 to 1.6e-6
    at q = 2, 4.4e-5 at q = 3 and 3e-4 at q = 4, where the code switches to a trapezoid
    rule that is exact to 1e-16."""
    q, chi = theory.mean_field(sw, input_scale=sv, bias_scale=sb)
    rhs, chi_ref = reference(sw, q, sv, sb)
    assert q > 0
    assert chi == pytest.approx(chi_ref, rel=1e-6), f"q* = {q}: chi {chi} != {chi_ref}"
    assert rhs == pytest.approx(q, rel=1e-6), f"q* = {q} is not a fixed point: rhs {rhs}"


def test_large_weight_scales_give_large_q():
    """sw = 5 and 10: q* ~ sw^2 (tanh saturates), well into the trapezoid branch."""
    for sw in (5.0, 10.0):
        q, chi = theory.mean_field(sw)
        assert 0.8 * sw ** 2 < q < sw ** 2 + 1.0
        # chi -> sw^2 * (4/3) / sqrt(2 pi q) (the spike of sech^4 has area 4/3)
        assert chi == pytest.approx(sw ** 2 * (4 / 3) / math.sqrt(2 * math.pi * q), rel=0.05)


def test_chi_is_continuous_across_the_quadrature_switch():
    """Across q* = 4 chi must change as the true integral does, not jump.

    Regression test. The bug as first found:
    chi changes by 4.16e-3 between q* = 3.99 (Gauss-Hermite) and
    q* = 4.01 (trapezoid) where the exact change is 3.81e-3: a jump of 3.6e-4 (3e-4 of
    chi) at the switch."""
    below, above = 2.1701474341042686, 2.176086466120443       # q* = 3.99 and 4.01
    (q0, c0), (q1, c1) = theory.mean_field(below), theory.mean_field(above)
    assert q0 < SWITCH < q1
    exact = reference(above, q1)[1] - reference(below, q0)[1]
    assert (c1 - c0) == pytest.approx(exact, abs=1e-6 * c0), (c1 - c0, exact)


@pytest.mark.parametrize("sw", [0.1, 0.3, 0.6, 0.9])
def test_no_input_ordered_phase_settles_at_zero(sw):
    """No input, no bias, sw < 1: the only fixed point is q* = 0 and chi = sw^2."""
    q, chi = theory.mean_field(sw, input_scale=0.0, bias_scale=0.0)
    assert 0 <= q < 1e-10
    assert chi == pytest.approx(sw ** 2, rel=1e-9)


def test_zero_weights_and_no_drive():
    assert theory.mean_field(0.0, input_scale=0.0) == (0.0, 0.0)


@pytest.mark.parametrize("sv,sb", [(1.0, 0.0), (0.5, 0.5), (2.0, 0.0)])
def test_chi_increases_with_weight_scale(sv, sb):
    sws = np.linspace(0.2, 12.0, 60)
    chis = [theory.mean_field(sw, input_scale=sv, bias_scale=sb)[1] for sw in sws]
    assert all(np.diff(chis) > 0), chis


def test_mean_field_rate_is_half_log_chi():
    for sw in (0.5, 1.5, 3.0):
        chi = theory.mean_field(sw, input_scale=0.7, bias_scale=0.2)[1]
        assert theory.mean_field_rate(sw, input_scale=0.7, bias_scale=0.2) == \
            pytest.approx(0.5 * math.log(chi), rel=1e-12)


@pytest.mark.parametrize("sv,sb", [(1.0, 0.0), (0.5, 0.3), (2.0, 0.0), (1.0, 1.0)])
def test_critical_weight_scale_puts_chi_at_one(sv, sb):
    sw = critical_weight_scale(input_scale=sv, bias_scale=sb)
    assert sw is not None and 1.0 < sw < 20.0
    q, chi = theory.mean_field(sw, input_scale=sv, bias_scale=sb)
    assert chi == pytest.approx(1.0, abs=1e-9)
    assert reference(sw, q, sv, sb)[1] == pytest.approx(1.0, abs=1e-3)   # independently
    assert theory.mean_field(0.99 * sw, input_scale=sv, bias_scale=sb)[1] < 1
    assert theory.mean_field(1.01 * sw, input_scale=sv, bias_scale=sb)[1] > 1


def test_critical_weight_scale_moves_right_with_more_drive():
    """More input drives tanh into saturation, so a larger sw is needed to reach chi = 1."""
    a, b = critical_weight_scale(input_scale=0.5), critical_weight_scale(input_scale=2.0)
    assert a < b


def test_critical_weight_scale_none_when_out_of_range():
    """A drive so strong that chi < 1 even at sw = 20 has no critical point in range."""
    assert theory.mean_field(20.0, input_scale=1000.0)[1] < 1
    assert critical_weight_scale(input_scale=1000.0) is None


def test_pascanu_rate_is_log_largest_singular_value():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(7, 7)) / math.sqrt(7)
    top = np.linalg.svd(W, compute_uv=False)[0]
    assert theory.pascanu_rate(W) == pytest.approx(math.log(top), rel=1e-12)
    assert theory.pascanu_rate(torch.tensor(W)) == pytest.approx(math.log(top), rel=1e-12)
    assert theory.pascanu_rate(torch.tensor(W, dtype=torch.float32)) == \
        pytest.approx(math.log(top), rel=1e-6)
    assert theory.pascanu_rate(W, gamma=0.25) == pytest.approx(math.log(0.25 * top), rel=1e-12)
    # a scaled orthogonal matrix: every singular value is 3
    Q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    assert theory.pascanu_rate(3 * Q) == pytest.approx(math.log(3), rel=1e-12)


@pytest.mark.parametrize("a", [-30.0, -5.0, -1.0, 0.0, 0.5, 3.0, 30.0, 700.0])
def test_gate_rate_is_log_sigmoid(a):
    expected = float(torch.nn.functional.logsigmoid(torch.tensor(a, dtype=torch.float64)))
    assert theory.gate_rate(a) == pytest.approx(expected, rel=1e-12)
    assert theory.gate_rate(a) == pytest.approx(-float(np.logaddexp(0.0, -a)), rel=1e-12)


def test_gate_rate_of_a_very_negative_gate():
    """log sigmoid(a) ~ a for a << 0: ln sigma(-800) = -800 is an ordinary float.

    Regression test. The bug as first found:
    theory.gate_rate computes -log1p(exp(-a)), and math.exp(800)
    raises OverflowError for any a < -709.78. It is reachable from the command line:
    `gradlab report --cells gru --weight-scale 0 --input-scale 0 --gate-bias -800` ends
    in a traceback (see test_report.py)."""
    assert theory.gate_rate(-800.0) == pytest.approx(-800.0, rel=1e-12)


def test_timescale():
    # xi = -1 / (2 rate): the squared norm falls by e in xi steps; -1 / ln chi (Schoenholz)
    assert theory.timescale(-0.5) == 1
    assert theory.timescale(-2.0) == 0.25
    chi = theory.mean_field(1.5)[1]
    assert theory.timescale(theory.mean_field_rate(1.5)) == pytest.approx(-1 / math.log(chi),
                                                                         rel=1e-12)
    assert theory.timescale(0) == math.inf
    # growth: no timescale (it never falls by e), inf, never negative (as Flow.timescale)
    assert theory.timescale(0.25) == math.inf
    assert theory.timescale(-math.inf) == 0.0          # an exactly zero product
    assert math.isnan(theory.timescale(math.nan))      # an overflowed state
