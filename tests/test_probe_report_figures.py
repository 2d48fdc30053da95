"""Probe of the reports' figures and captions: every number they show is one data.json
holds, and nothing they say is contradicted by the figure's own data."""

from gradlab.reports import sweep


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
