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


@pytest.mark.parametrize("state", [["h", "c", "n"], ["h", "c", "i", "f", "o"]])
def test_the_paths_figure_gives_each_drawn_block_of_a_long_state_its_own_style(state):
    """Past two parts only the diagonal blocks are drawn, but the styles were counted
    over every block: h->h, c->c, n->n of a three-part state were all solid lines, and
    h, i and o of h c i f o (lstm_fgr's state) too."""
    from gradlab.reports import figures
    paths = {f"{a}->{b}": [0.0, -1.0 - k] for k, a in enumerate(state) for b in state}
    entry = {"cell": {"lags": [1, 2], "state": state, "paths": paths}}
    lines = figures.paths(entry, {"cell": "#000000"}).axes[0].get_lines()
    assert [ln.get_label().split("∂")[1][0] for ln in lines] == state
    styles = [ln.get_linestyle() for ln in lines][:4]
    assert len(set(styles)) == len(styles)
