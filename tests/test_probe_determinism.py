"""Reproducibility probes: a report writes its numbers to the precision they carry, so that
two computations that differ only in rounding write the same bytes."""

import json

import torch

import gradlab
from gradlab.flow import make_inputs
from gradlab.reports.publish import write_report


def _floats(value):
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return [value] if isinstance(value, float) else []


def _significant(x):
    """The significant digits of x as JSON wrote it."""
    return len(repr(abs(x)).split("e")[0].replace(".", "").lstrip("0").rstrip("0") or "0")


def test_a_float32_run_writes_the_digits_its_norms_carry(tmp_path):
    """The spectral norms of a float32 run are certified to 5e-7 relative, whatever random
    start the iteration takes (gradient_flow's seed: results do not depend on it beyond
    rounding). Written to 12 digits, two starts gave other data.json bytes (6 of these 32
    numbers moved in their last 5-6 digits); written to the 6 it carries, the same."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(32, 8, seed=0, dtype=torch.float32)
    xs = make_inputs("gaussian", 16, 2, 8, seed=0, dtype=torch.float32)
    written = []
    for seed in (0, 1):
        logs = gradlab.gradient_flow(cell, params, xs, seed=seed).log_norm("spectral")
        out = write_report(tmp_path / f"start{seed}", title="t", intro="i", header={},
                           sections=[], figures={}, data={"log_norm": logs}, kind=(),
                           dtype="float32")
        written.append((out / "data.json").read_bytes())
    assert written[0] == written[1]
    numbers = _floats(json.loads(written[0]))
    assert numbers and max(map(_significant, numbers)) <= 6


def test_report_and_sweep_write_data_json_at_their_run_dtype(tmp_path, monkeypatch):
    """gradlab report and gradlab sweep hand their run's dtype to write_report (a float32
    report wrote 12 digits, as a float64 one)."""
    from gradlab.reports import gradient_decay as rp
    from gradlab.reports import sweep
    given = []
    monkeypatch.setattr(rp, "run", lambda setup, progress=None, **_: {})
    monkeypatch.setattr(rp, "build", lambda setup, *_: ("t", "i", {}, [], {}, {}))
    for module in (rp, sweep):
        monkeypatch.setattr(module, "write_report", lambda out, **kw: given.append(kw["dtype"]))
    monkeypatch.setattr(sweep, "_heatmaps", lambda *_: None)
    rp.report(rp.Setup(cells=("rnn_tanh",), dtype="float32"), tmp_path / "r")
    rp.report(rp.Setup(cells=("rnn_tanh",)), tmp_path / "r")
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(1.0,), gate_biases=(0.0,), hidden=4,
                      steps=4, max_steps=4, batch=2, dtype="float32")
    sweep.report(grid, sweep.run_points(grid, list(grid.points())), tmp_path / "s")
    assert given == ["float32", "float64", "float32"]
