"""Hostile inputs to gradlab.meanfield, the report's theory and `gradlab init`: scales whose
squares overflow float64 give a nan theory (never an OverflowError, never a warning), the
dynamic theory's default lag window is never empty, every bad number is one GradlabError
line, numpy numbers are numbers, and `gradlab init` says when it missed its target, checks
--write-torch before any work, and writes what `gradlab report --model` reads."""

import math
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gradlab
from gradlab import checkpoint
from gradlab.cli import cli
from gradlab.errors import GradlabError
from gradlab.interop import to_torch
from gradlab.meanfield import critical_init, mean_field, timescale_grid
from gradlab.meanfield.lag_window import default_lags
from gradlab.reports.measurements import Setup, measure

QUICK = dict(units=200, burn_in=5, steps=10)            # annealed, small
DYNAMIC = dict(method="dynamic", units=16, steps=30)


# -- scales whose squares overflow ---------------------------------------------------------
@pytest.mark.parametrize("scales", [{"weight_scale": 1e200}, {"input_scale": 1e308},
                                    {"weight_scale": 1e160, "input_scale": 1e160}])
@pytest.mark.parametrize("options", [QUICK, DYNAMIC, {**DYNAMIC, "inputs": 2}])
def test_an_overflowing_variance_is_a_nan_theory_with_no_warning(scales, options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = mean_field("lstm", **scales, **options)
    assert math.isnan(result.rate) and math.isnan(result.timescale)


def test_a_grid_reaching_float64s_end_is_nan_there_only():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid = timescale_grid("gru", [1.0, 1e308], [0.0, 1.0], method="dynamic", units=16,
                              steps=20, inputs=2, lags=(5, 20))
        annealed = timescale_grid("rnn_tanh", [1.0, 1e200], [0.0], units=200, steps=10,
                                  burn_in=5)
    assert np.isfinite(grid[:, 0]).all() and np.isnan(grid[:, 1]).all()
    assert np.isfinite(annealed[0, 0]) and np.isnan(annealed[0, 1])


@pytest.mark.parametrize("scales", [{"weight_scale": 1e160}, {"input_scale": 1e308}])
def test_the_reports_theory_is_none_past_float64(scales):
    setup = Setup(cells=("lstm",), hidden=2, inputs=1, steps=4, batch=1, **scales)
    summary = measure(setup, "lstm")["summary"]
    assert summary["theory"] is None and summary["theory_timescale"] is None


# -- the dynamic theory's options ---------------------------------------------------------
@pytest.mark.parametrize("steps", [16, 20, 22])
def test_short_dynamic_runs_have_a_lag_window(steps):
    """steps // 8 .. steps - 20 is empty at 16..22 steps; a short run fits up to its last
    lag, a long one keeps the documented window."""
    assert default_lags(steps) == (2, steps)
    assert default_lags(400) == (50, 380) and default_lags(40) == (5, 20)
    assert all(1 <= default_lags(t)[0] < default_lags(t)[1] <= t for t in range(3, 100))
    assert math.isfinite(mean_field("gru", method="dynamic", units=16, steps=steps).rate)


@pytest.mark.parametrize("lags", [(1, 2, 3), (0, 5), (5, 5), (1, 31), (1.5, 3), "ab", 7,
                                  (True, 5)])
def test_bad_lags_are_one_line(lags):
    with pytest.raises(GradlabError, match=r"lags must be two integers .* got"):
        mean_field("gru", lags=lags, **DYNAMIC)


@pytest.mark.parametrize("options,what", [
    ({"steps": 0}, "steps"), ({"units": 0}, "units"), ({"units": -5}, "units"),
    ({"burn_in": -1}, "burn_in"), ({"units": 2.5}, "units"), ({"steps": True}, "steps"),
    ({**DYNAMIC, "units": np.float64(16)}, "units"),
    ({"method": ["annealed"]}, "unknown method"),
])
def test_bad_numbers_are_one_line(options, what):
    with pytest.raises(GradlabError, match=what):
        mean_field("lstm", **{**({} if "method" in options else QUICK), **options})


def test_numpy_numbers_are_numbers():
    plain = mean_field("lstm", weight_scale=1.0, gate_bias=1, **QUICK).rate
    for ws, gb in [(np.float32(1.0), np.int64(1)), (np.int64(1), np.float64(1.0))]:
        got = mean_field("lstm", weight_scale=ws, gate_bias=gb, units=np.int64(200),
                         burn_in=np.int32(5), steps=np.int16(10), seed=np.uint8(0)).rate
        assert got == plain
    dyn = mean_field("gru", method="dynamic", units=np.int64(16), steps=np.int64(30),
                     inputs=np.int64(2), lags=np.array([4, 30]))
    assert dyn.rate == mean_field("gru", method="dynamic", units=16, steps=30, inputs=2,
                                  lags=(4, 30)).rate


@pytest.mark.parametrize("options,what", [
    ({"weight_scale": math.nan}, "weight_scale"), ({"weight_scale": -1.0}, "weight_scale"),
    ({"bias_scale": -0.1}, "bias_scale"), ({"input_scale": math.inf}, "input_scale"),
    ({"gate_bias": math.nan}, "gate_bias"),
    ({"measurements": 0}, "measurements"), ({"steps": 2}, "steps"), ({"seed": -1}, "seed"),
])
def test_critical_init_refuses_bad_numbers(options, what):
    with pytest.raises(GradlabError, match=what):
        critical_init("rnn_tanh", 10, **{"hidden": 4, "inputs": 2, **options})


def test_critical_init_says_whether_it_converged():
    found = critical_init("rnn_tanh", np.float32(5), hidden=4, inputs=2, weight_scale=1e200)
    assert found["converged"] is False and found["tolerance"] == 0.1


# -- gradlab init ---------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(cli, ["init", *args])


@pytest.mark.parametrize("args", [
    ["rnn_tanh", "--timescale", "5", "--hidden", "4", "--inputs", "2", "--weight-scale",
     "1e200"],
])
def test_init_that_misses_its_target_exits_1_with_a_warning(args, tmp_path):
    target = tmp_path / "x.pt"
    result = invoke(*args, "--write-torch", str(target))
    assert result.exit_code == 1, result.output
    warning = [line for line in result.stderr.splitlines()      # not the progress (an
               if line.strip() and ": measured " not in line        # item's own steps show
               and not line.startswith("gradlab: item ")]           # on a slow machine)
    assert len(warning) == 1 and warning[0].startswith("gradlab: warning: did not reach")
    assert not target.exists() and "wrote" not in result.stdout


def test_init_says_when_the_theory_has_no_timescale():
    """A theory that overflows is said so, not printed "nan" twice ("nan at these options
    (the search started where it says nan)")."""
    result = invoke("lstm", "--timescale", "5", "--hidden", "4", "--inputs", "2",
                    "--weight-scale", "1e200", "--measurements", "1")
    assert result.exit_code == 1, result.output
    assert "theory (annealed mean field) none at these options (its population overflows " \
        "float64) (with none to aim at, the search started at gate-bias 12)" in result.stdout
    assert "nan" not in result.stdout, result.stdout


def test_init_refuses_a_target_no_measurement_can_see_before_any_work(tmp_path):
    """--timescale 1e308 was searched for (five measurements of 2000 steps, each "inf"),
    then reported as missed: no measurement of 2000 steps sees that decay."""
    target = tmp_path / "x.pt"
    result = invoke("lstm", "--timescale", "1e308", "--hidden", "4", "--inputs", "2",
                    "--write-torch", str(target))
    assert result.exit_code == 2 and not target.exists()
    assert result.stderr.strip() == ("gradlab: error: --timescale 1e+308 is longer than "
                                     "gradlab init can measure: at most 1490 steps (one "
                                     "sequence of 2000)")


def test_init_help_documents_the_exit_status():
    text = " ".join(invoke("--help").output.split())
    assert "exit 1" in text and "Exit 0" in text


@pytest.mark.parametrize("where", ["nodir/x.pt", "", "dangling"])
def test_init_checks_write_torch_before_any_work(where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    result = invoke("gru_torch", "--timescale", "10", "--hidden", "4", "--inputs", "2",
                    "--write-torch", where)
    assert result.exit_code == 2 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--write-torch" in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "folder"]


def test_report_reads_what_init_writes(tmp_path):
    target = tmp_path / "gru.pt"
    result = invoke("gru_torch", "--timescale", "10", "--hidden", "32", "--inputs", "4",
                    "--write-torch", str(target))
    assert result.exit_code == 0, result.output
    assert "--arch gru:hidden=32,inputs=4" in result.stdout
    models = checkpoint.model_entries(target, checkpoint.parse_arch("gru:hidden=32,inputs=4"))
    cell, params = models["gru (trained)"]
    assert cell.name == "gru_torch" and params["W_z"].shape == (32, 32)


@pytest.mark.parametrize("name,kind", sorted(checkpoint.CELL_ARCH.items()))
def test_a_torch_cells_state_dict_is_a_one_layer_module(name, kind, tmp_path):
    c = gradlab.cell(name)
    params = c.init_params(5, 3, seed=1, gate_bias=1.0)
    path = tmp_path / "cell.pt"
    torch.save(to_torch(c, params).state_dict(), path)
    cell, loaded = checkpoint.model_entries(path, checkpoint.parse_arch(
        f"{kind}:hidden=5,inputs=3"))[f"{kind} (trained)"]
    xs = torch.randn(6, 2, 3, dtype=torch.float64)
    ours = gradlab.gradient_flow(c, params, xs).log_norm()
    theirs = gradlab.gradient_flow(cell, loaded, xs).log_norm()
    assert np.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    with pytest.raises(GradlabError, match="one-layer"):
        checkpoint.model_entries(path, checkpoint.parse_arch(
            f"{kind}:hidden=5,inputs=3,layers=2"))


@pytest.mark.parametrize("method", ["annealed", "dynamic"])
def test_a_rate_within_rounding_of_zero_is_zero(method):
    """h' = h + U x has chi = 1 exactly; the theory gave 7e-17, which the report showed as
    'gradients grow' beside a measured 'no decay', and init as a timescale of 1.8e15 steps."""
    @gradlab.declare(state="h", params="U", source="test")
    def identity(s):
        return s.h + s.U @ s.x
    options = QUICK if method == "annealed" else dict(units=16, steps=30)
    prediction = mean_field(identity, method=method, **options)
    assert prediction.rate == 0.0 and prediction.timescale == math.inf
    real = mean_field("rnn_tanh", weight_scale=1.5, method=method, **options)
    assert real.rate != 0.0 and abs(real.rate) > 1e-6


def test_a_weight_combination_is_refused_in_words():
    """The README's antisymmetric cell was refused with SymPy's 'holds W*h, which no
    equation computes'; the message now says what the theory cannot read (W and Wᵀ,
    correlated), in the text notation."""
    @gradlab.declare(state="h", params={"W": "n n", "V": "n m", "b": "n", "gamma": "1"},
                     source="Chang et al. 2019")
    def antisymmetric(s):
        return s.h + 0.1 * gradlab.tanh((s.W - s.W.T - s.gamma * s.I) @ s.h + s.V @ s.x
                                        + s.b)
    with pytest.raises(GradlabError, match=r"cannot read cell 'antisymmetric': it reads W "
                                           r"and Wᵀ together \(as in W - Wᵀ\)"):
        mean_field(antisymmetric)


def test_a_report_that_is_not_a_function_is_refused_first():
    """critical_init(report=3) ran a measurement, then raised TypeError: 'int' object is
    not callable."""
    with pytest.raises(GradlabError, match="report must be a function"):
        critical_init("gru", 50, report=3)


@pytest.mark.parametrize("method", ["annealed", "dynamic"])
def test_a_theory_resting_on_a_few_saturated_units_is_refused_not_reported(method):
    """At weight scale 1e5-1e6 almost every sampled unit saturates: the annealed rnn_tanh
    gave -1.03 and -inf where the closed form says gradients grow (5.44, 6.59), and the
    gated cells -0.35 (every chain through W zero at every draw)."""
    from gradlab.meanfield.sampling import Undersampled
    from gradlab import theory
    for name in ("rnn_tanh", "lstm", "gru"):
        with pytest.raises(Undersampled, match=r"rest on \d+ unit draws .* give more units="):
            mean_field(name, weight_scale=1e6, method=method)
    # where the draws suffice the sampled theory follows the closed form
    if method == "annealed":
        for w in (3.0, 1e3, 1e4):
            assert mean_field("rnn_tanh", weight_scale=w).rate == pytest.approx(
                theory.mean_field_rate(w), rel=0.02)


@pytest.mark.parametrize("sign", [-1, 1])
def test_a_weight_read_with_its_own_transpose_is_refused(sign):
    """tanh((W - Wᵀ) h + V x + b) was read as (W + R) h, R independent: the theory said
    -0.187 per step where the measured rate is +0.003 (W - Wᵀ keeps the norm)."""
    import gradlab

    def paired(s):
        return gradlab.tanh((s.W + sign * s.W.T) @ s.h + s.V @ s.x + s.b)

    cell = gradlab.declare(state="h", params={"W": "n n", "V": "n m", "b": "n"}, source="t",
                           name="paired")(paired)
    for method in ("annealed", "dynamic"):
        with pytest.raises(gradlab.GradlabError, match="mean field cannot read cell 'paired': "
                                                       "it reads W and Wᵀ together"):
            gradlab.mean_field(cell, method=method)


def test_a_cell_whose_new_state_does_not_read_the_old_is_an_instant_drop():
    """tanh(U x) has no chain from s to s': mean field crashed on an empty array
    (ValueError, 'internal error' in gradlab init); the gradient is gone at once."""
    import gradlab

    def constant(s):
        return gradlab.tanh(s.U @ s.x)

    cell = gradlab.declare(state="h", params="U", source="t", name="constant")(constant)
    for method, options in (("annealed", {}), ("dynamic", {"units": 32, "steps": 20})):
        result = gradlab.mean_field(cell, method=method, **options)
        assert result.rate == -math.inf and result.timescale == 0


def test_an_exact_rate_zero_stays_zero():
    """h' = |h| + U x keeps every gradient's size (|d|h|/dh| = 1): the annealed rate is 0.
    The average used to add value / steps at every step, and 120 such terms (the steps of
    the searches gradlab init runs) summed short of 1: a rate of -5.6e-16, which gradlab
    init printed as a theory timescale of 9e14 steps instead of inf."""
    from gradlab.meanfield import Scales
    from gradlab.meanfield.annealed import annealed

    @gradlab.declare(state="h", params="U", source="test")
    def keeps(s):
        return gradlab.abs(s.h) + s.U @ s.x

    rate, _ = annealed(gradlab.cell(keeps), Scales(), units=64, burn_in=60, steps=120)
    assert rate == 0.0


def test_a_weight_scale_whose_square_underflows_is_not_an_exact_zero():
    """weight_scale 1e-300 squares to 0 in float64: rnn_tanh's rate read -inf (the
    timescale of an exactly zero product) where it is finite, about ln 1e-300 = -691 a
    step. The closed form now takes it in logs, and meets the population's rate where the
    square is still representable; mean_field refuses, in one line, what it cannot."""
    from gradlab.theory import mean_field_rate
    assert mean_field_rate(1e-160) == pytest.approx(mean_field("rnn_tanh", weight_scale=1e-160).rate,
                                                    rel=1e-6)
    assert mean_field_rate(1e-300) == pytest.approx(math.log(1e-300) + (
        mean_field_rate(1e-100) - math.log(1e-100)), rel=1e-12)
    with pytest.raises(GradlabError, match=r"^mean_field: at weight_scale=1e-300 the weight "
                       r"variance \(its square\) underflows float64 .* at least 1.5e-154, "
                       r"or 0 for the exact zero"):
        mean_field("rnn_tanh", weight_scale=1e-300)
    assert mean_field("rnn_tanh", weight_scale=0.0).rate == -math.inf      # exactly zero
    assert math.isfinite(mean_field("lstm", weight_scale=1e-300).rate)    # the forget path
