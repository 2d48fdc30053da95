"""Theory, training and sweep commands at their edges: sizes that cannot fit, grids that
are not sequences, a state that is exactly zero on a log axis, a long `init` that said
nothing, and tables that named a gate bias a cell does not have. Each test failed before
its fix (an out-of-memory kill, a bare IndexError, a matplotlib warning, silence)."""

import json
import math

import pytest

import gradlab
from gradlab import GradlabError
from gradlab.meanfield import timescale_grid
from conftest import assert_ok, assert_one_line_error, invoke


@pytest.mark.parametrize("method, units", [("annealed", 10 ** 12), ("dynamic", 10 ** 8)])
def test_a_mean_field_population_that_cannot_fit_is_refused_before_allocating(method, units):
    with pytest.raises(GradlabError, match=rf"mean field \({method}\) of {units} units needs "
                                           "about .* of memory"):
        gradlab.mean_field("lstm", units=units, method=method)


@pytest.mark.parametrize("scales, biases, bad", [
    ([1.0], [], "gate_biases"), (1.0, 0.0, "weight_scales"), ("1,2", [0.0], "weight_scales"),
    ([[1.0]], [0.0], "weight_scales")])
def test_timescale_grid_takes_sequences_of_numbers(scales, biases, bad):
    with pytest.raises(GradlabError, match=f"timescale_grid: {bad} must be a non-empty "
                                           "sequence of numbers"):
        timescale_grid("rnn_tanh", scales, biases)


def test_init_reports_each_measurement_as_it_goes():
    result = invoke("init", "gru", "--timescale", "20", "--hidden", "16", "--inputs", "4")
    assert result.exit_code in (0, 1), result.output
    lines = [line for line in result.stderr.splitlines() if "init gru: measured" in line]
    assert lines and lines[0].startswith("gradlab: init gru: measured gate-bias ")
    assert lines[0].endswith("(1/5)") and ": timescale " in lines[0]


def test_a_state_that_stays_zero_is_said_not_warned_about(tmp_path):
    # a gate bias of 1e40 saturates the GRU's update gate: the state stays exactly 0,
    # which a log axis cannot show (matplotlib warned; pytest makes warnings errors)
    out = tmp_path / "train"
    result = invoke("train", "--cells", "gru", "--tasks", "adding:3", "--steps", "2",
                    "--hidden", "2", "--batch", "2", "--drift-steps", "1", "--char-steps", "0",
                    "--dtype", "float64", "--gate-bias", "1e40", "--out", out)
    assert_ok(result)
    assert "Warning" not in result.stderr
    data = json.loads((out / "data.json").read_text())
    assert any(v == 0 for run in data["runs"] for v in run["state_rms"] or ())


def test_a_bad_task_delay_names_the_entry():
    assert_one_line_error(invoke("train", "--tasks", "adding:0"),
                          "--tasks entry 'adding:0': adding delay (its sequence length) must "
                          "be an integer >= 2, got 0")


def test_the_sweep_table_shows_no_gate_bias_for_a_cell_without_one(tmp_path):
    out = tmp_path / "sweep"
    assert_ok(invoke("sweep", "--cells", "rnn_tanh,gru", "--weight-scales", "1,2",
                     "--gate-biases", "0,1", "--hidden", "4", "--inputs", "2", "--steps", "10",
                     "--max-steps", "20", "--batch", "2", "--out", out))
    rows = [line for line in (out / "report.md").read_text().splitlines()
            if line.startswith(("| rnn_tanh |", "| gru |"))]
    assert len(rows) == 6
    assert all(row.split(" | ")[2] == "—" for row in rows if row.startswith("| rnn_tanh"))
    assert {row.split(" | ")[2] for row in rows if row.startswith("| gru")} == {"0", "1"}


def test_zero_drive_at_or_below_the_edge_of_chaos_has_q_star_zero():
    """With no inputs or biases the only fixed point for sw <= 1 is q* = 0, which the
    iteration nears only as 1/(2t) at sw = 1: it gave chi < 1 and a theory timescale of
    998 steps where chi is exactly 1 (gradients keep their size)."""
    from gradlab import theory
    assert theory.mean_field(1.0, input_scale=0.0) == (0.0, 1.0)
    assert theory.mean_field_rate(1.0, input_scale=0.0) == 0.0
    assert theory.mean_field_rate(0.9, input_scale=0.0) == pytest.approx(math.log(0.9), rel=1e-14)
    q, chi = theory.mean_field(1.1, input_scale=0.0)     # a positive fixed point above it
    assert q > 0.1 and chi == pytest.approx(1.0101893643, rel=1e-8)
