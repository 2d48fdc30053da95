"""A cell of the user's own, in a file (`path/to/file.py:NAME`), through every way in: what
the file does while it loads (raise, exit, change the process's state) is one line naming
the file, and nothing it does leaks into gradlab's later work. Each case was wrong before."""

import sys
import textwrap

import pytest

import gradlab
from gradlab.errors import GradlabError
from gradlab.torch_state import default_device

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


@pytest.mark.parametrize("before", ['torch.set_default_device("meta")\n',
                                    "torch.set_default_dtype(torch.float16)\n"])
def test_torchs_settings_a_file_changes_as_it_loads_do_not_reach_gradlabs_work(
        tmp_path, before):
    """A file that set torch's default device to "meta" failed verify with an internal
    error (Tensor.item() on a meta tensor), and left the caller's session on "meta"."""
    import torch
    path = cell_file(tmp_path, "settings.py", "import torch\n" + before)
    device, dtype = default_device(), torch.get_default_dtype()
    result = invoke("verify", "--cells", f"{path}:mine")
    assert result.exit_code == 0, result.output
    assert (default_device(), torch.get_default_dtype()) == (device, dtype)


def test_a_seed_a_file_sets_as_it_loads_does_not_move_the_callers_numbers(tmp_path):
    import torch
    path = cell_file(tmp_path, "seeds.py", "import torch\ntorch.manual_seed(7)\n")
    state = torch.get_rng_state()
    gradlab.cell(f"{path}:mine")
    assert torch.equal(torch.get_rng_state(), state)


def test_a_file_that_changes_sys_path_as_it_loads_leaves_it_as_it_was(tmp_path, monkeypatch):
    """One that cleared sys.path ended report in an internal error (No module named
    'statistics', imported later); one that put a folder first kept it there for every
    import after it."""
    import sys
    monkeypatch.setattr(sys, "path", list(sys.path))        # (restored, whatever happens)
    before = list(sys.path)
    cleared = cell_file(tmp_path, "clears.py", "import sys\nsys.path.clear()\n")
    gradlab.cell(f"{cleared}:mine")
    assert sys.path == before
    first = cell_file(tmp_path, "first.py", "import sys\nsys.path.insert(0, '/elsewhere')\n")
    gradlab.cell(f"{first}:mine")
    assert sys.path == before


def test_a_cell_file_under_the_home_folder_is_found_by_tilde(tmp_path, monkeypatch):
    """`--cells '~/cells.py:mine'` was 'no such file', though --out takes ~ and --cells
    already took it to tell two entries apart."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cell_file(tmp_path, "tilde.py")
    assert gradlab.cell("~/tilde.py:mine").name == "mine"
    result = invoke("derive", "~/tilde.py:mine")
    assert result.exit_code == 0 and result.stdout.startswith("mine: state (h)"), result.output


def test_a_cell_nested_too_deep_to_print_is_one_line_and_its_repr_says_so(tmp_path):
    """tanh(W tanh(W ... h)) 150 deep, in one expression: derive ended in an internal
    error (SymPy's printer past Python's recursion limit), and so did the cell's repr."""
    path = tmp_path / "deep.py"
    path.write_text(textwrap.dedent('''
        import gradlab
        from gradlab import tanh


        @gradlab.declare(state="h", params="W U b", source="test")
        def deep(s):
            y = s.h
            for _ in range(150):
                y = tanh(s.W @ y + s.U @ s.x + s.b)
            return y
    '''))
    limit = sys.getrecursionlimit()      # Python's default: another test (torch.compile)
    sys.setrecursionlimit(1000)          # may have raised it, and 150 levels then print
    try:
        assert_one_line_error(invoke("derive", f"{path}:deep"),
                              "deep is too deep to print; name intermediate values with s.let")
        assert "(equations not shown: an expression nested" in repr(gradlab.cell(f"{path}:deep"))
    finally:
        sys.setrecursionlimit(limit)


def test_a_file_asking_for_its_own_cell_before_declaring_it_is_told_so(tmp_path):
    """It was told "has no cell 'mine'; cells there: none", as if the name were wrong."""
    path = cell_file(tmp_path, "selfish.py", "import gradlab\ngradlab.cell(__file__ + ':mine')\n")
    with pytest.raises(GradlabError, match="its own cell 'mine' by path while it is still "
                                           "loading"):
        gradlab.cell(f"{path}:mine")
    after = cell_file(tmp_path, "fine.py")                   # after it: the cell, as ever
    after.write_text(after.read_text() + "\nsame = gradlab.cell(__file__ + ':mine')\n")
    assert gradlab.cell(f"{after}:mine").name == "mine"
