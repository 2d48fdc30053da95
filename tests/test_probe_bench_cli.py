"""`gradlab bench` probed as a hostile user would: the agreement figure compares every lag
either method can hold, and products past the dtype's range are named for what they are."""

import math

import numpy as np
import torch

from gradlab import bench

from conftest import assert_one_line_error, invoke

# a chaotic logistic map, nudged by the inputs within [0, 1] (so states and Jacobians stay
# finite from the zero state at any seed), its products growing ~e^(0.5 k)
GROW = ("import gradlab\n"
        "@gradlab.declare(state='h', params='U b', source='t')\n"
        "def grow(s):\n"
        "    return 3.896 * s.h * (1 - s.h) + 0.0005 * (1 + gradlab.tanh(s.U @ s.x + s.b))\n")


def test_gradient_flows_zero_or_nan_where_a_baseline_holds_one_is_a_disagreement():
    """Lags were left out by gradient_flow's norm alone: its -inf, nan or e^-400 where
    both baselines hold 1 counted as agreement (0.0), so a flow that lost its products
    passed `gradlab bench`."""
    baseline = np.array([[0.0, 0.0]])
    for ours in (-math.inf, math.nan, -400.0):
        assert bench.relative_error(baseline, np.array([[0.0, ours]]), torch.float64) > 1e100
    # both below what the baseline can hold: still left out
    assert bench.relative_error(np.array([[0.0, -math.inf]]), np.array([[0.0, -400.0]]),
                                torch.float64) == 0.0


def test_a_frobenius_norm_past_sqrt_max_is_left_out_not_a_disagreement():
    """The baselines' Frobenius norm squares entries, which overflow above sqrt(max) (1.8e19
    in float32) long before the norm does: a product of norm 1e21 gave 'methods disagree:
    max relative error inf > 1e-03' and exit 1 with all three methods right."""
    assert bench.relative_error(np.array([[0.0, math.inf]]), np.array([[0.0, 48.0]]),
                                torch.float32) == 0.0
    assert bench.relative_error(np.array([[0.0, math.inf]]), np.array([[0.0, 1.0]]),
                                torch.float32) == math.inf


def test_bench_agrees_on_products_whose_squares_overflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "FAST", 0.0)            # each method once: the numbers only
    (tmp_path / "grow.py").write_text(GROW)
    r = bench.run_bench("grow.py:grow", 2, 100, 1, dtype="float32", repeats=1)[0]
    assert r["max_relative_error"] <= bench.AGREEMENT["float32"], r["agreement"]
    assert bench.disagreement([r], torch.float32) is None


def test_products_that_overflow_are_not_blamed_on_the_state_or_jacobians(tmp_path,
                                                                         monkeypatch):
    """Finite states and Jacobians whose products pass float32's range were refused as 'the
    state or a Jacobian is nan or inf ... (gradlab verify --cells shows where)', where
    verify finds nothing: the remedy is fewer steps or float64."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grow.py").write_text(GROW)
    result = invoke("bench", "--cells", "grow.py:grow", "--hidden", "2", "--steps", "300",
                    "--batch", "1", "--repeats", "1", "--dtype", "float32")
    assert_one_line_error(result, "its products overflow float32 from lag")
    assert "--dtype float64" in result.stderr and "nan or inf" not in result.stderr
