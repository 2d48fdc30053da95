"""Trust at the edges: sweep parts are validated before they are merged (the issue "Trust
at the edges"): a part that is not the JSON of one part, a bad field, cell names that are
not names (or a cell file's path that breaks markdown), an exact cover of one sweep with
no point in both parts, a shard count above the grid, and a part written on a full disk
that leaves nothing."""

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from gradlab.reports import gradient_decay as rp
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


def one_line(err):
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


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
