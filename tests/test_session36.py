"""Regressions fixed in session 36, each reproduced before its fix."""

import pytest

import gradlab


@pytest.mark.parametrize("call", [lambda: gradlab.I(3), lambda: gradlab.I(n=4)])
def test_the_identity_is_not_a_function_of_its_size(call):
    # I(3) was "TypeError: 'Value' object is not callable", from Python, not gradlab
    with pytest.raises(gradlab.GradlabError, match=r"^I is a value of the cell language, "
                       r"not a function: it takes no arguments \(I is the n x n identity"):
        call()


def test_a_value_called_in_a_declaration_is_one_line():
    with pytest.raises(gradlab.GradlabError, match=r"^cell 'cell', equation `.*`"
                       r" \(.*test_session36.py:\d+\): W is a value of the cell language, not a "
                       r"function: it takes no arguments$") as err:
        @gradlab.declare(state="h", params="W U b", source="test")
        def cell(s):
            return gradlab.tanh(s.W(s.h) + s.U @ s.x + s.b)
    assert "\n" not in str(err.value)


def test_public_calls_run_without_tf32_and_leave_the_callers_setting():
    # set_float32_matmul_precision("high") turns TF32 on for CUDA matrix products; float32
    # norms certified to 5e-7 would have been computed from products rounded at ~5e-4.
    # The flag is set and put back by hand, not by monkeypatch: torch's cuBLAS flags object
    # answers allow_tf32 from __getattr__ (nothing in its __dict__) and has no __delattr__,
    # so pytest 9.2's monkeypatch undoes the patch with delattr, which raises
    # AttributeError at teardown (seen with torch 2.4.1), and TF32 was left on after it
    import torch
    seen = []

    def fn(params, state, x):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        h = torch.tanh(state[0] @ params["W"].T + x @ params["U"].T + params["b"])
        return (1 - h ** 2)[:, :, None] * params["W"]          # d h' / d h, exact

    g = torch.Generator().manual_seed(0)
    W, U, b = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in
               ((3, 3), (3, 2), (3,)))
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert torch.backends.cuda.matmul.allow_tf32
        result = gradlab.check_jacobian(fn, gradlab.cell("rnn_tanh"), {"W": W, "U": U,
                                                                       "b": b})
        assert seen and not any(seen)
        assert torch.backends.cuda.matmul.allow_tf32      # the caller's setting, restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert result.ok


def test_a_gated_cells_theory_leaping_to_infinity_says_which_lines_it_cannot_draw():
    # the LSTM's theory went 4.6 -> 9.57 -> inf along a gate-bias row: the caption listed
    # xi = 3, 10, 30, 100, 300, and the 10 line (drawn nowhere: no finite value reaches it)
    # was missing without a word, as the vanilla curve's leaps already were not
    import math
    from gradlab.reports import phase_words
    from gradlab.reports.sweep import Grid
    grid = Grid(cells=("lstm",), weight_scales=(1.0, 2.0, 3.0), gate_biases=(0.0, 2.0),
                hidden=8, inputs=8, steps=8, max_steps=32, batch=2)
    theory = {"method": "dynamic", "levels": [3, 10, 30, 100, 300], "unread": {},
              "options": {"units": 256, "inputs": 8, "steps": 32, "lags": [8, 32]},
              "timescale": {"lstm": [[1.5, 2.5, 3.5], [4.6, 9.57, math.inf]]}, "curves": {}}
    text = phase_words.theory_text(grid, [], theory)
    assert ("lstm's theory leaps from a finite timescale (at most 9.57) to ∞ between "
            "neighbouring points of the map, passing ξ = 10, 30, 100, 300 there: those lines "
            "cannot be placed and are not drawn.") in text
    theory["timescale"]["lstm"][1][1] = 250.0         # one level passed in the leap
    assert "passing ξ = 300 there: that line cannot be placed and is not drawn." in \
        phase_words.theory_text(grid, [], theory)
    theory["timescale"]["lstm"][1][2] = 12.0          # no leap: nothing of the kind said
    assert "cannot be placed" not in phase_words.theory_text(grid, [], theory)


TRAIN = ("--tasks", "adding:4", "--steps", "6", "--hidden", "8", "--batch", "8",
         "--drift-steps", "3", "--char-steps", "0")


def test_train_without_a_drift_cell_draws_no_empty_figure_and_says_so(tmp_path):
    # rnn_tanh and lstm: the drift figure was two empty axes (a placeholder), and with a
    # bounded cell but no prototype the text said "no drift measurement" over its figure
    from conftest import assert_ok, invoke
    out = tmp_path / "r"
    assert_ok(invoke("train", "--cells", "rnn_tanh,gru", *TRAIN, "--out", out))
    text = (out / "report.md").read_text()
    assert "The prototype LSTM was not trained in this run, so the essay's claim cannot be " \
           "tested: the figure shows the state of gru alone." in text
    assert (out / "figures" / "drift.png").exists()
    assert_ok(invoke("train", "--cells", "rnn_tanh,lstm", *TRAIN, "--out", out))  # same kind
    text = (out / "report.md").read_text()
    assert "None of the cells it measures (prototype_lstm, normalized_lstm, pseudo_lstm, gru) " \
           "was trained in this run: no drift measurement, and no figure." in text
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "learning.png", "learning.svg", "timescales.png", "timescales.svg"]   # drift: gone
    assert "figures/drift" not in text


def test_check_jacobians_memory_refusal_speaks_python_not_the_clis_flags():
    # called from Python it said "gradlab check at hidden 4, ...; use a smaller --hidden,
    # --inputs or --batch": flags of a command the user did not run
    import torch
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 3, seed=0)
    with pytest.raises(gradlab.GradlabError, match=r"^check_jacobian at hidden 4, inputs 3, "
                       r"batch 1000000000 needs about .* of memory but .* is available on "
                       r"cpu; use a smaller hidden size, fewer inputs or a smaller batch$"):
        gradlab.check_jacobian(lambda p, s, x: torch.zeros(1), cell, params, batch=10 ** 9)


@pytest.mark.parametrize("one", ["tensor", "rows"])
def test_one_state_part_for_a_cell_of_two_is_named_as_one_part(one):
    # gradient_flow(lstm, ..., state0=h) said "cell 'lstm' takes a state of 2 part(s)
    # (h, c), got 1"
    import torch
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 3, seed=0)
    h = torch.zeros(2, 4) if one == "tensor" else [[0.0] * 4] * 2
    with pytest.raises(gradlab.GradlabError, match=r"^state0: cell 'lstm' takes a tuple of its "
                       r"state parts \(h, c\), \(B, n\) each; got one part$"):
        gradlab.gradient_flow(cell, params, torch.zeros(5, 2, 3), state0=h)
    gru = gradlab.cell("gru")                       # a cell of one part takes it as it is
    flow = gradlab.gradient_flow(gru, gru.init_params(4, 3, seed=0), torch.zeros(5, 2, 3),
                                 state0=h)
    assert flow.log_norm("frobenius").shape == (2, 5)


def test_report_figures_carry_no_raw_tex_braces(tmp_path):
    # the decay and paths axes read "log₁₀ ‖∂s_T / ∂s_{T−k}‖₂": plain text, not mathtext,
    # so the braces were drawn as they are
    from conftest import assert_ok, invoke
    out = tmp_path / "r"
    assert_ok(invoke("report", "--cells", "rnn_tanh,lstm", "--steps", "6", "--hidden", "4",
                     "--batch", "2", "--out", out))
    svgs = sorted((out / "figures").glob("*.svg"))
    assert {p.stem for p in svgs} >= {"decay", "paths"}
    for p in svgs:
        text = p.read_text()
        assert "_{" not in text and "∂s_(T−k)" in text or p.stem not in ("decay", "paths"), p


def test_a_short_training_runs_step_axes_tick_whole_steps():
    # 20 steps ticked 0, 2.5, 5, 7.5, ...: there is no training step 2.5
    import numpy as np
    from gradlab.training import figures
    runs = [{"cell": "gru", "task": "adding", "delay": 4, "state_rms": list(np.linspace(1, 2, 20)),
             "write_gate": [0.5] * 5 + [float("nan")] * 15}]
    fig = figures.drift(runs, {"gru": "C0"}, "t")
    char = {"train_bits": list(np.linspace(5, 3, 20)), "unigram_bits": 4.0, "corpus": "x",
            "trained": {"bits": 3.5}}
    for f in (fig, figures.charlm(char)):
        f.canvas.draw()
        for ax in f.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_an_arch_too_large_for_memory_names_inputs_among_what_to_shrink():
    # --arch lstm:hidden=8,inputs=100000000000 was told "use a smaller --arch hidden,
    # --steps or --batch", though its inputs were what did not fit
    from gradlab import budget
    from gradlab.checkpoint import parse_arch
    arch = parse_arch("lstm:hidden=8,inputs=100000000000")
    with pytest.raises(gradlab.GradlabError, match=r"use a smaller --arch hidden or inputs, "
                       r"--steps or --batch$"):
        budget.ensure_arch_fits(arch, 10, 2, available=1 << 30)
