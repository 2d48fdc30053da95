"""A cell of the user's own, in a file (`path/to/file.py:NAME`), through every way in: what
the file does while it loads (raise, exit, change the process's state) is one line naming
the file, and nothing it does leaks into gradlab's later work. Each case was wrong before."""

import textwrap

import pytest

import gradlab
from gradlab.errors import GradlabError

from conftest import assert_one_line_error, invoke

CELL = textwrap.dedent('''
    import gradlab
    from gradlab import tanh


    @gradlab.declare(state="h", params="W U b", source="test")
    def mine(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)
''')


def cell_file(folder, name, before=""):
    """A file `name` in `folder` declaring the cell `mine`, after the lines `before`."""
    path = folder / name
    path.write_text(textwrap.dedent(before) + CELL)
    return path


def test_a_keyboard_interrupt_the_file_raises_itself_is_one_line_naming_it(tmp_path):
    """It read as the user's Ctrl-C: 'gradlab: interrupted', exit 130, no file named."""
    path = cell_file(tmp_path, "interrupts.py", "raise KeyboardInterrupt\n")
    assert_one_line_error(invoke("derive", f"{path}:mine"),
                          f"cannot load {path} (in cell '{path}:mine'): it raised "
                          f"KeyboardInterrupt at {path}:1 (no Ctrl-C was pressed)")
    with pytest.raises(GradlabError, match="interrupts.py.*raised KeyboardInterrupt"):
        gradlab.cell(f"{path}:mine")
