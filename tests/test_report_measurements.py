"""`gradlab report` and experiment.measure underneath it at the edges of what they measure:
non-finite values reported (not dropped, and without a warning), a zero product staying
-inf, overflowing states not read as vanishing, a very negative gate bias, a five-part
state, the same data.json bytes for any thread count, rates with their spread and whether
they converged, captions and a header that claim only what the data shows, and the
theory reading the inputs the report draws.

Every run is tiny (n = 6, m = 3, T = 12, batch 2); the runs that only compare data.json
replace the figure functions with a blank figure.
"""

import json
import math
import warnings

import numpy as np
import pytest

import gradlab
from matplotlib.figure import Figure

from gradlab import GradlabError, registry, theory

from gradlab.reports import figures
from gradlab.reports.measurements import Setup, measure
from conftest import assert_ok, assert_one_line_error, invoke

T, N, M, B = 12, 6, 3, 2
TINY = ["--steps", str(T), "--hidden", str(N), "--batch", str(B), "--inputs", str(M)]
CELLS = ("rnn_tanh", "lstm", "gru")
FIGURES = ("decay", "paths", "spectra", "loss", "drift", "bptt")


def report(out, *args, cells=",".join(CELLS)):
    return invoke("report", "--out", out, "--cells", cells, *TINY, *args)


def load(out):
    return json.loads((out / "data.json").read_text())


@pytest.fixture
def blank_figures(monkeypatch):
    for name in FIGURES:
        monkeypatch.setattr(figures, name, lambda *a, **k: Figure(figsize=(1, 1)))


# --- non-finite values ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def saturated(tmp_path_factory):
    """rnn_tanh at weight scale 50 in float32: tanh saturates to exactly +-1, tanh' to
    exactly 0, so every product beyond a lag or two is exactly zero: log norms -inf,
    condition numbers (-inf) - (-inf) = nan. (gradlab's log-space engine never lets a norm
    overflow; what float32 does to this chaotic cell is underflow to exact zeros.)
    Run once, recording warnings instead of raising them: (out, result, warnings)."""
    out = tmp_path_factory.mktemp("saturated") / "r"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = report(out, "--weight-scale", "50", "--dtype", "float32", cells="rnn_tanh")
    return out, result, caught


def test_non_finite_values_are_reported_not_dropped(saturated):
    out, result, _ = saturated
    assert_ok(result)
    text = (out / "data.json").read_text()
    assert "NaN" not in text and "Infinity" not in text                # strict JSON
    s = load(out)["cells"]["rnn_tanh"]["summary"]
    assert s["rate"] == "-inf" and s["timescale"] == 0.0
    assert s["log10_condition_mid"] == "nan"
    assert "-inf" in s["lyapunov"]
    assert {p.name for p in (out / "figures").iterdir()} == {
        f"{n}.{e}" for n in ("decay", "spectra", "loss", "bptt") for e in ("png", "svg")}
    md = (out / "report.md").read_text()
    assert "| rnn_tanh | -∞ |" in md and "nan" in md


def test_non_finite_values_raise_no_warning(saturated):
    """Regression test. The bug as first found:
    experiment.measure calls np.nanmedian on log condition numbers
    that are all nan (a zero product's), which warns "RuntimeWarning: All-NaN slice
    encountered" (experiment.py, `cond = float(np.nanmedian(...))`): np.errstate does not
    silence it. A user sees two stray warning lines on stderr; under -W error (as in this
    test suite) the report crashes."""
    _, _, caught = saturated
    messages = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == []


def test_a_zero_product_stays_minus_infinity(saturated):
    """Once every sequence's product is exactly zero, the decay curve is -inf from there on.

    Regression test. The bug as first found:
    experiment._quartiles takes np.nanpercentile of per-sequence log
    norms that are all -inf; numpy interpolates -inf + f * (-inf - -inf) = nan, so the
    median and quartiles read "nan" where gradient_flow measured -inf (and likewise the
    loss curve, loss_input_log10). Expected "-inf"."""
    out, _, _ = saturated
    d = load(out)["cells"]["rnn_tanh"]
    for q in ("median", "q1", "q3"):
        values = d["decay_log10"][q]
        assert "nan" not in values and "nan" not in d["loss_input_log10"][q], (q, d)
        first = values.index("-inf")
        assert values[first:] == ["-inf"] * (T - first), (q, values)


def test_overflowing_states_are_not_reported_as_vanishing():
    """rnn_relu at weight scale 50 in float32: the state grows ~30x per step and overflows
    (inf, then nan) within T = 40 steps; its gradients explode.

    Regression test. The bug as first found:
    the Jacobians at non-finite states come out as exact zeros (the
    ReLU derivative of nan is 0), so gradient_flow reports log norms of -inf and measure's
    summary says rate -inf, timescale 0 ("gradients vanish at once") -- the opposite of
    what happens -- while the same data.json shows the state RMS as nan. Expected (and
    what it gives): a rate of nan, non-finite values reported as such, never -inf."""
    setup = Setup(cells=("rnn_relu",), hidden=N, inputs=M, steps=40, batch=B,
                  weight_scale=50.0, dtype="float32")
    d = measure(setup, "rnn_relu")
    assert not np.isfinite(d["drift"]["rms"]).all()                     # it did overflow
    assert math.isnan(d["summary"]["rate"]), d["summary"]


def test_very_negative_gate_bias_is_no_traceback(tmp_path, blank_figures):
    """Regression test. The bug as first found:
    with zero weights and inputs the report asks theory.gate_rate
    for ln sigma(gate bias); at --gate-bias -800 math.exp(800) overflows and the command
    ends in an OverflowError traceback (exit 1). Expected (and what it gives) a report
    whose theory is ln sigma(-800) = -800."""
    result = report(tmp_path / "r", "--weight-scale", "0", "--input-scale", "0",
                    "--gate-bias", "-800", cells="gru")
    assert_ok(result)
    summary = load(tmp_path / "r")["cells"]["gru"]["summary"]
    assert summary["theory"] == pytest.approx(-800.0, rel=1e-12), summary
    assert summary["rate"] == "-inf", summary              # zero weights: a zero product


# --- experiment.measure on a five-part state --------------------------------------------------

def test_measure_five_part_cell():
    cell = registry.cell("lstm_fgr")
    assert len(cell.state_names) == 5
    setup = Setup(cells=("lstm_fgr",), hidden=4, inputs=M, steps=8, batch=B)
    d = measure(setup, "lstm_fgr")
    assert d["state"] == list(cell.state_names)
    assert len(d["paths"]) == 25
    assert set(d["paths"]) == {f"{a}->{b}" for a in cell.state_names for b in cell.state_names}
    assert all(len(v) == 8 for v in d["paths"].values())
    assert len(d["spectrum"]) == 5 * 4
    assert np.isfinite(d["decay_log10"]["median"]).all()
    fig = figures.paths({"lstm_fgr": d}, figures.colors(["lstm_fgr"]))
    assert len(fig.axes[0].lines) == 5          # five-part states: the diagonal paths only


def test_data_json_is_the_same_bytes_for_any_thread_count():
    """Another machine is simulated by another BLAS thread count: the numbers are written to
    the precision they carry (9 digits), so data.json comes out byte-identical."""
    import torch
    from gradlab.reports import gradient_decay as rp
    from gradlab.reports.publish import dumps
    setup = rp.Setup(cells=("rnn_tanh", "lstm"), hidden=24, inputs=4, steps=30, batch=4,
                     gate_bias=1.0)
    threads = torch.get_num_threads()
    written = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            written.append(dumps(rp.run(setup)))
    finally:
        torch.set_num_threads(threads)
    assert written[0] == written[1]


def test_rates_carry_their_spread_and_whether_they_converged():
    """Each rate comes with its standard error over sequences (the spread of per-sequence
    slopes, recomputed here independently), and a timescale longer than T / 8 is marked as
    not converged: ξ = -1/(2 rate) over too short a run is not the long-run value (nor a bound
    on it: at short T the flat early lags weigh more)."""
    long = measure(Setup(cells=("lstm",), hidden=16, steps=60, batch=6, gate_bias=1.0), "lstm")
    s = long["summary"]
    assert s["rate"] < 0 and s["converged"] is True and 8 * s["timescale"] <= 60
    cell = registry.cell("lstm")
    setup = Setup(cells=("lstm",), hidden=16, steps=60, batch=6, gate_bias=1.0)
    logs = gradlab.gradient_flow(cell, setup.params(cell), setup.xs()).log_norm("spectral")
    slopes = [np.polyfit(np.arange(1, 61), row, 1)[0] for row in logs]
    assert s["rate_stderr"] == pytest.approx(np.std(slopes, ddof=1) / math.sqrt(6), rel=1e-9)
    assert 0 < s["lyapunov_stderr"] < abs(s["lyapunov"][0])
    short = measure(Setup(cells=("prototype_lstm",), hidden=16, steps=8, batch=4,
                          gate_bias=1.0), "prototype_lstm")["summary"]
    assert short["rate"] < 0 and 8 * short["timescale"] > 8 and short["converged"] is False
    from gradlab.reports.gradient_decay import TABLE_HEADER, table_row
    row = dict(zip(TABLE_HEADER, table_row("prototype_lstm", {"summary": short})))
    assert row["T ≥ 8 ξ"].startswith("no") and "lower bound" not in row["T ≥ 8 ξ"]


# -- captions and header that say only what the data shows (found by a CLI probe) -----------

def test_the_paths_caption_names_each_self_path_by_its_symbolic_structure(tmp_path):
    """It said 'the cell path c → c carries gradient through diag(f) alone' of every cell;
    lstm_nfg's is I plus a peephole term, with no f at all."""
    assert_ok(invoke("report", "--cells", "lstm,lstm_nfg", "--hidden", "3", "--inputs", "2",
                     "--steps", "4", "--batch", "2", "--out", tmp_path / "r"))
    text = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "r" / "data.json").read_text())
    assert "diag(f) alone" not in text and "lstm_nfg c → c" in text
    assert data["cells"]["lstm_nfg"]["path_kinds"]["c->c"] == "diagonal"
    assert data["cells"]["lstm"]["path_kinds"]["h->h"] == "dense"


def test_drift_caption_and_init_line_claim_nothing_not_measured(tmp_path):
    run = ("report", "--cells", "prototype_lstm", "--hidden", "3", "--inputs", "2", "--steps",
           "8", "--batch", "2", "--init", "torch")
    assert_ok(invoke(*run, "--out", tmp_path / "r"))
    text = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "bounded cells" not in text                      # none was measured
    assert "scales do not apply" in text and "weight scale" not in text
    # a scale torch's draw would ignore is refused, not reported as ignored
    assert_one_line_error(invoke(*run, "--weight-scale", "3", "--out", tmp_path / "s"),
                          "--init torch draws PyTorch's default uniform init, which takes "
                          "no scale: --weight-scale 3 would change nothing; leave it out, or "
                          "use --init gaussian or orthogonal")
    with pytest.raises(GradlabError, match="no scale: bias_scale=0.5 would change nothing"):
        Setup(cells=("rnn_tanh",), init="torch", bias_scale=0.5)
    assert not (tmp_path / "s").exists()


def test_an_empty_model_path_is_named_as_empty(tmp_path):
    assert_one_line_error(invoke("report", "--model", "", "--arch", "lstm:hidden=4,inputs=2",
                                 "--out", tmp_path / "r"), "checkpoint path is empty")


def test_a_lyapunov_run_that_overflows_is_named_in_the_table(tmp_path):
    """Its 4T steps can overflow where the T-step measurement does not: λ₁ showed a bare
    nan beside a measured rate."""
    assert_ok(invoke("report", "--cells", "rnn_relu", "--weight-scale", "8", "--steps", "300",
                     "--hidden", "8", "--batch", "2", "--out", tmp_path / "r"))
    row = [line for line in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
           .splitlines() if line.startswith("| rnn_relu |")][0]
    assert "state overflowed (over 4T steps)" in row and "| nan |" not in row


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_theory_reads_the_inputs_the_report_draws(scale):
    """Setup.xs draws x ~ N(0, s^2), so R = s^2 and the input drive is s^2 R = s^4; the
    theory assumed R = 1 whatever --input-scale (rnn_tanh at s = 0.5: it predicted a decay,
    -0.017, where the cell grows, +0.050 measured at n = 300)."""
    setup = Setup(cells=("rnn_tanh",), hidden=6, inputs=3, steps=8, batch=2,
                  weight_scale=1.5, input_scale=scale)
    xs = setup.xs(400)
    assert float((xs ** 2).mean()) == pytest.approx(scale ** 2, rel=0.1)
    s = measure(setup, "rnn_tanh")["summary"]
    assert s["theory"] == pytest.approx(theory.mean_field_rate(
        1.5, input_scale=scale, bias_scale=0.0, input_power=scale ** 2), rel=1e-12)
    assert s["theory"] != pytest.approx(theory.mean_field_rate(1.5, input_scale=scale),
                                        rel=1e-3)


def test_a_theory_of_a_zero_product_is_shown_as_minus_infinity(tmp_path):
    """At weight and input scale 0, dynamic mean field predicts -inf for rnn_relu (a zero
    product): the table said "dynamic mean field" beside an empty theory rate and hid the
    measured Frobenius rate (-inf), where rnn_tanh's row said "predicts -∞"."""
    out = tmp_path / "r"
    assert_ok(invoke("report", "--cells", "rnn_relu", "--hidden", "4", "--inputs", "2",
                     "--steps", "6", "--batch", "2", "--weight-scale", "0", "--input-scale",
                     "0", "--out", out))
    s = load(out)["cells"]["rnn_relu"]
    s = s.get("summary", s)
    assert (s["theory"], s["theory_label"]) == ("-inf", "dynamic mean field")
    row = next(line for line in (out / "report.md").read_text(encoding="utf-8").splitlines()
               if line.startswith("| rnn_relu |"))
    assert row.split(" | ")[10:13] == ["-∞", "-∞", "0"], row
