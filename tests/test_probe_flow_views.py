"""A Flow's derived views (rate, why, timescale, horizon, condition, ...) against what the
per-lag products really are, at their edges (found by a probe of the views)."""

import math

import numpy as np
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
