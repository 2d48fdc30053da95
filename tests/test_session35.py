"""Session 35: the library's `run_bench` reads a cell list as --cells does."""

import pytest

import gradlab
from gradlab import bench

GOOD = """from gradlab import declare, tanh


@declare(state="h", params="W U b", source="a test cell")
def mine(s):
    return tanh(s.W @ s.h + s.U @ s.x + s.b)
"""


@pytest.mark.parametrize("cells", ["lstm,,gru", "lstm,", ",lstm", "", []])
def test_run_bench_refuses_an_empty_entry_or_no_cell(cells):
    """It split at every comma and dropped the empties: 'lstm,,gru' timed two cells
    where the CLI refuses the typo, and '' timed nothing and returned []."""
    with pytest.raises(gradlab.GradlabError, match="empty entry|names no cell"):
        bench.run_bench(cells, 4, 3, 2, repeats=1)


def test_run_bench_takes_a_cell_file_whose_folder_has_a_comma(tmp_path):
    """'runs,2024/cells.py:mine' was split into 'runs' and '2024/cells.py:mine'."""
    folder = tmp_path / "runs,2024"
    folder.mkdir()
    (folder / "cells.py").write_text(GOOD)
    spec = f"{folder / 'cells.py'}:mine"
    [result] = bench.run_bench(spec, 3, 3, 2, repeats=1)
    assert result["cell"] == spec


def _run(cell, delay, loss, xi_init, xi_trained):
    return {"cell": cell, "task": "copy", "delay": delay, "final": {"loss": loss},
            "checkpoints": [{"timescale": xi_init}, {"timescale": xi_trained}]}


def test_learnability_figures_say_where_a_zero_has_no_place_on_their_log_axis():
    """A loss of exactly 0 (a task learned perfectly) or a timescale of 0 was left off
    the log axis without a word: the cell seemed not to have run at that delay."""
    import numpy as np

    from gradlab.training import figures
    runs = [_run("lstm", 10, 0.0, 0.0, 4.0), _run("lstm", 20, 0.5, 3.0, 5.0),
            _run("gru", 10, 0.2, 2.0, 3.0), _run("gru", 20, 0.4, 2.0, 3.0)]
    col = {"lstm": "#000000", "gru": "#ff7f0e"}
    lines = figures.learning(runs, col, {"copy": 1.0}, ()).axes[0].get_lines()
    labels = {line.get_label(): line for line in lines}
    assert set(labels) == {"lstm (loss 0 at delay 10, not drawn)", "gru"}
    assert np.isnan(labels["lstm (loss 0 at delay 10, not drawn)"].get_ydata()[0])
    lines = figures.timescales(runs, col, cap=100).axes[0].get_lines()
    assert {line.get_label() for line in lines} >= {
        "lstm (init) (ξ ≤ 0 at delay 10, not drawn)", "lstm (trained)", "gru (init)"}


def test_a_refused_object_is_quoted_on_one_line():
    """errors.integer quoted a refused value by its repr: a cell's is its equations, so
    gradlab.stack(cell, cell) (a cell where the layer count goes) raised a message of
    several lines that the CLI's one line would cut."""
    lstm = gradlab.cell("lstm")
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.stack(lstm, lstm)
    message = str(err.value)
    assert "\n" not in message and message.startswith("layers must be an integer")
    assert len(message) < 200


def test_all_among_named_cells_is_told_to_stand_alone():
    """--cells all,lstm said "unknown cell 'all'", though 'all' is a valid --cells."""
    from conftest import assert_one_line_error, invoke
    assert_one_line_error(invoke("verify", "--cells", "all,lstm"), "'all' stands alone")
