"""Trust at the edges (the issue "Trust at the edges"): overflow is data, not a crash (a nan
weight scale, an overflowing state through the CLI and the library, a user's exp cell, a
sweep past an overflowing point, non-finite matrices, non-finite or zero weights in
theory); rates and timescales say what they mean (an exploding ReLU, a bad input, a dead
ReLU, growth told in words). Sweep parts: test_trust_sweep_parts.py."""

import json
import math
import textwrap
import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab import flow as F
from gradlab.reports import gradient_decay as rp
from gradlab import theory
from gradlab.reports import sweep
from gradlab.errors import GradlabError
from gradlab.reports.measurements import Setup
from conftest import assert_ok, assert_one_line_error, invoke

EXPCELL = textwrap.dedent('''
    import gradlab
    from gradlab.symbolic.language import exp


    @gradlab.declare(state="h", params="W U b", source="test")
    def expcell(s):
        return exp(s.W @ s.h + s.U @ s.x + s.b)
''')
SMALL = ["--steps", "10", "--hidden", "4", "--batch", "2", "--inputs", "3"]


@pytest.fixture(scope="module")
def expcell(tmp_path_factory):
    """The spec of a user cell h' = exp(W h + U x + b): finite at weight scale 0.5,
    overflowing at 2 and 3."""
    path = tmp_path_factory.mktemp("cells") / "expcell.py"
    path.write_text(EXPCELL)
    return f"{path}:expcell"


def load(out):
    return json.loads((out / "data.json").read_text())


# --- 1. non-finite is data, not a crash ------------------------------------------------------

def test_report_at_weight_scale_nan_is_no_traceback(tmp_path):
    """The issue's acceptance: exit 0 with the overflow marked, or exit 2 with one line."""
    out = tmp_path / "x"
    result = invoke("report", "--cells", "rnn_tanh", "--weight-scale", "nan", "--steps", "10",
                    "--hidden", "4", "--batch", "2", "--out", out)
    assert "Traceback" not in result.output and not isinstance(
        result.exception, (torch.linalg.LinAlgError, np.linalg.LinAlgError)), result.exception
    if result.exit_code == 2:
        assert_one_line_error(result, "nan")
    else:
        assert_ok(result)
        assert load(out)["cells"]["rnn_tanh"]["summary"]["rate"] == "nan"
        assert "state overflowed" in (out / "report.md").read_text()


def test_report_api_refuses_a_nan_weight_scale(tmp_path):
    """Through the library as through the CLI: nan weights are refused in one line, before
    anything is written (they were drawn, and every cell marked as overflowed)."""
    setup = Setup(cells=("rnn_tanh", "lstm"), weight_scale=math.nan, steps=10, hidden=4,
                  batch=2, inputs=3)
    with pytest.raises(GradlabError, match=r"^weight_scale must be a finite real number"):
        rp.report(setup, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_report_api_marks_an_overflow_and_never_raises(tmp_path, expcell):
    """An overflowing state through the library: every cell measured, the overflow nan in
    data.json and words in the table, never a LinAlgError."""
    setup = Setup(cells=("rnn_tanh", expcell), weight_scale=2.0, steps=10, hidden=4,
                  batch=2, inputs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = rp.report(setup, tmp_path / "r")
    data = load(out)
    s = data["cells"][expcell]["summary"]
    assert s["rate"] == "nan" and s["timescale"] == "nan", s
    assert s["status"] == F.OVERFLOW
    assert s["horizon_1e-3"] == "nan"                # not null ("never within T")
    assert isinstance(data["cells"]["rnn_tanh"]["summary"]["rate"], float)
    md = (out / "report.md").read_text()
    assert f"| {expcell} | state overflowed | — | state overflowed |" in md
    assert f"{expcell}: no rate, state overflowed" in md


def test_user_exp_cell_report_marks_the_overflow(tmp_path, expcell):
    out = tmp_path / "r"
    result = invoke("report", "--cells", f"{expcell},rnn_tanh", "--weight-scale", "2", *SMALL,
                    "--out", out)
    assert_ok(result)
    cells = load(out)["cells"]
    s = cells[expcell]["summary"]
    assert s["rate"] == "nan" and s["status"] == "state overflowed"
    rms = cells[expcell]["drift"]["rms"]
    assert "inf" not in rms and "nan" in rms                # overflow is nan, not inf
    assert isinstance(cells["rnn_tanh"]["summary"]["rate"], float)   # the other cell: numbers
    assert "state overflowed" in (out / "report.md").read_text()
    svg = (out / "figures" / "decay.svg").read_text()
    assert "state overflowed: not drawn" in svg             # the legend says why


def test_sweep_finishes_past_an_overflowing_point(tmp_path, expcell):
    out = tmp_path / "s"
    result = invoke("sweep", "--cells", f"{expcell},rnn_tanh", "--weight-scales", "0.5,3",
                    "--gate-biases", "0", *SMALL, "--out", out)
    assert_ok(result)
    by = {(p["cell"], p["weight_scale"]): p for p in load(out)["points"]}
    assert by[expcell, 3.0]["rate"] == "nan" and by[expcell, 3.0]["timescale"] == "nan"
    assert by[expcell, 3.0]["status"] == "state overflowed"
    for key in ((expcell, 0.5), ("rnn_tanh", 0.5), ("rnn_tanh", 3.0)):
        assert isinstance(by[key]["rate"], float) and by[key]["timescale"] > 0, by[key]
    assert (out / "figures" / "phase.svg").read_text().count("<!-- × -->") == 1
    assert "| 3 | — | state overflowed | nan | state overflowed |" in \
        (out / "report.md").read_text()


@pytest.mark.parametrize("S", [4, 30])               # svdvals; block Lanczos
def test_spectral_norm_of_a_non_finite_matrix_is_nan(S):
    M = torch.randn(3, S, S, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    M[1, 0, 0] = math.nan
    M[2, 1, 2] = math.inf
    sigma = F.Spectral(0, torch.float64)(M.clone(), 1)
    assert math.isnan(sigma[1]) and math.isnan(sigma[2])
    assert float(sigma[0]) == pytest.approx(float(torch.linalg.svdvals(M[0])[0]), rel=1e-9)


def test_theory_of_non_finite_or_zero_weights_is_no_exception():
    W = torch.full((3, 3), math.nan)
    assert math.isnan(theory.pascanu_rate(W))                 # numpy's SVD raised
    assert theory.pascanu_rate(np.zeros((3, 3))) == -math.inf  # log(0) raised
    assert theory.mean_field_rate(0.0) == -math.inf            # chi = 0: log(0) raised
    assert math.isnan(theory.mean_field_rate(1e200))            # 1e200 ** 2 raised


# --- 2. rate and timescale say what they mean ------------------------------------------------

def relu_flow(weight_scale, steps, dtype, **params):
    cell = gradlab.cell("rnn_relu")
    p = cell.init_params(4, 3, weight_scale=weight_scale, seed=0, dtype=dtype)
    p.update(params)
    xs = F.make_inputs("gaussian", steps, 2, 3, dtype=dtype)
    return gradlab.gradient_flow(cell, p, xs, norms=F.NORMS)


def test_exploding_relu_rate_is_nan_not_minus_infinity():
    """The state overflows (inf, then nan) and the ReLU derivative there is 0: products of
    exact zeros that mean nothing. Not "infinitely fast decay"."""
    flow = relu_flow(50.0, 40, torch.float32)
    assert not torch.isfinite(flow.states[0]).all()
    for kind in F.NORMS:
        assert math.isnan(flow.rate(kind)), kind
        assert math.isnan(flow.timescale(kind)), kind
        assert flow.why(kind) == F.OVERFLOW
    assert math.isnan(flow.rate("frobenius", start=1, stop=3))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_bad_input_is_named_not_called_an_overflow(bad, reverse):
    """An inf or nan in xs makes the states not finite from there on. That is the input's
    doing: `why` names it, and keeps "state overflowed" for states that really grew."""
    cell = gradlab.cell("lstm")
    p = cell.init_params(4, 3, seed=0)
    xs = torch.randn(6, 2, 3, dtype=torch.float64)
    xs[2, 1, 0] = bad
    flow = gradlab.gradient_flow(cell, p, xs, reverse=reverse)
    assert math.isnan(flow.rate())
    assert flow.why() == F.INPUT == "input not finite"
    clean = gradlab.gradient_flow(cell, p, torch.nan_to_num(xs, posinf=0.0), reverse=reverse)
    assert clean.why() is None


def test_dead_relu_is_a_genuine_zero_product():
    """Every unit dead (finite states, pre-activations < 0): J = 0 exactly. That is
    infinitely fast decay: rate -inf, timescale 0, and `why` says so."""
    flow = relu_flow(1.0, 8, torch.float64, b=torch.full((4,), -100.0, dtype=torch.float64))
    assert torch.isfinite(flow.states[0]).all()
    assert flow.rate() == -math.inf and flow.timescale() == 0.0
    assert flow.why() == F.ZERO


def test_growth_has_no_negative_timescale():
    flow = relu_flow(10.0, 50, torch.float64)
    assert torch.isfinite(flow.states[0]).all()
    assert flow.rate() > 0
    assert flow.timescale() == math.inf and flow.why() == F.GROW
    assert theory.timescale(0.25) == math.inf and theory.timescale(0.0) == math.inf
    decaying = relu_flow(0.3, 20, torch.float64)
    assert decaying.rate() < 0 and decaying.why() is None
    assert decaying.timescale() == pytest.approx(-1 / (2 * decaying.rate()))


def test_report_shows_words_for_growth(tmp_path):
    """rnn_tanh at weight scale 3: mean-field predicts growth (chi > 1); rnn_relu at 10
    grows. Neither timescale is printed as a negative number."""
    setup = Setup(cells=("rnn_tanh", "rnn_relu"), weight_scale=10.0, steps=20, hidden=4,
                  batch=2, inputs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = rp.report(setup, tmp_path / "r")
    data = load(out)["cells"]
    relu = data["rnn_relu"]["summary"]
    assert relu["rate"] > 0 and relu["timescale"] == "inf" and relu["status"] == F.GROW
    tanh = data["rnn_tanh"]["summary"]
    assert tanh["theory"] > 0 and tanh["theory_timescale"] == "inf"
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| rnn_relu |"))
    assert row.split(" | ")[3] == "gradients grow", row
    row = next(line for line in md.splitlines() if line.startswith("| rnn_tanh |"))
    assert row.split(" | ")[12] == "gradients grow", row         # theory ξ (after the
    assert float(row.split(" | ")[11]) < 0, row           # measured Frobenius rate)
    assert "ξ = -" not in md and "rnn_relu: rate " in md and ", gradients grow" in md


def test_sweep_table_shows_words_for_growth(tmp_path):
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(0.5, 3.0), gate_biases=(0.0,),
                      hidden=4, steps=10, batch=2, inputs=3)
    points = [{"cell": "rnn_tanh", "weight_scale": 0.5, "gate_bias": 0.0, "rate": -0.5,
               "timescale": 2.0},
              {"cell": "rnn_tanh", "weight_scale": 3.0, "gate_bias": 0.0, "rate": 0.25,
               "timescale": -4.0}]                  # as parts from before wrote growth
    out = sweep.report(grid, points, tmp_path / "s")
    md = (out / "report.md").read_text()
    assert "| rnn_tanh | 3 | — | 0.25 | nan | gradients grow |" in md   # no gate bias
    assert "-4" not in md
    assert (out / "figures" / "phase.svg").read_text().count("<!-- ↑ -->") == 1
