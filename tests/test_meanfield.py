"""gradlab.meanfield: mean-field theory for any declared cell, and critical initialisation.

MEASURED holds Frobenius-norm rates of gradient_flow at n = 1024, recorded once (they take
~3-7 minutes each on a 2-core CPU) by this code, run as
`python measure.py CELL 1024 400 2 '[[sw, gb], ...]' 1`:

    c = gradlab.cell(cell)
    p = c.init_params(1024, 32, weight_scale=sw, bias_scale=0.1, input_scale=1.0,
                      gate_bias=gb, seed=0)
    xs = gradlab.flow.make_inputs("gaussian", 400, 2, 32, seed=1)
    f = gradlab.gradient_flow(c, p, xs, norms=("frobenius",), blocks=False)
    f.rate("frobenius", start=50, stop=380)

(gaussian init, bias scale 0.1, input scale 1, T = 400, B = 2, lags 50..380). The
theories are computed here; only the measurements are recorded.
"""

import math

import pytest
import torch
from click.testing import CliRunner

import gradlab
from gradlab import theory
from gradlab.cli import cli
from gradlab.errors import GradlabError
from gradlab.meanfield import critical_init, mean_field, measure_timescale, timescale_grid

# (cell, weight scale, gate bias) -> measured rate at n = 1024 (see the module docstring)
MEASURED = {
    ("gru", 1.0, 1.0): -0.2168, ("gru", 1.5, 2.0): -0.0789, ("gru", 1.0, 3.0): -0.0431,
    ("lstm", 1.0, 1.0): -0.1852, ("lstm", 1.0, 2.0): -0.0489, ("lstm", 1.0, 3.0): -0.0018,
    ("minimal_rnn", 1.0, 0.0): -0.5402, ("minimal_rnn", 1.0, 2.0): -0.1003,
    ("minimal_rnn", 1.0, 4.0): -0.0183,
}


@pytest.mark.parametrize("sw,sb", [(0.5, 0.0), (1.0, 0.3), (1.5, 0.0), (3.0, 0.3)])
def test_annealed_matches_the_vanilla_closed_form(sw, sb):
    """The annealed theory, derived from rnn_tanh's declaration with no vanilla code path,
    gives chi = sw^2 E[tanh'(sqrt(q*) z)^2] (theory.mean_field) to 1e-3."""
    got = mean_field("rnn_tanh", weight_scale=sw, bias_scale=sb)
    chi = theory.mean_field(sw, bias_scale=sb)[1]
    assert math.exp(2 * got.rate) == pytest.approx(chi, rel=1e-3)
    assert got.rate == pytest.approx(0.5 * math.log(chi), abs=1e-3)
    assert got.method == "annealed" and "mean_square" in got.moments


def test_annealed_forgets_faster_than_a_gated_cell_measured():
    """The gradient-independence theory misses gated cells in one direction: real
    networks (fixed W) forget more slowly (issue 14's 27-146 % gaps)."""
    for (name, sw, gb), measured in MEASURED.items():
        if name == "minimal_rnn" and gb == 0.0:
            continue
        rate = mean_field(name, weight_scale=sw, bias_scale=0.1, gate_bias=gb,
                          units=4000, burn_in=60, steps=120).rate
        assert rate < measured, (name, sw, gb, rate, measured)


def test_annealed_gap_against_a_small_fresh_measurement():
    """The same direction against a measurement made here (gru, n = 128)."""
    predicted = mean_field("gru", weight_scale=1.0, bias_scale=0.1, gate_bias=1.0).rate
    measured = -1 / measure_timescale(gradlab.cell("gru"), {
        "weight_scale": 1.0, "bias_scale": 0.1, "gate_bias": 1.0},
        hidden=128, inputs=32, steps=120, batch=2)
    assert predicted < 1.15 * measured     # about 35 % faster decay


@pytest.mark.parametrize("key", [("gru", 1.0, 1.0)])
def test_dynamic_is_closer_than_annealed(key):
    """Keeping each unit's history moves the theory towards the measurement."""
    name, sw, gb = key
    options = dict(weight_scale=sw, bias_scale=0.1, gate_bias=gb)
    annealed = mean_field(name, **options, units=4000, burn_in=60, steps=120).rate
    dynamic = mean_field(name, **options, method="dynamic", units=400, steps=400,
                         iterations=2, passes=0, lags=(50, 380)).rate
    measured = MEASURED[key]
    assert abs(dynamic - measured) < abs(annealed - measured), (annealed, dynamic, measured)


def test_dynamic_within_ten_percent_for_minimal_rnn():
    """minimal_rnn, sw 1, gate bias 2: dynamic -0.107 (seeded, 500 units) against the
    n = 1024 measurement -0.1003 (annealed: -0.138, 38 % off). gru and lstm stay out of
    reach (dynamic 24-52 % fast at the settings in MEASURED, 1500 units)."""
    rate = mean_field("minimal_rnn", weight_scale=1.0, bias_scale=0.1, gate_bias=2.0,
                      method="dynamic", units=500, steps=400, iterations=2, passes=0,
                      lags=(50, 380), seed=0).rate
    assert rate == pytest.approx(MEASURED[("minimal_rnn", 1.0, 2.0)], rel=0.10)


def test_timescale_never_negative():
    grow = mean_field("rnn_tanh", weight_scale=3.0)
    assert grow.rate > 0 and grow.timescale == math.inf
    decay = mean_field("rnn_tanh", weight_scale=0.5)
    assert decay.timescale == pytest.approx(-1 / decay.rate)
    grid = timescale_grid("rnn_tanh", [0.5, 3.0], [0.0, 2.0])
    assert grid.shape == (2, 2) and (grid >= 0).all() and grid[0, 1] == math.inf
    assert (grid[0] == grid[1]).all()          # no gate bias: one row


def test_any_declared_cell_and_one_line_errors():
    for name in ("mgu", "peephole_lstm", "lstm_cifg", "gru_torch"):
        assert math.isfinite(mean_field(name, units=2000, burn_in=40, steps=40).rate)
    with pytest.raises(GradlabError, match="unknown method"):
        mean_field("gru", method="exact")
    with pytest.raises(GradlabError, match="weight_scale"):
        mean_field("gru", weight_scale=-1.0)
    with pytest.raises(GradlabError, match="unknown cell"):
        mean_field("nope")


def test_critical_init_reaches_its_target_at_a_small_width():
    found = critical_init("gru", 20, hidden=64, inputs=8, tolerance=0.15)
    options = found["options"]
    assert set(options) == {"weight_scale", "bias_scale", "input_scale", "gate_bias"}
    assert found["knob"] == "gate_bias"
    measured = measure_timescale(gradlab.cell("gru"), options, hidden=64, inputs=8,
                                 steps=found["steps"])
    assert measured == pytest.approx(20, rel=0.15)
    assert measured == found["measured_timescale"]          # deterministic for a seed
    assert found["predicted_timescale"] > 0
    params = gradlab.cell("gru").init_params(64, 8, **options)
    assert params["W_z"].shape == (64, 64)


@pytest.mark.parametrize("args,message", [
    (["gru", "--timescale", "0.5"], "timescale must be"),
    (["nope", "--timescale", "20"], "unknown cell"),
    (["mgu", "--timescale", "20", "--write-torch", "{tmp}/new.pt"], "no torch module"),
    (["gru", "--timescale", "nan"], "not a finite number"),
    (["gru", "--timescale", "20", "--hidden", "0"], "0"),
])
def test_cli_init_errors_are_one_line(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["init", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert message in result.output and len(lines) <= 3     # click's usage + one line


def test_cli_init_refuses_to_overwrite(tmp_path):
    target = tmp_path / "exists.pt"
    target.write_bytes(b"keep")
    result = CliRunner().invoke(cli, ["init", "gru_torch", "--timescale", "10",
                                      "--write-torch", str(target)])
    assert result.exit_code == 2 and "exists" in result.output
    assert target.read_bytes() == b"keep"


def test_cli_init_small_run_writes_torch(tmp_path):
    target = tmp_path / "gru.pt"
    result = CliRunner().invoke(cli, ["init", "gru_torch", "--timescale", "10", "--hidden",
                                      "32", "--inputs", "4", "--write-torch", str(target)])
    assert result.exit_code == 0, result.output
    assert "--gate-bias" in result.output and "measured at n = 32" in result.output
    state = torch.load(target)
    assert state["weight_hh"].shape == (96, 32)
