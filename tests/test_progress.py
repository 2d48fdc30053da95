"""Progress of long loops: heard at every step by a listener (which decides how often to
show it), at no cost without one. Loops reported every 256 steps, so a report on a large
model (a step of S = 1024, B = 16 takes seconds) printed nothing for over ten minutes."""

import pytest
import torch

import gradlab
from gradlab import progress


def test_every_step_of_each_loop_is_heard_while_someone_listens():
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 2, seed=0)
    xs = torch.randn(5, 2, 2, dtype=torch.float64)
    heard = []
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        flow = gradlab.gradient_flow(cell, params, xs)
        flow.log_norm()
        flow.lyapunov(2)
    for what in ("forward run", "backward walk", "Lyapunov QR"):
        assert [d for w, d, t in heard if w == what] == [1, 2, 3, 4, 5], what
    assert all(t == 5 for _, _, t in heard)


def test_silenced_no_reports():
    with progress.listening(None):
        assert not progress.due(0, 1) and not progress.due(255, 1000)
    with progress.listening(lambda *a: None):
        assert progress.due(0, 1000)


def test_a_long_call_from_python_says_how_far_it_is_on_stderr(monkeypatch, capsys):
    """No listener (Python, a notebook): a loop longer than SILENT seconds prints a line
    every SILENT seconds and one when it ends; a short one prints nothing."""
    clock = iter(range(0, 1000, 4))                   # each step takes 4 "seconds"
    monkeypatch.setattr(progress._Stderr, "clock", staticmethod(lambda: next(clock)))
    monkeypatch.setattr(progress, "SILENT", 10.0)
    with progress.listening(progress._Stderr()):
        for done in range(1, 8):
            progress.advance("backward walk", done, 7)
        for done in (1, 2):                                   # a new, short loop
            progress.advance("forward run", done, 2)
    assert capsys.readouterr().err.splitlines() == [
        "gradlab: backward walk: step 4 of 7 (12 s)",
        "gradlab: backward walk: step 7 of 7 done (24 s)"]


def test_a_real_call_is_quiet_when_it_is_quick(capsys):
    cell = gradlab.cell("lstm")
    gradlab.gradient_flow(cell, cell.init_params(3, 2, seed=0),
                          torch.randn(5, 2, 2, dtype=torch.float64)).log_norm()
    assert capsys.readouterr().err == ""


def test_training_steps_are_heard():
    """gradlab train at 1e6 steps printed nothing for as long as it ran."""
    from gradlab.training.loop import TrainSetup, train
    from gradlab.training.tasks import TASKS
    heard = []
    setup = TrainSetup(hidden=2, batch=2, steps=7, drift_steps=0, probe_steps=4, test_batch=4,
                       measure_batch=2)
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        train(gradlab.cell("rnn_tanh"), TASKS["adding"](3), setup)
    assert [d for w, d, t in heard if w == "training"] == list(range(1, 8))


def test_dynamic_mean_field_is_heard():
    """A report's theory at T = 3000 ran ~55 s with nothing shown: its two loops over the
    steps now report as the flow's do."""
    heard = []
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        gradlab.mean_field("lstm", method="dynamic", units=16, steps=12)
    for what in ("mean-field forward", "mean-field backward"):
        assert [d for w, d, t in heard if w == what] == list(range(1, 13))


def test_annealed_mean_field_is_heard():
    """The annealed theory (gradlab.mean_field's default) ran 17 s at steps=2000 with
    nothing for a listener to show: its loop over the steps reports as the dynamic one's."""
    heard = []
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        gradlab.mean_field("lstm", units=16, burn_in=3, steps=5)
    assert [(d, t) for w, d, t in heard if w == "annealed mean field"] == \
        [(d, 8) for d in range(1, 9)]


def test_loops_taking_turns_are_timed_together(monkeypatch, capsys):
    """Training with a flow measured between its steps: the clock restarted at every
    change of loop, and a call of minutes said nothing. It runs while the work does."""
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(progress._Stderr, "clock", staticmethod(lambda: next(clock)))
    monkeypatch.setattr(progress, "SILENT", 10.0)
    with progress.listening(progress._Stderr()):
        for step in range(1, 7):
            progress.advance("training", step, 6)
            progress.advance("forward run", 1, 1)                # 3 "seconds" each
    assert capsys.readouterr().err.splitlines() == [
        "gradlab: training: step 3 of 6 (12 s)", "gradlab: training: step 5 of 6 (24 s)",
        "gradlab: training: step 6 of 6 done (30 s)"]


def test_with_no_listener_a_long_call_prints_and_a_silenced_one_does_not(monkeypatch,
                                                                         capsys):
    """The default wiring itself: a fresh context (a new session) prints to stderr."""
    import contextvars
    monkeypatch.setattr(progress, "SILENT", 0.0)
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(3, 2, seed=0)
    xs = torch.randn(4, 1, 2, dtype=torch.float64)
    contextvars.Context().run(lambda: gradlab.gradient_flow(cell, params, xs).log_norm())
    heard = capsys.readouterr().err.splitlines()
    assert heard and all(line.startswith("gradlab: ") for line in heard)
    assert "gradlab: forward run: step 1 of 4 (0 s)" in heard
    with progress.listening(None):
        gradlab.gradient_flow(cell, params, xs).log_norm()
    assert capsys.readouterr().err == ""


def test_listening_refuses_what_is_not_a_function():
    """listening("x") was taken, and the analysis later failed deep inside with
    "TypeError: 'str' object is not callable"."""
    with pytest.raises(gradlab.GradlabError, match="listening\\(fn\\) takes a function "
                                                   "fn\\(what, done, total\\) or None"):
        with progress.listening("x"):
            pass


def test_each_command_starts_the_default_clock_afresh(monkeypatch):
    """In one process running many commands (a test suite), the first command's clock
    timed them all: a 'step 1 of 3 (67 s)' line landed in a short check's output."""
    from conftest import invoke
    clock = iter(range(0, 100000, 4))
    monkeypatch.setattr(progress._Stderr, "clock", staticmethod(lambda: next(clock)))
    earlier = progress._Stderr()
    with progress.listening(earlier):
        for step in range(8):
            progress.advance("an earlier command", step, 100)       # its clock runs
        result = invoke("cells")
        assert result.exit_code == 0 and "gradlab: " not in result.stderr
        assert progress._LISTENER.get() is not earlier                # a fresh printer
        assert isinstance(progress._LISTENER.get(), progress._Stderr)
    mine = []
    with progress.listening(lambda *args: mine.append(args)):
        invoke("cells")
        assert progress._LISTENER.get() is not None and not isinstance(
            progress._LISTENER.get(), progress._Stderr)             # a caller's own: kept
