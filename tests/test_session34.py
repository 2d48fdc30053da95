"""Regression tests for defects fixed in session 34 (from df769c5)."""

import math

import numpy as np


def test_gradlab_init_defaults_are_critical_inits():
    """The init command writes its defaults again (its --help must not import torch to
    read them from critical_init): they must stay the library's, option by option."""
    import inspect

    from gradlab.commands.learning import init_
    from gradlab.meanfield.critical import critical_init
    library = inspect.signature(critical_init).parameters
    shared = [p for p in init_.params if p.name in library
              and library[p.name].default is not inspect.Parameter.empty]
    assert {p.name for p in shared} >= {"hidden", "inputs", "measurements", "seed",
                                        "weight_scale", "gate_bias"}
    for p in shared:
        assert p.default == library[p.name].default, p.name


def _run(cell, task, delay, loss, xi_init, xi_trained):
    return {"cell": cell, "task": task, "delay": delay, "final": {"loss": loss},
            "checkpoints": [{"timescale": xi_init}, {"timescale": xi_trained}]}


def test_learnability_figures_hide_no_cell_behind_the_legend_or_another():
    """The committed report's copy@20 panel put its legend (loc "best", 3 columns) over
    lstm's point, ticked one delay at 19.00, 19.25, ..., and drew five cells' "gradients
    grow" triangles at one spot, the last alone visible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gradlab.training import figures
    cells = ["rnn_tanh", "lstm", "gru"]
    col = dict(zip(cells, ["#000000", "#1f77b4", "#ff7f0e"]))
    runs = [_run(c, "copy", 20, 0.3 * (k + 1), math.inf, math.inf)
            for k, c in enumerate(cells)]
    for fig in (figures.learning(runs, col, {"copy": 1.0}, ((0.1, "learned"),)),
                figures.timescales(runs, col, cap=200)):
        FigureCanvasAgg(fig).draw()
        ax = fig.axes[0]
        assert list(ax.get_xticks()) == [20]
        legend = ax.get_legend().get_window_extent()
        assert not legend.overlaps(ax.get_window_extent())
    triangles = [line.get_xdata()[0] for line in fig.axes[0].get_lines()
                 if line.get_marker() == "^"]
    assert len(triangles) == 6 and len(set(triangles)) == 6      # 3 cells x init, trained


def test_report_figures_drop_a_zero_rms_from_a_log_axis_and_style_paths_by_state_order():
    """The drift figure drew the zero initial state (RMS 0 at t = 0) on its log axis as a
    plunge off the panel; the paths figure gave each block its line style in the order
    of the entry's dict, which data.json sorts: a report redrawn from its data.json had
    the hidden path dashed where it had been solid."""
    from gradlab.reports import figures
    cells = {"lstm": {"drift": {"rms": [0.0, 0.5, 0.25, 0.0]}}}
    top = figures.drift(cells, {"lstm": "#000000"}, ["lstm"]).axes[0]
    line = top.get_lines()[0]
    assert top.get_yscale() == "log" and np.isnan(line.get_ydata()[[0, 3]]).all()
    assert "RMS 0 at 1 steps past t = 0" in line.get_label()
    run_order = {"h->h": [0.0, -1.0], "h->c": [0.0, -2.0], "c->h": [0.0, -3.0],
                 "c->c": [0.0, -4.0]}
    styles = []
    for paths in (run_order, dict(sorted(run_order.items()))):
        entry = {"lstm": {"lags": [1, 2], "state": ["h", "c"], "paths": paths}}
        lines = figures.paths(entry, {"lstm": "#000000"}).axes[0].get_lines()
        styles.append({ln.get_label(): ln.get_linestyle() for ln in lines})
    assert styles[0] == styles[1]


def test_markers_set_side_by_side_stay_within_their_delay():
    """The offsets were 1.2 % of the delay range a series: with six cells (12 series) and
    delays 10, 11, ..., 50, one delay's markers ran past the next delay's."""
    from gradlab.training import figures
    cells = [f"c{k}" for k in range(6)]
    runs = [_run(c, "adding", d, 0.5, 5.0, 6.0) for c in cells for d in range(10, 51)]
    fig = figures.timescales(runs, dict.fromkeys(cells, "#000000"), cap=500)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() != "ξ = delay"]
    assert len(lines) == 12
    for line in lines:                 # each series' markers within half a step of theirs
        assert np.abs(line.get_xdata() - np.arange(10, 51)).max() < 0.5


def test_torch_2_4s_get_default_device_after_a_reset_is_the_cpu(monkeypatch):
    """torch 2.4's get_default_device raises AttributeError once set_default_device(None)
    has run (it reads the context that call leaves None): every public call then failed
    ('NoneType' object has no attribute 'device'), as did the rest of the test suite
    under 2.4.1 after the first test that reset the default device."""
    import torch

    import gradlab
    from gradlab.torch_state import default_device, kept

    def broken():
        raise AttributeError("'NoneType' object has no attribute 'device'")

    monkeypatch.setattr(torch, "get_default_device", broken)
    assert default_device() == torch.device("cpu")
    rnn = gradlab.cell("rnn_tanh")
    flow = gradlab.gradient_flow(rnn, rnn.init_params(3, 2, seed=0),
                                 torch.zeros(4, 1, 2, dtype=torch.float64))
    assert np.isfinite(flow.log_norm()).all()
    with kept():
        torch.manual_seed(5)


def test_a_rescale_past_2_to_the_149_keeps_the_product_under_torch_2_4s_ldexp(monkeypatch):
    """torch 2.4's ldexp(x, e) is x * 2.0 ** e, in float32 for int exponents: the walk's
    rescale of a Jacobian of weights 1e155 (2^-258 a factor) multiplied by 0, and every
    norm of the flow read 'product zero' (-inf) under torch 2.4.1 (test_overflow_api)."""
    import torch

    import gradlab
    monkeypatch.setattr(torch, "ldexp", lambda x, e: x * torch.pow(2.0, e))   # torch 2.4's
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(4, 3, seed=2, weight_scale=1e155, bias_scale=1.0)
    xs = torch.randn(2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logs = gradlab.gradient_flow(cell, params, xs).log_norm("frobenius")
    np.testing.assert_allclose(logs[1], [357.3255, 713.9046], rtol=1e-6)
