"""Theory, training and sweep commands at their edges: sizes that cannot fit, grids that
are not sequences, a state that is exactly zero on a log axis, a long `init` that said
nothing, and tables that named a gate bias a cell does not have. Each test failed before
its fix (an out-of-memory kill, a bare IndexError, a matplotlib warning, silence)."""

import json
import math

import numpy as np
import pytest
import torch

import gradlab
from gradlab import GradlabError, theory
from gradlab.meanfield import timescale_grid
from conftest import assert_ok, assert_one_line_error, invoke


@pytest.mark.parametrize("method, units", [("annealed", 10 ** 12), ("dynamic", 10 ** 8)])
def test_a_mean_field_population_that_cannot_fit_is_refused_before_allocating(method, units):
    steps = r" over \d+ steps" if method == "dynamic" else ""     # (its memory grows with them)
    with pytest.raises(GradlabError, match=rf"mean field \({method}\) of {units} units{steps} "
                                           "needs about .* of memory"):
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
    assert lines[0].endswith("(1/8)") and ": timescale " in lines[0]


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


@pytest.mark.parametrize("sw, sb, sv", [(1.0, 1e-4, 0.0), (1.0, 1e-3, 0.0), (0.999, 1e-3, 0.0),
                                        (1.001, 0.0, 0.0), (1.5, 0.0, 1.0), (3.0, 0.5, 1.0)])
def test_mean_field_fixed_point_against_quadrature_at_and_near_the_edge(sw, sb, sv):
    """500 plain iterations from q = 1 stopped short near sw = 1 (q* 14x too large at
    sb = 1e-4; at sw = 1.001 with no drive the rate came out ordered, -5.8e-4, where it is
    chaotic, +6.6e-7). The reference: brentq on the fixed-point equation, quad expectations."""
    from scipy import integrate, optimize
    from gradlab import theory

    def expect(f, q):
        return integrate.quad(lambda z: f(math.sqrt(q) * z) * math.exp(-z * z / 2)
                              / math.sqrt(2 * math.pi), -40, 40, limit=400, epsabs=1e-15,
                              epsrel=1e-13)[0]
    drive = sv * sv + sb * sb
    fixed = lambda q: sw * sw * expect(lambda u: math.tanh(u) ** 2, q) + drive - q  # noqa: E731
    q_star = optimize.brentq(fixed, (sw * sw - 1) / (4 * sw * sw) if drive == 0 else drive,
                             sw * sw + drive, xtol=1e-300, rtol=1e-14)
    chi = sw * sw * expect(lambda u: 1 / math.cosh(u) ** 4, q_star)
    q, c = theory.mean_field(sw, input_scale=sv, bias_scale=sb)
    assert q == pytest.approx(q_star, rel=1e-8)
    assert c == pytest.approx(chi, rel=1e-9)
    assert math.copysign(1, theory.mean_field_rate(sw, input_scale=sv, bias_scale=sb)) \
        == math.copysign(1, math.log(chi))


@pytest.mark.parametrize("W, gamma, said", [
    (np.eye(2), -1, r"gamma must be a real number >= 0, got -1"),
    (1j * np.eye(2), 1.0, r"2-D array of real numbers, got 2-D complex128"),
    ("W", 1.0, r"got 0-D"),
    (np.ones(3), 1.0, r"got 1-D float64"),
    (np.array([[True]]), 1.0, r"got 2-D bool"),
    ([[1.0, 2.0], [3.0]], 1.0, r"W is no array of numbers")])
def test_pascanu_rate_refuses_what_has_no_spectral_norm(W, gamma, said):
    """A negative gamma gave -inf, a complex W -inf with numpy's ComplexWarning (its norm
    is 1: rate 0), a vector was taken as a matrix (0.549), a string a raw ValueError."""
    with pytest.raises(GradlabError, match=said):
        theory.pascanu_rate(W, gamma)


def test_pascanu_rate_of_torch_half_precision():
    assert theory.pascanu_rate(3 * torch.eye(2, dtype=torch.bfloat16)) == pytest.approx(
        math.log(3))
