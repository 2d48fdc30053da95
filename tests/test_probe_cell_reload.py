"""A cell file loaded by path (`path/to/file.py:NAME`, `--cells path.py:NAME`) as a user
keeps working on it: edited while a Python process runs, next to files named like the
packages gradlab uses, in a folder whose name holds a comma. Each case was wrong before."""

import os
import textwrap

import gradlab

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
