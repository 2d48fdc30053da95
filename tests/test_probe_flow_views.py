"""A Flow's derived views (rate, why, timescale, horizon, condition, ...) against what the
per-lag products really are, at their edges (found by a probe of the views)."""

import math

import numpy as np
import pytest
import torch

import gradlab
from gradlab import sqrt
from gradlab.flow.rates import NOT_FINITE


@gradlab.declare(state="h", params="W U", source="a test: an infinite slope at h = 0",
                 name="root")
def root(s):
    """sqrt(|W h|): its Jacobian at the zero state s_0 is nan (an infinite slope times 0)."""
    return sqrt(abs(s.W @ s.h)) + s.U @ s.x


def test_min_singular_of_a_product_through_a_jacobian_not_finite_is_nan_not_singular():
    params = {"W": torch.eye(2, dtype=torch.float64),
              "U": torch.ones(2, 2, dtype=torch.float64)}
    xs = torch.randn(5, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = gradlab.gradient_flow(root, params, xs, norms=("spectral", "min_singular"))
    assert bool(torch.isfinite(flow.states[0]).all())    # no overflow: J_1 itself is nan
    spectral, low = flow.log_norm("spectral"), flow.log_norm("min_singular")
    assert np.isnan(spectral[:, -1]).all() and np.isfinite(spectral[:, :-1]).all()
    assert np.isnan(low[:, -1]).all() and np.isfinite(low[:, :-1]).all()  # was -inf
    assert math.isnan(flow.rate("min_singular"))
    assert flow.why("min_singular") == NOT_FINITE == flow.why("spectral")
    assert math.isnan(flow.timescale("min_singular"))
    assert flow.rate("min_singular", stop=4) < 0


@gradlab.declare(state="h", params="W U b", source="a test: a linear recurrence",
                 name="probe_linear")
def probe_linear(s):
    return s.W @ s.h + s.U @ s.x + s.b


def linear_params(w, u, n=4, m=3):
    return {"W": w * torch.eye(n, dtype=torch.float64),
            "U": u * torch.ones(n, m, dtype=torch.float64),
            "b": torch.zeros(n, dtype=torch.float64)}


@pytest.mark.parametrize("u", [1e308, 1e200, 1e-200, 1e-310])
def test_input_gradient_norms_of_huge_or_tiny_input_weights_are_exact(u):
    """dL/dx_t = v^T W^(T-1-t) U for W = I/2: 0.5^(T-1-t) 2 u sqrt(m) for v = 1/2. Its
    sum of squares (and at 1e308 g U itself) overflowed to inf, or underflowed to 0."""
    T, m = 5, 3
    xs = torch.zeros(T, 2, m, dtype=torch.float64)          # the states stay at 0
    flow = gradlab.gradient_flow(probe_linear, linear_params(0.5, u, m=m), xs)
    v = torch.full((4,), 0.5, dtype=torch.float64)
    got = flow.loss_grad_norms(v, log=True)["input"]
    want = [(T - 1 - t) * math.log(0.5) + math.log(2) + math.log(u) + 0.5 * math.log(m)
            for t in range(T)]
    np.testing.assert_allclose(got, np.tile(want, (2, 1)), rtol=1e-14)
    plain = gradlab.gradient_flow(probe_linear, linear_params(0.5, 1.0, m=m), xs)
    assert flow.bptt_fraction(2, v) == pytest.approx(plain.bptt_fraction(2, v), rel=1e-13)


@gradlab.declare(state="h c", params="W V U", source="a test: c sums the old h's",
                 name="probe_two")
def probe_two(s):
    return s.W @ s.h + s.U @ s.x, s.V @ s.c + s.h


def test_block_frobenius_far_below_the_product_is_measured_as_its_spectral_norm_is():
    """With W = 1e-60 I and V = I the (h, h) block of P_k is 1e-60^k I, the product's
    norm about 1: its Frobenius sum of squares underflowed from lag 3 (1e-180 of the
    product), and rate('frobenius', block=(h, h)) read -inf, "product zero"."""
    n, T = 2, 4
    params = {"W": 1e-60 * torch.eye(n, dtype=torch.float64),
              "V": torch.eye(n, dtype=torch.float64),
              "U": torch.ones(n, 2, dtype=torch.float64)}
    xs = torch.randn(T, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = gradlab.gradient_flow(probe_two, params, xs)
    lags = np.arange(1, T + 1)
    np.testing.assert_allclose(flow.block_log_norm("h", "h", "frobenius")[0],
                               lags * math.log(1e-60) + 0.5 * math.log(n), rtol=1e-14)
    assert flow.rate("frobenius", block=("h", "h")) == pytest.approx(math.log(1e-60),
                                                                     rel=1e-13)
    assert flow.why("frobenius", block=("h", "h")) is None


def test_summary_keeps_every_blocks_rate_where_names_run_together():
    """Parts h, hc and ch: the blocks (h, ch) and (hc, h) were both rate_spectral_hch, one
    rate silently lost; such a cell's keys are rate_KIND_A->B, every cell else's as before."""
    @gradlab.declare(state="h hc ch", params="W U", source="a test")
    def tri(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x), 0.5 * s.hc + 0.1 * s.h, \
            0.9 * s.ch + 0.2 * s.hc
    flow = gradlab.gradient_flow(tri, tri.init_params(2, 2, seed=0),
                                 torch.randn(6, 2, 2, dtype=torch.float64))
    flow.block_log_norm("h", "ch")
    rates = {k: v for k, v in flow.summary().items() if k.startswith("rate_spectral_")}
    assert len(rates) == 9
    for a in ("h", "hc", "ch"):
        for b in ("h", "hc", "ch"):
            want = flow.rate(block=(a, b))
            got = rates[f"rate_spectral_{a}->{b}"]
            assert got == want or (math.isnan(got) and math.isnan(want))
    lstm = gradlab.gradient_flow("lstm", gradlab.cell("lstm").init_params(2, 2),
                                 torch.randn(4, 1, 2, dtype=torch.float64))
    lstm.block_log_norm("h", "c")
    assert "rate_spectral_hc" in lstm.summary()
