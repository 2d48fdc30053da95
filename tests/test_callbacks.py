"""Functions a user hands gradlab to be called back (critical_init's report, a progress
listener): one that cannot take the arguments it will be called with is refused in one
line when it is given, not by a TypeError from deep in the work."""

import pytest

import gradlab
from gradlab import GradlabError, progress
from gradlab.errors import callback


def test_callback_checks_arity_and_type():
    assert callback(None, "fn", ("a", "b")) is None
    f = lambda a, b=1, *rest: None                     # noqa: E731
    assert callback(f, "fn", ("a", "b")) is f
    assert callback(print, "fn", ("a", "b", "c")) is print
    with pytest.raises(GradlabError, match=r"fn must be a function fn\(a, b\) or None, got int"):
        callback(3, "fn", ("a", "b"))
    with pytest.raises(GradlabError, match="cannot be called so"):
        callback(lambda a: None, "fn", ("a", "b"))
    with pytest.raises(GradlabError, match="cannot be called so"):
        callback(lambda a, b, c: None, "fn", ("a", "b"))


def test_critical_init_refuses_a_report_of_the_wrong_arity_before_measuring():
    with pytest.raises(GradlabError, match=r"report\(knob, value, timescale\)") as err:
        gradlab.critical_init("gru", 5, hidden=4, inputs=2, measurements=1, steps=20,
                              report=lambda knob: None)
    assert "\n" not in str(err.value)


def test_a_progress_listener_of_the_wrong_arity_is_refused():
    with pytest.raises(GradlabError, match=r"listening\(fn\) takes a function fn\(what, "
                                           r"done, total\) or None \(silence\), got one"):
        with progress.listening(lambda: None):
            pass
    with progress.listening(lambda what, done, total: None):       # three: taken
        pass
    with progress.listening(None):                                  # silence: taken
        pass
