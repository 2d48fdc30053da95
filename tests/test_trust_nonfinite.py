"""Trust at the edges: overflow is data, not a crash; rates and timescales say what they
mean; sweep parts are validated before they are merged (the issue "Trust at the edges")."""

import json
import math
import pathlib
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab import flow as F
from gradlab.reports import gradient_decay as rp
from gradlab import theory
from gradlab.reports import shards, sweep
from gradlab.errors import GradlabError
from gradlab.reports.measurements import Setup
from conftest import assert_ok, assert_one_line_error, invoke, listing

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


def one_line(err):
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


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


# --- 3 and 4. sweep parts: validated, named, covering the grid exactly once --------------------

GRID = ["--cells", "rnn_tanh", "--weight-scales", "0.5,2", "--gate-biases", "0,2", *SMALL]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    base = tmp_path_factory.mktemp("parts")
    dirs = []
    for i in (1, 2):
        d = base / f"p{i}"
        assert_ok(invoke("sweep", *GRID, "--shard", f"{i}/2", "--out", d))
        dirs.append(d)
    return dirs


def tamper(parts, tmp_path, edit, raw=None):
    """Copies of the two parts, the first rewritten by edit(part dict) or replaced by raw."""
    dirs = []
    for k, d in enumerate(parts):
        copy = tmp_path / f"c{k}"
        copy.mkdir()
        text = (d / "part.json").read_text()
        if k == 0:
            if raw is not None:
                (copy / "part.json").write_bytes(raw)
                dirs.append(copy)
                continue
            part = json.loads(text)
            edit(part)
            text = json.dumps(part)
        (copy / "part.json").write_text(text)
        dirs.append(copy)
    return dirs


def _set(path, value):
    def edit(part):
        target = part
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _del(path):
    def edit(part):
        target = part
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


RAW = {"truncated": b'{"grid": {"cells": ["rnn_tanh"], "weight', "empty": b"",
       "blank": b"  \n", "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "list": b"[1, 2]",
       "string": b'"part"', "deep": b"[" * 100000}


@pytest.mark.parametrize("name", list(RAW))
def test_merge_refuses_a_part_that_is_not_json_of_one(name, parts, tmp_path):
    dirs = tamper(parts, tmp_path, None, raw=RAW[name])
    result = invoke("sweep", "merge", *dirs, "--out", tmp_path / "m")
    assert_one_line_error(result, str(dirs[0] / "part.json"))
    assert not (tmp_path / "m").exists()


EDITS = {
    "grid not an object": _set(["grid"], [1]),
    "grid cells not a list": _set(["grid", "cells"], "rnn_tanh"),
    "grid hidden a string": _set(["grid", "hidden"], "4"),
    "grid steps a bool": _set(["grid", "steps"], True),
    "grid weight scale nan": _set(["grid", "weight_scales"], [0.5, "nan"]),
    "grid unknown key": _set(["grid", "colour"], "red"),
    "grid lacks dtype": _del(["grid", "dtype"]),
    "shard a string": _set(["shard"], "1/2"),
    "shard of three": _set(["shard"], [1, 2, 3]),
    "shard float": _set(["shard"], [1.0, 2]),
    "shard zero": _set(["shard"], [0, 2]),
    "points an object": _set(["points"], {"a": 1}),
    "point a list": _set(["points", 0], [1, 2]),
    "point lacks rate": _del(["points", 0, "rate"]),
    "point rate a string": _set(["points", 0, "rate"], "fast"),
    "point weight scale a bool": _set(["points", 0, "weight_scale"], False),
    "point cell a number": _set(["points", 0, "cell"], 3),
    "point unknown status": _set(["points", 0, "status"], "<b>bold</b>"),
    "point unknown key": _set(["points", 0, "note"], "x"),
    "extra top key": _set(["comment"], "x"),
    "missing points": _del(["points"]),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_merge_refuses_a_part_with_a_bad_field(name, parts, tmp_path):
    dirs = tamper(parts, tmp_path, EDITS[name])
    result = invoke("sweep", "merge", *dirs, "--out", tmp_path / "m")
    assert_one_line_error(result, str(dirs[0] / "part.json"))
    assert not (tmp_path / "m").exists()


BAD_NAMES = ["rnn|tanh", "rnn_tanh\n| x | y |", "`rnn`", "[a](http://x)", "<script>",
             "a b", "/tmp/x|y.py:c", "pkg.mod:na-me", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_merge_refuses_cell_names_that_are_not_names(name, parts, tmp_path):
    """A cell name from part.json ends up in report.md: nothing but identifiers and
    NAME specs gets through (in the grid and in the points alike)."""
    def edit(part):
        part["grid"]["cells"] = [name]
        for p in part["points"]:
            p["cell"] = name
    dirs = tamper(parts, tmp_path, edit)
    result = invoke("sweep", "merge", *dirs, "--out", tmp_path / "m")
    assert_one_line_error(result, str(dirs[0] / "part.json"))
    assert not (tmp_path / "m").exists()


def test_report_refuses_a_cell_file_whose_path_breaks_markdown(tmp_path):
    path = tmp_path / "a|b.py"
    path.write_text(EXPCELL)
    with pytest.raises(GradlabError) as err:
        rp.report(Setup(cells=(f"{path}:expcell",), steps=4, hidden=2, batch=1, inputs=2),
                  tmp_path / "r")
    assert "a|b.py" in one_line(err)
    assert listing(tmp_path) == ["a|b.py"]
    for name in ("rnn_tanh", "pkg.mod:CELL", "/tmp/my cells/exp-1.py:expcell", "cells.py:x"):
        assert sweep.Grid(cells=(name,)).cells == (name,)         # names that are names pass


def _points(part):
    return part["points"]


COVER = {
    "a point twice": (lambda part: _points(part).append(dict(_points(part)[0])), "twice"),
    "a point missing": (lambda part: _points(part).pop(), "lack"),
    "a point off the grid": (_set(["points", 0, "weight_scale"], 7.0), "not on the grid"),
    "another seed": (_set(["grid", "seed"], 5), "different sweeps"),
    "other steps": (_set(["grid", "steps"], 11), "different sweeps"),
}


@pytest.mark.parametrize("name", list(COVER))
def test_merge_needs_an_exact_cover_of_one_sweep(name, parts, tmp_path):
    edit, needle = COVER[name]
    dirs = tamper(parts, tmp_path, edit)
    result = invoke("sweep", "merge", *dirs, "--out", tmp_path / "m")
    assert_one_line_error(result, needle)
    assert str(dirs[0] / "part.json") in result.stderr       # the line names the file
    assert not (tmp_path / "m").exists()


def test_a_point_in_both_parts_is_refused(parts, tmp_path):
    """Shard 1 also claiming a point of shard 2 (and shard 2 keeping it)."""
    other = json.loads((parts[1] / "part.json").read_text())["points"][0]
    dirs = tamper(parts, tmp_path, lambda part: _points(part).append(other))
    assert_one_line_error(invoke("sweep", "merge", *dirs, "--out", tmp_path / "m"), "twice")


def test_shard_count_above_the_grid_is_refused(tmp_path):
    grid = sweep.Grid(cells=("gru",), weight_scales=(0.5, 2.0), gate_biases=(0.0, 2.0))
    assert [len(shards.shard_points(grid, (i, 4))) for i in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert shards.shard_points(grid, None) == grid.points()
    with pytest.raises(GradlabError) as err:
        shards.shard_points(grid, (1, 5))
    assert "4" in one_line(err) and "5" in one_line(err)
    result = invoke("sweep", *GRID, "--shard", "1/5", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--shard" in result.stderr.strip().splitlines()[-1]
    assert listing(tmp_path) == []


def test_write_part_on_a_full_disk_leaves_nothing(tmp_path):
    """A file-size limit stands in for a full disk: the write fails with EFBIG. One line,
    a GradlabError, and no part.json.tmp (or any other file) left behind."""
    out = tmp_path / "part"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from gradlab.reports import shards, sweep
        from gradlab.errors import GradlabError
        grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(0.5,), gate_biases=(0.0,))
        points = [{{"cell": "rnn_tanh", "weight_scale": 0.5, "gate_bias": 0.0,
                   "rate": -0.5, "timescale": 2.0, "status": None}}] * 50
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        try:
            shards.write_part(grid, (1, 1), points, {str(out)!r})
        except GradlabError as err:
            print("GradlabError:", err)
            sys.exit(2)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).parent.parent)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("GradlabError:"), done.stdout
    assert "Traceback" not in done.stderr
    left = [p for p in listing(tmp_path) if not (tmp_path / p).is_dir()]
    assert left == [], left
