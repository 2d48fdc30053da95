"""A cell file loaded by path (`path/to/file.py:NAME`, `--cells path.py:NAME`) as a user
keeps working on it: edited while a Python process runs, in a folder whose name holds a
comma. Each case was wrong before."""

import os
import re
import textwrap

import pytest

import gradlab
from gradlab.errors import GradlabError
from gradlab.options import cells_option

from conftest import assert_one_line_error, invoke

CELL = textwrap.dedent('''
    import gradlab
    from gradlab import tanh


    @gradlab.declare(state="h", params="W U b", source="{source}")
    def mine(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)
''')


def cell_file(path, source="first", after=""):
    """A file at `path` declaring the cell `mine` (its source `source`), then `after`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CELL.format(source=source) + textwrap.dedent(after))
    return path


def test_a_cell_file_edited_while_the_process_runs_loads_as_it_reads_now(tmp_path):
    """A REPL or notebook that loaded a file, then had it edited, got the first cell back
    for good: the module was kept by the file's path alone. The edit here keeps the size
    and the modification time, so only the contents tell the two apart."""
    path = cell_file(tmp_path / "edited.py", "first")
    stat = path.stat()
    first = gradlab.cell(f"{path}:mine")
    assert first.source == "first"
    cell_file(path, "again")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = gradlab.cell(f"{path}:mine")
    assert again.source == "again"
    assert gradlab.cell(f"{path}:mine") is again       # unchanged: the module it ran


def test_a_cell_file_in_a_folder_whose_name_holds_a_comma_is_one_cells_entry(tmp_path):
    """--cells split at every comma: 'runs,2024/cells.py:mine' was 'unknown cell
    .../runs', and no quoting could give that file. A comma inside a file's path is part
    of it; one between entries still parts them, and one that names no file says so."""
    path = cell_file(tmp_path / "runs,2024" / "cells.py")
    spec = f"{path}:mine"
    assert cells_option(f"lstm, {spec}", ()) == ["lstm", spec]
    assert cells_option(f"{spec},gru", ()) == [spec, "gru"]
    other = cell_file(tmp_path / "b,c.py")
    assert cells_option(f"{spec},{other}:mine", ()) == [spec, f"{other}:mine"]
    with pytest.raises(GradlabError, match="has an empty entry"):
        cells_option(f"lstm,,{spec}", ())
    missing = f"{tmp_path}/runs,2025/cells.py"
    with pytest.raises(GradlabError, match=re.escape(f"no such file {missing!r}")):
        cells_option(f"lstm,{missing}:mine", ())
    with pytest.raises(GradlabError, match="unknown cell 'lsm'"):
        cells_option(f"lsm,{spec}", ())
    assert "a comma inside a file's path is part of it" in invoke("verify", "--help").stdout
    result = invoke("train", "--cells", spec, "--steps", "2", "--drift-steps", "3",
                    "--out", tmp_path / "out")     # (refused once the cells are read)
    assert_one_line_error(result, "--drift-steps 3 is more than --steps 2")
