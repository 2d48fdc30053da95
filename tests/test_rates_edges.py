"""Decay rates at their edges: a block zero at some lags only, and a float32 curve with a
large constant offset (found by a hostile probe; both once read as no gradient at all
or no decay at all)."""

import math

import numpy as np
import pytest
import torch

import gradlab
from gradlab import tanh
from gradlab.flow.rates import NO_DECAY, ONE_LAG, ZERO, slope


@gradlab.declare(state="h c", params="W U b", source="a test: h' reads the old c",
                 name="lagged")
def lagged(s):
    """d h'/d h = 0 at one step, so the (h, h) block of P_1 is zero, not of P_2 on."""
    return tanh(s.c), 0.5 * s.c + tanh(s.W @ s.h + s.U @ s.x + s.b)


def test_block_zero_at_lag_one_only_is_fitted_over_the_rest():
    params = lagged.init_params(3, 2, seed=0)
    xs = torch.randn(12, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    flow = gradlab.gradient_flow(lagged, params, xs)
    y = flow.block_log_norm("h", "h").mean(axis=0)
    assert np.isneginf(y[0]) and np.isfinite(y[1:]).all()
    expected = np.polyfit(np.arange(2, 13), y[1:], 1)[0]
    rate = flow.rate(block=("h", "h"))
    assert rate == pytest.approx(expected, rel=1e-12)
    assert rate < 0 and flow.why(block=("h", "h")) is None
    assert 0 < flow.timescale(block=("h", "h")) < math.inf
    assert flow.rate(block=("h", "h"), start=2) == pytest.approx(expected, rel=1e-12)
    assert flow.rate(block=("h", "h"), stop=1) == -math.inf         # zero at lag stop
    assert flow.why(block=("h", "h"), stop=1) == ZERO


def test_slope_of_a_block_and_of_a_product():
    y = np.array([-np.inf, -1.0, -np.inf, -3.0, -4.0])
    assert slope(y) == (-math.inf, ZERO)                   # a product: zero stays zero
    rate, why = slope(y, lasting=False)                    # a block: lags 2, 4, 5 fitted
    assert why is None and rate == pytest.approx(np.polyfit([2, 4, 5], [-1, -3, -4], 1)[0])
    assert slope(np.array([-1.0, -np.inf]), lasting=False) == (-math.inf, ZERO)
    assert slope(np.array([-np.inf, -2.0, -np.inf, -np.inf, 1.0]),
                 lasting=False)[1] is None
    rate, why = slope(np.array([-np.inf, -np.inf, -2.0]), lasting=False)
    assert math.isnan(rate) and why == ONE_LAG


def test_float32_decay_under_a_large_offset_is_measured():
    @gradlab.declare(state="h", params="W U b", source="a test", name="linear_probe")
    def linear(s):
        return s.W @ s.h + s.U @ s.x + s.b

    lam = 1 - 3e-5
    for top in (1.0, 1e37):               # the offset log(1e37) = 85 adds no slope
        params = {"W": torch.tensor([[lam, 0.0], [top, 0.0]]), "U": torch.zeros(2, 1),
                  "b": torch.zeros(2)}
        flow = gradlab.gradient_flow(linear, params, torch.zeros(10, 1, 1))
        assert flow.rate() == pytest.approx(math.log(lam), rel=2e-3), top
        assert flow.why() is None


def test_identity_dynamics_still_read_no_decay():
    y = np.full(50, 85.0) + np.arange(50) * 1e-15          # float64 rounding of a flat curve
    assert slope(y) == (0.0, None)
    y32 = np.arange(50) * 1e-9                             # float32 rounding of a flat one
    assert slope(y32, np.finfo(np.float32).eps) == (0.0, None)
    assert NO_DECAY == "no decay within T"
