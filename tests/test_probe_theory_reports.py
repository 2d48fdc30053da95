"""Probe of the theory and the reports: independent values gradlab is held to."""

import math

import pytest

from conftest import assert_one_line_error, invoke
from gradlab import theory


@pytest.mark.parametrize("sb", [1e-12, 1e-16, 1e-20, 1e-100])
def test_fixed_point_at_the_edge_of_chaos_with_a_tiny_bias(sb):
    """At sw = 1 with drive sb^2 alone, q* solves E[tanh^2(sqrt(q) z)] - q = -sb^2, whose
    left side is -2 q^2 (1 + O(q)): q* = sb / sqrt(2). Computed as E[tanh^2] - q it lost
    every digit once 2 q^2 fell below eps q: q* was 1e-4 off at sb = 1e-12, 80 % at 1e-16,
    3e4 times too small at 1e-20 and 1e-34 at 1e-50 (the rounding of the expectation,
    not the fixed point, decided the bisection)."""
    q, chi = theory.mean_field(1.0, input_scale=0.0, bias_scale=sb)
    assert q == pytest.approx(sb / math.sqrt(2), rel=1e-9, abs=0)
    assert chi == pytest.approx(1.0, abs=1e-11)


def test_chi_just_above_the_edge_follows_its_expansion():
    """With no drive, sw^2 = 1 + e gives q* = e/2 + O(e^2) and chi = 1 + e^2/3 + O(e^3):
    (chi - 1) / (e/2)^2 tends to 4/3. The cancelling fixed-point equation drifted to 1.377
    at sw = 1 + 1e-7. There chi - 1 is 1.3e-14, only 60 ulps of 1.0, so chi's expansion is
    checked at sw = 1 + 1e-6, where one ulp of chi is 1.7e-4 of chi - 1 (at 1 + 1e-7 a
    chi one ulp off, as on some CPUs, read 1.354)."""
    for sw in (1 + 1e-7, 1 + 1e-6):
        e = sw * sw - 1
        q, chi = theory.mean_field(sw, input_scale=0.0)
        assert q == pytest.approx(e / 2, rel=1e-6, abs=0)
    assert (chi - 1) / (e / 2) ** 2 == pytest.approx(4 / 3, rel=2e-3)


@pytest.mark.parametrize("value, said", [
    ("1_0", "'1_0' is not written in digits 0-9 alone; write '10' (an integer in 1..64)"),
    ("+1", "'+1' is not written in digits 0-9 alone; write '1'"),
    ("0", "0 is not in the range 1<=x<=64")])
def test_init_measurements_in_the_one_integer_grammar(value, said):
    """--measurements was click's own IntRange, which read '1_0' as 10 and '+1' as 1 (and
    ran the search) where every other integer option refuses them."""
    assert_one_line_error(invoke("init", "rnn_tanh", "--timescale", "5", "--hidden", "2",
                                 "--measurements", value), said)


def test_condition_number_of_a_multiple_of_the_identity_is_one():
    """A GRU with zero weights and inputs has P_k = sigma(2)^k I, cond 1; the spectral and
    smallest-singular norms, computed apart, rounded its log to -2.2e-16, which the report's
    table printed as log10 cond = -9.643e-17 (a condition number below 1)."""
    import numpy as np
    import gradlab
    from gradlab.reports.measurements import Setup
    setup = Setup(cells=("gru",), hidden=8, inputs=8, steps=20, batch=2, weight_scale=0.0,
                  input_scale=0.0, gate_bias=2.0)
    cell = gradlab.cell("gru")
    flow = gradlab.gradient_flow(cell, setup.params(cell), setup.xs(),
                                 norms=("spectral", "min_singular"))
    assert np.array_equal(flow.log_condition(), np.zeros((2, 20)))
    assert np.array_equal(flow.condition(10), np.ones(2))


def test_gate_rate_past_underflow_is_zero_not_minus_zero():
    """ln sigma(a) at a = 1000 came out -0.0 (-log1p(e^-1000)), which reports printed as
    '-0'; the exact value, -e^-1000, is below the smallest float."""
    from gradlab import theory
    for a in (1000.0, 1e20, math.inf):
        rate = theory.gate_rate(a)
        assert rate == 0.0 and math.copysign(1.0, rate) == 1.0, (a, rate)
    assert theory.gate_rate(40.0) == -math.exp(-40.0) * (1 - math.exp(-40.0) / 2)
