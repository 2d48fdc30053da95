"""Probes of the reports' rounding (9 digits, 6 in float32): what a run was given is written
as given, and only what it measured is rounded.

Found: `gradlab sweep --weight-scales 1.0000000001,1.0000000002,3` wrote data.json's grid as
weight_scales [1.0, 1.0, 3.0] and two different points at "weight_scale": 1.0 each (the
axes, kept as given for the figures, were rounded on the way out), and `gradlab report
--weight-scale 1.0000000001` wrote its setup's weight scale as 1.0 under a header that
says 1.0000000001; at 12 digits both were written as given.
"""

import json

from gradlab.reports import gradient_decay as rp
from gradlab.reports import sweep
from gradlab.reports.publish import dumps, jsonable


def test_a_sweeps_data_json_writes_its_axes_as_given(tmp_path):
    scales, biases = (1.0000000001, 1.0000000002, 3.0), (0.0, 1.00000000003)
    grid = sweep.Grid(cells=("rnn_tanh", "gru"), weight_scales=scales, gate_biases=biases,
                      hidden=4, inputs=2, steps=8, max_steps=8, batch=2)
    points = sweep.run_points(grid, grid.points())
    data = json.loads((sweep.report(grid, points, tmp_path / "p") / "data.json").read_text())
    assert data["grid"]["weight_scales"] == list(scales)
    assert data["grid"]["gate_biases"] == list(biases)
    written = [(p["cell"], p["weight_scale"], p["gate_bias"]) for p in data["points"]]
    assert written == grid.points()                    # every point told from the others
    # what was measured or computed is still written to 9 digits, the weight scales the
    # theory's curve is drawn at too (interpolated, not given: the committed report's bytes)
    assert [p["rate"] for p in data["points"]] == [jsonable(p["rate"]) for p in points]
    curve = data["theory"]["curves"]["rnn_tanh"]["weight_scale"]
    assert len(curve) > len(scales) and curve == jsonable(curve)


def test_a_gradient_decay_reports_setup_is_written_as_given(tmp_path, monkeypatch):
    setup = rp.Setup(cells=("rnn_tanh",), hidden=4, inputs=2, steps=6, batch=2,
                     weight_scale=1.0000000001, gate_bias=0.1234567891234)
    measured = rp.run(setup)
    monkeypatch.setattr(rp, "run", lambda *a, **k: measured)
    data = json.loads((rp.report(setup, tmp_path / "r") / "data.json").read_text())
    assert data["setup"]["weight_scale"] == 1.0000000001
    assert data["setup"]["gate_bias"] == 0.1234567891234
    summary = data["cells"]["rnn_tanh"]["summary"]
    assert summary["rate"] == jsonable(measured["rnn_tanh"]["summary"]["rate"])


def test_dumps_keeps_the_values_under_keep_to_every_digit():
    value = {"setup": {"w": 1 / 3, "xs": [2 / 3]}, "measured": 1 / 3}
    back = json.loads(dumps(value, 6, keep=("setup",)))
    assert back == {"setup": {"w": 1 / 3, "xs": [2 / 3]}, "measured": 0.333333}
    assert json.loads(dumps({"setup": 0.1}, keep=("setup",))) == {"setup": 0.1}   # not .17g
