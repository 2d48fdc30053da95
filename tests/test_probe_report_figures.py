"""Probe of the reports' figures and captions: every number they show is one data.json
holds, and nothing they say is contradicted by the figure's own data."""

from matplotlib.figure import Figure

from gradlab.reports import sweep
from gradlab.reports.phase_words import critical_words


def _grid(**kw):
    base = dict(cells=("rnn_tanh",), weight_scales=(1.0,), gate_biases=(0.0,), hidden=3,
                inputs=2, steps=3, max_steps=5, batch=2)
    return sweep.Grid(**{**base, **kw})


def test_sweep_runs_its_last_horizon_at_max_steps():
    """The header says "doubled up to --max-steps", the captions "did not converge within
    T = max_steps": an unresolved point must have been measured over max_steps. 10 doubled
    under a max of 30 stopped at 20 (the table's horizon), while every sentence said 30."""
    grid = _grid(cells=("lstm",), gate_biases=(3.0,), steps=10, max_steps=30)
    p = sweep.measure_point(grid, "lstm", 1.0, 3.0)
    assert not p["converged"]                       # (slow: never resolved within 30)
    assert p["horizon"] == 30


CRITICAL = 1.8555891011     # sweep.critical_weight_scale(), rnn_tanh's χ = 1 (bisection)


def _critical_line(grid):
    points = [{"cell": "rnn_tanh", "weight_scale": w, "gate_bias": 0.0, "rate": -0.5,
               "rate_stderr": 0.01, "timescale": 1.0, "status": None, "horizon": 5,
               "converged": True} for w in grid.weight_scales]
    figure = sweep._heatmaps(grid, points, CRITICAL)
    return [line for line in figure.axes[0].get_lines() if "χ = 1" in str(line.get_label())]


def test_sweep_draws_no_critical_line_off_its_weight_axis():
    """rnn_tanh's χ = 1 lies at σ_w ≈ 1.856: on a grid of 0.5, 1, 1.5, np.interp clamped it
    to the last column and the map drew a line labelled σ_w = 1.86 at the column labelled
    1.5. Off the axis it is not drawn, and the caption says so."""
    grid = _grid(weight_scales=(0.5, 1.0, 1.5))
    assert _critical_line(grid) == []
    assert critical_words(CRITICAL, grid.weight_scales) == (
        " Mean-field theory puts rnn_tanh's critical line χ = 1 at σ_w = 1.856, outside the "
        "weight scales measured (0.5 to 1.5): not drawn.")


def test_sweep_draws_the_critical_line_where_it_lies_on_the_axis():
    grid = _grid(weight_scales=(0.5, 1.0, 2.0))
    [line] = _critical_line(grid)
    assert line.get_xdata()[0] == 1 + (CRITICAL - 1) / (2 - 1)  # between the columns 1, 2
    assert critical_words(CRITICAL, grid.weight_scales) == (
        " Mean-field theory puts rnn_tanh's critical line χ = 1 at σ_w = 1.856.")


def test_sweep_header_names_the_lags_its_rate_is_fitted_over(tmp_path, monkeypatch):
    """measure_point fits lags max(1, T // 4)..T: the header said "over k > T/4", which
    leaves out the lag T/4 that the fit includes (15 of 15..60 at the default T = 60)."""
    grid = _grid(steps=12, max_steps=12)
    theory = {"method": "dynamic", "options": {"units": 4, "steps": 12, "inputs": 2,
                                               "lags": [3, 12], "seed": 0},
              "levels": [3], "timescale": {}, "curves": {}, "unread": {}}
    monkeypatch.setattr(sweep, "theory_grid", lambda *a, **k: theory)
    monkeypatch.setattr(sweep, "_heatmaps", lambda *a, **k: Figure(figsize=(1, 1)))
    point = sweep.measure_point(grid, "rnn_tanh", 1.0, 0.0)
    sweep.report(grid, [point], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "against k from ⌊T/4⌋ (at least 1) to T," in text
    assert "k \\> T/4" not in text


def test_decay_caption_names_only_the_lines_the_figure_draws(tmp_path, monkeypatch):
    """The decay caption said "dashed lines are theory, dotted the Pascanu bound" for any
    cells; the Pascanu bound is drawn for rnn_tanh alone, so a report of the LSTM and the
    GRU promised a dotted line it does not have."""
    from conftest import assert_ok, invoke
    from gradlab.reports import figures
    for name in ("decay", "paths", "spectra", "loss", "drift", "bptt"):
        monkeypatch.setattr(figures, name, lambda *a, **k: Figure(figsize=(1, 1)))
    tiny = ["--steps", "12", "--hidden", "6", "--batch", "2", "--inputs", "3"]
    said = {}
    for cells in ("lstm,gru", "rnn_tanh,lstm"):
        out = tmp_path / cells.replace(",", "-")
        assert_ok(invoke("report", "--out", out, "--cells", cells, *tiny))
        said[cells] = (out / "report.md").read_text()
    assert "Pascanu" not in said["lstm,gru"]
    assert "dashed lines are theory" in said["lstm,gru"]
    assert "dashed lines are theory, dotted the Pascanu bound" in said["rnn_tanh,lstm"]
    assert figures.decay_lines({"decay_log10": {"median": [0.0, -1.0]},
                                "summary": {"theory": None}}) == set()


def test_drift_caption_of_a_state_that_stays_at_zero(tmp_path, monkeypatch):
    """With no input and no bias the state stays exactly 0, and the drift caption read
    "prototype_lstm 0 → 0 (×nan)": 0 / 0. A state that stays at 0 does not grow (×1)."""
    from conftest import assert_ok, invoke
    from gradlab.reports import figures
    for name in ("decay", "paths", "spectra", "loss", "drift", "bptt"):
        monkeypatch.setattr(figures, name, lambda *a, **k: Figure(figsize=(1, 1)))
    out = tmp_path / "r"
    assert_ok(invoke("report", "--out", out, "--cells", "prototype_lstm", "--steps", "12",
                     "--hidden", "6", "--batch", "2", "--inputs", "3", "--input-scale", "0",
                     "--bias-scale", "0"))
    text = (out / "report.md").read_text()
    assert "prototype_lstm 0 → 0 (×1)" in text and "×nan" not in text


def test_sweep_promises_no_contours_it_cannot_draw(tmp_path, monkeypatch):
    """The header said "white contours: ξ = ... of dynamic mean field" and the figure's
    title "white lines: ξ of ..." where no cell had a theory (file cells in a merge, cells
    mean field cannot read): lines that are not there."""
    grid = _grid(cells=("rnn_tanh", "gru"), steps=12, max_steps=12)
    theory = {"method": "dynamic", "options": {"units": 4, "steps": 12, "inputs": 2,
                                               "lags": [3, 12], "seed": 0},
              "levels": [3], "timescale": {}, "curves": {}, "unread": {}}
    monkeypatch.setattr(sweep, "theory_grid", lambda *a, **k: dict(theory))
    points = [sweep.measure_point(grid, c, 1.0, 0.0) for c in grid.cells]
    sweep.report(grid, points, tmp_path / "none")
    text = (tmp_path / "none" / "report.md").read_text()
    assert "white contours" not in text and "| theory | none: mean field reads none" in text
    title = sweep._heatmaps(grid, points, None, theory)._suptitle     # (matplotlib 3.5+)
    assert title is None or "white lines" not in title.get_text()
    theory["timescale"] = {"gru": [[5.0]]}
    sweep.report(grid, points, tmp_path / "some")
    text = (tmp_path / "some" / "report.md").read_text()
    assert "white contours: ξ = 3 steps" in text and "; none for rnn_tanh" in text
