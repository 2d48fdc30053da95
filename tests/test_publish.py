"""gradlab.reports.publish: JSON for non-finite numbers, and writing a report directory atomically."""

import base64
import json
import math
import os
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradlab.reports import publish
from gradlab.errors import GradlabError
from gradlab import outputs
from gradlab.reports.publish import Section, dumps, jsonable, write_report
from conftest import listing

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def strict_loads(text):
    """json.loads that refuses the non-standard NaN / Infinity / -Infinity literals."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON literal {token}")
    return json.loads(text, parse_constant=refuse)


# --- jsonable / dumps ----------------------------------------------------------------------

def test_jsonable_turns_non_finite_floats_into_strings():
    assert jsonable(math.nan) == "nan"
    assert jsonable(math.inf) == "inf"
    assert jsonable(-math.inf) == "-inf"
    assert jsonable(np.float64("nan")) == "nan"
    assert jsonable(np.float32("-inf")) == "-inf"
    assert jsonable(1.5) == 1.5
    assert jsonable(0.0) == 0.0
    assert jsonable(None) is None
    assert jsonable("inf") == "inf"
    assert jsonable(True) is True


def test_jsonable_turns_arrays_into_lists():
    value = {"a": np.array([1.0, np.nan, np.inf, -np.inf]),
             "b": np.arange(4).reshape(2, 2),
             3: (np.float64(2.5), [np.int64(7)]),
             "c": {"d": np.array(np.inf)}}
    out = jsonable(value)
    assert out == {"a": [1.0, "nan", "inf", "-inf"], "b": [[0, 1], [2, 3]],
                   "3": [2.5, [7]], "c": {"d": "inf"}}
    assert type(out["b"][0][0]) is int and type(out["3"][0]) is float
    strict_loads(json.dumps(out, allow_nan=False))


def test_dumps_is_strict_deterministic_json():
    data = {"z": [math.nan, 1.0], "a": {"y": np.array([math.inf]), "x": -math.inf}}
    reordered = {"a": {"x": -math.inf, "y": np.array([math.inf])}, "z": [math.nan, 1.0]}
    text = dumps(data)
    assert text == dumps(reordered) == dumps(data)
    assert text.endswith("\n")
    assert strict_loads(text) == {"a": {"x": "-inf", "y": ["inf"]}, "z": ["nan", 1.0]}
    assert "NaN" not in text and "Infinity" not in text
    assert text.index('"a"') < text.index('"z"')                       # sorted keys


def test_dumps_does_not_change_its_input():
    data = {"v": np.array([np.nan, 2.0])}
    dumps(data)
    assert isinstance(data["v"], np.ndarray) and np.isnan(data["v"][0])


# --- write_report ---------------------------------------------------------------------------

def small_figure(label="x"):
    fig = Figure(figsize=(1.2, 1.0))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1.0, np.nan, 0.5], label=label)
    return fig


def write(out, *, figures=None, data=None, force=False):
    figures = {"one": small_figure(), "two": small_figure()} if figures is None else figures
    sections = [Section("First", "Some <text> & more.", "one"),
                Section("Table", "rows", table=(["name", "value"],
                                                [["a", math.nan], ["b", math.inf],
                                                 ["c", -math.inf], ["d", None], ["e", 0.5]])),
                Section("Second", figure="two")]
    data = {"x": [1.0, math.nan], "y": np.array([math.inf])} if data is None else data
    return write_report(out, title="T <1>", intro="intro", header={"seed": 0, "rate": math.nan},
                        sections=sections, figures=figures, data=data, kind=tuple(figures),
                        force=force)


def test_write_report_writes_every_file(tmp_path):
    out = write(tmp_path / "r")
    assert out == tmp_path / "r"
    assert listing(tmp_path) == ["r", "r/.gradlab-manifest.json", "r/data.json", "r/figures",
                                 "r/figures/one.png",
                                 "r/figures/one.svg", "r/figures/two.png",
                                 "r/figures/two.svg", "r/index.html", "r/report.md"]
    for name in ("one", "two"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert "<svg" in (out / "figures" / f"{name}.svg").read_text()
    assert strict_loads((out / "data.json").read_text()) == {"x": [1.0, "nan"], "y": ["inf"]}
    assert (out / "data.json").read_text() == dumps({"x": [1.0, math.nan], "y": [math.inf]})


def test_index_html_is_self_contained(tmp_path):
    out = write(tmp_path / "r")
    page = (out / "index.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)
    assert len(refs) == 2 and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert "<link" not in page and "<script" not in page
    # the embedded images are the figures written next to it
    embedded = [base64.b64decode(r.split(",", 1)[1]) for r in refs]
    assert embedded == [(out / "figures" / f"{n}.png").read_bytes() for n in ("one", "two")]
    assert "<table" in page and "<td>nan</td>" in page and "<td>∞</td>" in page
    assert "<td>-∞</td>" in page and "<td>—</td>" in page
    assert "Some &lt;text&gt; &amp; more." in page and "T &lt;1&gt;" in page


def test_report_md(tmp_path):
    md = (write(tmp_path / "r") / "report.md").read_text()
    assert md.startswith("# T <1>\n")
    assert "![First](figures/one.png)" in md and "![Second](figures/two.png)" in md
    assert "| name | value |" in md and "| a | nan |" in md and "| b | ∞ |" in md
    assert "| c | -∞ |" in md and "| d | — |" in md and "| e | 0.5 |" in md


def test_report_directory_has_ordinary_permissions(tmp_path):
    """mkdtemp makes 0700 directories; a report must get the umask's usual mode."""
    umask = os.umask(0o022)
    try:
        out = write(tmp_path / "r")
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o755


def test_write_report_creates_missing_parents(tmp_path):
    out = write(tmp_path / "a" / "b" / "r")
    assert (out / "index.html").is_file()
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["r"]


def test_existing_directory_is_refused_without_force(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GradlabError, match="did not write.*--force"):
        write(out)
    assert listing(tmp_path) == ["r", "r/keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_the_same_report_twice_is_the_same_bytes(tmp_path):
    """Every file, the SVGs too (matplotlib draws their ids from a random salt unless
    told otherwise): rerunning the README's command leaves a clean git tree."""
    a, b = write(tmp_path / "a"), write(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [f.name for f in files if f.suffix == ".svg"] == ["one.svg", "two.svg"]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_running_again_replaces_an_earlier_report(tmp_path):
    """The README's `gradlab report` works on a fresh clone, over the committed report."""
    out = write(tmp_path / "r")
    write(out, data={"second": 1})
    assert strict_loads((out / "data.json").read_text()) == {"second": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_an_empty_directory_is_replaced(tmp_path):
    (tmp_path / "r").mkdir()
    assert (write(tmp_path / "r") / "index.html").is_file()


@pytest.mark.parametrize("extra", ["notes.txt", "figures/notes.txt", "figures/sub/a.png"])
def test_a_report_with_anything_more_is_refused_without_force(tmp_path, extra):
    out = write(tmp_path / "r")
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_text("mine")
    with pytest.raises(GradlabError, match="did not write.*--force"):
        write(out)
    assert (out / extra).read_text() == "mine"


def test_force_writes_beside_the_users_files_and_keeps_them(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    write(out, force=True)
    write(out, force=True)
    assert (out / "keep.txt").read_text() == "old"
    assert (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]        # no .r.old, no temporary


def test_force_twice_over_a_report(tmp_path):
    out = write(tmp_path / "r")
    write(out, data={"second": 1}, force=True)
    assert strict_loads((out / "data.json").read_text()) == {"second": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


class Exploding:
    """A figure whose savefig raises, on the first call (png) or the second (svg)."""

    def __init__(self, fail_on=1):
        self.calls, self.fail_on = 0, fail_on

    def savefig(self, target, **kwargs):
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("savefig failed")
        small_figure().savefig(target, **kwargs)


@pytest.mark.parametrize("fail_on", [1, 2])
def test_failed_figure_leaves_nothing_behind(tmp_path, fail_on):
    figures = {"one": small_figure(), "two": Exploding(fail_on)}
    with pytest.raises(RuntimeError, match="savefig failed"):
        write(tmp_path / "r", figures=figures)
    assert not (tmp_path / "r").exists()
    assert listing(tmp_path) == []                               # no temporary directory


def test_failed_figure_keeps_the_old_report_under_force(tmp_path):
    out = write(tmp_path / "r", data={"old": True})
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError):
        write(out, figures={"one": Exploding()}, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_unserialisable_data_leaves_nothing_behind(tmp_path):
    with pytest.raises(TypeError):
        write(tmp_path / "r", data={"x": object()})
    assert listing(tmp_path) == []


# --- check_target (gradlab.outputs) ----------------------------------------------------------

def check_target(out, force):
    return outputs.check_target(out, force=force)


def test_check_target_accepts_new_and_forced_paths(tmp_path):
    assert check_target(tmp_path / "new", False) == tmp_path / "new"
    assert check_target(str(tmp_path / "a" / "b" / "c"), False) == tmp_path / "a" / "b" / "c"
    assert check_target(tmp_path, True) == tmp_path
    assert listing(tmp_path) == []                               # checking writes nothing


def test_check_target_refuses_a_directory_that_is_not_a_report(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(GradlabError, match="--force"):
        check_target(tmp_path, False)
    assert check_target(tmp_path, True) == tmp_path


def test_check_target_refuses_a_file(tmp_path):
    f = tmp_path / "report"
    f.write_text("x")
    for force in (False, True):
        with pytest.raises(GradlabError, match="is a file"):
            check_target(f, force)
    assert f.read_text() == "x"


def test_check_target_refuses_a_path_under_a_file(tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    with pytest.raises(GradlabError, match="cannot write"):
        check_target(f / "sub" / "report", False)
    with pytest.raises(GradlabError, match="cannot write"):
        check_target(f / "report", False)


def test_check_target_refuses_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): permissions are not "
                        "enforced, so a read-only directory is writable here")
        for target in (locked / "report", locked / "deeper" / "report"):
            with pytest.raises(GradlabError, match="not writable"):
                check_target(target, False)
    finally:
        locked.chmod(0o700)


def test_publish_module_exports(tmp_path):
    """The entry points do what their names say, by their module path."""
    out = tmp_path / "via_module"
    assert outputs.check_target(out) == out.resolve() and not out.exists()
    publish.write_report(out, title="t", intro="i", header={}, sections=[], figures={},
                         data={"x": [1.0, math.inf]}, kind=())
    assert strict_loads((out / "data.json").read_text()) == {"x": [1.0, "inf"]}
    assert (out / "index.html").is_file() and (out / "report.md").is_file()


def test_check_target_refuses_when_access_says_unwritable(tmp_path, monkeypatch):
    """The same refusal where permissions cannot be tested for real (as root): the
    writability probe is os.access on the nearest existing ancestor."""
    probed = []

    def access(path, mode):
        probed.append(str(path))
        return False

    monkeypatch.setattr(outputs.os, "access", access)
    with pytest.raises(GradlabError, match="not writable"):
        check_target(tmp_path / "x" / "y" / "report", False)
    assert probed == [str(tmp_path)]


def test_floats_are_written_to_the_precision_they_carry():
    """9 significant digits: the last bits of a float64 chain differ between CPUs (an AVX2
    run of the default report against an AVX-512 one: 2890 of 8008 numbers, 4 of them at
    the 12th digit), so a rerun elsewhere writes the same bytes but for a number on a
    rounding boundary of its 9th digit."""
    assert jsonable([0.1 + 0.2, 1 / 3, -2.5e-300, 7]) == [0.3, 0.333333333, -2.5e-300, 7]
    assert jsonable(1.0000000004) == jsonable(1.0000000001) == 1.0


def test_user_text_cannot_break_the_markdown():
    """A cell name or command with a pipe, a tag, a link or a newline stays in its cell."""
    from gradlab.reports.publish import markdown_text, render
    text = render(title="t", intro="i", header={"command": "gradlab report --out 'a|b'\n<x>"},
                  sections=[Section("s", table=(["cell"], [["[x](y) `z` | w"]]))],
                  figures={}, data={})["report.md"].decode()
    assert "| command | gradlab report --out 'a\\|b' \\<x\\> |" in text
    assert "| \\[x\\](y) \\`z\\` \\| w |" in text
    assert markdown_text("plain rnn_tanh") == "plain rnn_tanh"
