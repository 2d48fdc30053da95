"""What the reports say at the edges agrees with their data: a sweep at T = 1 (one lag, no
slope) is not 'state overflowed' and claims nothing of the gate bias; a single lag is drawn;
contours stay visible over cells with no colour; a colour bar says where ξ lies past it;
a rate within its noise is not presented as a decay; non-finite values read as the table
reads them."""

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradlab.reports import figures, gradient_decay, sweep
from conftest import assert_ok, invoke

SMALL = ("--hidden", "8", "--batch", "2", "--seed", "0")


def test_a_sweep_of_one_lag_says_so_and_claims_nothing(tmp_path):
    out = tmp_path / "sw"
    assert_ok(invoke("sweep", "--cells", "rnn_tanh,lstm", "--weight-scales", "1,2",
                     "--gate-biases", "0,1", "--steps", "1", "--max-steps", "1", *SMALL,
                     "--out", out))
    points = json.loads((out / "data.json").read_text())["points"]
    assert {p["status"] for p in points} == {"one lag: no slope"}
    assert not any(p["converged"] for p in points)           # nothing measured, nothing got there
    text = (out / "report.md").read_text()
    assert "6 of 6 points have one lag only (T = 1), so no rate (marked –)" in text
    words = text.split("## Phase diagram")[1].split("## Every grid point")[0]
    assert "overflowed" not in words and "lengthens" not in words
    assert (out / "figures" / "phase.svg").read_text().count("<!-- – -->") == 6   # the marks


def test_one_lag_is_doubled_to_two_where_the_horizon_allows():
    """A nan rate (one lag) counted as resolved and stopped the doubling at T = 1."""
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(1.0,), gate_biases=(0.0,),
                      hidden=8, inputs=8, steps=1, max_steps=2, batch=2)
    p = sweep.measure_point(grid, "rnn_tanh", 1.0, 0.0)
    assert p["horizon"] == 2 and math.isfinite(p["rate"])


def test_a_single_lag_is_drawn_as_a_point():
    cells = {"rnn_tanh": {"lags": [1], "decay_log10": {"median": [0.15], "q1": [0.1],
                                                       "q3": [0.2]},
                          "summary": {"status": "one lag: no slope", "theory": None}}}
    fig = figures.decay(cells, figures.colors(cells))
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("rnn_tanh")]
    assert line.get_marker() == "o"


def test_contours_are_outlined_and_the_colour_bar_extends_past_its_range():
    fig = Figure()
    ax = fig.add_subplot()
    timescale = np.array([[2.0, 5.0, np.nan], [4.0, 20.0, np.nan], [8.0, 40.0, np.nan]])
    assert figures.timescale_contours(ax, timescale, [3, 10, 30]) == pytest.approx([3, 10, 30])
    lines = ax.collections[-1]
    assert lines.get_path_effects()                   # a dark halo: white on white shows
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(0.01, 1.0), gate_biases=(0.0,),
                      hidden=4, inputs=4, steps=10, max_steps=10, batch=2)
    points = [{"cell": "rnn_tanh", "weight_scale": w, "gate_bias": 0.0, "rate": r,
               "timescale": -0.5 / r, "status": None, "converged": True}
              for w, r in ((0.01, -5.0), (1.0, -0.1))]        # ξ = 0.1, below 10^-0.5
    fig = sweep._heatmaps(grid, points, None)
    assert fig.axes[-1].get_label() == "<colorbar>"
    assert fig.axes[-1]._colorbar.extend == "min"


def test_a_rate_within_its_noise_is_not_read_as_a_decay_and_nan_reads_as_words():
    def summary(rate, err, lyap):
        return {"summary": {"rate": rate, "rate_stderr": err, "timescale": -0.5 / rate,
                            "status": None, "converged": True, "lyapunov": [lyap],
                            "theory": -math.inf, "theory_label": "mean field"}}
    text = gradient_decay.findings({"lstm": summary(-0.00479, 0.0099, math.nan),
                                    "gru": summary(-0.2, 0.01, -0.25)})
    assert "lstm: rate -0.00479 ± 0.0099 per step" in text
    assert "within two standard errors of 0: no clear decay within T" in text
    assert "λ₁ = nan" not in text and "no λ₁: its state overflowed over 4T steps" in text
    assert "predicts -∞" in text and "predicts -inf" not in text
    assert text.count("no clear decay") == 1                   # gru's -0.2 ± 0.01 is one


def test_a_run_long_enough_for_xi_is_not_called_settled_where_lambda_1_differs():
    """T >= 8 xi while a fast transient holds the slope 3.6x from lambda_1 (peephole_lstm
    at T = 100 once): the column must not read as a plain 'yes'."""
    def row(rate, lyap):
        d = {"summary": {"rate": rate, "rate_stderr": 0.001, "timescale": -0.5 / rate,
                         "status": None, "converged": True, "lyapunov": [lyap],
                         "lyapunov_stderr": 0.001, "theory": None, "theory_label": None,
                         "horizon_1e-3": 10, "horizon_1e-6": 20, "log10_condition_mid": 1.0,
                         "theory_timescale": math.nan}}
        return gradient_decay.table_row("c", d)[4]
    assert row(-0.1, -0.028) == "yes, but λ₁ is -0.028: the rate is not yet the long-run one"
    assert row(-0.19, -0.199) == "yes"                  # within 10 %: settled
    assert row(-0.1, math.nan) == "yes"                 # no λ₁ to compare with


def test_a_report_of_one_step_says_nothing_a_single_step_cannot_show(tmp_path):
    out = tmp_path / "r"
    assert_ok(invoke("report", "--cells", "lstm,prototype_lstm,gru", "--steps", "1", *SMALL,
                     "--out", out))
    text = (out / "report.md").read_text()
    assert "log₁₀ cond(P_k), k = 1 |" in text and "k = T/2" not in text
    assert "from step 1 to step 1" not in text and "(×1)" not in text
    assert "over T = 1 step there is no growth to measure" in text
    assert "The paths differ in the first lags" not in text


def test_a_theory_curve_leaping_to_infinity_says_it_is_its_horizon_not_the_critical_line():
    """The theory's curve leapt to ∞ (no decay) at σ_w = 1.833 while the same caption put
    the critical line at 1.856, where theory still decays: ∞ is its finite horizon's."""
    from gradlab.reports import phase_words
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(1.75, 1.833), gate_biases=(0.0,),
                      hidden=8, inputs=8, steps=8, max_steps=32, batch=2)
    theory = {"method": "dynamic", "levels": [3, 10, 30], "unread": {},
              "options": {"units": 256, "inputs": 8, "steps": 32, "lags": [8, 32]},
              "timescale": {"rnn_tanh": [[17.9, math.inf]]},
              "curves": {"rnn_tanh": {"weight_scale": [1.75, 1.833],
                                      "timescale": [17.9, math.inf]}}}
    text = phase_words.theory_text(grid, [], theory)
    assert "leaps from 17.9 to ∞ (no decay within its T = 32 steps" in text
    assert "the leap can come before the critical line" in text


def test_a_report_of_one_lag_says_so_in_every_rate_column(tmp_path):
    """At T = 1 the rate column said "one lag: no slope" and the measured Frobenius rate
    beside the theory said "nan"."""
    out = tmp_path / "r"
    assert_ok(invoke("report", "--cells", "rnn_tanh", "--steps", "1", *SMALL, "--out", out))
    (row,) = [line for line in (out / "report.md").read_text().splitlines()
              if line.startswith("| rnn_tanh |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[gradient_decay.TABLE_HEADER.index("measured Frobenius rate")] == \
        "one lag: no slope" and "nan" not in row, row
