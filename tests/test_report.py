"""`gradlab report` through click's CliRunner: what a report holds (every file and figure,
every plotted series in data.json, theory lines over rnn_tanh and a theory rate beside the
Frobenius rate it predicts), the same data.json from the same seed, an existing folder
needing --force, and errors as one line that write nothing.

Every run is tiny (n = 6, m = 3, T = 12, batch 2). Drawing and saving the figures costs
more than measuring at this size, so one module-wide run makes every figure and the runs
that only compare data.json replace the figure functions with a blank figure (data.json
does not depend on the figures: the comparison with the fully drawn run checks that too).
What is measured at the edges: test_report_measurements.py.
"""

import json
import math
import re

import numpy as np
import pytest

import gradlab
import torch
from matplotlib.figure import Figure

from gradlab import registry, theory

from gradlab.reports import figures
from gradlab.reports.measurements import LYAPUNOV_K, Setup
from gradlab.reports.publish import jsonable as written
from conftest import assert_ok, assert_one_line_error, invoke, listing

T, N, M, B = 12, 6, 3, 2
TINY = ["--steps", str(T), "--hidden", str(N), "--batch", str(B), "--inputs", str(M)]
CELLS = ("rnn_tanh", "lstm", "gru")
FIGURES = ("decay", "paths", "spectra", "loss", "drift", "bptt")


def report(out, *args, cells=",".join(CELLS)):
    return invoke("report", "--out", out, "--cells", cells, *TINY, *args)


def load(out):
    return json.loads((out / "data.json").read_text())


def number(v):
    """A data.json number back as a float ("nan", "inf", "-inf" are strings there)."""
    return float(v)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One report with every figure drawn: (out, CliRunner result)."""
    out = tmp_path_factory.mktemp("full") / "r"
    return out, report(out)


@pytest.fixture
def blank_figures(monkeypatch):
    for name in FIGURES:
        monkeypatch.setattr(figures, name, lambda *a, **k: Figure(figsize=(1, 1)))


def g_bias(out):
    return load(out)["setup"]["gate_bias"]


# --- what a report holds ------------------------------------------------------------------

def test_report_writes_every_file(full):
    out, result = full
    assert_ok(result)
    assert f"wrote {out}/index.html" in result.stdout
    expected = {".gradlab-manifest.json", "data.json", "index.html", "report.md", "figures"} | {
        f"figures/{name}.{ext}" for name in FIGURES for ext in ("png", "svg")}
    assert set(listing(out)) == expected
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in out.parent.iterdir()] == ["r"]            # no temporary left


def test_index_html_embeds_every_figure(full):
    out, _ = full
    page = (out / "index.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)
    assert len(refs) == len(FIGURES)
    assert all(r.startswith("data:image/png;base64,") for r in refs)
    assert page.count("<table") >= 2                                  # header and summary
    for name in CELLS:
        assert f"<td>{name}</td>" in page


def test_theory_lines_are_drawn_over_rnn_tanh(full):
    """matplotlib writes each text of an SVG as a comment: the legend names the lines."""
    out, _ = full
    svg = (out / "figures" / "decay.svg").read_text()
    assert "<!-- rnn_tanh: mean-field" in svg and "<!-- rnn_tanh: Pascanu, lag 1" in svg
    drift = (out / "figures" / "drift.svg").read_text()
    assert "<!-- gru -->" in drift                         # gru is one of the bounded cells
    assert "<!-- lstm -->" not in drift


def test_report_md_header_says_how_to_reproduce(full):
    out, _ = full
    md = (out / "report.md").read_text()
    for needle in ("| seed | 0 |", "| dtype | float64 |", f"hidden n = {N}, inputs m = {M}, "
                   f"T = {T}, batch = {B}", "| Jacobian convention | numerator layout",
                   "torch " + torch.__version__, "| device | cpu"):
        assert needle in md, needle
    assert "![Decay of the gradient across time steps](figures/decay.png)" in md
    assert md.count("](figures/") == len(FIGURES)


def test_data_json_holds_every_plotted_series(full):
    out, _ = full
    data = load(out)
    assert data["setup"]["cells"] == list(CELLS)
    assert (data["setup"]["hidden"], data["setup"]["inputs"], data["setup"]["steps"],
            data["setup"]["batch"], data["setup"]["seed"]) == (N, M, T, B, 0)
    assert data["convention"].startswith("numerator layout")
    assert set(data["cells"]) == set(CELLS)                            # keys sorted
    for name, d in data["cells"].items():
        parts = len(registry.cell(name).state_names)
        assert d["lags"] == list(range(1, T + 1))
        for series in ("decay_log10", "loss_input_log10"):
            q = {k: np.array([number(v) for v in d[series][k]]) for k in ("median", "q1", "q3")}
            assert all(len(v) == T and np.isfinite(v).all() for v in q.values()), name
            assert (q["q1"] <= q["median"] + 1e-12).all() and \
                (q["median"] <= q["q3"] + 1e-12).all()
        s = d["summary"]
        assert len(s["lyapunov"]) == LYAPUNOV_K
        assert math.isfinite(s["rate"]) and s["rate"] < 0
        assert s["timescale"] == pytest.approx(-1 / (2 * s["rate"]))
        assert s["condition_lag"] == T // 2
        for key in ("horizon_1e-3", "horizon_1e-6", "log10_condition_mid", "theory",
                    "theory_label", "theory_timescale"):
            assert key in s
        spectrum = np.array(d["spectrum"], dtype=float)
        assert len(spectrum) == N * parts
        assert (spectrum >= 0).all() and (np.diff(spectrum) <= 1e-12).all()
        assert len(d["drift"]["rms"]) == T + 1
        if registry.cell(name).gates:
            sat = np.array(d["drift"]["saturation"], dtype=float)
            assert len(sat) == T and ((sat >= 0) & (sat <= 1)).all()
        K, fraction = d["bptt"]["K"], np.array(d["bptt"]["fraction"], dtype=float)
        assert K[0] == 1 and K[-1] == T and K == sorted(set(K)) and len(fraction) == len(K)
        assert ((fraction >= 0) & (fraction <= 1 + 1e-12)).all()
        assert (np.diff(fraction) >= -1e-12).all() and fraction[-1] == pytest.approx(1.0)
    paths = data["cells"]["lstm"]["paths"]
    assert set(paths) == {"h->h", "h->c", "c->h", "c->c"}
    assert all(len(v) == T for v in paths.values())
    assert "paths" not in data["cells"]["rnn_tanh"]


def test_rnn_tanh_summary_has_its_theory(full):
    out, _ = full
    d = load(out)["cells"]["rnn_tanh"]
    s = d["summary"]
    assert "mean-field" in s["theory_label"]
    # (every number as data.json writes it, to 9 digits: `written`)
    assert s["theory"] == written(theory.mean_field_rate(1.0, input_scale=1.0, bias_scale=0.0))
    assert s["theory_timescale"] == pytest.approx(theory.timescale(s["theory"]))
    setup = Setup(cells=("rnn_tanh",), hidden=N, inputs=M, steps=T, batch=B)
    W = setup.params(registry.cell("rnn_tanh"))["W"]
    assert d["pascanu_rate"] == written(theory.pascanu_rate(W))
    for name in ("lstm", "gru"):       # gated cells: the dynamic mean-field theory
        g = load(out)["cells"][name]["summary"]
        assert g["theory_label"] == "dynamic mean field"
        assert g["theory"] == written(gradlab.mean_field(
            name, weight_scale=1.0, bias_scale=0.0, input_scale=1.0,
            gate_bias=g_bias(out), method="dynamic", units=1024, steps=T, inputs=M,
            lags=(T // 4, T), seed=0).rate)


def test_a_theory_rate_is_shown_beside_the_frobenius_rate_it_predicts(full):
    """A mean-field rate predicts the mean squared gradient, the Frobenius norm; the report
    drew it over the spectral norm alone, which over a finite T falls more slowly. The
    measured Frobenius rate now stands beside every theory rate, and the caption says so."""
    out, _ = full
    data = load(out)["cells"]
    setup = Setup(cells=("rnn_tanh",), hidden=N, inputs=M, steps=T, batch=B)
    cell = registry.cell("rnn_tanh")
    flow = gradlab.gradient_flow(cell, setup.params(cell), setup.xs())
    s = data["rnn_tanh"]["summary"]
    assert s["rate_frobenius"] == written(flow.rate("frobenius"))
    assert s["rate_frobenius"] != pytest.approx(s["rate"], rel=1e-6)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "measured Frobenius rate" in text and "the Frobenius norm" in text
    assert f"Frobenius-norm rate measured: {s['rate_frobenius']:.3g}" in text


# --- reproducible -----------------------------------------------------------------------

def test_same_seed_gives_identical_data_json(full, tmp_path, blank_figures):
    out, _ = full
    assert_ok(report(tmp_path / "again"))
    assert (tmp_path / "again" / "data.json").read_bytes() == (out / "data.json").read_bytes()


def test_other_seed_gives_other_data_json(full, tmp_path, blank_figures):
    out, _ = full
    assert_ok(report(tmp_path / "seed1", "--seed", "1"))
    other = (tmp_path / "seed1" / "data.json").read_bytes()
    assert other != (out / "data.json").read_bytes()
    assert json.loads(other)["setup"]["seed"] == 1


# --- an existing report ---------------------------------------------------------------------

def test_existing_directory_needs_force(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(report(out), "--force")
    assert listing(tmp_path) == ["r", "r/keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_force_writes_beside_the_users_files(tmp_path, blank_figures):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_ok(report(out, "--force", cells="rnn_tanh"))
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "index.html").is_file() and load(out)["setup"]["cells"] == ["rnn_tanh"]
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


# --- errors: one line, exit 2, nothing written ----------------------------------------------

ERRORS = {
    "unknown cell": (["--cells", "nope"], "'nope'"),
    "one unknown of two": (["--cells", "lstm,nope"], "'nope'"),
    "empty --cells": (["--cells", ","], "names no cell"),
    "zero hidden": (["--hidden", "0"], "--hidden"),
    "negative steps": (["--steps", "-1"], "--steps"),
    "zero batch": (["--batch", "0"], "--batch"),
    "float16": (["--dtype", "float16"], "'float16'"),
    "unknown init": (["--init", "nope"], "'nope'"),
    "unknown device": (["--device", "tpu"], "'tpu'"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_write_nothing(case, tmp_path, monkeypatch):
    args, needle = ERRORS[case]
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "--out", tmp_path / "r", "--cells", "rnn_tanh", *TINY, *args)
    assert_one_line_error(result, needle)
    assert listing(tmp_path) == []


def test_unknown_cell_lists_the_valid_cells(tmp_path):
    result = report(tmp_path / "r", cells="nope")
    assert_one_line_error(result, "'nope'")
    assert all(name in result.stderr for name in registry.cells())
    assert not (tmp_path / "r").exists()


def test_cuda_without_a_device(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here")
    assert_one_line_error(report(tmp_path / "r", "--device", "cuda"), "cuda")
    assert listing(tmp_path) == []


def test_out_under_a_regular_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert_one_line_error(report(plain / "r"), "cannot write")
    assert_one_line_error(report(plain), "is a file")
    assert listing(tmp_path) == ["plain"] and plain.read_text() == "x"
