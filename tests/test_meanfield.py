"""gradlab.meanfield: mean-field theory for any declared cell, and critical initialisation.

MEASURED holds Frobenius-norm rates at n = 1024, one per seed, recorded once (~4 s for
minimal_rnn to ~40 s for lstm per seed on one CPU core) by gradlab.meanfield.probe_rate
(32 random probes per sequence carried back by vector-Jacobian products; it reproduces
gradient_flow's Frobenius rate, `test_probe_rate_matches_gradient_flow`, and the old
gradient_flow records of these settings to 0-1.4 %) with this code:

    from gradlab.meanfield import probe_rate
    for seed in (0, 1, 2):                      # 0..7 for ("lstm", 1.5, 2.0)
        probe_rate(cell, dict(weight_scale=sw, bias_scale=0.1, input_scale=1.0,
                              gate_bias=gb),
                   hidden=1024, inputs=32, steps=400, batch=2, probes=32, seed=seed,
                   lags=(50, 380))

(gaussian init, bias scale 0.1, input scale 1, T = 400, B = 2, lags 50..380, the weights
and inputs of seed s as init_params(seed=s) and make_inputs(seed=s + 1)).
`test_a_measured_constant_is_reproduced` re-measures one of them. The theories are
computed here; only the measurements are recorded.
"""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gradlab
from gradlab import theory
from gradlab.cli import cli
from gradlab.errors import GradlabError
from gradlab.flow import gradient_flow, make_inputs
from gradlab.meanfield import (critical_init, mean_field, measure_timescale, probe_rate,
                               timescale_grid)
from gradlab.meanfield.dynamic import Fields

# (cell, weight scale, gate bias) -> measured rates at n = 1024, seeds 0, 1, 2, ...
MEASURED = {
    ("gru", 1.0, 1.0): (-0.21676, -0.21767, -0.21926),
    ("gru", 1.5, 2.0): (-0.07881, -0.07951, -0.08038),
    ("gru", 1.0, 3.0): (-0.04328, -0.04468, -0.04508),
    ("lstm", 1.0, 1.0): (-0.18504, -0.18497, -0.18420),
    ("lstm", 1.5, 1.0): (-0.11905, -0.11681, -0.11785),
    ("lstm", 1.0, 2.0): (-0.04957, -0.04671, -0.04635),
    ("lstm", 1.5, 2.0): (-0.01294, -0.00937, -0.01081, -0.01114, -0.00700, -0.01038,
                         -0.01129, -0.01218),
    ("lstm", 1.0, 3.0): (-0.00172, -0.00045, -0.00008),
    ("minimal_rnn", 1.0, 0.0): (-0.54038, -0.50987, -0.54488),
    ("minimal_rnn", 1.0, 2.0): (-0.10036, -0.09891, -0.10526),
    ("minimal_rnn", 1.0, 4.0): (-0.01827, -0.01840, -0.01854),
}
# three settings per cell, ordered (timescale 2-5 steps) to near-critical (20-55 steps)
WITHIN_TEN_PERCENT = [("gru", 1.0, 1.0), ("gru", 1.5, 2.0), ("gru", 1.0, 3.0),
                      ("lstm", 1.0, 1.0), ("lstm", 1.5, 1.0), ("lstm", 1.0, 2.0),
                      ("minimal_rnn", 1.0, 0.0), ("minimal_rnn", 1.0, 2.0),
                      ("minimal_rnn", 1.0, 4.0)]
# and ("lstm", 1.5, 2.0), with more populations (`test_..._near_critical_lstm`)
# the theory as compared: a population of n = 1024 units, the measurement's inputs (m = 32)
# and window, averaged over two sampled populations (seeds 0, 1)
DYNAMIC = dict(method="dynamic", units=1024, steps=400, inputs=32, lags=(50, 380))


def measured(key):
    return float(np.mean(MEASURED[key]))


def dynamic_rate(key, seeds=(0, 1)):
    name, sw, gb = key
    return float(np.mean([mean_field(name, weight_scale=sw, bias_scale=0.1, gate_bias=gb,
                                     seed=seed, **DYNAMIC).rate for seed in seeds]))


@pytest.mark.parametrize("sw,sb", [(0.5, 0.0), (1.0, 0.3), (1.5, 0.0), (3.0, 0.3)])
def test_annealed_matches_the_vanilla_closed_form(sw, sb):
    """The annealed theory, derived from rnn_tanh's declaration with no vanilla code path,
    gives chi = sw^2 E[tanh'(sqrt(q*) z)^2] (theory.mean_field) to 1e-3."""
    got = mean_field("rnn_tanh", weight_scale=sw, bias_scale=sb)
    chi = theory.mean_field(sw, bias_scale=sb)[1]
    assert math.exp(2 * got.rate) == pytest.approx(chi, rel=1e-3)
    assert got.rate == pytest.approx(0.5 * math.log(chi), abs=1e-3)
    assert got.method == "annealed" and "mean_square" in got.moments


@pytest.mark.parametrize("sw", [0.8, 1.2, 2.0])
def test_annealed_with_no_drive_finds_the_fixed_point_the_closed_form_iterates_to(sw):
    """No input and no bias: the population used to start at h = 0, a fixed point it
    never left (unstable for sw > 1), and gave ln sw (0.182 at sw = 1.2) for 0.0165."""
    got = mean_field("rnn_tanh", weight_scale=sw, input_scale=0.0, bias_scale=0.0)
    q, chi = theory.mean_field(sw, input_scale=0.0, bias_scale=0.0)
    assert got.rate == pytest.approx(0.5 * math.log(chi), abs=1e-3)
    if sw > 1:                                   # off h = 0: q* = 0.25 at sw = 1.2
        assert got.moments["mean_square"]["h'"] > 0.1


def test_annealed_forgets_faster_than_a_gated_cell_measured():
    """The gradient-independence theory with fresh weights at every step misses gated cells
    in one direction: real networks (fixed W) forget more slowly (27-1000 % here)."""
    for (name, sw, gb) in MEASURED:
        if name == "minimal_rnn" and gb == 0.0:
            continue
        rate = mean_field(name, weight_scale=sw, bias_scale=0.1, gate_bias=gb,
                          units=4000, burn_in=60, steps=120).rate
        assert rate < measured((name, sw, gb)), (name, sw, gb, rate)


def test_annealed_gap_against_a_small_fresh_measurement():
    """The same direction against a measurement made here (gru, n = 128)."""
    predicted = mean_field("gru", weight_scale=1.0, bias_scale=0.1, gate_bias=1.0).rate
    measured = -1 / 2 / measure_timescale(gradlab.cell("gru"), {
        "weight_scale": 1.0, "bias_scale": 0.1, "gate_bias": 1.0},
        hidden=128, inputs=32, steps=120, batch=2)
    assert predicted < 1.15 * measured     # about 35 % faster decay


@pytest.mark.parametrize("key", WITHIN_TEN_PERCENT, ids=lambda k: "-".join(map(str, k)))
def test_dynamic_within_ten_percent(key):
    """Dynamic mean field against the n = 1024 measurement (mean over seeds), three
    settings per cell. Before the backward fields were drawn causally (persistent, as a
    fixed W^T makes them) they were white, and gru decayed 23-43 %, lstm 51-159 % too
    fast at these settings (minimal_rnn 1-9 %); now the gaps are 0-4 %."""
    predicted, target = dynamic_rate(key), measured(key)
    assert predicted == pytest.approx(target, rel=0.10), (key, predicted, target)


def test_dynamic_within_ten_percent_near_critical_lstm():
    """lstm, sw 1.5, gate bias 2 (timescale ~95 steps): within 10 % on average, but one
    population (like one network) scatters by ~17 % from seed to seed (measured seeds
    -0.0070..-0.0129; theory seeds 0..29 average -0.0111, sd 0.0016), so the theory here
    is the mean of six (-0.0115 against -0.0106)."""
    key = ("lstm", 1.5, 2.0)
    predicted, target = dynamic_rate(key, seeds=range(6)), measured(key)
    assert predicted == pytest.approx(target, rel=0.10), (predicted, target)


def test_dynamic_gap_where_not_within_ten_percent():
    """Recorded out of 10 %: lstm, sw 1, gate bias 3, whose timescale is longer than the
    run (the rate is ~0 on both sides: measured -0.0017..-0.0001 per seed, theory
    +0.0016 / -0.0010 for seeds 0, 1): no relative agreement is possible (the gap is
    ~140 % of a rate of -0.0008); the absolute gap, 0.0011 per step, is bounded here by
    0.0015 (the theory's seed-to-seed spread here is 0.0016)."""
    key = ("lstm", 1.0, 3.0)
    predicted, target = dynamic_rate(key), measured(key)
    assert abs(predicted - target) > 0.10 * abs(target)              # out of 10 %
    assert abs(predicted - target) < 0.0015, (predicted, target)


def test_dynamic_is_closer_than_annealed():
    """Keeping each unit's history moves the theory towards the measurement."""
    key = ("gru", 1.0, 3.0)
    name, sw, gb = key
    annealed = mean_field(name, weight_scale=sw, bias_scale=0.1, gate_bias=gb, units=4000,
                          burn_in=60, steps=120).rate
    dynamic = dynamic_rate(key, seeds=(0,))
    target = measured(key)
    assert abs(dynamic - target) < 0.5 * abs(annealed - target), (annealed, dynamic, target)


def test_a_measured_constant_is_reproduced():
    """MEASURED is what its recorded code gives: one of them, measured again."""
    rate = probe_rate("minimal_rnn", dict(weight_scale=1.0, bias_scale=0.1, input_scale=1.0,
                                          gate_bias=2.0),
                      hidden=1024, inputs=32, steps=400, batch=2, probes=32, seed=0,
                      lags=(50, 380))
    assert rate == pytest.approx(MEASURED[("minimal_rnn", 1.0, 2.0)][0], abs=1e-5)


def test_probe_rate_matches_gradient_flow():
    """32 random probes estimate the Frobenius norm's rate that gradient_flow measures."""
    c = gradlab.cell("gru")
    options = dict(weight_scale=1.0, bias_scale=0.1, input_scale=1.0, gate_bias=1.0)
    params = c.init_params(96, 8, seed=3, **options)
    xs = make_inputs("gaussian", 120, 2, 8, seed=4)
    exact = gradient_flow(c, params, xs, norms=("frobenius",), blocks=False).rate(
        "frobenius", start=15, stop=100)
    estimate = probe_rate(c, options, hidden=96, inputs=8, steps=120, batch=2, probes=32,
                          seed=3, lags=(15, 100))
    assert estimate == pytest.approx(exact, rel=0.02)


def test_fields_act_as_one_gaussian_matrix():
    """`Fields` draws M v causally as one fixed Gaussian matrix would act: linear in v
    (a combination of earlier vectors gets the same combination of their fields), of
    per-unit covariance mean(v v'), determined once N vectors span the space; groups side
    by side are separate matrices, each the draws it would get alone."""
    rng = np.random.default_rng(0)
    N = 4000
    draw = Fields(N, [np.random.default_rng(1)])
    a, b = rng.standard_normal(N), rng.standard_normal(N)
    fa, fb = draw(a), draw(b)
    assert np.allclose(draw(2 * a - 0.5 * b), 2 * fa - 0.5 * fb)
    assert np.mean(fa * fa) == pytest.approx(np.mean(a * a), rel=0.05)
    assert np.mean(fa * fb) == pytest.approx(np.mean(a * b), abs=0.05)
    c = 0.9 * a + 0.1 * rng.standard_normal(N)        # correlated with a: so is its field
    fc = draw(c)
    assert np.mean(fa * fc) / np.mean(fa * fa) == pytest.approx(
        np.mean(a * c) / np.mean(a * a), abs=0.03)
    small = Fields(3, [np.random.default_rng(2)])
    basis = [small(e) for e in np.eye(3)]
    v = np.array([1.0, -2.0, 0.5])
    assert np.allclose(small(v), sum(x * f for x, f in zip(v, basis)))
    assert small.r == 3
    pair = Fields(N, [np.random.default_rng(1), np.random.default_rng(5)])
    alone = Fields(N, [np.random.default_rng(5)])
    first, second = pair(np.concatenate([a, b])), pair(np.concatenate([b, a]))
    assert np.allclose(first[:N], fa)
    assert np.allclose(first[N:], alone(b)) and np.allclose(second[N:], alone(a))


def test_dynamic_options():
    """Fewer units than steps (the fields become determined), white or exact inputs, and
    bad sizes refused in one line."""
    for options in ({"units": 16, "steps": 60}, {"units": 64, "steps": 40, "inputs": 4}):
        got = mean_field("gru", weight_scale=1.0, gate_bias=1.0, method="dynamic", **options)
        assert math.isfinite(got.rate) and got.rate < 0
        assert len(got.moments["curve"]) == options["steps"]
    with pytest.raises(GradlabError, match="units"):
        mean_field("gru", method="dynamic", units=1)
    with pytest.raises(GradlabError, match="iterations"):
        mean_field("gru", method="dynamic", iterations=2)


def test_timescale_never_negative():
    grow = mean_field("rnn_tanh", weight_scale=3.0)
    assert grow.rate > 0 and grow.timescale == math.inf
    decay = mean_field("rnn_tanh", weight_scale=0.5)
    assert decay.timescale == pytest.approx(-1 / (2 * decay.rate))
    grid = timescale_grid("rnn_tanh", [0.5, 3.0], [0.0, 2.0])
    assert grid.shape == (2, 2) and (grid >= 0).all() and grid[0, 1] == math.inf
    assert (grid[0] == grid[1]).all()          # no gate bias: one row


def test_timescale_grid_dynamic_is_mean_field_point_by_point():
    """The dynamic grid runs its points as one population, each the numbers mean_field
    gives it alone."""
    options = dict(units=64, steps=60, inputs=4, lags=(15, 60), seed=2)
    grid = timescale_grid("gru", [0.5, 1.5], [0.0, 2.0], bias_scale=0.1, method="dynamic",
                          batch=3, **options)
    for i, gb in enumerate([0.0, 2.0]):
        for j, sw in enumerate([0.5, 1.5]):
            alone = mean_field("gru", weight_scale=sw, bias_scale=0.1, gate_bias=gb,
                               method="dynamic", **options).timescale
            assert grid[i, j] == pytest.approx(alone, rel=1e-9)
    assert grid[1, 0] > grid[0, 0]
    with pytest.raises(GradlabError, match="lags"):
        timescale_grid("gru", [1.0], [0.0], method="dynamic", units=8, steps=10, lags=(5, 20))


def test_any_declared_cell_and_one_line_errors():
    for name in ("mgu", "peephole_lstm", "lstm_cifg", "gru_torch"):
        assert math.isfinite(mean_field(name, units=2000, burn_in=40, steps=40).rate)
        assert math.isfinite(mean_field(name, method="dynamic", units=64, steps=30).rate)
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
    # the spectral norm's timescale at the same options, measured the same way (the
    # report's xi): a GRU's falls more slowly than the mean squared gradient's
    spectral = measure_timescale(gradlab.cell("gru"), options, hidden=64, inputs=8,
                                 steps=found["steps"], kind="spectral")
    assert found["spectral_timescale"] == spectral > measured
    with pytest.raises(GradlabError, match="unknown norm 'max'; valid: frobenius, spectral"):
        measure_timescale(gradlab.cell("gru"), options, hidden=4, inputs=2, steps=10,
                          kind="max")
    assert found["predicted_timescale"] > 0
    params = gradlab.cell("gru").init_params(64, 8, **options)
    assert params["W_z"].shape == (64, 64)
    # a dict of init_params options (DESIGN: "returning a dict of init_params options"),
    # what it measured beside them as attributes, read as items too
    assert dict(found) == options and len(found) == 4 and "converged" in found
    assert found.measured_timescale == found["measured_timescale"] == measured
    assert found.get("knob") == "gate_bias" and found.get("nothing", 3) == 3
    same = gradlab.cell("gru").init_params(64, 8, **found)
    assert all(torch.equal(same[k], params[k]) for k in params)
    with pytest.raises(KeyError):
        found["nothing"]


@pytest.mark.parametrize("args,message", [
    (["gru", "--timescale", "0.5"], "'0.5' is not above 1"),
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
    state = torch.load(target, weights_only=True)
    assert state["weight_hh"].shape == (96, 32)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_mean_field_refuses_a_bad_seed_in_one_line(seed):
    with pytest.raises(gradlab.GradlabError, match="seed must be"):
        gradlab.mean_field("lstm", method="dynamic", seed=seed)


EXPLODING = '''
import gradlab
from gradlab.symbolic.language import exp


@gradlab.declare(state="h", params="W U b", source="test")
def exploding(s):
    return exp(s.W @ s.h + s.U @ s.x + s.b)
'''


@pytest.mark.parametrize("method", ["annealed", "dynamic"])
def test_an_overflowing_population_has_no_rate_and_raises_no_warning(method, tmp_path):
    """h' = exp(W h + U x + b) explodes: its population's statistics overflow. The theory
    says nan (no rate, as Flow.rate for an overflowed state), never -inf (which would read
    as an exactly zero product, timescale 0), a LinAlgError or a floating-point warning."""
    import warnings
    path = tmp_path / "exploding.py"
    path.write_text(EXPLODING)
    cell = gradlab.cell(f"{path}:exploding")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradlab.mean_field(cell, weight_scale=3.0, method=method, steps=60)
        grid = gradlab.meanfield.timescale_grid(cell, [3.0], [0.0], method=method, steps=60)
    assert math.isnan(result.rate) and math.isnan(result.timescale)
    assert np.isnan(grid).all()


def test_critical_init_steps_down_from_an_overflowed_measurement(monkeypatch):
    """nan (the state overflowed: growth) counted as 'decays at once', so the search raised
    the weight scale further into overflow."""
    import gradlab.meanfield.critical as critical
    seen = []

    def measure(cell, options, **kw):
        seen.append(options["weight_scale"])
        return math.nan
    monkeypatch.setattr(critical, "measure_timescale", measure)
    critical.critical_init("rnn_relu", 20, weight_scale=4.0, hidden=4, inputs=2,
                           measurements=3)
    assert seen[1] < seen[0] and seen[2] < seen[1]
