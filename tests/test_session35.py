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
