"""`gradlab sweep` and `gradlab sweep merge` through click's CliRunner (tiny 2 x 2 grids)."""

import json
import math
import sys

import pytest
import torch
from matplotlib.figure import Figure

from gradlab.errors import GradlabError
from gradlab.meanfield import mean_field
from gradlab.reports import sweep
from gradlab.reports.publish import jsonable
from conftest import assert_ok, assert_one_line_error, invoke, listing

GRID = ["--cells", "rnn_tanh,gru", "--weight-scales", "0.5,2", "--gate-biases", "0,2",
        "--hidden", "6", "--steps", "12", "--batch", "2", "--inputs", "3"]
POINTS = [("rnn_tanh", w, 0.0) for w in (0.5, 2.0)] + [   # no gate: one point per scale
    ("gru", w, g) for w in (0.5, 2.0) for g in (0.0, 2.0)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def whole(base):
    """The unsharded sweep, figures drawn: (out, result)."""
    out = base / "whole"
    return out, invoke("sweep", *GRID, "--out", out)


@pytest.fixture(scope="module")
def shards(base):
    """The same grid as shards 1/2 and 2/2 in two directories."""
    dirs = []
    for i in (1, 2):
        d = base / f"shard{i}"
        assert_ok(invoke("sweep", *GRID, "--shard", f"{i}/2", "--out", d))
        dirs.append(d)
    return dirs


@pytest.fixture
def blank_heatmaps(monkeypatch):
    """The merged reports' figure is the whole run's figure; skip drawing it again."""
    monkeypatch.setattr(sweep, "_heatmaps", lambda *a, **k: Figure(figsize=(1, 1)))


def test_sweep_writes_a_report(whole):
    out, result = whole
    assert_ok(result)
    assert set(listing(out)) == {".gradlab-manifest.json", "data.json", "index.html",
                                 "report.md", "figures",
                                 "figures/phase.png", "figures/phase.svg"}
    assert (out / "figures" / "phase.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "index.html").read_text()
    assert "src='data:image/png;base64," in page and "<table" in page
    assert "critical line χ = 1 at σ_w = " in (out / "report.md").read_text()
    svg = (out / "figures" / "phase.svg").read_text()
    assert "<!-- χ = 1 (σ_w = 1.86) -->" in svg           # the line drawn over rnn_tanh
    # every point where gradients grow (rate >= 0, timescale inf) is marked with an arrow
    points = json.loads((out / "data.json").read_text())["points"]
    growing = sum(float(p["rate"]) > 0 for p in points)
    assert svg.count("<!-- ↑ -->") == growing


def test_sweep_data_json(whole):
    out, _ = whole
    data = json.loads((out / "data.json").read_text())
    # as data.json writes every number, to 9 digits
    assert data["critical_weight_scale"] == jsonable(sweep.critical_weight_scale())
    assert data["grid"]["cells"] == ["rnn_tanh", "gru"]
    assert data["grid"]["weight_scales"] == [0.5, 2.0]
    assert data["grid"]["gate_biases"] == [0.0, 2.0]
    points = data["points"]
    assert len(points) == 6
    assert [(p["cell"], p["weight_scale"], p["gate_bias"]) for p in points] == POINTS
    for p in points:
        rate = float(p["rate"])
        timescale = float(p["timescale"])
        assert math.isfinite(rate)
        assert timescale == (math.inf if rate >= 0 else pytest.approx(-1 / (2 * rate)))
        # a decay's horizon grew until it held 8 timescales, or hit the budget (240)
        assert p["horizon"] >= 12 and (rate >= 0 or p["converged"] == (8 * timescale
                                                                          <= p["horizon"]))
        assert p["rate_stderr"] > 0
    by = {(p["cell"], p["weight_scale"], p["gate_bias"]): float(p["rate"]) for p in points}
    # the gate bias does not enter a vanilla RNN; a larger weight scale means more memory
    assert by["rnn_tanh", 2.0, 0.0] > by["rnn_tanh", 0.5, 0.0]
    assert by["gru", 0.5, 2.0] > by["gru", 0.5, 0.0]          # a keeping gate remembers


def test_sweep_draws_the_theory_contours(whole):
    """data.json records the theory's timescale grid the contours are drawn from (dynamic
    mean field, at the sweep's inputs and horizon); it is what mean_field gives at a grid
    point; a cell with no gate bias has one row for every gate bias and a finer curve;
    the figure labels every level the theory crosses, and says which theory drew them."""
    out, _ = whole
    data = json.loads((out / "data.json").read_text())
    theory = data["theory"]
    assert theory["method"] == "dynamic" and theory["levels"] == [3, 10, 30, 100, 300]
    o = theory["options"]
    assert (o["inputs"], o["steps"], o["lags"], o["seed"]) == (3, 240, [60, 240], 0)
    gru = [[float(v) for v in row] for row in theory["timescale"]["gru"]]
    assert len(gru) == 2 and all(len(row) == 2 for row in gru)     # rows by gate bias
    one = mean_field("gru", weight_scale=2.0, bias_scale=0.0, input_scale=1.0, gate_bias=0.0,
                     method="dynamic", units=o["units"], steps=o["steps"],
                     inputs=o["inputs"], lags=tuple(o["lags"]), seed=o["seed"])
    assert gru[0][1] == pytest.approx(one.timescale, rel=1e-6)
    assert gru[1][0] > gru[0][0]                   # a keeping gate remembers, in theory too
    rnn = theory["timescale"]["rnn_tanh"]
    assert rnn[0] == rnn[1] and float(rnn[0][1]) == math.inf   # chaotic at sw 2: no decay
    curve = theory["curves"]["rnn_tanh"]
    assert curve["weight_scale"][0] == 0.5 and curve["weight_scale"][-1] == 2.0
    assert float(curve["timescale"][0]) == float(rnn[0][0])
    assert set(theory["curves"]) == {"rnn_tanh"}
    # matplotlib writes each text of an SVG as a comment: the contours' labels are there
    svg = (out / "figures" / "phase.svg").read_text()
    values = [float(v) for v in curve["timescale"]] + [v for row in gru for v in row]
    finite = [v for v in values if 0 < v < math.inf]
    crossed = [lv for lv in theory["levels"] if min(finite) < lv < max(finite)]
    assert crossed == [3, 10]
    for level in theory["levels"]:
        assert (f"<!-- {level} -->" in svg) == (level in crossed), level
    assert "white lines: ξ of dynamic mean field" in svg
    text = (out / "report.md").read_text()
    assert "White lines: the timescales ξ = 3, 10, 30, 100, 300 steps of dynamic mean field" \
        in text and "theory and measurement differ by a factor of" in text


def test_shards_write_their_parts(shards):
    seen = []
    for i, d in enumerate(shards, 1):
        assert listing(d) == [".gradlab-manifest.json", "part.json"]
        part = json.loads((d / "part.json").read_text())
        assert part["shard"] == [i, 2]
        assert len(part["points"]) == 3
        seen += [(p["cell"], p["weight_scale"], p["gate_bias"]) for p in part["points"]]
        assert seen[-3:] == POINTS[i - 1::2]
    assert sorted(seen) == sorted(POINTS)


def test_merge_equals_the_unsharded_run(whole, shards, tmp_path, blank_heatmaps):
    out, _ = whole
    result = invoke("sweep", "merge", *shards, "--out", tmp_path / "merged")
    assert_ok(result)
    merged = (tmp_path / "merged" / "data.json").read_text()
    assert json.loads(merged)["points"] == json.loads((out / "data.json").read_text())["points"]
    assert merged == (out / "data.json").read_text()
    # the order the shards are given in does not matter
    assert_ok(invoke("sweep", "merge", *shards[::-1], "--out", tmp_path / "reversed"))
    assert (tmp_path / "reversed" / "data.json").read_text() == merged


def test_merge_refuses_a_missing_shard(shards, tmp_path):
    assert_one_line_error(invoke("sweep", "merge", shards[0], "--out", tmp_path / "m"),
                          "missing [2]")
    assert listing(tmp_path) == []


def test_merge_refuses_a_duplicated_shard(shards, tmp_path):
    result = invoke("sweep", "merge", shards[0], shards[0], shards[1], "--out", tmp_path / "m")
    assert_one_line_error(result, "is given twice: give each shard directory once")
    assert_one_line_error(invoke("sweep", "merge", shards[0], shards[0], "--out",
                                 tmp_path / "m"), "is given twice")
    assert listing(tmp_path) == []


def test_merge_refuses_shards_of_different_grids(shards, tmp_path):
    other = tmp_path / "other"
    assert_ok(invoke("sweep", *GRID, "--seed", "1", "--shard", "2/2", "--out", other))
    out = tmp_path / "m"
    assert_one_line_error(invoke("sweep", "merge", shards[0], other, "--out", out),
                          "different sweeps (their grids differ: seed 1 against 0)")
    assert not out.exists()           # (it named no field: a --seed apart read as any other)


def test_merge_refuses_a_directory_without_a_part(shards, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "m"
    result = invoke("sweep", "merge", shards[0], empty, "--out", out)
    assert_one_line_error(result, "part.json")
    assert str(empty) in result.stderr
    assert_one_line_error(invoke("sweep", "merge", tmp_path / "absent", "--out", out),
                          "absent': no such folder: not a sweep shard directory")
    assert listing(tmp_path) == ["empty"]


def test_merge_refuses_an_existing_report_without_force(shards, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(invoke("sweep", "merge", *shards, "--out", out), "--force")
    assert listing(tmp_path) == ["m", "m/keep.txt"]


def test_merge_refuses_an_out_that_holds_a_part(tmp_path, monkeypatch):
    """Writing the report replaces --out: a part inside it would be deleted, --force or
    not. The default places (shards beside the report, not in it) do not collide."""
    monkeypatch.chdir(tmp_path)
    assert_ok(invoke("sweep", *GRID, "--shard", "1/2"))
    assert_ok(invoke("sweep", *GRID, "--shard", "2/2"))
    parts = ["reports/phase-diagram-shards/1-of-2", "reports/phase-diagram-shards/2-of-2"]
    assert listing(tmp_path) == ["reports", "reports/phase-diagram-shards", *(
        f for p in parts for f in (p, p + "/.gradlab-manifest.json", p + "/part.json"))]
    for out in ("reports/phase-diagram-shards", parts[1], parts[0] + "/sub"):   # above,
        for force in ([], ["--force"]):                                          # at, inside
            result = invoke("sweep", "merge", *parts, "--out", out, *force)
            assert_one_line_error(result, "one of the parts being merged")
    assert len(listing(tmp_path)) == 8


@pytest.mark.parametrize("shard", ["0/2", "3/2", "abc", "1/0", "1/2/3", "-1/2", "/", "1/x",
                                   " 1/2", "1 / 2", "\uff11/2", "+1/2", "1_0/20"])
def test_bad_shard(shard, tmp_path):
    out = tmp_path / "s"
    assert_one_line_error(invoke("sweep", *GRID, "--shard", shard, "--out", out), "--shard")
    assert listing(tmp_path) == []


def test_empty_shard_is_refused(tmp_path):
    """An explicitly empty --shard (e.g. `--shard "$SHARD"` with SHARD unset in a job
    array) must be refused like any other value that is not I/N.

    Regression test. The bug as first found:
    cli.sweep tests `if shard` rather than `shard is not None`, so
    --shard "" is taken as no --shard at all: every array job silently runs the whole grid
    and writes a full report where a part was expected."""
    out = tmp_path / "s"
    assert_one_line_error(invoke("sweep", *GRID, "--shard", "", "--out", out), "--shard")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("option,value,needle", [
    ("--weight-scales", "a,b", "'a' is not a number; give a comma-separated list"),
    ("--weight-scales", "1,1", "distinct"),
    ("--weight-scales", ",", "distinct"),
    ("--gate-biases", "0,x", "'x' is not a number; give a comma-separated list"),
    ("--gate-biases", "2,2.0", "distinct"),
])
def test_bad_grid_values(option, value, needle, tmp_path):
    args = [a for a in GRID]
    args[args.index(option) + 1] = value
    out = tmp_path / "s"
    assert_one_line_error(invoke("sweep", *args, "--out", out), needle)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("args,needle", [
    (["--cells", "nope"], "'nope'"),
    (["--hidden", "0"], "--hidden"),
    (["--dtype", "float16"], "'float16'"),
])
def test_other_bad_options(args, needle, tmp_path):
    assert_one_line_error(invoke("sweep", *GRID, *args, "--out", tmp_path / "s"), needle)
    assert listing(tmp_path) == []


def test_a_directory_that_is_not_a_report_needs_force(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(invoke("sweep", *GRID, "--out", out), "--force")
    assert listing(tmp_path) == ["s", "s/keep.txt"]


def test_vanishing_point_is_not_marked_as_growing(tmp_path):
    """rnn_tanh at weight scale 50 in float32: tanh' is exactly 0 once saturated, the
    products are exactly zero and the rate is -inf: gradients vanish at once (timescale 0).

    Regression: measure_point stores timescale 0.0 for a rate of -inf, and the heatmaps
    once marked every point whose timescale was not finite and > 0 with "↑" ("gradients
    grow"), drawing the vanishing point as a growing one. (matplotlib writes each text of
    an SVG as a comment, so the marks can be counted there.)"""
    out = tmp_path / "s"
    assert_ok(invoke("sweep", "--cells", "rnn_tanh", "--weight-scales", "0.5,50",
                     "--gate-biases", "0", "--dtype", "float32", "--hidden", "6", "--steps",
                     "12", "--batch", "2", "--inputs", "3", "--out", out))
    points = json.loads((out / "data.json").read_text())["points"]
    assert [p["rate"] for p in points][1] == "-inf"
    marks = (out / "figures" / "phase.svg").read_text().count("<!-- ↑ -->")
    assert marks == 0, f"{marks} point marked ↑ (gradients grow); the -inf point vanishes"


def test_a_small_rise_is_measured_again_over_a_longer_run():
    """At T = 60 the LSTM at weight scale 0.5, gate bias 4 rises (+0.0066 a step) and was
    drawn as 'gradients grow'; it decays (ξ ≈ 100) once T is long enough. A rise too small
    to tell from a slow decay is re-measured like an unconverged decay, and marked ? if
    the budget ends first."""
    assert not sweep.resolved(0.0066, 60) and sweep.resolved(0.1, 60)
    assert not sweep.resolved(-0.01, 240) and sweep.resolved(-0.01, 480)
    grid = sweep.Grid(cells=("lstm",), weight_scales=(0.5,), gate_biases=(4.0,),
                      steps=60, max_steps=120)
    p = sweep.measure_point(grid, "lstm", 0.5, 4.0)
    assert p["horizon"] == 120                           # measured again, not left at 60
    if p["rate"] > 0:
        assert not p["converged"] and sweep._mark(p) == "?"
        assert "?" in sweep._table_row(p)[5]


def test_an_unconverged_timescale_is_shown_as_measured_not_as_a_bound():
    """It showed '≥ T/4 (not converged)', and the header called ξ a lower bound; a longer
    run can give a shorter ξ (the first lags weigh more in a short one), so the measured
    value is shown, marked ~, with what T was."""
    p = {"cell": "gru", "weight_scale": 1.0, "gate_bias": 4.0, "rate": -0.0758,
         "rate_stderr": 0.001, "timescale": 13.19, "horizon": 16, "converged": False,
         "status": None}
    assert sweep._mark(p) == "~"
    assert sweep._table_row(p)[5] == "13.19 (not converged: T < 8 ξ)"


def test_the_header_holds_the_sweep_as_it_was_run(tmp_path, monkeypatch):
    """Its command row read 'gradlab sweep' whatever the options (report and train record
    the real command line)."""
    out = tmp_path / "s"
    args = ["sweep", "--cells", "rnn_tanh", "--weight-scales", "0.5,2", "--gate-biases", "0",
            "--hidden", "3", "--steps", "4", "--batch", "1", "--inputs", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["gradlab", *args])
    assert_ok(invoke(*args))
    header = (out / "report.md").read_text(encoding="utf-8")
    assert "| command | gradlab sweep --cells rnn_tanh --weight-scales 0.5,2 " in header


def test_a_max_steps_that_cannot_fit_is_named(tmp_path):
    """The memory refusal advised '--hidden, --steps or --batch' for a huge --max-steps."""
    result = invoke("sweep", "--cells", "rnn_tanh", "--max-steps", "99999999999", "--out",
                    tmp_path / "s")
    assert_one_line_error(result, "use a smaller --hidden, --inputs, --max-steps or --batch")


def test_a_cell_mean_field_cannot_read_is_swept_without_theory(tmp_path, blank_heatmaps):
    """The README's antisymmetric RNN (W - W.T) was measured at every point, then the
    theory refused it and the sweep exited 2 having written nothing; now the map is
    written and the text says why that cell has no lines."""
    path = tmp_path / "cells.py"
    path.write_text(
        "import gradlab\nfrom gradlab import tanh\n\n\n"
        "@gradlab.declare(state='h', params={'W': 'n n', 'V': 'n m', 'b': 'n', 'gamma': '1'},"
        " source='test')\ndef antisym(s):\n"
        "    return s.h + 0.1 * tanh((s.W - s.W.T - s.gamma * s.I) @ s.h + s.V @ s.x + s.b)\n")
    out = tmp_path / "s"
    assert_ok(invoke("sweep", "--cells", f"{path}:antisym,rnn_tanh", "--weight-scales", "1,2",
                     "--gate-biases", "0,1", "--hidden", "3", "--inputs", "2", "--steps", "4",
                     "--max-steps", "8", "--batch", "2", "--out", out))
    data = json.loads((out / "data.json").read_text())
    assert list(data["theory"]["unread"]) == [f"{path}:antisym"]
    assert "rnn_tanh" in data["theory"]["timescale"]
    assert f"No theory is drawn for {path}:antisym: mean field cannot read cell" in \
        (out / "report.md").read_text()


def test_grid_takes_torch_device_and_dtype_objects():
    """A Python user passes torch.float32 / torch.device("cpu") as everywhere else in
    gradlab; the grid records their names (a part file holds strings)."""
    grid = sweep.Grid(cells=("lstm",), device=torch.device("cpu"), dtype=torch.float32)
    assert (grid.device, grid.dtype) == ("cpu", "float32")
    assert grid == sweep.Grid(cells=("lstm",), dtype="float32")
    with pytest.raises(GradlabError, match="dtype 'float16'"):
        sweep.Grid(cells=("lstm",), dtype=torch.float16)
