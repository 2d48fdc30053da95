"""Regression tests from the review of session 34's commits (df769c5..50903a4)."""

import pytest

from gradlab.errors import GradlabError


def test_a_mistyped_cell_before_a_cell_file_is_named_not_taken_for_a_path(tmp_path,
                                                                          monkeypatch):
    """cell_entries joined any piece that is no identifier to the next FILE.py:NAME:
    'rnn-tanh,cells.py:mine' read "no such file 'rnn-tanh,cells.py'", of a file that
    exists, not "unknown cell 'rnn-tanh'". A path's start ('/', '~') still joins."""
    from gradlab.options import cells_option
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cells.py").write_text("")
    for given, bad in (("rnn-tanh,cells.py:mine", "rnn-tanh"),
                       ("lstm, gru-x ,cells.py:mine", "gru-x")):
        with pytest.raises(GradlabError, match=f"^unknown cell '{bad}'; valid cells: "):
            cells_option(given, ())
    with pytest.raises(GradlabError, match="^no such file '~/no-such,x/c.py'"):
        cells_option("lstm,~/no-such,x/c.py:mine", ())
