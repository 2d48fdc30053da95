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


def test_bench_lyapunov_exits_1_when_the_exponents_disagree(monkeypatch):
    """`gradlab bench --lyapunov` printed its table and exited 0 whatever the two methods
    computed: exponents 0.3 apart (or nan) passed, where the main bench exits 1."""
    from gradlab import bench_lyapunov

    def fake(cells, hidden, steps, batch, k, dtypes, repeats, seed, inputs):
        return [{"cell": cells[0], "dtype": dtypes[0], "gradlab_seconds": 1.0,
                 "baseline_seconds": 2.0, "max_abs_difference": difference,
                 "ratio": {"best": 2.0, "min": 2.0, "median": 2.0, "max": 2.0}}]
    monkeypatch.setattr(bench_lyapunov, "run_lyapunov_bench", fake)
    for difference in (0.3, math.nan, 2e-10):
        result = invoke("bench", "--lyapunov", "2", "--cells", "gru", "--hidden", "4")
        assert result.exit_code == 1, (difference, result.output)
        assert result.stderr.strip().splitlines()[-1:] == [
            f"gradlab: gradlab and the published baseline disagree: gru float64 exponents "
            f"differ by {difference:.2e} > 1e-10"]
    difference = 1e-15
    result = invoke("bench", "--lyapunov", "2", "--cells", "gru", "--hidden", "4")
    assert result.exit_code == 0 and "disagree" not in result.stderr, result.output
    assert bench_lyapunov.lyapunov_disagreement(
        [{"cell": "lstm", "dtype": "float32", "max_abs_difference": 3e-7}]) is None
